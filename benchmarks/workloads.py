"""The workloads of the suite, written once against the adapter interface.

    child.py ──setup / run (once per repeat) / teardown──▶ Workload ──▶ engines/base.Engine
                                  │
                                  └──▶ {metric key: value}, after checking every result

Each workload checks the results it gets (the no-op tasks' values, the prime sums, the
array's checksum, the actor's counts) and raises ``AssertionError`` when one is wrong: the
child reports that as FAILED. A metric an engine cannot have (``put`` on a process pool)
is ``None``, shown as "n/a".

Workloads ``cold_start`` and ``footprint`` are measured by the child around the engine's
start (see ``child.measure_startup``); they only declare their metrics here.
"""

from __future__ import annotations

import contextlib
import gc
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import psutil

from . import tasks
from .engines.base import Engine, NotSupported
from .measure import MB, PeakRss, is_shared_region, median, memory_region, percentile

Value = float | bool | str | None
Better = Literal["higher", "lower"] | None


@dataclass(frozen=True)
class Sizes:
    """The sizes of every workload: the issue's in the full run, smaller in quick mode."""

    throughput: tuple[int, ...] = (2_000, 10_000)
    latency_samples: int = 300
    actor_sync_calls: int = 500
    actor_pipelined_calls: int = 2_000
    array_mb: int = 100
    primes_n: int = 400_000
    primes_tasks: int = 8
    many_tasks: int = 50_000
    pool_calls: int = 10_000
    joblib_calls: int = 10_000
    sustained_tasks: int = 1_000_000
    sustained_batch: int = 10_000
    #: the sustained run stops starting batches after this many seconds (slow engines)
    sustained_cap_s: float = 90.0
    watched_tasks: int = 10_000
    watched_runs: int = 3  # runs per mode (a process each), their median counts

    @classmethod
    def for_mode(cls, quick: bool) -> Sizes:
        if not quick:
            return cls()
        return cls(
            throughput=(200, 1_000),
            latency_samples=30,
            actor_sync_calls=50,
            actor_pipelined_calls=200,
            array_mb=20,
            primes_n=100_000,
            many_tasks=2_000,
            pool_calls=1_000,
            joblib_calls=1_000,
            sustained_tasks=20_000,
            sustained_batch=2_000,
            sustained_cap_s=20.0,
            watched_tasks=1_000,
            watched_runs=1,
        )


@dataclass(frozen=True)
class Metric:
    """One column of a workload's table."""

    key: str
    label: str
    unit: str
    better: Better = None  # None: shown for information, no ratio
    kind: Literal["rate", "seconds", "ms", "mb", "count", "factor", "flag", "text"] = "seconds"


def check(condition: bool, message: str) -> None:
    """Assert a workload's result (kept under ``python -O``): a failure reads FAILED."""
    if not condition:
        raise AssertionError(message)


def check_noops(results: list[Any], n: int, what: str) -> None:
    expected = list(range(n))
    if results != expected:
        bad = next(
            (i for i, (a, b) in enumerate(zip(results, expected, strict=False)) if a != b),
            min(len(results), n),
        )
        got = results[bad] if bad < len(results) else "<missing>"
        raise AssertionError(
            f"{what}: {len(results)} results for {n} tasks; result {bad} is {got!r}, expected {bad}"
        )


@dataclass
class Workload:
    """A workload: its metrics, and how to run one repeat of it."""

    name: ClassVar[str]
    number: ClassVar[int]
    title: ClassVar[str]
    #: The engine feature it needs ("actors": ``Engine.has_actors``); without it, "n/a".
    needs: ClassVar[str | None] = None
    #: Run each repeat in a fresh process (a process-wide measure such as peak memory).
    fresh_process: ClassVar[bool] = False
    sizes: Sizes
    state: dict[str, Any] = field(default_factory=dict)

    def metrics(self) -> list[Metric]:
        raise NotImplementedError

    def describe(self) -> str:
        """One line for the report: what exactly is measured, with this run's sizes."""
        return ""

    def setup(self, engine: Engine) -> None:
        """Once per child, before the repeats (not timed)."""

    def run(self, engine: Engine) -> dict[str, Value]:
        """One repeat; returns a value (or None for n/a) for each metric key."""
        raise NotImplementedError

    def teardown(self, engine: Engine) -> None:
        """Once per child, after the repeats."""


