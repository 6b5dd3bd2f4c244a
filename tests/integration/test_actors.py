"""Actors on a real local cluster: ordering, state, concurrency, names, lifetimes, failures.

Every test runs against real head, fork-server and worker processes (the ``cluster``
fixture: two CPUs, and a teardown that proves no process, segment or session directory
is left). Ray's semantics are the reference; timeouts only bound hangs.
"""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import cloudpickle
import psutil
import pytest
from nbray_testing import wait_until

import nbray
from nbray.exceptions import ActorDiedError, ActorNotFoundError, NbrayError, TaskError

# Workers cannot import this test module: ship its classes and functions by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

GET_TIMEOUT = 30.0  # bounds a hang; never a performance threshold


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@nbray.remote
class Log:
    def __init__(self) -> None:
        self.items: list[int] = []

    def append(self, x: int) -> int:
        self.items.append(x)
        return len(self.items)

    def read(self) -> list[int]:
        return list(self.items)


@nbray.remote
class Counter:
    def __init__(self, start: int = 0) -> None:
        self.n = start

    def incr(self, by: int = 1) -> int:
        self.n += by
        return self.n

    def value(self) -> int:
        return self.n

    def pid(self) -> int:
        return os.getpid()


@nbray.remote
def double(x: int) -> int:
    return 2 * x


# --- ordering and state --------------------------------------------------------------------


def test_calls_run_in_submission_order(cluster: nbray.ClusterContext) -> None:
    log = Log.remote()
    refs = [log.append.remote(i) for i in range(200)]
    assert nbray.get(log.read.remote(), timeout=GET_TIMEOUT) == list(range(200))
    # each append saw exactly the appends submitted before it
    assert nbray.get(refs, timeout=GET_TIMEOUT) == list(range(1, 201))


def test_state_is_kept_between_calls(cluster: nbray.ClusterContext) -> None:
    c = Counter.remote(10)
    assert nbray.get(c.incr.remote(), timeout=GET_TIMEOUT) == 11
    assert nbray.get(c.incr.remote(5), timeout=GET_TIMEOUT) == 16
    assert nbray.get([c.incr.remote(by=2) for _ in range(3)], timeout=GET_TIMEOUT) == [18, 20, 22]
    assert nbray.get(c.value.remote(), timeout=GET_TIMEOUT) == 22
    pids = nbray.get([c.pid.remote() for _ in range(3)], timeout=GET_TIMEOUT)
    assert len(set(pids)) == 1 and pids[0] != os.getpid()


def test_two_actors_have_separate_state(cluster: nbray.ClusterContext) -> None:
    a, b = Counter.remote(), Counter.remote(100)
    assert nbray.get([a.incr.remote(), b.incr.remote(), a.incr.remote()]) == [1, 101, 2]
    assert nbray.get(a.pid.remote()) != nbray.get(b.pid.remote())


def test_constructor_arguments_including_object_refs(cluster: nbray.ClusterContext) -> None:
    @nbray.remote
    class Holder:
        def __init__(self, a: Any, b: Any, nested: list[Any], *, key: Any) -> None:
            self.a, self.b, self.key = a, b, key
            self.nested_is_ref = isinstance(nested[0], nbray.ObjectRef)
            self.nested = nbray.get(nested[0])

        def get(self) -> tuple[Any, ...]:
            return self.a, self.b, self.key, self.nested_is_ref, self.nested

    put_ref = nbray.put([1, 2, 3])
    task_ref = double.remote(21)
    h = Holder.remote(put_ref, task_ref, [nbray.put("deep")], key=nbray.put({"k": "v"}))
    # top-level refs arrive as their values; a ref nested in a list stays a ref (as in Ray)
    assert nbray.get(h.get.remote(), timeout=GET_TIMEOUT) == (
        [1, 2, 3],
        42,
        {"k": "v"},
        True,
        "deep",
    )


