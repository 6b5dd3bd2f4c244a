"""Run the suite: every engine x workload in fresh process trees, then write the report.

    python -m benchmarks.run [--quick] [--engines a,b] [--workloads x,y] [--repeats N]
                             [--out DIR]
      │ plan(): which child processes, with which workloads and timeouts
      ▼
    for each planned run: load average noted ──▶ `python -m benchmarks.child ...` in a new
      session ──▶ watched: per-workload timeout (stacks dumped with SIGUSR1, then the whole
      tree killed), processes left behind after it exits noted and killed
      │
      ▼
    aggregate(): medians over repeats ──▶ DIR/latest.json, DIR/latest.md (report.py), stdout

Full mode runs, for each engine, ``--repeats`` fresh processes for cold start + footprint
and for many_tasks (whose driver peak memory needs a fresh process; fewer once the
workload's time budget is spent), and one process per other workload (repeated inside it,
after a warm-up, until ``--repeats`` or the time budget); quick mode runs one process per
engine with every workload in it, once, at smaller sizes.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil

from .engines import ENGINES, engine_class, missing_requirements
from .measure import machine_load, median
from .report import render_markdown
from .workloads import STARTUP, WORKLOADS, Sizes, supported

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = Path(__file__).resolve().parent / "results"

#: Seconds a workload may run in a child before the child is killed (full mode).
WORKLOAD_TIMEOUT = {
    "cold_start": 120.0,
    "footprint": 120.0,
    "throughput": 300.0,
    "latency": 120.0,
    "actors": 180.0,
    "array": 180.0,
    "primes": 180.0,
    "many_tasks": 360.0,
    "pool_map": 180.0,
    "joblib": 180.0,
    "sustained": 300.0,
    "watched": 600.0,  # three processes per repeat, one of them a Jupyter server
}
QUICK_WORKLOAD_TIMEOUT = 60.0
QUICK_TIMEOUT_FOR = {"watched": 180.0}  # quick mode's exceptions
#: Repeats stop early once a workload would pass this many seconds (full mode).
DEFAULT_BUDGET = 45.0
#: Time allowed, on top of the workloads' own, for import, start and shutdown.
OVERHEAD_TIMEOUT = 90.0


@dataclass
class Planned:
    """A child process to run ``times`` times (fresh each time), or fewer when the
    workloads' time reaches the budget (``budgeted``)."""

    engine: str
    workloads: list[str]
    repeats: int  # repeats inside each child
    label: str
    times: int = 1
    budgeted: bool = False


@dataclass
class RunRecord:
    """What happened to one child process."""

    engine: str
    workloads: list[str]
    label: str
    load_before: dict[str, float]
    returncode: int | None = None
    seconds: float = 0.0
    timed_out: str | None = None  # the workload (or stage) it was killed in
    leftovers: list[str] = field(default_factory=list)
    log: str = ""
    doc: dict[str, Any] = field(default_factory=dict)


def plan(engines: list[str], workloads: list[str], repeats: int, quick: bool) -> list[Planned]:
    """The child processes to run, engine by engine, in the workloads' order. Workloads an
    engine does not support (actors on a pool) get no process: they are "n/a"."""
    runs: list[Planned] = []
    for engine in engines:
        cls = engine_class(engine)
        mine = [w for w in workloads if supported(w, cls)]
        if quick:
            runs.append(Planned(engine, mine, repeats, "all"))
            continue
        startup = [w for w in mine if w in STARTUP]
        if startup:
            runs.append(Planned(engine, startup, 1, "startup", times=repeats))
        for w in mine:
            if w in STARTUP:
                continue
            if WORKLOADS[w].fresh_process:
                runs.append(Planned(engine, [w], 1, w, times=repeats, budgeted=True))
            else:
                runs.append(Planned(engine, [w], repeats, w))
    return runs