class ColdStart(Workload):
    name = "cold_start"
    number = 1
    title = "Cold start"

    def metrics(self) -> list[Metric]:
        return [
            Metric("cold_start_s", "init → first result", "s", "lower"),
            Metric("import_s", "import", "s", None),
            Metric("shutdown_s", "shutdown", "s", "lower"),
        ]

    def describe(self) -> str:
        return (
            "From the engine's start call (`init`, `LocalCluster(...)`, ...) to the result of "
            "the first no-op task, in a fresh process each repeat. The import of the engine "
            "and its shutdown are shown apart."
        )


class Footprint(Workload):
    name = "footprint"
    number = 7
    title = "Footprint"

    def metrics(self) -> list[Metric]:
        return [
            Metric("rss_mb", "total RSS", "MB", "lower", "mb"),
            Metric("pss_mb", "total PSS", "MB", "lower", "mb"),
            Metric("processes", "processes", "", None, "count"),
        ]

    def describe(self) -> str:
        return (
            "Memory of every process in the driver's process tree (driver, head, workers, "
            "...), after start and one task, plus 1 s to settle. RSS counts shared pages once "
            "per process; PSS shares them out, so its sum is what the tree really takes. The "
            "driver (the harness, and what the engine imported) is counted for every engine."
        )


class Throughput(Workload):
    name = "throughput"
    number = 2
    title = "Throughput"

    def metrics(self) -> list[Metric]:
        return [
            Metric(f"tasks_per_s_{n}", f"{n:,} tasks", "tasks/s", "higher", "rate")
            for n in self.sizes.throughput
        ]

    def describe(self) -> str:
        sizes = " and ".join(f"{n:,}" for n in self.sizes.throughput)
        return (
            f"{sizes} no-op tasks submitted one by one, then gathered; tasks per second "
            "from the first submit to the last result."
        )

    def setup(self, engine: Engine) -> None:
        check_noops(engine.gather([engine.submit(tasks.noop, i) for i in range(50)]), 50, "warm-up")

    def run(self, engine: Engine) -> dict[str, Value]:
        out: dict[str, Value] = {}
        for n in self.sizes.throughput:
            start = time.perf_counter()
            handles = [engine.submit(tasks.noop, i) for i in range(n)]
            results = engine.gather(handles)
            elapsed = time.perf_counter() - start
            check_noops(results, n, f"{n} no-op tasks")
            del handles, results
            out[f"tasks_per_s_{n}"] = n / elapsed
        return out


class Latency(Workload):
    name = "latency"
    number = 3
    title = "Round-trip latency"

    def metrics(self) -> list[Metric]:
        return [
            Metric("median_ms", "median", "ms", "lower", "ms"),
            Metric("p99_ms", "p99", "ms", "lower", "ms"),
        ]

    def describe(self) -> str:
        return (
            f"One no-op task submitted and its result awaited, {self.sizes.latency_samples} "
            "times in a row; the median and p99 of each repeat's samples."
        )

    def setup(self, engine: Engine) -> None:
        check_noops(engine.gather([engine.submit(tasks.noop, i) for i in range(20)]), 20, "warm-up")

    def run(self, engine: Engine) -> dict[str, Value]:
        samples = []
        for i in range(self.sizes.latency_samples):
            start = time.perf_counter()
            (result,) = engine.gather([engine.submit(tasks.noop, i)])
            samples.append(time.perf_counter() - start)
            check(result == i, f"round trip {i} returned {result!r}")
        return {"median_ms": median(samples) * 1e3, "p99_ms": percentile(samples, 99) * 1e3}


