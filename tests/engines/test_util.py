"""nbray.util (ActorPool, Queue, multiprocessing.Pool, joblib) on every engine (fixture
``engine``: "local" and "ray"): the libraries use only the public API, so they must hold
the same contract on both.

Functions and classes used remotely are self-contained (imports inside), as in
test_core_api: on Ray they run in workers that cannot import this module.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from typing import Any

import psutil
import pytest
from nbray_testing import wait_until

import nbray
from nbray import errors
from nbray.util import ActorPool
from nbray.util.multiprocessing import Pool
from nbray.util.queue import Empty, Full, Queue


@pytest.fixture(autouse=True)
def _by_value(engine: str) -> None:
    """Plain functions handed to a Pool or joblib travel as arguments: Ray pickles them by
    reference, and its workers cannot import this module, so send them by value (as
    Ray does for a notebook's functions)."""
    if engine == "ray":
        import sys

        from ray import cloudpickle

        cloudpickle.register_pickle_by_value(sys.modules[__name__])


@nbray.remote
class Doubler:
    def double(self, v: int) -> int:
        return 2 * v

    def slow_double(self, v: float) -> float:
        import time

        time.sleep(v)
        return 2 * v

    def fail(self, v: int) -> int:
        raise KeyError(f"bad {v}")


def _double(actor: Any, v: Any) -> Any:
    return actor.double.remote(v)


def _slow(actor: Any, v: Any) -> Any:
    return actor.slow_double.remote(v)


# --- ActorPool -----------------------------------------------------------------------------


def test_actor_pool_map_keeps_order_and_unordered_gets_all(engine: str) -> None:
    pool = ActorPool([Doubler.remote(), Doubler.remote()])
    assert list(pool.map(_double, range(10))) == [2 * i for i in range(10)]
    # the slow first value finishes last: unordered yields it last
    out = list(pool.map_unordered(_slow, [1.0, 0.0, 0.0]))
    assert sorted(out) == [0.0, 0.0, 2.0] and out[-1] == 2.0
    assert not pool.has_next()


def test_actor_pool_submit_queues_past_the_actors_and_push_pop(engine: str) -> None:
    a, b = Doubler.remote(), Doubler.remote()
    pool = ActorPool([a])
    for v in (1, 2, 3):
        pool.submit(_double, v)
    assert not pool.has_free() and pool.pop_idle() is None
    assert pool.get_next() == 2
    pool.push(b)
    with pytest.raises(ValueError, match="already belongs"):
        pool.push(b)
    assert [pool.get_next(), pool.get_next()] == [4, 6]
    assert pool.has_free()
    assert pool.pop_idle() in (a, b)
    with pytest.raises(StopIteration, match="No more results"):
        pool.get_next()
    with pytest.raises(StopIteration):
        pool.get_next_unordered()


def test_actor_pool_timeouts_and_errors(engine: str) -> None:
    pool = ActorPool([Doubler.remote()])
    pool.submit(_slow, 1.5)
    with pytest.raises(TimeoutError, match="Timed out waiting for result"):
        pool.get_next(timeout=0.05)
    assert pool.has_next()  # not ignored: still pending
    with pytest.raises(TimeoutError, match="has been ignored"):
        pool.get_next(timeout=0.05, ignore_if_timedout=True)
    assert not pool.has_next() and pool.has_free()  # dropped, the actor is back
    pool.submit(lambda a, v: a.fail.remote(v), 7)
    with pytest.raises(KeyError, match="bad 7"):
        pool.get_next()
    assert pool.has_free()  # an exception in the call keeps the actor in the pool
    pool.push(Doubler.remote())
    pool.submit(_slow, 0.5)
    pool.submit(_slow, 0.0)
    assert pool.get_next_unordered() == 0.0  # the later call, finished first
    with pytest.raises(ValueError, match="after get_next_unordered"):
        pool.get_next()
    assert pool.get_next_unordered() == 1.0


def test_actor_pool_drops_a_dead_actor(engine: str) -> None:
    a = Doubler.remote()
    pool = ActorPool([a])
    pool.submit(_slow, 30)
    time.sleep(0.3)
    nbray.kill(a)
    with pytest.raises(errors.ActorDiedError):
        pool.get_next()
    assert not pool.has_free()  # the dead actor left the pool


# --- Queue ---------------------------------------------------------------------------------


def test_queue_put_get_nowait_batches_and_sizes(engine: str) -> None:
    q = Queue(maxsize=3)
    assert q.empty() and not q.full() and len(q) == 0
    q.put_nowait_batch([1, 2])
    with pytest.raises(Full, match="Cannot add 2 items to queue of size 2 and maxsize 3"):
        q.put_nowait_batch([3, 4])
    q.put(3)
    assert q.full() and q.qsize() == q.size() == 3
    with pytest.raises(Full):
        q.put_nowait(4)
    with pytest.raises(Full):
        q.put(4, timeout=0.1)
    with pytest.raises(Empty, match="Cannot get 4 items from queue of size 3"):
        q.get_nowait_batch(4)
    assert q.get_nowait_batch(2) == [1, 2]
    assert q.get() == 3
    with pytest.raises(Empty):
        q.get_nowait()
    with pytest.raises(Empty):
        q.get(timeout=0.1)
    with pytest.raises(ValueError, match="non-negative"):
        q.get(timeout=-1)
    with pytest.raises(TypeError, match="must be an int"):
        q.get_nowait_batch("2")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="Iterable"):
        q.put_nowait_batch(5)  # type: ignore[arg-type]
    q.shutdown()
    with pytest.raises(RuntimeError, match="shut down"):
        q.put(1)