def child_env(tmp: str) -> dict[str, str]:
    """The child's environment: the repository importable in every worker, quiet peers,
    and a private scratch directory for engines that write one (Ray, ipyparallel)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    env["RAY_TMPDIR"] = tmp
    env["IPYTHONDIR"] = os.path.join(tmp, "ipython")
    return env


def _describe(proc: psutil.Process) -> str:
    try:
        return f"{proc.pid} {' '.join(proc.cmdline())[:160] or proc.name()}"
    except psutil.Error:
        return str(proc.pid)


def _alive(procs: dict[tuple[int, float], psutil.Process]) -> list[psutil.Process]:
    out = []
    for proc in procs.values():
        try:
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                out.append(proc)
        except psutil.Error:
            continue
    return out


def _session_members(sid: int) -> list[psutil.Process]:
    members = []
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error, OSError):
            if proc.pid != os.getpid() and os.getsid(proc.pid) == sid:
                members.append(proc)
    return members


def _kill(procs: list[psutil.Process]) -> None:
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(procs, timeout=5)


def run_child(run: Planned, args: argparse.Namespace, logs: Path, label: str) -> RunRecord:
    """Run one child to completion or timeout; what it wrote, and what it left behind."""
    record = RunRecord(run.engine, run.workloads, label, machine_load())
    log_path = logs / f"{run.engine}-{label}.log"
    record.log = str(log_path)
    tmp = tempfile.mkdtemp(prefix="nbb-")
    result_path = Path(tmp) / "result.json"
    cmd = [
        sys.executable, "-m", "benchmarks.child", run.engine,
        "--workloads", ",".join(run.workloads), "--result", str(result_path),
        "--num-cpus", str(args.num_cpus), "--repeats", str(run.repeats),
        "--budget", str(args.budget),
    ]  # fmt: skip
    if args.quick:
        cmd.append("--quick")
    per_workload = {
        w: (QUICK_TIMEOUT_FOR.get(w, QUICK_WORKLOAD_TIMEOUT) if args.quick else WORKLOAD_TIMEOUT[w])
        * args.timeout_scale
        for w in run.workloads
    }
    overall = sum(per_workload.values()) + OVERHEAD_TIMEOUT * args.timeout_scale
    seen: dict[tuple[int, float], psutil.Process] = {}
    start = time.monotonic()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            cmd, cwd=ROOT, env=child_env(tmp), stdin=subprocess.DEVNULL,
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        try:
            root = psutil.Process(proc.pid)
            seen[(root.pid, root.create_time())] = root
        except psutil.Error:
            pass
        while proc.poll() is None:
            time.sleep(0.25)
            with contextlib.suppress(psutil.Error):
                for p in psutil.Process(proc.pid).children(recursive=True):
                    with contextlib.suppress(psutil.Error):
                        seen.setdefault((p.pid, p.create_time()), p)
            doc = _read(result_path)
            stage = doc.get("stage", "load")
            entry = doc.get("workloads", {}).get(stage)
            late = (
                entry is not None
                and entry.get("status") == "running"
                and time.time() - entry["started"] > per_workload.get(stage, overall)
            )
            if late or time.monotonic() - start > overall:
                record.timed_out = stage
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGUSR1)  # faulthandler: stacks into the log
                time.sleep(1.0)
                _kill([*_alive(seen), *_session_members(proc.pid)])
                proc.wait()
                break
    record.seconds = time.monotonic() - start
    record.returncode = proc.returncode
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline and (_alive(seen) or _session_members(proc.pid)):
        time.sleep(0.1)
    left = {p.pid: p for p in [*_alive(seen), *_session_members(proc.pid)]}
    if left and not record.timed_out:
        record.leftovers = [_describe(p) for p in left.values()]
    _kill(list(left.values()))
    record.doc = _read(result_path)
    shutil.rmtree(tmp, ignore_errors=True)
    return record


def _read(path: Path) -> dict[str, Any]:
    try:
        doc: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return doc


def aggregate(records: list[RunRecord], engines: list[str], workloads: list[str]) -> dict[str, Any]:
    """results[workload][engine]: status, medians and raw values over every repeat."""
    results: dict[str, dict[str, Any]] = {w: {} for w in workloads}
    for record in records:
        doc_workloads = record.doc.get("workloads", {})
        for w in record.workloads:
            cell = results[w].setdefault(
                record.engine,
                {"status": None, "error": None, "values": {}, "notes": {}, "runs": []},
            )
            cell["runs"].append(
                {
                    "label": record.label,
                    "load1_before": round(record.load_before["load1"], 2),
                    "returncode": record.returncode,
                    "seconds": round(record.seconds, 2),
                    "log": record.log,
                    "leftovers": record.leftovers,
                }
            )
            entry = doc_workloads.get(w)
            status, error = _status_of(record, w, entry)
            for key, values in (entry or {}).get("values", {}).items():
                cell["values"].setdefault(key, []).extend(values)
            cell["notes"].update((entry or {}).get("notes", {}))
            # The worst status of the runs wins: a failure is never hidden by a success.
            if _rank(status) > _rank(cell["status"]):
                cell["status"], cell["error"] = status, error
    for w in workloads:
        for cell in results[w].values():
            cell["medians"] = {key: _median(values) for key, values in cell["values"].items()}
            cell["repeats"] = max((len(v) for v in cell["values"].values()), default=0)
            loads = [r["load1_before"] for r in cell["runs"]]
            cell["load1_before"] = median(loads) if loads else None
            cell["leftovers"] = [x for r in cell["runs"] for x in r["leftovers"]]
    return results


_RANKS = ["ok", "n/a", "not installed", "FAILED", "ERROR", "TIMEOUT", "CRASHED"]


def _rank(status: str | None) -> int:
    return -1 if status is None else _RANKS.index(status)


def _cell(status: str, error: str) -> dict[str, Any]:
    """A result cell for an engine and workload that was not run."""
    return {
        "status": status, "error": error, "values": {}, "medians": {}, "notes": {},
        "runs": [], "repeats": 0, "load1_before": None, "leftovers": [],
    }  # fmt: skip


def _status_of(
    record: RunRecord, workload: str, entry: dict[str, Any] | None
) -> tuple[str, str | None]:
    log_hint = f"(log: {record.log})"
    if record.timed_out == workload:
        return "TIMEOUT", f"killed after its timeout; stacks in {record.log}"
    if entry is None:
        if record.timed_out:
            return "TIMEOUT", f"not reached: the run was killed in {record.timed_out!r} {log_hint}"
        return "CRASHED", (
            f"the child exited with code {record.returncode} before this workload "
            f"{log_hint}: {_log_tail(record.log)}"
        )
    status = entry.get("status")
    if status == "running":
        if record.timed_out:
            return "TIMEOUT", f"killed in stage {record.timed_out!r} {log_hint}"
        return "CRASHED", (
            f"the child exited with code {record.returncode} during this workload "
            f"{log_hint}: {_log_tail(record.log)}"
        )
    return str(status), entry.get("error")


def _log_tail(path: str, chars: int = 1500) -> str:
    """The last non-empty line of a child's log (its exception, usually), then the tail."""
    try:
        text = Path(path).read_text(errors="replace")[-chars:]
    except OSError:
        return ""
    lines = [line for line in text.splitlines() if line.strip()]
    return f"{lines[-1].strip()}\n{text}" if lines else ""


