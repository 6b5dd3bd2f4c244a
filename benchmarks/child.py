"""One engine in one fresh process: start it, run some workloads, write what was measured.

    run.py ──`python -m benchmarks.child ENGINE --workloads ... --result FILE`──▶ this process
        load (import, timed) ──▶ start (+ first task: cold start; footprint) ──▶ workloads,
        each repeated until --repeats or --budget is reached ──▶ shutdown (timed)
    ──▶ FILE (JSON), rewritten after every step, so a run killed on timeout still shows
        what it finished and which workload it was in.

Every workload checks its results; a wrong one is recorded as FAILED with the message, an
exception as ERROR with its traceback. Send SIGUSR1 to dump every thread's stack to stderr
(the runner does, before it kills a run that timed out).
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import os
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from . import tasks
from .engines import load_engine
from .engines.base import Engine
from .measure import tree_footprint
from .workloads import STARTUP, WORKLOADS, Sizes, Value, Workload, check


class Recorder:
    """The child's result file: one JSON document, replaced atomically at every step."""

    def __init__(self, path: Path, engine: str) -> None:
        self.path = path
        self.doc: dict[str, Any] = {
            "engine": engine,
            "pid": os.getpid(),
            "stage": "load",
            "workloads": {},
        }
        self.write()

    def write(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.doc, indent=1, default=str))
        os.replace(tmp, self.path)

    def stage(self, stage: str) -> None:
        self.doc["stage"] = stage
        self.write()

    def begin(self, name: str) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "status": "running",
            "started": time.time(),
            "values": {},
            "notes": {},
            "repeats": 0,
        }
        self.doc["workloads"][name] = entry
        self.doc["stage"] = name
        self.write()
        return entry

    def add(self, entry: dict[str, Any], values: dict[str, Value]) -> None:
        for key, value in values.items():
            entry["values"].setdefault(key, []).append(value)
        entry["repeats"] += 1
        self.write()

    def finish(self, entry: dict[str, Any], status: str, error: str | None = None) -> None:
        entry["status"] = status
        entry["error"] = error
        entry["seconds"] = time.time() - entry["started"]
        self.write()


def failure(exc: BaseException) -> tuple[str, str]:
    """(status, message) for an exception raised by a workload or the engine."""
    if isinstance(exc, AssertionError):
        return "FAILED", f"{exc}"
    text = "".join(traceback.format_exception(exc))
    return "ERROR", f"{type(exc).__name__}: {exc}\n{text[-3000:]}"


def measure_startup(
    engine: Engine, num_cpus: int, wanted: list[str], rec: Recorder, import_s: float
) -> None:
    """Cold start (start → first no-op result) and footprint (whole tree after 1 s)."""
    entries = {name: rec.begin(name) for name in wanted}
    try:
        start = time.perf_counter()
        engine.start(num_cpus)
        (first,) = engine.gather([engine.submit(tasks.noop, 7)])
        cold_start_s = time.perf_counter() - start
        check(first == 7, f"the first task returned {first!r}, expected 7")
    except BaseException as exc:
        status, message = failure(exc)
        for entry in entries.values():
            rec.finish(entry, status, message)
        raise
    if "cold_start" in entries:
        rec.add(entries["cold_start"], {"cold_start_s": cold_start_s, "import_s": import_s})
        rec.finish(entries["cold_start"], "ok")
    if "footprint" in entries:
        time.sleep(1.0)
        fp = tree_footprint()
        rec.add(
            entries["footprint"],
            {"rss_mb": fp.rss_mb, "pss_mb": fp.pss_mb, "processes": float(fp.processes)},
        )
        entries["footprint"]["notes"]["uss_mb"] = fp.uss_mb
        rec.finish(entries["footprint"], "ok")


def run_workload(
    engine: Engine, workload: Workload, repeats: int, budget: float, rec: Recorder
) -> None:
    """Run ``workload`` up to ``repeats`` times; stop early (after at least one repeat) when
    another repeat would take the workload past ``budget`` seconds (0: no budget)."""
    entry = rec.begin(workload.name)
    try:
        workload.setup(engine)
        spent = 0.0
        for _ in range(repeats):
            start = time.perf_counter()
            values = workload.run(engine)
            took = time.perf_counter() - start
            rec.add(entry, values)
            spent += took
            if budget and spent + took > budget:
                break
        workload.teardown(engine)
    except Exception as exc:
        rec.finish(entry, *failure(exc))
        return
    region = workload.state.get("region")
    if region:
        entry["notes"]["get_memory"] = region
    if all(v is None for vs in entry["values"].values() for v in vs):
        rec.finish(entry, "n/a", f"{engine.name} has no {workload.title.lower()}")
    else:
        rec.finish(entry, "ok")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.child", description=__doc__)
    parser.add_argument("engine")
    parser.add_argument("--workloads", required=True, help="comma-separated workload names")
    parser.add_argument("--result", required=True, type=Path, help="JSON file to write")
    parser.add_argument("--num-cpus", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--budget", type=float, default=0.0, help="seconds per workload")
    parser.add_argument("--quick", action="store_true", help="smaller sizes")
    args = parser.parse_args(argv)

    faulthandler.register(signal.SIGUSR1, all_threads=True)
    names = [w for w in args.workloads.split(",") if w]
    unknown = [w for w in names if w not in WORKLOADS]
    if unknown:
        parser.error(f"unknown workload(s): {', '.join(unknown)}")
    sizes = Sizes.for_mode(args.quick)
    rec = Recorder(args.result, args.engine)
    engine = load_engine(args.engine)
    start = time.perf_counter()
    engine.load()
    import_s = time.perf_counter() - start

    rec.stage("start")
    startup = [w for w in names if w in STARTUP]
    engine.num_cpus = args.num_cpus
    try:
        if startup:
            measure_startup(engine, args.num_cpus, startup, rec, import_s)
        else:
            engine.start(args.num_cpus)
    except BaseException as exc:
        status, message = failure(exc)
        rec.doc["start_error"] = message
        for name in names:
            if name not in rec.doc["workloads"]:
                rec.begin(name)
                rec.finish(rec.doc["workloads"][name], status, f"engine did not start: {message}")
        rec.stage("start failed")
        _shutdown(engine, rec)
        return 1

    for name in names:
        if name in STARTUP:
            continue
        run_workload(engine, WORKLOADS[name](sizes), args.repeats, args.budget, rec)

    _shutdown(engine, rec)
    rec.stage("done")
    return 0


def _shutdown(engine: Engine, rec: Recorder) -> None:
    rec.stage("shutdown")
    start = time.perf_counter()
    try:
        engine.shutdown()
    except Exception as exc:
        rec.doc["shutdown_error"] = failure(exc)[1]
        return
    shutdown_s = time.perf_counter() - start
    rec.doc["shutdown_s"] = shutdown_s
    cold = rec.doc["workloads"].get("cold_start")
    if cold and cold["status"] == "ok":
        cold["values"]["shutdown_s"] = [shutdown_s]
    rec.write()


if __name__ == "__main__":
    sys.exit(main())
