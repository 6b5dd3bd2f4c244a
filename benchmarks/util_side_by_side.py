"""nbray.util's Pool and joblib backend against their peers, interleaved in one process.

    .venv/bin/python -m benchmarks.util_side_by_side [--calls 10000] [--rounds 40] [--ray]

The suite (``benchmarks.run``, workloads ``pool_map`` and ``joblib``) runs each engine in a
fresh process at a different moment; on a shared machine the load changes between them
more than these millisecond runs differ. Here every peer is started once and the runs
alternate, round after round, so all see the same load; the medians and their ratios are
printed:

- ``Pool.map(noop, range(calls))`` with the default chunksize: nbray.util's, the standard
  library's ``multiprocessing.Pool`` and (``--ray``) Ray's ``ray.util.multiprocessing.Pool``;
- ``joblib.Parallel(n_jobs=2)`` of ``calls`` no-op calls: the ``nbray`` backend, joblib's
  default ``loky`` and (``--ray``) Ray's ``ray`` backend.

Every pool has 2 processes. With ``--ray``, Ray's driver threads share this process's GIL
and its raylet and workers share the CPUs with everyone else's runs, which slows the others
(nbray's client threads most): take the figures without ``--ray`` for nbray against the
standard library and loky.
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import time
from collections.abc import Callable
from typing import Any

from .tasks import noop


def _timed(fn: Callable[[], Any], expected: list[int]) -> float:
    start = time.perf_counter()
    out = fn()
    elapsed = time.perf_counter() - start
    if list(out) != expected:
        raise AssertionError("wrong results")
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--ray", action="store_true", help="also Ray's Pool and joblib backend")
    args = parser.parse_args(argv)

    import joblib

    import nbray
    from nbray.util.joblib import register_nbray
    from nbray.util.multiprocessing import Pool

    items = list(range(args.calls))
    nbray.init(num_cpus=2)
    register_nbray()
    pools: dict[str, Any] = {"nbray": Pool(2), "mp.Pool": multiprocessing.Pool(2)}
    backends = ["nbray", "loky"]
    if args.ray:
        import ray
        from ray.util.joblib import register_ray
        from ray.util.multiprocessing import Pool as RayPool

        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        register_ray()
        pools["ray"] = RayPool(2)
        backends.append("ray")

    def parallel(backend: str) -> Callable[[], Any]:
        def run() -> Any:
            with joblib.parallel_backend(backend):
                return joblib.Parallel(n_jobs=2)(joblib.delayed(noop)(i) for i in items)

        return run

    runs: dict[str, Callable[[], Any]] = {
        f"Pool.map {name}": (lambda p=pool: p.map(noop, items)) for name, pool in pools.items()
    }
    runs.update({f"joblib {b}": parallel(b) for b in backends})
    for fn in runs.values():  # warm-up: pools started, functions and modules loaded
        _timed(fn, items)
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.rounds):
        for name, fn in runs.items():
            times[name].append(_timed(fn, items))

    medians = {name: statistics.median(t) for name, t in times.items()}
    print(f"{args.calls:,} no-op calls, {args.rounds} interleaved rounds, 2 processes each")
    for group, base in (("Pool.map", "Pool.map nbray"), ("joblib", "joblib nbray")):
        for name, m in medians.items():
            if name.startswith(group):
                ratio = m / medians[base]
                versus = (
                    ""
                    if name == base
                    else f"nbray {ratio:.2f}x faster"
                    if ratio >= 1
                    else f"nbray {1 / ratio:.2f}x slower"
                )
                print(f"  {name:<18} {m * 1e3:8.2f} ms  {args.calls / m:>12,.0f} calls/s  {versus}")
    for pool in pools.values():
        pool.terminate()
    nbray.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