def _median(values: list[Any]) -> Any:
    present = [v for v in values if v is not None]
    if not present:
        return None
    if all(isinstance(v, bool) for v in present):
        return all(present)
    return median([float(v) for v in present])


def machine_info(engines: list[str]) -> dict[str, Any]:
    """CPU, memory, Python, and the version of each engine's package."""
    model = platform.processor() or ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    versions: dict[str, str | None] = {}
    for name in [*engines, "numpy", "cloudpickle", "psutil"]:
        dist = engine_class(name).distribution if name in ENGINES else name
        if dist is None:
            versions[name] = f"Python {platform.python_version()} stdlib"
            continue
        try:
            versions[name] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "cpu_model": model,
        "logical_cpus": os.cpu_count(),
        "physical_cores": psutil.cpu_count(logical=False),
        "memory_gb": round(psutil.virtual_memory().total / 1024**3, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": versions,
        "nbray_commit": _git_head(),
    }


def _git_head() -> str | None:
    """The checked-out commit, read from .git (without running git)."""
    git = ROOT / ".git"
    try:
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref: "):
            return head
        ref = head[5:]
        if (git / ref).exists():
            return (git / ref).read_text().strip()
        for line in (git / "packed-refs").read_text().splitlines():
            if line.endswith(" " + ref):
                return line.split()[0]
    except OSError:
        return None
    return None