class Actors(Workload):
    name = "actors"
    number = 4
    title = "Actor calls"
    needs = "actors"

    def metrics(self) -> list[Metric]:
        return [
            Metric("sync_per_s", "synchronous", "calls/s", "higher", "rate"),
            Metric("pipelined_per_s", "pipelined", "calls/s", "higher", "rate"),
            Metric("create_s", "create", "s", "lower"),
        ]

    def describe(self) -> str:
        return (
            f"A counter actor: {self.sizes.actor_sync_calls:,} calls each awaited before the "
            f"next (synchronous), then {self.sizes.actor_pipelined_calls:,} calls submitted "
            "at once and gathered (pipelined); creating the actor is timed too. The serial "
            "row calls a plain object's method."
        )

    def run(self, engine: Engine) -> dict[str, Value]:
        if not engine.has_actors:
            return dict.fromkeys(("sync_per_s", "pipelined_per_s", "create_s"))
        start = time.perf_counter()
        actor = engine.create_actor(tasks.Counter)
        (first,) = engine.gather([engine.call(actor, "incr")])
        create_s = time.perf_counter() - start
        check(first == 1, f"a new actor's first call returned {first!r}, expected 1")
        try:
            n_sync = self.sizes.actor_sync_calls
            start = time.perf_counter()
            for i in range(2, n_sync + 2):
                (value,) = engine.gather([engine.call(actor, "incr")])
                check(value == i, f"synchronous call {i} returned {value!r}, expected {i}")
            sync_s = time.perf_counter() - start
            n_pipe = self.sizes.actor_pipelined_calls
            base = n_sync + 1
            start = time.perf_counter()
            values = engine.gather([engine.call(actor, "incr") for _ in range(n_pipe)])
            pipe_s = time.perf_counter() - start
            expected = list(range(base + 1, base + n_pipe + 1))
            check(
                sorted(values) == expected,
                f"{n_pipe} pipelined calls returned {len(values)} values, not each of "
                f"{base + 1}..{base + n_pipe} once",
            )
        finally:
            engine.destroy_actor(actor)
        return {
            "sync_per_s": n_sync / sync_s,
            "pipelined_per_s": n_pipe / pipe_s,
            "create_s": create_s,
        }


class Array(Workload):
    name = "array"
    number = 5
    title = "Large numpy array"

    def metrics(self) -> list[Metric]:
        return [
            Metric("put_s", "put", "s", "lower"),
            Metric("get_s", "get", "s", "lower"),
            Metric("zero_copy", "get zero-copy", "", None, "flag"),
            Metric("task_value_s", "task(array)", "s", "lower"),
            Metric("task_ref_s", "task(put ref)", "s", "lower"),
        ]

    def describe(self) -> str:
        return (
            f"A {self.sizes.array_mb} MB float64 array: `put`; `get` of a fresh ref (zero-copy "
            "when the array's memory is a shared-memory mapping in the driver, not a private "
            "copy); a task that checksums it, given the array itself, and given a `put` ref "
            "(not counting the put). Checksums are compared with the driver's."
        )

    def setup(self, engine: Engine) -> None:
        import numpy as np

        n = self.sizes.array_mb * 1_000_000 // 8
        arr = np.random.default_rng(12345).random(n)
        self.state["array"] = arr
        self.state["checksum"] = tasks.checksum(arr)

    def run(self, engine: Engine) -> dict[str, Value]:
        arr, expected = self.state["array"], self.state["checksum"]
        out: dict[str, Value] = {}
        start = time.perf_counter()
        (value,) = engine.gather([engine.submit(tasks.checksum, arr)])
        out["task_value_s"] = time.perf_counter() - start
        check(value == expected, f"task(array) checksum {value!r} != driver's {expected!r}")
        if not engine.has_objects:
            out.update(put_s=None, get_s=None, zero_copy=None, task_ref_s=None)
            return out
        try:
            start = time.perf_counter()
            ref = engine.put(arr)
            out["put_s"] = time.perf_counter() - start
            start = time.perf_counter()
            got = engine.get(ref)
            out["get_s"] = time.perf_counter() - start
        except NotSupported:
            out.update(put_s=None, get_s=None, zero_copy=None, task_ref_s=None)
            return out
        region = memory_region(got)
        out["zero_copy"] = is_shared_region(region)
        self.state["region"] = region
        check(tasks.checksum(got) == expected, "get(put(array)) differs from the array")
        del got
        start = time.perf_counter()
        (value,) = engine.gather([engine.submit(tasks.checksum, ref)])
        out["task_ref_s"] = time.perf_counter() - start
        check(value == expected, f"task(ref) checksum {value!r} != driver's {expected!r}")
        del ref
        gc.collect()
        return out

    def teardown(self, engine: Engine) -> None:
        self.state.pop("array", None)