@nbray.remote
def _produce(q: Any, start: int, n: int) -> int:
    for i in range(start, start + n):
        q.put(i)
    return n


@nbray.remote
def _consume(q: Any, n: int) -> list[Any]:
    return [q.get(timeout=60) for _ in range(n)]


@nbray.remote
class _Consumer:
    def __init__(self, q: Any) -> None:
        self.q = q

    def take(self, n: int) -> list[Any]:
        return [self.q.get(timeout=60) for _ in range(n)]

    async def take_async(self, n: int) -> list[Any]:
        return [await self.q.get_async(timeout=60) for _ in range(n)]


def test_queue_shared_by_kernel_tasks_and_actors_at_once(engine: str) -> None:
    """Consumers block in a task, a sync actor and an async actor at the same time, on a
    small queue that also blocks the producers (two tasks and the kernel itself); every
    item arrives exactly once."""
    q = Queue(maxsize=2)
    consumer, async_consumer = _Consumer.remote(q), _Consumer.remote(q)
    takes = [
        _consume.remote(q, 12),
        consumer.take.remote(12),
        async_consumer.take_async.remote(11),
    ]
    producers = [_produce.remote(q, 0, 15), _produce.remote(q, 100, 15)]
    for item in range(1000, 1005):  # blocks whenever the queue is full
        q.put(item, timeout=60)
    assert nbray.get(producers, timeout=120) == [15, 15]
    got = [x for part in nbray.get(takes, timeout=120) for x in part]
    assert sorted(got) == sorted([*range(15), *range(100, 115), *range(1000, 1005)])
    assert q.empty()
    q.shutdown()


def test_queue_async_api_from_the_kernel(engine: str) -> None:
    q = Queue()

    async def roundtrip() -> list[Any]:
        await q.put_async("a")
        await q.put_async("b", block=False)
        first = await q.get_async()
        second = await q.get_async(block=False)
        try:
            await q.get_async(timeout=0.05)
        except Empty:
            return [first, second, "empty"]
        return [first, second]

    assert asyncio.run(roundtrip()) == ["a", "b", "empty"]
    q.shutdown(force=True)