def test_method_with_num_returns_2(cluster: nbray.ClusterContext) -> None:
    @nbray.remote
    class Splitter:
        @nbray.method(num_returns=2)
        def split(self, x: int) -> tuple[int, int]:
            return x // 10, x % 10

        def one(self) -> str:
            return "one"

    s = Splitter.remote()
    refs = s.split.remote(42)
    assert isinstance(refs, list) and len(refs) == 2
    assert all(isinstance(r, nbray.ObjectRef) for r in refs)
    tens, units = refs
    assert nbray.get(units, timeout=GET_TIMEOUT) == 2
    assert nbray.get(tens, timeout=GET_TIMEOUT) == 4
    assert isinstance(s.one.remote(), nbray.ObjectRef)
    assert nbray.get(s.split.options(num_returns=1).remote(7)) == (0, 7)


# --- concurrency ---------------------------------------------------------------------------


def test_threaded_actor_runs_calls_concurrently(cluster: nbray.ClusterContext) -> None:
    @nbray.remote(max_concurrency=4)
    class Threaded:
        def __init__(self) -> None:
            self.barrier = threading.Barrier(4)

        def meet(self, i: int) -> tuple[int, int]:
            # returns only once 4 calls are inside at the same time
            self.barrier.wait(timeout=GET_TIMEOUT)
            return i, threading.get_ident()

    t = Threaded.remote()
    results = nbray.get([t.meet.remote(i) for i in range(4)], timeout=2 * GET_TIMEOUT)
    assert [i for i, _ in results] == [0, 1, 2, 3]
    assert len({ident for _, ident in results}) == 4


def test_default_actor_runs_one_call_at_a_time(cluster: nbray.ClusterContext) -> None:
    @nbray.remote
    class Serial:
        def __init__(self) -> None:
            self.active = 0
            self.most = 0

        def work(self) -> None:
            self.active += 1
            self.most = max(self.most, self.active)
            time.sleep(0.01)
            self.active -= 1

        def most_active(self) -> int:
            return self.most

    s = Serial.remote()
    nbray.get([s.work.remote() for _ in range(10)], timeout=GET_TIMEOUT)
    assert nbray.get(s.most_active.remote(), timeout=GET_TIMEOUT) == 1


def test_async_actor_interleaves_calls(cluster: nbray.ClusterContext) -> None:
    @nbray.remote
    class AsyncGate:
        def __init__(self) -> None:
            self.arrived = 0

        async def gather(self, i: int, n: int) -> int:
            # completes only once n calls are suspended in here at the same time
            self.arrived += 1
            for _ in range(int(GET_TIMEOUT / 0.01)):
                if self.arrived >= n:
                    return i
                await asyncio.sleep(0.01)
            raise RuntimeError(f"only {self.arrived} of {n} calls ran concurrently")

        async def running_in_loop(self) -> bool:
            return asyncio.get_running_loop().is_running()

    a = AsyncGate.remote()
    assert nbray.get([a.gather.remote(i, 10) for i in range(10)], timeout=2 * GET_TIMEOUT) == list(
        range(10)
    )
    assert nbray.get(a.running_in_loop.remote(), timeout=GET_TIMEOUT) is True


def test_async_actor_awaits_object_refs(cluster: nbray.ClusterContext) -> None:
    @nbray.remote
    class Awaiter:
        async def await_boxed(self, box: list[Any]) -> Any:
            return await box[0]

        async def await_task(self, x: int) -> int:
            ref = double.remote(x)
            await asyncio.sleep(0)
            return await ref

    a = Awaiter.remote()
    assert nbray.get(a.await_boxed.remote([nbray.put("payload")]), timeout=GET_TIMEOUT) == (
        "payload"
    )
    assert nbray.get(a.await_task.remote(8), timeout=GET_TIMEOUT) == 16
    assert nbray.get(a.await_boxed.remote([double.remote(5)]), timeout=GET_TIMEOUT) == 10