class Primes(Workload):
    name = "primes"
    number = 6
    title = "Sum of primes (the classic example)"

    def metrics(self) -> list[Metric]:
        return [
            Metric("time_s", f"{self.sizes.primes_tasks} tasks", "s", "lower"),
            Metric("speedup", "speedup over serial", "x", "higher", "factor"),
            Metric("serial_call_s", "one call in the driver", "s", None),
        ]

    def describe(self) -> str:
        return (
            f"`sum_primes({self.sizes.primes_n:,})` (pure-Python trial division) as "
            f"{self.sizes.primes_tasks} tasks, gathered; speedup = {self.sizes.primes_tasks} x "
            "one call (the faster of two, timed in the same driver just before) / the tasks' "
            "time. Its limit is "
            "the number of CPUs given to the engine. Every sum is checked."
        )

    def run(self, engine: Engine) -> dict[str, Value]:
        n, k = self.sizes.primes_n, self.sizes.primes_tasks
        serial_call_s = float("inf")
        for _ in range(2):  # the faster of two calls: less noise from the machine's load
            start = time.perf_counter()
            expected = tasks.sum_primes(n)
            serial_call_s = min(serial_call_s, time.perf_counter() - start)
        start = time.perf_counter()
        results = engine.gather([engine.submit(tasks.sum_primes, n) for _ in range(k)])
        elapsed = time.perf_counter() - start
        check(
            results == [expected] * k,
            f"sum_primes({n}) tasks returned {results!r}, the driver got {expected}",
        )
        return {
            "time_s": elapsed,
            "speedup": k * serial_call_s / elapsed,
            "serial_call_s": serial_call_s,
        }


class ManyTasks(Workload):
    name = "many_tasks"
    number = 8
    title = "Many tasks"
    fresh_process = True

    def metrics(self) -> list[Metric]:
        return [
            Metric("time_s", f"{self.sizes.many_tasks:,} tasks", "s", "lower"),
            Metric("tasks_per_s", "rate", "tasks/s", "higher", "rate"),
            Metric("driver_peak_growth_mb", "driver peak RSS growth", "MB", "lower", "mb"),
            Metric("driver_peak_mb", "driver peak RSS", "MB", None, "mb"),
        ]

    def describe(self) -> str:
        return (
            f"{self.sizes.many_tasks:,} no-op tasks submitted, then gathered, in a fresh "
            "process each repeat; the driver's peak RSS during that, above its RSS just "
            "before (sampled every 5 ms, and exact via getrusage when it is the process's "
            "lifetime peak)."
        )

    def setup(self, engine: Engine) -> None:
        check_noops(engine.gather([engine.submit(tasks.noop, i) for i in range(20)]), 20, "warm-up")

    def run(self, engine: Engine) -> dict[str, Value]:
        n = self.sizes.many_tasks
        gc.collect()
        with PeakRss() as peak:
            start = time.perf_counter()
            handles = [engine.submit(tasks.noop, i) for i in range(n)]
            results = engine.gather(handles)
            elapsed = time.perf_counter() - start
        check_noops(results, n, f"{n} no-op tasks")
        del handles, results
        gc.collect()
        return {
            "time_s": elapsed,
            "tasks_per_s": n / elapsed,
            "driver_peak_growth_mb": peak.growth_mb,
            "driver_peak_mb": peak.peak_mb,
        }