def test_queue_shutdown_fails_blocked_getters(engine: str) -> None:
    q = Queue()
    waiting = _consume.remote(q, 1)
    time.sleep(0.5)
    actor = q.actor
    q.shutdown(grace_period_s=1)
    with pytest.raises((errors.ActorDiedError, errors.TaskError)):
        nbray.get(waiting, timeout=60)
    with pytest.raises(errors.ActorDiedError):  # the actor is gone, not just forgotten
        nbray.get(actor.qsize.remote(), timeout=60)


# --- multiprocessing.Pool -----------------------------------------------------------------


def _square(x: int) -> int:
    return x * x


def _fail_on_3(x: int) -> int:
    if x == 3:
        raise ValueError("three")
    return x


def _pid(_: Any = None) -> int:
    import os

    return os.getpid()


def _set_tag(tag: str) -> None:
    import builtins

    builtins._nbray_pool_tag = tag  # type: ignore[attr-defined]


def _get_tag(_: Any) -> str:
    import builtins

    return str(getattr(builtins, "_nbray_pool_tag", ""))


def test_pool_map_family_matches_the_standard_library(engine: str) -> None:
    with Pool() as pool:
        assert pool.map(_square, range(100)) == [x * x for x in range(100)]
        assert pool.map(_square, range(10), chunksize=3) == [x * x for x in range(10)]
        assert pool.map(_square, []) == []
        assert pool.starmap(divmod, [(7, 2), (9, 4)]) == [(3, 1), (2, 1)]
        assert pool.apply(divmod, (7, 2)) == (3, 1)
        assert pool.apply(dict, (), {"a": 1}) == {"a": 1}
        assert list(pool.imap(_square, range(20))) == [x * x for x in range(20)]
        assert list(pool.imap(_square, iter(range(20)), chunksize=6)) == [x * x for x in range(20)]
        assert sorted(pool.imap_unordered(_square, range(20), chunksize=3)) == sorted(
            x * x for x in range(20)
        )
        res = pool.map_async(_square, range(5))
        assert res.get(timeout=60) == [0, 1, 4, 9, 16]
        assert res.ready() and res.successful()
        star = pool.starmap_async(divmod, [(9, 2)])
        star.wait(60)
        assert star.get() == [(4, 1)]


def test_pool_callbacks_errors_and_timeouts(engine: str) -> None:
    with Pool(2) as pool:
        got: list[Any] = []
        errs: list[BaseException] = []
        r1 = pool.apply_async(_square, (4,), callback=got.append, error_callback=errs.append)
        r2 = pool.map_async(_fail_on_3, range(6), callback=got.append, error_callback=errs.append)
        assert r1.get(timeout=60) == 16
        with pytest.raises(ValueError, match="three"):
            r2.get(timeout=60)
        assert not r2.successful()
        deadline = time.monotonic() + 30
        while (not got or not errs) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert got == [16] and len(errs) == 1 and isinstance(errs[0], ValueError)
        with pytest.raises(ValueError, match="three"):
            pool.map(_fail_on_3, range(6))
        slow = pool.apply_async(time.sleep, (1.0,))
        with pytest.raises(multiprocessing.TimeoutError):
            slow.get(timeout=0.05)
        with pytest.raises(ValueError, match="not ready"):
            slow.successful()
        assert not slow.ready()
        with pytest.raises(ValueError, match="Chunksize must be 1"):
            pool.map(_square, range(3), chunksize=0)
        it = pool.imap(time.sleep, [1.0])
        with pytest.raises(multiprocessing.TimeoutError):
            it.next(timeout=0.05)
        assert it.next(timeout=60) is None