# --- names and lifetimes -------------------------------------------------------------------


def test_named_actor_and_get_actor(cluster: nbray.ClusterContext) -> None:
    c = Counter.options(name="counter").remote()
    assert nbray.get(c.incr.remote(), timeout=GET_TIMEOUT) == 1
    same = nbray.get_actor("counter")
    assert isinstance(same, nbray.ActorHandle)
    assert same == c
    assert nbray.get(same.incr.remote(), timeout=GET_TIMEOUT) == 2

    @nbray.remote
    def bump_by_name(name: str) -> int:
        return nbray.get(nbray.get_actor(name).incr.remote(10))

    assert nbray.get(bump_by_name.remote("counter"), timeout=GET_TIMEOUT) == 12
    assert nbray.get(c.value.remote(), timeout=GET_TIMEOUT) == 12


def test_duplicate_actor_name_raises_value_error(cluster: nbray.ClusterContext) -> None:
    first = Counter.options(name="dup").remote(1)
    with pytest.raises(ValueError, match="dup"):
        Counter.options(name="dup").remote(2)
    # the first actor is untouched
    assert nbray.get(first.value.remote(), timeout=GET_TIMEOUT) == 1
    assert nbray.get(nbray.get_actor("dup").value.remote(), timeout=GET_TIMEOUT) == 1


def test_get_if_exists_returns_the_existing_actor(cluster: nbray.ClusterContext) -> None:
    a = Counter.options(name="shared", get_if_exists=True).remote(5)
    assert nbray.get(a.incr.remote(), timeout=GET_TIMEOUT) == 6
    b = Counter.options(name="shared", get_if_exists=True).remote(100)
    assert b == a
    assert nbray.get(b.incr.remote(), timeout=GET_TIMEOUT) == 7
    assert nbray.get(a.pid.remote()) == nbray.get(b.pid.remote())


def test_get_actor_of_unknown_name_raises(cluster: nbray.ClusterContext) -> None:
    with pytest.raises(ActorNotFoundError, match="no-such-actor"):
        nbray.get_actor("no-such-actor")
    with pytest.raises(ValueError):
        nbray.get_actor("no-such-actor")
    # names are scoped by namespace
    Counter.options(name="scoped", namespace="ns1").remote()
    assert nbray.get_actor("scoped", namespace="ns1") is not None
    with pytest.raises(ActorNotFoundError):
        nbray.get_actor("scoped")


def test_detached_actor_outlives_its_handle(cluster: nbray.ClusterContext) -> None:
    d = Counter.options(name="keeper", lifetime="detached").remote()
    assert nbray.get(d.incr.remote(3), timeout=GET_TIMEOUT) == 3
    pid = nbray.get(d.pid.remote(), timeout=GET_TIMEOUT)
    del d
    gc.collect()
    again = nbray.get_actor("keeper")
    assert nbray.get(again.incr.remote(), timeout=GET_TIMEOUT) == 4
    assert nbray.get(again.pid.remote(), timeout=GET_TIMEOUT) == pid


def test_handles_passed_to_tasks_and_actors(cluster: nbray.ClusterContext) -> None:
    c = Counter.remote()

    @nbray.remote
    def use(handle: Any, n: int) -> list[int]:
        return nbray.get([handle.incr.remote() for _ in range(n)])

    assert nbray.get(use.remote(c, 3), timeout=GET_TIMEOUT) == [1, 2, 3]

    @nbray.remote
    class User:
        def __init__(self, handle: Any) -> None:
            self.handle = handle

        def bump(self) -> int:
            return nbray.get(self.handle.incr.remote(100))

    u = User.remote(c)
    assert nbray.get(u.bump.remote(), timeout=GET_TIMEOUT) == 103
    assert nbray.get(c.value.remote(), timeout=GET_TIMEOUT) == 103
    # a handle nested in a list works too
    assert nbray.get(use.remote([c][0], 1), timeout=GET_TIMEOUT) == [104]


