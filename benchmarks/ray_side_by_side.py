"""nbray's Ray engine against Ray used directly, on one Ray instance, interleaved.

    .venv/bin/python -m benchmarks.ray_side_by_side [--tasks 2000] [--rounds 15] [--profile F]

``nbray.init(engine="ray")`` starts a private Ray in this process; the same process then
also calls Ray itself (``ray.remote``, ``ray.get``), so both sides run on the very same
cluster, settings and machine load, and their runs alternate round after round. The
difference is then only nbray's layer (nbray/_engines/ray/: RemoteFunction → RayEngine →
Ray, the RayRef wrappers, get/wait), not how the two Rays were started: the suite's
``nbray_ray`` and ``ray`` engines compare those too (token authentication, log_to_driver).

Each round: ``tasks`` no-op tasks submitted then gathered; 200 single-task round trips;
``tasks`` counter-actor calls pipelined, then 200 synchronous ones; ``put``/``get`` of a
10 MB array. The medians and the nbray/Ray ratio of each are printed, of the wall time
and of this process's CPU time (all its threads, Ray's own included: the driver's cost,
steadier than the wall time on a busy machine). ``--profile F`` writes a cProfile of
nbray's side only (pstats, to F).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

from .engines.ray_engine import quiet_ray
from .tasks import Counter, noop


def _runs(api: Any, tasks: int) -> dict[str, Callable[[], None]]:
    """The timed runs of one side (``api``: the nbray or the ray module)."""
    import numpy as np

    rf = api.remote(noop)
    actor = api.remote(Counter).remote()
    api.get(actor.incr.remote())
    arr = np.arange(10 * 1024 * 1024 // 8, dtype=np.float64)
    expected = list(range(tasks))

    def throughput() -> None:
        if api.get([rf.remote(i) for i in range(tasks)]) != expected:
            raise AssertionError("wrong results")

    def latency() -> None:
        for i in range(200):
            if api.get(rf.remote(i)) != i:
                raise AssertionError("wrong result")

    def actor_pipelined() -> None:
        values = api.get([actor.incr.remote() for _ in range(tasks)])
        if values != list(range(values[0], values[0] + tasks)):
            raise AssertionError("wrong counts")

    def actor_sync() -> None:
        for _ in range(200):
            api.get(actor.incr.remote())

    def put_get() -> None:
        if api.get(api.put(arr)).shape != arr.shape:
            raise AssertionError("wrong array")

    return {
        f"{tasks} tasks": throughput,
        "200 round trips": latency,
        f"{tasks} actor calls": actor_pipelined,
        "200 sync actor calls": actor_sync,
        "put+get 10 MB": put_get,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--num-cpus", type=int, default=2)
    parser.add_argument("--profile", help="write a cProfile of nbray's runs to this file")
    args = parser.parse_args(argv)
    quiet_ray()
    import nbray

    nbray.init(engine="ray", num_cpus=args.num_cpus)
    import ray  # the Ray nbray started, used directly

    sides = {"nbray": _runs(nbray, args.tasks), "ray": _runs(ray, args.tasks)}
    for runs in sides.values():  # warm-up: workers started, functions exported
        for fn in runs.values():
            fn()
    profiler = None
    if args.profile:
        import cProfile

        profiler = cProfile.Profile()
    times: dict[str, dict[str, list[float]]] = {s: {n: [] for n in sides[s]} for s in sides}
    cpu: dict[str, dict[str, list[float]]] = {s: {n: [] for n in sides[s]} for s in sides}
    for r in range(args.rounds):
        order = list(sides) if r % 2 == 0 else list(reversed(sides))
        for name in sides["nbray"]:
            for side in order:
                fn = sides[side][name]
                if profiler is not None and side == "nbray":
                    profiler.enable()
                start, start_cpu = time.perf_counter(), time.process_time()
                fn()
                times[side][name].append(time.perf_counter() - start)
                cpu[side][name].append(time.process_time() - start_cpu)
                if profiler is not None and side == "nbray":
                    profiler.disable()
    if profiler is not None:
        profiler.dump_stats(args.profile)
    print(f"nbray's Ray engine vs Ray, one Ray instance, {args.rounds} interleaved rounds")
    for name in sides["nbray"]:
        a, b = (statistics.median(times[s][name]) for s in ("nbray", "ray"))
        ca, cb = (statistics.median(cpu[s][name]) for s in ("nbray", "ray"))
        print(
            f"  {name:<22} wall: nbray {a * 1e3:8.2f} ms  ray {b * 1e3:8.2f} ms  nbray/ray "
            f"{a / b:.3f}   driver CPU: nbray/ray {ca / cb:.3f}"
        )
    nbray.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