def test_pool_keeps_every_item_of_a_chunk_whose_call_raised(engine: str) -> None:
    """As Ray's Pool: imap yields a raising item's exception as its value (the chunk's
    other items kept); map raises it with the remote traceback as __cause__."""
    from nbray.util.multiprocessing.pool import RemoteTraceback

    with Pool(2) as pool:
        got = list(pool.imap(_fail_on_3, range(8), chunksize=4))
        assert [g for i, g in enumerate(got) if i != 3] == [0, 1, 2, 4, 5, 6, 7]
        assert isinstance(got[3], ValueError) and "three" in str(got[3])
        unordered = list(pool.imap_unordered(_fail_on_3, range(8), chunksize=3))
        assert sorted(v for v in unordered if isinstance(v, int)) == [0, 1, 2, 4, 5, 6, 7]
        assert [type(v) for v in unordered if not isinstance(v, int)] == [ValueError]
        with pytest.raises(ValueError, match="three") as info:
            pool.map(_fail_on_3, range(8), chunksize=8)
        cause = info.value.__cause__
        assert isinstance(cause, RemoteTraceback) and "_fail_on_3" in str(cause)


def test_pool_maxtasksperchild_counts_chunks_as_the_standard_library(engine: str) -> None:
    """maxtasksperchild=1 with the default chunking: 4 chunks per process (the standard
    library's and Ray's), each in a fresh process."""
    with Pool(2, maxtasksperchild=1) as pool:
        assert len(set(pool.map(_pid, range(8)))) == 8


def test_pool_initializer_maxtasksperchild_and_life(engine: str) -> None:
    pool = Pool(2, initializer=_set_tag, initargs=("ready",))
    assert set(pool.map(_get_tag, range(8))) == {"ready"}
    pool.close()
    with pytest.raises(ValueError, match="Pool not running"):
        pool.map(_square, [1])
    pool.join()

    # one chunk per process life: every chunk of 1 item runs in a fresh process
    pool = Pool(1, maxtasksperchild=1, initializer=_set_tag, initargs=("again",))
    pids = [pool.apply(_pid) for _ in range(3)]
    assert len(set(pids)) == 3
    assert pool.apply(_get_tag, (0,)) == "again"
    with pytest.raises(ValueError, match="still running"):
        pool.join()
    pool.terminate()
    pool.join()

    pool = Pool(2)
    pids = set(pool.map(_pid, range(8), chunksize=1))
    pending = pool.apply_async(time.sleep, (30,))
    pool.terminate()
    with pytest.raises(errors.ActorDiedError):
        pending.get(timeout=60)
    # no process of the pool is left (both engines run their workers on this machine)
    wait_until(lambda: not [p for p in pids if psutil.pid_exists(p)], timeout=30)
    with pytest.raises(ValueError, match="Number of processes"):
        Pool(0)
    with pytest.raises(ValueError, match="only 2 CPUs"):
        Pool(64)


# --- joblib ------------------------------------------------------------------------------


def _array_info(a: Any, i: int) -> tuple[float, bool]:
    return float(a.sum()) + i, bool(a.flags.writeable)


def test_joblib_backend_runs_parallel_and_puts_large_arrays_once(engine: str) -> None:
    joblib = pytest.importorskip("joblib")
    np = pytest.importorskip("numpy")
    from nbray.util.joblib import register_nbray, register_ray

    register_nbray()
    register_ray()
    with joblib.parallel_backend("nbray"):
        assert joblib.Parallel(n_jobs=-1)(joblib.delayed(_square)(i) for i in range(50)) == [
            i * i for i in range(50)
        ]
        big = np.ones(300_000)  # 2.4 MB: over joblib's 1 MB max_nbytes
        out = joblib.Parallel(n_jobs=2, batch_size=1)(
            joblib.delayed(_array_info)(big, i) for i in range(4)
        )
    # read-only views of the one stored copy, as joblib's memmaps with mmap_mode="r"
    assert out == [(300_000.0 + i, False) for i in range(4)]
    with joblib.parallel_backend("ray"):
        assert joblib.Parallel(n_jobs=-1)(joblib.delayed(_square)(i) for i in range(5)) == [
            0,
            1,
            4,
            9,
            16,
        ]
    with joblib.parallel_backend("nbray"), pytest.raises(ValueError, match="three"):
        joblib.Parallel(n_jobs=2)(joblib.delayed(_fail_on_3)(i) for i in range(6))