# --- kill, death and restarts --------------------------------------------------------------


@nbray.remote
class Echo:
    """Returns (argument, pid, how many calls this incarnation has run)."""

    def __init__(self) -> None:
        self.calls = 0

    def echo(self, i: int, pause: float = 0.0, gate: str = "") -> tuple[int, int, int]:
        self.calls += 1
        if pause:
            time.sleep(pause)
        for _ in range(int(GET_TIMEOUT / 0.01) if gate else 0):  # wait for the gate file
            if os.path.exists(gate):
                break
            time.sleep(0.01)
        return i, os.getpid(), self.calls

    def pid(self) -> int:
        return os.getpid()

    def block(self, path: str, started: str = "") -> None:
        # waits for a file that never comes: only the actor's death ends it
        if started:
            Path(started).touch()
        for _ in range(int(GET_TIMEOUT / 0.01)):
            if os.path.exists(path):
                return
            time.sleep(0.01)


def test_kill_fails_pending_and_later_calls(cluster: nbray.ClusterContext, tmp_path: Path) -> None:
    a = Echo.remote()
    pid = nbray.get(a.pid.remote(), timeout=GET_TIMEOUT)
    running = a.block.remote(str(tmp_path / "never"))
    queued = [a.echo.remote(i) for i in range(3)]
    nbray.kill(a)
    for ref in [running, *queued]:
        with pytest.raises(ActorDiedError):
            nbray.get(ref, timeout=GET_TIMEOUT)
    with pytest.raises(ActorDiedError):
        nbray.get(a.echo.remote(99), timeout=GET_TIMEOUT)
    wait_until(lambda: _gone(pid), GET_TIMEOUT)


def test_kill_named_actor_frees_its_name(cluster: nbray.ClusterContext) -> None:
    a = Counter.options(name="victim").remote()
    assert nbray.get(a.incr.remote(), timeout=GET_TIMEOUT) == 1
    nbray.kill(a)
    with pytest.raises(ActorDiedError):
        nbray.get(a.incr.remote(), timeout=GET_TIMEOUT)
    with pytest.raises(ActorNotFoundError):
        nbray.get_actor("victim")
    b = Counter.options(name="victim").remote(50)
    assert nbray.get(b.incr.remote(), timeout=GET_TIMEOUT) == 51


def test_restarts_retry_calls_in_order_after_sigkill(
    cluster: nbray.ClusterContext, tmp_path: Path
) -> None:
    a = Echo.options(max_restarts=2, max_task_retries=-1).remote()
    n = 60
    # calls 20 and 40 wait for gates the test opens after its first and second kill, so
    # each incarnation is killed while calls are left for the next one
    gates = {20: tmp_path / "gate-1", 40: tmp_path / "gate-2"}
    refs = [a.echo.remote(i, 0.0, str(gates.get(i, ""))) for i in range(n)]
    results = []
    killed: list[int] = []
    for ref in refs:
        i, pid, calls = nbray.get(ref, timeout=GET_TIMEOUT)
        results.append((i, pid, calls))
        if pid not in killed and len(killed) < 2:
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
            gates[20 * len(killed)].touch()
    # every call answered, each with its own argument
    assert [i for i, _, _ in results] == list(range(n))
    pids = list(dict.fromkeys(pid for _, pid, _ in results))
    assert len(pids) == 3, pids
    assert pids[:2] == killed
    # each incarnation ran a contiguous run of the calls, in submission order, starting
    # from fresh state (the state resets on restart)
    for pid in pids:
        mine = [(i, calls) for i, p, calls in results if p == pid]
        first = mine[0][0]
        assert [i for i, _ in mine] == list(range(first, first + len(mine)))
        assert [calls for _, calls in mine] == list(range(1, len(mine) + 1))
    assert results[-1][1] == pids[-1]

    # the third death exceeds max_restarts: pending calls fail promptly
    blocked = a.block.remote("/nonexistent/never")
    queued = [a.echo.remote(i) for i in range(3)]
    os.kill(pids[-1], signal.SIGKILL)
    for ref in [blocked, *queued]:
        with pytest.raises(ActorDiedError):
            nbray.get(ref, timeout=GET_TIMEOUT)
    with pytest.raises(ActorDiedError):
        nbray.get(a.echo.remote(0), timeout=GET_TIMEOUT)