def _csv(value: str, known: list[str], what: str) -> list[str]:
    names = [v.strip() for v in value.split(",") if v.strip()]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown {what}: {', '.join(unknown)} (known: {', '.join(known)})"
        )
    return [k for k in known if k in names]  # the report's order


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    engines, workloads = list(ENGINES), list(WORKLOADS)
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description="nbray side by side with Ray, Dask, ipyparallel, loky and the stdlib pools.",
    )
    parser.add_argument(
        "--engines", default=",".join(engines),
        type=lambda v: _csv(v, engines, "engine"),
        help=f"comma-separated, from: {', '.join(engines)} (default: all)",
    )  # fmt: skip
    parser.add_argument(
        "--workloads", default=",".join(workloads),
        type=lambda v: _csv(v, workloads, "workload"),
        help=f"comma-separated, from: {', '.join(workloads)} (default: all)",
    )  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="smoke run: small sizes, 1 repeat")
    parser.add_argument("--repeats", type=int, help="repeats per figure (default 3; quick: 1)")
    parser.add_argument(
        "--budget", type=float,
        help=f"seconds after which a workload stops repeating (default {DEFAULT_BUDGET:.0f}; "
        "quick: none)",
    )  # fmt: skip
    parser.add_argument(
        "--num-cpus", type=int, default=os.cpu_count() or 1,
        help="worker processes for every engine (default: this machine's CPUs)",
    )  # fmt: skip
    parser.add_argument("--timeout-scale", type=float, default=1.0, help="multiply timeouts")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results folder")
    args = parser.parse_args(argv)
    if args.repeats is None:
        args.repeats = 1 if args.quick else 3
    if args.budget is None:
        args.budget = 0.0 if args.quick else DEFAULT_BUDGET
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out: Path = args.out
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    began = time.monotonic()
    started = datetime.now(UTC)
    machine = machine_info(args.engines)  # before the runs: the commit that was measured
    installed = {e: missing_requirements(e) for e in args.engines}
    runnable = [e for e in args.engines if not installed[e]]
    for e in args.engines:
        if installed[e]:
            print(f"{e}: not installed (missing {', '.join(installed[e])}); skipped", flush=True)
    runs = plan(runnable, args.workloads, args.repeats, args.quick)
    records: list[RunRecord] = []
    for i, run in enumerate(runs, 1):
        spent = 0.0
        for time_ in range(run.times):
            label = f"{run.label}-{time_ + 1}" if run.times > 1 else run.label
            print(
                f"[{i}/{len(runs)}] {run.engine:<12} {label:<14} "
                f"(load {os.getloadavg()[0]:.2f}) ...",
                end=" ", flush=True,
            )  # fmt: skip
            record = run_child(run, args, logs, label)
            records.append(record)
            entries = record.doc.get("workloads", {})
            states = [f"{w}={entries.get(w, {}).get('status', '?')}" for w in run.workloads]
            extra = f" TIMEOUT in {record.timed_out}" if record.timed_out else ""
            extra += f" LEFTOVERS {len(record.leftovers)}" if record.leftovers else ""
            print(f"{record.seconds:.1f} s  {' '.join(states)}{extra}", flush=True)
            if any(entries.get(w, {}).get("status") != "ok" for w in run.workloads):
                break  # a failure is reported once, not repeated
            took = sum(float(entries[w].get("seconds", 0.0)) for w in run.workloads)
            spent += took
            if run.budgeted and args.budget and spent + took > args.budget:
                break

    results = aggregate(records, runnable, args.workloads)
    for e in runnable:
        for w in args.workloads:
            if not supported(w, engine_class(e)):
                results[w][e] = _cell("n/a", f"{e} has no {WORKLOADS[w].needs}")
    for e in args.engines:
        if installed[e]:
            for w in args.workloads:
                results[w][e] = _cell("not installed", f"missing: {', '.join(installed[e])}")
    sizes = Sizes.for_mode(args.quick)
    doc = {
        "meta": {
            "started": started.isoformat(timespec="seconds"),
            "seconds": round(time.monotonic() - began, 1),
            "mode": "quick" if args.quick else "full",
            "repeats": args.repeats,
            "budget_s": args.budget,
            "num_cpus": args.num_cpus,
            "engines": args.engines,
            "workloads": args.workloads,
            "sizes": sizes.__dict__,
            "machine": machine,
            "load_at_end": machine_load(),
            "engine_descriptions": {e: engine_class(e).description for e in args.engines},
        },
        "results": results,
    }
    (out / "latest.json").write_text(json.dumps(doc, indent=1, default=str))
    text = render_markdown(doc)
    (out / "latest.md").write_text(text)
    print()
    print(text)
    print(f"written: {out / 'latest.json'}, {out / 'latest.md'}")
    bad = [
        (w, e, cell["status"])
        for w, cells in results.items()
        for e, cell in cells.items()
        if cell["status"] not in ("ok", "n/a", "not installed")
    ]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
