"""Core semantics of the local engine that need its internals to observe (issue 15): a
``get`` of objects already there does not lend the task's CPU, ``max_calls`` retires
workers, and an actor's ``__ray_shutdown__`` runs on a graceful end only."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from nbray_testing import assert_oversized_code_is_refused, wait_until

import nbray
from nbray._model import session


def _workers() -> dict[str, int]:
    engine = session.get_engine()
    assert engine is not None
    return dict(engine.status()["worker_pids"])  # type: ignore[attr-defined]


def test_get_of_objects_already_there_does_not_block(cluster: nbray.ClusterContext) -> None:
    ready = nbray.put(41)

    @nbray.remote
    def read(boxed: list[nbray.ObjectRef]) -> tuple[int, int]:
        return nbray.get(boxed[0]) + 1, os.getpid()

    out = nbray.get([read.remote([ready]) for _ in range(200)], timeout=90)
    assert {v for v, _ in out} == {42}
    # no task reported itself blocked, so no CPU was lent and no worker started beside the
    # two the cluster has (a blocked task lends its CPU and the pool grows)
    assert len({pid for _, pid in out}) <= 2
    assert len(_workers()) <= 2


def test_a_get_that_waits_still_lends_the_cpu(cluster: nbray.ClusterContext) -> None:
    @nbray.remote
    def leaf(i: int) -> int:
        return i

    @nbray.remote
    def parent(n: int) -> int:
        return sum(nbray.get([leaf.remote(i) for i in range(n)]))

    # two parents hold both CPUs and wait for their children: the children need the CPUs
    # the waiting parents lend
    assert nbray.get([parent.remote(4), parent.remote(4)], timeout=90) == [6, 6]


def test_max_calls_retires_the_worker(cluster: nbray.ClusterContext) -> None:
    @nbray.remote(max_calls=2, max_retries=0)
    def pid(i: int) -> tuple[int, int]:
        return i, os.getpid()

    out = nbray.get([pid.remote(i) for i in range(8)], timeout=90)
    assert [i for i, _ in out] == list(range(8))  # none lost, none failed
    per_worker: dict[int, int] = {}
    for _, p in out:
        per_worker[p] = per_worker.get(p, 0) + 1
    assert max(per_worker.values()) <= 2 and len(per_worker) >= 4

    @nbray.remote
    def unlimited() -> int:
        return os.getpid()

    assert nbray.get(unlimited.remote(), timeout=60)  # the pool serves other work after


def test_shutdown_hook_runs_on_a_graceful_end_only(
    cluster: nbray.ClusterContext, tmp_path: Path
) -> None:
    @nbray.remote
    class Resource:
        def __init__(self, path: str) -> None:
            self.path = path

        def ping(self) -> int:
            return os.getpid()

        def close(self) -> None:
            nbray.actor.exit_actor()

        def __ray_shutdown__(self) -> None:
            Path(self.path).write_text("closed")

    # out of scope: the hook runs after the calls submitted before
    scoped = tmp_path / "scoped"
    r = Resource.remote(str(scoped))
    pid = nbray.get(r.ping.remote(), timeout=60)
    del r
    wait_until(scoped.exists, 30.0)
    wait_until(lambda: not _alive(pid), 30.0)

    # exit_actor(): the hook runs, the call and the calls after it fail
    exited = tmp_path / "exited"
    r = Resource.remote(str(exited))
    nbray.get(r.ping.remote(), timeout=60)
    stop, after = r.close.remote(), r.ping.remote()
    with pytest.raises(nbray.exceptions.ActorDiedError, match="exit_actor"):
        nbray.get(stop, timeout=60)
    with pytest.raises(nbray.exceptions.ActorDiedError):
        nbray.get(after, timeout=60)
    assert exited.read_text() == "closed"

    # kill: no hook, as in Ray
    killed = tmp_path / "killed"
    r = Resource.remote(str(killed))
    pid = nbray.get(r.ping.remote(), timeout=60)
    nbray.kill(r)
    wait_until(lambda: not _alive(pid), 30.0)
    time.sleep(0.2)
    assert not killed.exists()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except OSError:
        return False


@pytest.mark.parametrize("concurrency", [1, 4])
def test_calls_submitted_before_the_handle_is_dropped_finish(
    cluster: nbray.ClusterContext, concurrency: int
) -> None:
    @nbray.remote(max_concurrency=concurrency)
    class Slow:
        def work(self, i: int) -> int:
            time.sleep(0.01)
            return i

    s = Slow.remote()
    refs = [s.work.remote(i) for i in range(20)]
    del s  # out of scope: the actor ends once the calls submitted before have finished
    assert nbray.get(refs, timeout=60) == list(range(20))
    s2 = Slow.remote()
    refs = [s2.work.remote(i) for i in range(20)]
    s2.__ray_terminate__.remote()  # the same, asked for
    assert nbray.get(refs, timeout=60) == list(range(20))


def test_a_function_over_the_size_limit_is_refused_as_in_ray(
    cluster: nbray.ClusterContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert_oversized_code_is_refused(monkeypatch)
    with pytest.warns(UserWarning, match="is very large"):
        big = bytes(11 * 1024 * 1024)

        @nbray.remote
        def large() -> int:
            return len(big)

        ref = large.remote()
    assert nbray.get(ref, timeout=60) == 11 * 1024 * 1024
    assert nbray.get(nbray.remote(lambda: 1).remote(), timeout=60) == 1


def test_restarted_actor_knows_it_and_exit_reason_reaches_queued_calls(
    cluster: nbray.ClusterContext,
) -> None:
    @nbray.remote(max_restarts=1)
    class Phoenix:
        def reborn(self) -> bool:
            return bool(nbray.get_runtime_context().was_current_actor_reconstructed)

        def crash(self) -> None:
            os._exit(3)

        def stop(self) -> None:
            nbray.actor.exit_actor()

    p = Phoenix.remote()
    assert nbray.get(p.reborn.remote(), timeout=60) is False
    with pytest.raises(nbray.exceptions.ActorDiedError):
        nbray.get(p.crash.remote(), timeout=60)
    assert nbray.get(p.reborn.remote(), timeout=60) is True
    stop, after = p.stop.remote(), p.reborn.remote()
    with pytest.raises(nbray.exceptions.ActorDiedError, match="exit_actor"):
        nbray.get(stop, timeout=60)
    with pytest.raises(nbray.exceptions.ActorDiedError, match="exit_actor"):
        nbray.get(after, timeout=60)  # the queued call says why the actor is gone

    named = Phoenix.options(name="phoenix").remote()
    with pytest.raises(nbray.exceptions.ActorAlreadyExistsError, match="already exists"):
        Phoenix.options(name="phoenix").remote()
    with pytest.raises(ValueError):  # also a ValueError, as in Ray
        Phoenix.options(name="phoenix").remote()
    nbray.kill(named)


def test_a_worker_process_serves_one_gpu_assignment(
    cluster_factory: Callable[..., nbray.ClusterContext],
) -> None:
    # Ray issue 22504: CUDA fixes the visible devices at a process's first use, so a worker
    # that ran a CPU task, or a task on GPU 0, never runs a task on another assignment
    cluster_factory(num_cpus=1, num_gpus=2)

    @nbray.remote
    def where() -> tuple[int, str]:
        time.sleep(0.05)
        return os.getpid(), os.environ.get("CUDA_VISIBLE_DEVICES", "")

    shapes = [where.options(num_cpus=0, num_gpus=1), where, where.options(num_gpus=0.5)]
    refs = [shapes[i % 3].remote() for i in range(30)]
    seen: dict[int, set[str]] = {}
    for pid, devices in nbray.get(refs, timeout=90):
        seen.setdefault(pid, set()).add(devices)
    assert all(len(devices) == 1 for devices in seen.values()), seen
    assignments = {d for devices in seen.values() for d in devices}
    assert "" in assignments and assignments & {"0", "1"}, seen


def split_in_two(submit: Any) -> Any:
    def invocation(args: Any, kwargs: dict[str, Any]) -> Any:
        return submit([args[0], args[0]], {}), kwargs  # the call, and what it kept back

    return invocation


def summed(method: Any) -> Any:
    def execution(self: Any, b: int, c: int) -> Any:
        return method(self, b + c)

    execution.__ray_invocation_decorator__ = split_in_two  # type: ignore[attr-defined]
    return execution


@nbray.remote
class Decorated:
    @summed
    def plus_one(self, x: int) -> int:
        return x + 1


@nbray.remote
def call_decorated(handle: Any) -> int:
    import nbray

    ref, _ = handle.plus_one.remote(5)
    return int(nbray.get(ref))


def test_a_method_s_invocation_decorator_wraps_its_calls(cluster: nbray.ClusterContext) -> None:
    # Ray's __ray_invocation_decorator__ (the Ray engine refuses it: README)
    d = Decorated.remote()
    ref, kept = d.plus_one.remote(3, kwarg=3)
    assert isinstance(ref, nbray.ObjectRef) and kept == {"kwarg": 3}
    assert nbray.get(ref, timeout=60) == 7  # 3 + 3 + 1
    assert nbray.get(call_decorated.remote(d), timeout=60) == 11  # in another process too


@nbray.remote
class CycleMaker:
    """Keeps 10 MB objects alive only through reference cycles, its collector off."""

    def __init__(self) -> None:
        import gc

        self.collections = 0
        gc.disable()
        gc.callbacks.append(self._count)

    def _count(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "stop":
            self.collections += 1

    def make_cycle(self) -> None:
        import nbray

        a: list[Any] = [nbray.put(b"x" * (10 * 1024 * 1024))]
        b: list[Any] = [a, nbray.put(b"y" * (10 * 1024 * 1024))]
        a.append(b)

    def collected(self) -> int:
        return self.collections


def test_a_nearly_full_store_makes_every_process_collect_cycles(
    cluster_factory: Callable[..., nbray.ClusterContext],
) -> None:
    # Ray's global GC: over 70% of the store, every process runs gc.collect()
    cluster_factory(num_cpus=1, object_store_memory=100 * 1024 * 1024)
    maker = CycleMaker.remote()
    for _ in range(3):  # 60 MB: below the threshold
        nbray.get(maker.make_cycle.remote(), timeout=60)
    time.sleep(1)  # several watchdog turns
    assert nbray.get(maker.collected.remote(), timeout=60) == 0
    nbray.get(maker.make_cycle.remote(), timeout=60)  # 80 MB
    wait_until(lambda: nbray.get(maker.collected.remote(), timeout=60) > 0, 30)
    # the cycles' objects were freed: the store is back under the threshold
    engine = session.current_engine()

    def shm_bytes() -> int:
        return int(engine.cluster_info()["raw"]["object_store"]["shm_bytes"])  # type: ignore[attr-defined]

    wait_until(lambda: shm_bytes() < 30 * 1024 * 1024, 30)