def test_actor_without_restarts_dies_for_good(cluster: nbray.ClusterContext) -> None:
    a = Echo.remote()  # max_restarts=0, as in Ray
    pid = nbray.get(a.pid.remote(), timeout=GET_TIMEOUT)
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(ActorDiedError):
        nbray.get(a.echo.remote(1), timeout=GET_TIMEOUT)
    with pytest.raises(ActorDiedError):
        nbray.get(a.pid.remote(), timeout=GET_TIMEOUT)


def test_actor_exiting_in_a_method_dies(cluster: nbray.ClusterContext) -> None:
    @nbray.remote
    class Quitter:
        def quit(self) -> None:
            os._exit(3)

        def ok(self) -> str:
            return "ok"

    q = Quitter.remote()
    assert nbray.get(q.ok.remote(), timeout=GET_TIMEOUT) == "ok"
    with pytest.raises(ActorDiedError):
        nbray.get(q.quit.remote(), timeout=GET_TIMEOUT)
    with pytest.raises(ActorDiedError):
        nbray.get(q.ok.remote(), timeout=GET_TIMEOUT)


def test_calls_in_flight_fail_without_task_retries_then_actor_restarts(
    cluster: nbray.ClusterContext, tmp_path: Path
) -> None:
    a = Echo.options(max_restarts=1).remote()  # max_task_retries=0
    pid = nbray.get(a.pid.remote(), timeout=GET_TIMEOUT)
    running = a.block.remote(str(tmp_path / "never"), str(tmp_path / "started"))
    queued = a.echo.remote(1)
    nbray.available_resources()  # a round trip: the head has both calls before the death
    wait_until((tmp_path / "started").exists, GET_TIMEOUT)
    os.kill(pid, signal.SIGKILL)
    for ref in (running, queued):
        with pytest.raises(ActorDiedError):
            nbray.get(ref, timeout=GET_TIMEOUT)
    # calls submitted after the death run on the restarted actor, with fresh state
    i, new_pid, calls = nbray.get(a.echo.remote(2), timeout=GET_TIMEOUT)
    assert (i, calls) == (2, 1)
    assert new_pid != pid
    wait_until(lambda: _gone(pid), GET_TIMEOUT)


def test_kill_with_restart_allowed_restarts_the_actor(cluster: nbray.ClusterContext) -> None:
    c = Counter.options(max_restarts=1).remote(5)
    assert nbray.get(c.incr.remote(), timeout=GET_TIMEOUT) == 6
    pid = nbray.get(c.pid.remote(), timeout=GET_TIMEOUT)
    nbray.kill(c, no_restart=False)
    wait_until(lambda: _gone(pid), GET_TIMEOUT)

    def restarted() -> bool:
        try:
            return nbray.get(c.pid.remote(), timeout=GET_TIMEOUT) != pid
        except ActorDiedError:  # a call that reached the old process as it died
            return False

    wait_until(restarted, GET_TIMEOUT)
    assert nbray.get(c.incr.remote(), timeout=GET_TIMEOUT) == 6  # the constructor ran again
    # the one restart is used up: the next kill is final
    nbray.kill(c, no_restart=False)
    with pytest.raises(ActorDiedError):
        nbray.get(c.incr.remote(), timeout=GET_TIMEOUT)


def test_kill_before_the_actor_started(cluster: nbray.ClusterContext) -> None:
    c = Counter.remote()
    ref = c.incr.remote()
    nbray.kill(c)
    with pytest.raises(ActorDiedError):
        nbray.get(ref, timeout=GET_TIMEOUT)
    with pytest.raises(ActorDiedError):
        nbray.get(c.incr.remote(), timeout=GET_TIMEOUT)