class Sustained(Workload):
    """Many batches in a row: does the engine stay as fast, and as small, as it started?"""

    name = "sustained"
    number = 11
    title = "Sustained load"
    fresh_process = True

    def metrics(self) -> list[Metric]:
        return [
            Metric("tasks_run", "tasks run", "", None, "count"),
            Metric("tasks_per_s", "overall", "tasks/s", "higher", "rate"),
            Metric("first_batch_per_s", "first batch", "tasks/s", None, "rate"),
            Metric("last_batch_per_s", "last batch", "tasks/s", None, "rate"),
            Metric("last_vs_first", "last / first", "x", "higher", "factor"),
            Metric("driver_growth_mb", "driver RSS growth", "MB", "lower", "mb"),
            Metric("engine_growth_mb", "engine processes' RSS growth", "MB", "lower", "mb"),
        ]

    def describe(self) -> str:
        z = self.sizes
        return (
            f"{z.sustained_tasks:,} no-op tasks in batches of {z.sustained_batch:,} (each "
            "submitted, then gathered), in a fresh process; an engine still running after "
            f"{z.sustained_cap_s:.0f} s starts no more batches (`tasks run` says how many ran). "
            "The first and last batches' rates, and the RSS growth from before the first batch "
            "to after the last: of the driver, and summed over its child processes (the "
            "engine's head, workers and daemons)."
        )

    def setup(self, engine: Engine) -> None:
        check_noops(engine.gather([engine.submit(tasks.noop, i) for i in range(20)]), 20, "warm-up")

    def run(self, engine: Engine) -> dict[str, Value]:
        z = self.sizes
        me = psutil.Process()
        gc.collect()
        driver0, engine0 = _rss_mb(me), _children_rss_mb(me)
        rates: list[float] = []
        started = time.perf_counter()
        done = 0
        while done < z.sustained_tasks and time.perf_counter() - started < z.sustained_cap_s:
            n = min(z.sustained_batch, z.sustained_tasks - done)
            t0 = time.perf_counter()
            results = engine.gather([engine.submit(tasks.noop, i) for i in range(n)])
            rates.append(n / (time.perf_counter() - t0))
            check_noops(results, n, f"batch {len(rates)} of {n} no-op tasks")
            done += n
        elapsed = time.perf_counter() - started
        del results
        gc.collect()
        return {
            "tasks_run": float(done),
            "tasks_per_s": done / elapsed,
            "first_batch_per_s": rates[0],
            "last_batch_per_s": rates[-1],
            "last_vs_first": rates[-1] / rates[0],
            "driver_growth_mb": _rss_mb(me) - driver0,
            "engine_growth_mb": _children_rss_mb(me) - engine0,
        }


def _rss_mb(proc: psutil.Process) -> float:
    return float(proc.memory_info().rss) / MB


def _children_rss_mb(proc: psutil.Process) -> float:
    """RSS summed over ``proc``'s descendants (those that exit while it is read count 0)."""
    total = 0.0
    for child in proc.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            total += _rss_mb(child)
    return total


#: ``Pool.map`` calls timed per repeat of the pool_map workload (their median counts)
POOL_MAPS_PER_REPEAT = 9


class PoolMap(Workload):
    name = "pool_map"
    number = 9
    title = "Pool.map"
    needs = "pool"

    def metrics(self) -> list[Metric]:
        return [
            Metric(
                "pool_calls_per_s",
                f"{self.sizes.pool_calls:,} no-op calls",
                "calls/s",
                "higher",
                "rate",
            ),
            Metric("pool_start_s", "pool start", "s", None),
        ]

    def describe(self) -> str:
        return (
            f"`Pool(N).map(noop, range({self.sizes.pool_calls:,}))` with the default chunksize "
            "on a started pool (the standard library's, nbray.util's and Ray's "
            f"multiprocessing Pool); calls per second of the median of {POOL_MAPS_PER_REPEAT} "
            "maps per repeat. The pool's start is shown apart."
        )

    def setup(self, engine: Engine) -> None:
        start = time.perf_counter()
        engine.start_pool(engine.num_cpus)
        self.state["start_s"] = time.perf_counter() - start
        check_noops(engine.pool_map(tasks.noop, list(range(50))), 50, "warm-up")

    def run(self, engine: Engine) -> dict[str, Value]:
        # a map takes milliseconds: the median of a few per repeat steadies the figure
        n = self.sizes.pool_calls
        items = list(range(n))
        times = []
        for _ in range(POOL_MAPS_PER_REPEAT):
            start = time.perf_counter()
            results = engine.pool_map(tasks.noop, items)
            times.append(time.perf_counter() - start)
            check_noops(results, n, f"Pool.map of {n} no-op calls")
        return {"pool_calls_per_s": n / median(times), "pool_start_s": self.state["start_s"]}

    def teardown(self, engine: Engine) -> None:
        engine.stop_pool()


