"""What the live widgets cost a run of many tiny tasks, as ratios to the same run unwatched.

    .venv/bin/python -m benchmarks.widgets_overhead [--tasks 10000] [--repeats 5]

Each mode runs in its own process (a fresh cluster), ``--repeats`` times after a warm-up:

- ``plain``: nobody listens to the event stream (the head builds no task events);
- ``subscribed``: one no-op subscriber (the cost of the event stream itself);
- ``state``: the widgets' shared hub and state model, nothing drawn;
- ``widgets``: a TaskGraph, a Timeline and a ClusterMonitor built and drawn (plotly
  figures included), as in a notebook.

It prints the median wall time of ``get([f.remote(i) for i in range(tasks)])`` per mode,
the ratio to ``plain``, the head's and the driver's CPU seconds per run, the number of
redraw rounds the widgets made, and the seconds the driver spent in full (generation 2)
garbage collections per run: importing plotly's FigureWidget imports nbformat, jsonschema
and a lark grammar (~180,000 long-lived objects), which every full collection walks.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import subprocess
import sys
import time
from typing import Any

MODES = ("plain", "subscribed", "state", "widgets")


def child(mode: str, tasks: int, repeats: int) -> dict[str, Any]:
    import psutil

    import nbray
    from nbray._model import session

    nbray.init(num_cpus=2)

    @nbray.remote
    def inc(x: int) -> int:
        return x + 1

    engine: Any = session.current_engine()
    head = psutil.Process(engine.cluster.process.pid)
    me = psutil.Process()

    def run() -> tuple[float, float, float]:
        h0, m0 = sum(head.cpu_times()[:2]), sum(me.cpu_times()[:2])
        started = time.perf_counter()
        values = nbray.get([inc.remote(i) for i in range(tasks)])
        wall = time.perf_counter() - started
        assert values == list(range(1, tasks + 1))
        return wall, sum(head.cpu_times()[:2]) - h0, sum(me.cpu_times()[:2]) - m0

    run()
    views: list[Any] = []
    gc_time = [0.0, 0.0]

    def on_gc(phase: str, info: dict[str, Any]) -> None:
        if info["generation"] == 2:
            now = time.perf_counter()
            if phase == "start":
                gc_time[1] = now
            else:
                gc_time[0] += now - gc_time[1]

    if mode == "subscribed":
        engine.subscribe(lambda event: None)
    elif mode == "state":
        from nbray.widgets.hub import hub_for

        hub_for().attach(lambda state, gone: state.counts())
    elif mode == "widgets":
        from nbray.widgets.cluster_monitor import ClusterMonitor
        from nbray.widgets.gantt import Timeline
        from nbray.widgets.graph import TaskGraph

        views = [TaskGraph("session", frontend=True), Timeline(frontend=True)]
        views.append(ClusterMonitor(frontend=True))
    before = views[0]._hub.redraws if views else 0
    gc.callbacks.append(on_gc)
    runs = [run() for _ in range(repeats)]
    gc.callbacks.remove(on_gc)
    out = {
        "mode": mode,
        "wall": statistics.median(r[0] for r in runs),
        "head_cpu": statistics.median(r[1] for r in runs),
        "driver_cpu": statistics.median(r[2] for r in runs),
        "redraw_rounds": (views[0]._hub.redraws - before) if views else 0,
        "full_gc": gc_time[0] / repeats,
        "tracked": len(gc.get_objects()),
    }
    nbray.shutdown()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--child", choices=MODES)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.tasks, args.repeats)))
        return
    results = []
    for mode in MODES:
        proc = subprocess.run(
            [sys.executable, "-m", "benchmarks.widgets_overhead", "--child", mode,
             "--tasks", str(args.tasks), "--repeats", str(args.repeats)],
            capture_output=True, text=True, timeout=600, check=True,
        )  # fmt: skip
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    base = results[0]["wall"]
    print(f"{args.tasks} tasks, median of {args.repeats} runs, 2 CPUs")
    print("| mode | wall s | x plain | head CPU s | driver CPU s | full GC s | GC-tracked objects "
          "| redraw rounds |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['mode']} | {r['wall']:.2f} | {r['wall'] / base:.2f} | {r['head_cpu']:.2f} "
            f"| {r['driver_cpu']:.2f} | {r['full_gc']:.2f} | {r['tracked']} "
            f"| {r['redraw_rounds']} |"
        )


if __name__ == "__main__":
    main()