@pytest.mark.parametrize("kind", ["sync", "threaded", "async"])
def test_sys_exit_in_a_method_ends_the_actor(cluster: nbray.ClusterContext, kind: str) -> None:
    if kind == "async":

        @nbray.remote
        class AsyncQuitter:
            async def quit(self) -> None:
                sys.exit(0)

            async def ok(self) -> str:
                return "ok"

        q: Any = AsyncQuitter.remote()
    else:

        @nbray.remote(max_concurrency=2 if kind == "threaded" else 1)
        class Quitter:
            def quit(self) -> None:
                sys.exit(0)

            def ok(self) -> str:
                return "ok"

        q = Quitter.remote()
    assert nbray.get(q.ok.remote(), timeout=GET_TIMEOUT) == "ok"
    with pytest.raises(ActorDiedError):
        nbray.get(q.quit.remote(), timeout=GET_TIMEOUT)
    with pytest.raises(ActorDiedError):
        nbray.get(q.ok.remote(), timeout=GET_TIMEOUT)


def test_async_method_raising_cancelled_error_answers(cluster: nbray.ClusterContext) -> None:
    @nbray.remote
    class Canceller:
        async def cancel_me(self) -> None:
            raise asyncio.CancelledError()

        async def fail(self) -> None:
            raise ValueError("async failure")

        async def ok(self) -> str:
            return "still alive"

    c = Canceller.remote()
    with pytest.raises(TaskError):
        nbray.get(c.cancel_me.remote(), timeout=GET_TIMEOUT)
    with pytest.raises(ValueError, match="async failure"):
        nbray.get(c.fail.remote(), timeout=GET_TIMEOUT)
    assert nbray.get(c.ok.remote(), timeout=GET_TIMEOUT) == "still alive"


def test_constructor_exception_fails_calls_with_actor_died(
    cluster: nbray.ClusterContext,
) -> None:
    @nbray.remote
    class Broken:
        def __init__(self, x: int) -> None:
            raise ValueError(f"bad config {x}")

        def method(self) -> int:
            return 1

    b = Broken.options(name="broken", max_restarts=3, num_cpus=1).remote(42)
    for _ in range(2):
        with pytest.raises(ActorDiedError) as info:
            nbray.get(b.method.remote(), timeout=GET_TIMEOUT)
        assert "ValueError: bad config 42" in str(info.value)
        assert "max_restarts" not in str(info.value)  # restarting would not help

    # dead, as in Ray: not restarted despite max_restarts, its name and CPU freed
    def name_gone() -> bool:
        try:
            nbray.get_actor("broken")
        except ActorNotFoundError:
            return True
        return False

    wait_until(name_gone, 10)
    wait_until(lambda: nbray.available_resources().get("CPU") == 2.0, 10)


def test_task_exception_in_method_does_not_kill_actor(cluster: nbray.ClusterContext) -> None:
    @nbray.remote
    class Fragile:
        def __init__(self) -> None:
            self.n = 0

        def fail(self) -> None:
            self.n += 1
            raise KeyError("boom")

        def count(self) -> int:
            return self.n

    f = Fragile.remote()
    with pytest.raises(KeyError):
        nbray.get(f.fail.remote(), timeout=GET_TIMEOUT)
    with pytest.raises(NbrayError):
        nbray.get(f.fail.remote(), timeout=GET_TIMEOUT)
    assert nbray.get(f.count.remote(), timeout=GET_TIMEOUT) == 2


@nbray.remote
def explode(message: str) -> None:
    raise KeyError(message)