class JoblibParallel(Workload):
    name = "joblib"
    number = 10
    title = "joblib Parallel"
    needs = "joblib"

    def metrics(self) -> list[Metric]:
        return [
            Metric(
                "joblib_calls_per_s",
                f"{self.sizes.joblib_calls:,} no-op calls",
                "calls/s",
                "higher",
                "rate",
            ),
        ]

    def describe(self) -> str:
        return (
            "`joblib.Parallel(n_jobs=N)(delayed(noop)(i) for i in "
            f"range({self.sizes.joblib_calls:,}))` under each engine's joblib backend "
            "(loky: joblib's default), auto-batching on; "
            "calls per second, including the backend's start of its workers for the call."
        )

    def setup(self, engine: Engine) -> None:
        import joblib

        self.state["backend"] = engine.joblib_backend()
        with joblib.parallel_backend(self.state["backend"]):
            out = joblib.Parallel(n_jobs=engine.num_cpus)(
                joblib.delayed(tasks.noop)(i) for i in range(50)
            )
        check_noops(out, 50, "warm-up")

    def run(self, engine: Engine) -> dict[str, Value]:
        import joblib

        n = self.sizes.joblib_calls
        start = time.perf_counter()
        with joblib.parallel_backend(self.state["backend"]):
            results = joblib.Parallel(n_jobs=engine.num_cpus)(
                joblib.delayed(tasks.noop)(i) for i in range(n)
            )
        elapsed = time.perf_counter() - start
        check_noops(results, n, f"joblib Parallel of {n} no-op calls")
        return {"joblib_calls_per_s": n / elapsed}


class Watched(Workload):
    """benchmarks/widgets_overhead.py's plain, widgets and server modes, as ratios."""

    name = "watched"
    number = 12
    title = "Watched and listened to"
    needs = "watching"
    MODES = ("plain", "widgets", "server")

    def metrics(self) -> list[Metric]:
        return [
            Metric("watched_widgets_x", "widgets open", "x unwatched", "lower", "factor"),
            Metric("watched_server_x", "server listening", "x unwatched", "lower", "factor"),
            Metric("watched_tasks_per_s", "unwatched", "tasks/s", None, "rate"),
            Metric("watched_plain_cpu_s", "CPU unwatched", "s", None),
            Metric("watched_widgets_cpu_s", "CPU widgets", "s", None),
            Metric("watched_server_cpu_s", "CPU server", "s", None),
        ]

    def describe(self) -> str:
        n = self.sizes.watched_tasks
        return (
            f"`get([f.remote(i) for i in range({n:,})])` of a no-op task, unwatched; with a "
            "TaskGraph, a Timeline and a ClusterMonitor drawn in the driver; and as a kernel "
            "of a Jupyter server whose nbray extension owns the cluster while another process "
            "holds its events WebSocket open (the side panel's part). Each in a fresh process "
            f"(`benchmarks/widgets_overhead.py`), median of {self.sizes.watched_runs} runs "
            "after a warm-up; the wall time as a ratio to the unwatched run (issue 17: widgets "
            "≤ 1.2x, server ≤ 1.1x), and the CPU seconds per run of head + driver (+ the "
            "server and the WebSocket reader)."
        )

    def run(self, engine: Engine) -> dict[str, Value]:
        from . import widgets_overhead

        plain, widgets, server = widgets_overhead.measure(
            self.MODES, self.sizes.watched_tasks, self.sizes.watched_runs, engine.num_cpus
        )

        def cpu(r: dict[str, Any]) -> float:
            return float(r["head_cpu"] + r["driver_cpu"] + r["server_cpu"])

        return {
            "watched_widgets_x": widgets["wall"] / plain["wall"],
            "watched_server_x": server["wall"] / plain["wall"],
            "watched_tasks_per_s": self.sizes.watched_tasks / plain["wall"],
            "watched_plain_cpu_s": cpu(plain),
            "watched_widgets_cpu_s": cpu(widgets),
            "watched_server_cpu_s": cpu(server),
        }


#: Every workload, by name, in the order of the issue's list.
WORKLOADS: dict[str, type[Workload]] = {
    cls.name: cls
    for cls in sorted(
        (
            ColdStart,
            Throughput,
            Latency,
            Actors,
            Array,
            Primes,
            Footprint,
            ManyTasks,
            PoolMap,
            JoblibParallel,
            Sustained,
            Watched,
        ),
        key=lambda c: c.number,
    )
}
#: Workloads measured around the engine's start, in fresh processes.
STARTUP = ("cold_start", "footprint")


def supported(workload: str, engine: Any) -> bool:
    """Whether ``engine`` (an Engine class or instance) has what ``workload`` needs."""
    needs = WORKLOADS[workload].needs
    return needs is None or bool(getattr(engine, f"has_{needs}", False))