def test_failed_object_ref_argument_fails_the_call_with_its_error(
    cluster: nbray.ClusterContext,
) -> None:
    @nbray.remote
    class Sync:
        def take(self, x: Any) -> Any:
            return x

    @nbray.remote
    class Async:
        async def take(self, x: Any) -> Any:
            return x

    for actor in (Sync.remote(), Async.remote()):
        # as in Ray, the argument's own error comes back (an instance of its class)
        with pytest.raises(KeyError, match="bad input") as info:
            nbray.get(actor.take.remote(explode.remote("bad input")), timeout=GET_TIMEOUT)
        assert isinstance(info.value, TaskError)
        assert info.value.function_name.endswith("explode")
        # the method never ran, and the actor carries on
        assert nbray.get(actor.take.remote(nbray.put(7)), timeout=GET_TIMEOUT) == 7


# --- misuse --------------------------------------------------------------------------------


def test_unknown_method_raises_attribute_error(cluster: nbray.ClusterContext) -> None:
    c = Counter.remote()
    with pytest.raises(AttributeError, match="no_such_method"):
        c.no_such_method.remote()
    assert not hasattr(c, "no_such_method")
    assert nbray.get(c.incr.remote(), timeout=GET_TIMEOUT) == 1


def test_actor_class_cannot_be_instantiated_directly(cluster: nbray.ClusterContext) -> None:
    with pytest.raises(TypeError, match=r"Counter\.remote"):
        Counter()
    c = Counter.remote()
    with pytest.raises(TypeError, match=r"\.remote"):
        c.incr()


def test_dropping_the_only_handle_kills_the_actor(cluster: nbray.ClusterContext) -> None:
    c = Counter.remote()
    pid = nbray.get(c.pid.remote(), timeout=GET_TIMEOUT)
    assert not _gone(pid)
    del c
    gc.collect()
    wait_until(lambda: _gone(pid), GET_TIMEOUT)


def test_dropped_handle_lets_submitted_calls_finish(cluster: nbray.ClusterContext) -> None:
    # Ray ends an out-of-scope actor only after the calls already submitted to it
    e = Echo.remote()
    pid = nbray.get(e.pid.remote(), timeout=GET_TIMEOUT)
    refs = [e.echo.remote(i, 0.01) for i in range(5)]
    del e
    gc.collect()
    assert [i for i, _, _ in nbray.get(refs, timeout=GET_TIMEOUT)] == list(range(5))
    wait_until(lambda: _gone(pid), GET_TIMEOUT)


def test_call_on_a_temporary_handle(cluster: nbray.ClusterContext) -> None:
    assert nbray.get(Counter.remote(5).incr.remote(), timeout=GET_TIMEOUT) == 6
    a, b = Splitter2.remote().split.remote(73)
    assert nbray.get([a, b], timeout=GET_TIMEOUT) == [7, 3]


@nbray.remote
class Splitter2:
    @nbray.method(num_returns=2)
    def split(self, x: int) -> tuple[int, int]:
        return x // 10, x % 10


def test_actor_waiting_on_its_own_call_raises_instead_of_hanging(
    cluster: nbray.ClusterContext,
) -> None:
    @nbray.remote
    class Selfish:
        def __init__(self) -> None:
            self.me: Any = None

        def remember(self, handle: Any) -> None:
            self.me = handle

        def value(self) -> int:
            return 7

        def ask_myself(self) -> int:
            return int(nbray.get(self.me.value.remote()))

    a = Selfish.remote()
    nbray.get(a.remember.remote(a), timeout=GET_TIMEOUT)
    with pytest.raises(NbrayError, match="can never finish"):
        nbray.get(a.ask_myself.remote(), timeout=GET_TIMEOUT)
    assert nbray.get(a.value.remote(), timeout=GET_TIMEOUT) == 7  # and it lives on

    h = Selfish.options(max_concurrency=2).remote()  # threads: waiting on itself is fine
    nbray.get(h.remember.remote(h), timeout=GET_TIMEOUT)
    assert nbray.get(h.ask_myself.remote(), timeout=GET_TIMEOUT) == 7
