"""Tasks on a real local cluster: options, arguments, nesting, errors, retries, get/wait/cancel,
code shipping, output routing and the event stream. Ray's semantics are the reference.

Every test runs real head, fork-server and worker processes. Outcomes are exact; timeouts
only bound hangs. Tasks coordinate with the test through files in ``tmp_path`` (markers,
attempt counters, release files), never through sleeps whose length matters.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cloudpickle
import psutil
import pytest
from nbray_testing import run_python, wait_until

import nbray
from nbray._base.events import separate_states
from nbray._model import session
from nbray.exceptions import (
    GetTimeoutError,
    NbrayError,
    RemoteTraceback,
    SerializationError,
    TaskCancelledError,
    TaskError,
    UnschedulableError,
    WorkerCrashedError,
)

# pytest imports this file as a top-level module the workers cannot import: ship the
# exception classes and helpers defined here by value, as a notebook's would be.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

GET_TIMEOUT = 30.0


class CustomError(Exception):
    """An application exception with its own state."""

    def __init__(self, code: int, detail: str) -> None:
        super().__init__(code, detail)
        self.code = code
        self.detail = detail


class FinalError(Exception):
    """An exception class that refuses to be subclassed."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        raise TypeError("FinalError cannot be subclassed")


def wait_for_file(path: str | Path, timeout: float = 30.0) -> None:
    """Used inside tasks: block until ``path`` exists (bounded)."""
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} never appeared")
        time.sleep(0.01)


def count_attempt(path: str | Path) -> int:
    """Used inside tasks: append one line to ``path``; returns the attempt number."""
    with open(path, "a") as fh:
        fh.write(f"{os.getpid()}\n")
    return len(Path(path).read_text().splitlines())


def attempts(path: Path) -> list[int]:
    """The pids recorded by ``count_attempt`` (one per attempt)."""
    return [int(x) for x in path.read_text().splitlines()] if path.exists() else []


def process_gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def all_resources_free() -> None:
    total = nbray.cluster_resources()
    wait_until(lambda: nbray.available_resources() == total, timeout=10.0)


class Events:
    """Collects what ``engine.subscribe`` delivers (called on the client's reader thread)."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def __call__(self, event: dict[str, Any]) -> None:
        with self._lock:  # a coalesced event (the head's batches) as the states it stands for
            self.items.extend(separate_states(event))

    def snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.items)

    def task_id_of(self, ref: nbray.ObjectRef) -> str:
        """The task id that produces ``ref`` (from its PENDING event)."""

        def find() -> str | None:
            for e in self.snapshot():
                if e.get("type") == "task" and ref.hex() in e.get("returns", ()):
                    return str(e["task_id"])
            return None

        return str(wait_until(find))

    def states(self, task_id: str) -> list[str]:
        return [
            e["state"]
            for e in self.snapshot()
            if e.get("type") == "task" and e["task_id"] == task_id
        ]

    def of(self, task_id: str, state: str) -> dict[str, Any]:
        return next(
            e
            for e in self.snapshot()
            if e.get("type") == "task" and e["task_id"] == task_id and e["state"] == state
        )


@pytest.fixture
def events(cluster: nbray.ClusterContext) -> Iterator[Events]:
    collected = Events()
    engine = session.get_engine()
    assert engine is not None
    unsubscribe = engine.subscribe(collected)
    yield collected
    unsubscribe()


# --- remote functions: arguments, returns, options ----------------------------------------


@nbray.remote
def combine(a: Any, b: Any = 2, *rest: Any, c: Any, **extra: Any) -> tuple[Any, ...]:
    return (a, b, rest, c, sorted(extra.items()))


def test_args_and_kwargs(cluster: nbray.ClusterContext) -> None:
    assert nbray.get(combine.remote(1, c=3)) == (1, 2, (), 3, [])
    assert nbray.get(combine.remote("x", [5], 6, 7, c={"k": 1}, d=4, e=None)) == (
        "x",
        [5],
        (6, 7),
        {"k": 1},
        [("d", 4), ("e", None)],
    )
    with pytest.raises(TypeError, match="c"):  # a missing keyword-only argument
        nbray.get(combine.remote(1), timeout=GET_TIMEOUT)


def test_num_returns(cluster: nbray.ClusterContext, tmp_path: Path) -> None:
    @nbray.remote(num_returns=2)
    def divmod_task(a: int, b: int) -> tuple[int, int]:
        return divmod(a, b)

    refs = divmod_task.remote(17, 5)
    assert isinstance(refs, list) and len(refs) == 2
    assert all(isinstance(r, nbray.ObjectRef) for r in refs)
    assert nbray.get(refs) == [3, 2]
    assert nbray.get(refs[1]) == 2

    marker = tmp_path / "ran"

    @nbray.remote(num_returns=0)
    def side_effect(path: str) -> None:
        Path(path).write_text("done")

    assert side_effect.remote(str(marker)) is None
    wait_until(marker.exists)
    assert marker.read_text() == "done"

    # a task returning the wrong number of values fails at get, naming the mismatch
    three = divmod_task.options(num_returns=3).remote(17, 5)
    with pytest.raises(ValueError, match="num_returns=3") as info:
        nbray.get(three, timeout=GET_TIMEOUT)
    assert isinstance(info.value, TaskError)


def test_options_override_without_changing_the_original(cluster: nbray.ClusterContext) -> None:
    @nbray.remote
    def pair() -> tuple[int, int]:
        return (1, 2)

    split = pair.options(num_returns=2)
    assert nbray.get(split.remote()) == [1, 2]
    assert nbray.get(pair.remote()) == (1, 2)  # the original keeps num_returns=1
    assert nbray.get(split.options(num_cpus=0.5).remote()) == [1, 2]  # options stack
    assert nbray.get(pair.options(name="renamed", num_cpus=0.5, max_retries=0).remote()) == (1, 2)


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"num_cpus": -1}, ValueError),
        ({"num_cpus": "two"}, TypeError),  # a wrong type is a TypeError, as in Ray
        ({"num_gpus": 1.5}, ValueError),
        ({"num_returns": -1}, ValueError),
        ({"max_retries": -2}, ValueError),
        ({"max_retries": 1.5}, TypeError),
        ({"resources": {"CPU": 1}}, ValueError),
        ({"resources": {"x": -1}}, ValueError),
        ({"not_an_option": 1}, ValueError),
    ],
)
def test_invalid_options_raise_at_decoration(options: dict[str, Any], error: type) -> None:
    with pytest.raises(error):
        nbray.remote(**options)(lambda: None)

    @nbray.remote
    def f() -> None:
        return None

    with pytest.raises(error):
        f.options(**options)
    assert not nbray.is_initialized()  # validation started no cluster


def test_calling_a_remote_function_directly_raises_type_error() -> None:
    @nbray.remote
    def f(x: int) -> int:
        return x

    with pytest.raises(TypeError, match=r"f\.remote\("):
        f(1)
    assert f._function(1) == 1
    assert not nbray.is_initialized()


def test_num_cpus(cluster: nbray.ClusterContext, tmp_path: Path) -> None:
    @nbray.remote
    def rendezvous(me: str, other: str) -> str:
        Path(me).touch()
        wait_for_file(other, timeout=20)
        return "met"

    # two 1-CPU tasks run at once on a 2-CPU cluster (each waits for the other to start)
    a, b = tmp_path / "a", tmp_path / "b"
    refs = [rendezvous.remote(str(a), str(b)), rendezvous.remote(str(b), str(a))]
    assert nbray.get(refs, timeout=GET_TIMEOUT) == ["met", "met"]

    @nbray.remote(num_cpus=2)
    def hold(started: str, release: str) -> int:
        Path(started).touch()
        wait_for_file(release)
        return 2

    @nbray.remote(num_cpus=0)
    def free() -> str:
        return "ran"

    started, release = tmp_path / "started", tmp_path / "release"
    held = hold.remote(str(started), str(release))
    wait_until(started.exists)
    assert nbray.available_resources().get("CPU", 0.0) == 0.0
    # a 0-CPU task still runs while every CPU is taken
    assert nbray.get(free.remote(), timeout=GET_TIMEOUT) == "ran"
    release.touch()
    assert nbray.get(held, timeout=GET_TIMEOUT) == 2
    all_resources_free()

    # more CPUs than the cluster has: fails at once instead of waiting forever
    with pytest.raises(UnschedulableError, match="CPU"):
        nbray.get(hold.options(num_cpus=3).remote("x", "y"), timeout=GET_TIMEOUT)


def test_custom_resources(cluster_factory: Callable[..., Any], tmp_path: Path) -> None:
    cluster_factory(num_cpus=2, resources={"x": 1})
    assert nbray.cluster_resources() == {"CPU": 2.0, "x": 1.0}

    @nbray.remote(resources={"x": 1})
    def needs_x(started: str, release: str) -> str:
        Path(started).touch()
        wait_for_file(release)
        return "had x"

    started, release = tmp_path / "started", tmp_path / "release"
    ref = needs_x.remote(str(started), str(release))
    wait_until(started.exists)
    assert nbray.available_resources() == {"CPU": 1.0}  # x is all taken
    release.touch()
    assert nbray.get(ref, timeout=GET_TIMEOUT) == "had x"
    all_resources_free()

    for too_much in ({"x": 2}, {"y": 1}):
        with pytest.raises(UnschedulableError, match="in total") as info:
            nbray.get(needs_x.options(resources=too_much).remote("s", "r"), timeout=GET_TIMEOUT)
        assert next(iter(too_much)) in str(info.value)


# --- ObjectRef arguments, chains, nesting --------------------------------------------------


def test_top_level_refs_are_resolved_nested_refs_stay_refs(cluster: nbray.ClusterContext) -> None:
    @nbray.remote
    def inspect(value: Any, nested: list[Any], *, kw: Any) -> dict[str, Any]:
        return {
            "value": value,
            "kw": kw,
            "nested_is_ref": [isinstance(r, nbray.ObjectRef) for r in nested],
            "nested_values": nbray.get(nested),
        }

    a, b = nbray.put(10), nbray.put("twenty")
    out = nbray.get(inspect.remote(a, [a, b], kw=b), timeout=GET_TIMEOUT)
    assert out == {
        "value": 10,
        "kw": "twenty",
        "nested_is_ref": [True, True],
        "nested_values": [10, "twenty"],
    }


def test_chained_tasks(cluster: nbray.ClusterContext) -> None:
    @nbray.remote
    def inc(x: int) -> int:
        return x + 1

    @nbray.remote
    def add(x: int, y: int) -> int:
        return x + y

    ref = inc.remote(0)
    for _ in range(9):
        ref = inc.remote(ref)
    assert nbray.get(ref, timeout=GET_TIMEOUT) == 10
    assert nbray.get(add.remote(inc.remote(1), y=inc.remote(2)), timeout=GET_TIMEOUT) == 5


@nbray.remote
def tree(depth: int) -> int:
    """Leaves count 1; each inner node submits two children and waits for them."""
    if depth == 0:
        return 1
    return sum(nbray.get([tree.remote(depth - 1) for _ in range(2)]))


def test_nested_tasks(cluster: nbray.ClusterContext) -> None:
    @nbray.remote
    def square(x: int) -> int:
        return x * x

    @nbray.remote
    def sum_of_squares(n: int) -> int:
        return sum(nbray.get([square.remote(i) for i in range(n)]))

    assert nbray.get(sum_of_squares.remote(5), timeout=GET_TIMEOUT) == 30


def test_nested_fan_out_on_one_cpu_does_not_deadlock(
    cluster_factory: Callable[..., Any],
) -> None:
    cluster_factory(num_cpus=1)
    # 63 tasks, 31 of them blocked in get at some point: each lends its CPU back
    assert nbray.get(tree.remote(5), timeout=60) == 32
    all_resources_free()


def test_nested_fan_out_ten_levels_deep_on_one_cpu(
    cluster_factory: Callable[..., Any],
) -> None:
    ctx = cluster_factory(num_cpus=1)
    # 2,047 tasks, 1,023 of them blocking: breadth-first this needs a worker per blocked
    # task (more than the 256-worker cap: a deadlock); depth-first it needs a handful
    assert nbray.get(tree.remote(10), timeout=120) == 1024
    all_resources_free()
    head = psutil.Process(int(Path(ctx.session_dir, "head.pid").read_text()))
    assert len(head.children(recursive=True)) < 64


# --- errors ----------------------------------------------------------------------------------


@nbray.remote
def fails(message: str) -> None:
    raise ValueError(message)


def test_exception_is_the_original_class_and_a_task_error(cluster: nbray.ClusterContext) -> None:
    ref = fails.remote("bad input 42")
    with pytest.raises(ValueError, match="bad input 42") as info:
        nbray.get(ref, timeout=GET_TIMEOUT)
    err = info.value
    assert isinstance(err, TaskError) and isinstance(err, NbrayError)
    assert err.function_name == "fails"
    assert isinstance(err.cause, ValueError) and err.cause.args == ("bad input 42",)
    assert err.args == ("bad input 42",)
    assert isinstance(err.__cause__, RemoteTraceback)
    remote_tb = err.__cause__.tb
    assert remote_tb == err.remote_traceback
    assert "Traceback (most recent call last)" in remote_tb
    assert ", in fails\n" in remote_tb  # the frame of the task function itself
    assert "ValueError: bad input 42" in remote_tb
    # the same error again on a second get
    with pytest.raises(ValueError, match="bad input 42"):
        nbray.get(ref, timeout=GET_TIMEOUT)


def test_custom_exception_class(cluster: nbray.ClusterContext) -> None:
    @nbray.remote
    def custom() -> None:
        raise CustomError(7, "seven")

    with pytest.raises(CustomError) as info:
        nbray.get(custom.remote(), timeout=GET_TIMEOUT)
    err = info.value
    assert isinstance(err, TaskError)
    assert type(err.cause) is CustomError
    assert (err.cause.code, err.cause.detail) == (7, "seven")
    # as in Ray, the cause's attributes read through the error itself
    assert (err.code, err.detail) == (7, "seven")
    assert "CustomError" in str(err) and "CustomError: (7, 'seven')" in err.remote_traceback


def test_exception_class_that_cannot_be_subclassed_gives_task_error(
    cluster: nbray.ClusterContext,
) -> None:
    @nbray.remote
    def final() -> None:
        raise FinalError("no subclasses")

    with pytest.raises(TaskError) as info:
        nbray.get(final.remote(), timeout=GET_TIMEOUT)
    err = info.value
    assert type(err) is TaskError
    assert not isinstance(err, FinalError)
    assert type(err.cause) is FinalError and err.cause.args == ("no subclasses",)
    assert "FinalError: no subclasses" in err.remote_traceback


def test_failed_dependency_propagates_to_downstream_tasks(
    cluster: nbray.ClusterContext, tmp_path: Path
) -> None:
    ran = tmp_path / "downstream-ran"

    @nbray.remote
    def downstream(x: Any, marker: str) -> Any:
        Path(marker).touch()
        return x

    upstream = fails.remote("upstream broke")
    middle = downstream.remote(upstream, str(ran))
    last = downstream.remote(middle, str(ran))
    for ref in (middle, last):
        with pytest.raises(ValueError, match="upstream broke") as info:
            nbray.get(ref, timeout=GET_TIMEOUT)
        assert isinstance(info.value, TaskError)
        assert info.value.function_name == "fails"
    assert not ran.exists()  # the downstream tasks never ran


def test_unpicklable_argument_fails_at_remote(cluster: nbray.ClusterContext) -> None:
    @nbray.remote
    def use(*args: Any, **kwargs: Any) -> int:
        return len(args) + len(kwargs)

    with pytest.raises(SerializationError, match="argument 1") as info:
        use.remote(1, threading.Lock())
    assert isinstance(info.value, TypeError)
    assert "lock" in str(info.value)
    with pytest.raises(SerializationError, match="argument guard="):
        use.remote(1, guard=threading.Lock())
    assert nbray.get(use.remote(1, 2, k=3), timeout=GET_TIMEOUT) == 3  # the cluster is fine


def test_unpicklable_return_value_fails_at_get(cluster: nbray.ClusterContext) -> None:
    @nbray.remote
    def make_lock() -> Any:
        return threading.Lock()

    with pytest.raises(SerializationError, match=r"the result of \S*make_lock") as info:
        nbray.get(make_lock.remote(), timeout=GET_TIMEOUT)
    assert isinstance(info.value, TaskError) and isinstance(info.value, TypeError)


def test_function_the_worker_cannot_load_fails_as_a_task_error(
    cluster: nbray.ClusterContext, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a module only the driver can import: the worker cannot unpickle a function that
    # refers to it by reference
    (tmp_path / "driver_only_mod.py").write_text("class Thing:\n    value = 5\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import driver_only_mod  # type: ignore[import-not-found]

    try:

        @nbray.remote
        def uses_thing() -> int:
            return int(driver_only_mod.Thing.value)

        for _ in range(2):  # the second call meets the same error, not a stale cache
            with pytest.raises(ModuleNotFoundError, match="driver_only_mod") as info:
                nbray.get(uses_thing.remote(), timeout=GET_TIMEOUT)
            assert isinstance(info.value, TaskError)
    finally:
        sys.modules.pop("driver_only_mod", None)
    all_resources_free()


# --- worker crashes and retries ----------------------------------------------------------------


def test_sigkilled_worker_is_retried(cluster: nbray.ClusterContext, tmp_path: Path) -> None:
    log = tmp_path / "attempts"

    @nbray.remote
    def crash_once(path: str) -> int:
        if count_attempt(path) == 1:
            os.kill(os.getpid(), signal.SIGKILL)
        return os.getpid()

    pid = nbray.get(crash_once.remote(str(log)), timeout=GET_TIMEOUT)
    first, second = attempts(log)
    assert pid == second != first
    wait_until(lambda: process_gone(first))
    all_resources_free()


def test_sigkill_without_retries_raises_worker_crashed(
    cluster: nbray.ClusterContext, tmp_path: Path
) -> None:
    log = tmp_path / "attempts"

    @nbray.remote(max_retries=0)
    def crash(path: str) -> None:
        count_attempt(path)
        os.kill(os.getpid(), signal.SIGKILL)

    with pytest.raises(WorkerCrashedError) as info:
        nbray.get(crash.remote(str(log)), timeout=GET_TIMEOUT)
    err = info.value
    assert err.exit_code == -9
    assert "SIGKILL" in str(err) and "crash" in str(err)
    assert len(attempts(log)) == 1
    all_resources_free()


def test_os_exit_code_is_reported(cluster: nbray.ClusterContext, tmp_path: Path) -> None:
    log = tmp_path / "attempts"

    @nbray.remote
    def leave(path: str) -> None:
        count_attempt(path)
        os._exit(3)

    with pytest.raises(WorkerCrashedError, match="exit code 3") as info:
        nbray.get(leave.options(max_retries=2).remote(str(log)), timeout=GET_TIMEOUT)
    assert info.value.exit_code == 3
    assert "3 attempt" in str(info.value)
    assert len(attempts(log)) == 3  # max_retries=2: three attempts in all
    all_resources_free()
    # the pool is whole again: tasks still run
    assert nbray.get([combine.remote(i, c=0) for i in range(2)], timeout=GET_TIMEOUT) == [
        (0, 2, (), 0, []),
        (1, 2, (), 0, []),
    ]


def test_application_exceptions_are_not_retried_by_default(
    cluster: nbray.ClusterContext, tmp_path: Path
) -> None:
    log = tmp_path / "attempts"

    @nbray.remote(max_retries=3)
    def flaky(path: str) -> None:
        raise KeyError(count_attempt(path))

    with pytest.raises(KeyError):
        nbray.get(flaky.remote(str(log)), timeout=GET_TIMEOUT)
    assert len(attempts(log)) == 1


def test_retry_exceptions_true(cluster: nbray.ClusterContext, tmp_path: Path) -> None:
    @nbray.remote(retry_exceptions=True, max_retries=3)
    def flaky(path: str, succeed_at: int) -> int:
        n = count_attempt(path)
        if n < succeed_at:
            raise RuntimeError(f"attempt {n}")
        return n

    assert nbray.get(flaky.remote(str(tmp_path / "a"), 3), timeout=GET_TIMEOUT) == 3
    # retries run out: the last attempt's exception is raised
    with pytest.raises(RuntimeError, match="attempt 2"):
        nbray.get(flaky.options(max_retries=1).remote(str(tmp_path / "b"), 10), timeout=GET_TIMEOUT)
    assert len(attempts(tmp_path / "b")) == 2
    all_resources_free()


def test_retry_exceptions_list_of_classes(cluster: nbray.ClusterContext, tmp_path: Path) -> None:
    @nbray.remote(retry_exceptions=[KeyError, CustomError], max_retries=2)
    def flaky(path: str, exc: BaseException) -> None:
        count_attempt(path)
        raise exc

    with pytest.raises(KeyError):
        nbray.get(flaky.remote(str(tmp_path / "key"), KeyError("k")), timeout=GET_TIMEOUT)
    assert len(attempts(tmp_path / "key")) == 3
    with pytest.raises(CustomError):
        nbray.get(flaky.remote(str(tmp_path / "custom"), CustomError(1, "c")), timeout=GET_TIMEOUT)
    assert len(attempts(tmp_path / "custom")) == 3
    with pytest.raises(ValueError):  # not in the list: no retry
        nbray.get(flaky.remote(str(tmp_path / "value"), ValueError("v")), timeout=GET_TIMEOUT)
    assert len(attempts(tmp_path / "value")) == 1


# --- get, wait, cancel -------------------------------------------------------------------------


@nbray.remote
def blocker(started: str, release: str, value: Any = "released") -> Any:
    Path(started).touch()
    wait_for_file(release)
    return value


def test_get_timeout(cluster: nbray.ClusterContext, tmp_path: Path) -> None:
    started, release = tmp_path / "started", tmp_path / "release"
    ref = blocker.remote(str(started), str(release))
    with pytest.raises(GetTimeoutError) as info:
        nbray.get(ref, timeout=0.2)
    assert isinstance(info.value, TimeoutError)
    with pytest.raises(GetTimeoutError):
        nbray.get([nbray.put(1), ref], timeout=0)
    release.touch()
    assert nbray.get(ref, timeout=GET_TIMEOUT) == "released"  # the task kept running
    assert nbray.get(ref, timeout=0) == "released"
    with pytest.raises(ValueError):
        nbray.get(ref, timeout=-1)
    with pytest.raises(TypeError):
        nbray.get(42)  # type: ignore[call-overload]
    with pytest.raises(TypeError):
        nbray.get([ref, 42])
    assert nbray.get([]) == []


def test_wait_returns_ready_and_not_ready_in_input_order(
    cluster: nbray.ClusterContext, tmp_path: Path
) -> None:
    started, release = tmp_path / "started", tmp_path / "release"
    a = nbray.put("a")
    slow = blocker.remote(str(started), str(release))
    b = nbray.put("b")
    refs = [a, slow, b]

    assert nbray.wait(refs, num_returns=2) == ([a, b], [slow])
    assert nbray.wait(refs, num_returns=3, timeout=0.3) == ([a, b], [slow])
    ready, not_ready = nbray.wait([b, a])  # num_returns=1 by default: one of the two
    assert len(ready) == len(not_ready) == 1 and set(ready + not_ready) == {a, b}
    assert nbray.wait([]) == ([], [])

    release.touch()
    assert nbray.wait(refs, num_returns=3, timeout=GET_TIMEOUT) == (refs, [])


def test_wait_argument_validation(cluster: nbray.ClusterContext) -> None:
    a, b = nbray.put(1), nbray.put(2)
    with pytest.raises(TypeError):
        nbray.wait(a)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        nbray.wait([a, "b"])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="more than once"):
        nbray.wait([a, a])
    with pytest.raises(ValueError, match="num_returns"):
        nbray.wait([a, b], num_returns=3)
    with pytest.raises(ValueError, match="num_returns"):
        nbray.wait([a, b], num_returns=-1)
    with pytest.raises(ValueError, match="timeout"):
        nbray.wait([a, b], timeout=-1)


def test_cancel_queued_task(cluster_factory: Callable[..., Any], tmp_path: Path) -> None:
    cluster_factory(num_cpus=1)
    started, release, ran = tmp_path / "started", tmp_path / "release", tmp_path / "ran"
    busy = blocker.remote(str(started), str(release))
    wait_until(started.exists)
    queued = blocker.remote(str(ran), str(release), "queued ran")
    nbray.cancel(queued)
    with pytest.raises(TaskCancelledError):
        nbray.get(queued, timeout=GET_TIMEOUT)
    release.touch()
    assert nbray.get(busy, timeout=GET_TIMEOUT) == "released"
    # the cancelled task never ran: a task queued after it (FIFO on one CPU) has finished
    assert nbray.get(blocker.remote(str(tmp_path / "after"), str(release), 1)) == 1
    assert not ran.exists()
    all_resources_free()


def test_cancel_running_task(cluster: nbray.ClusterContext, tmp_path: Path) -> None:
    started = tmp_path / "started"

    @nbray.remote
    def sleeper(path: str) -> str:
        count_attempt(path)
        time.sleep(60)
        return "slept"

    ref = sleeper.remote(str(started))
    wait_until(started.exists)
    nbray.cancel(ref)
    with pytest.raises(TaskCancelledError):
        nbray.get(ref, timeout=GET_TIMEOUT)
    all_resources_free()
    (pid,) = attempts(started)
    assert psutil.pid_exists(pid)  # a polite cancel leaves the worker alive
    status = session.get_engine().status()  # type: ignore[union-attr]
    assert pid in {int(p) for p in status["worker_pids"].values()}
    assert nbray.get(combine.remote(1, c=1), timeout=GET_TIMEOUT) == (1, 2, (), 1, [])


def test_force_cancel_kills_the_worker_and_does_not_retry(
    cluster: nbray.ClusterContext, tmp_path: Path, events: Events
) -> None:
    log = tmp_path / "attempts"

    @nbray.remote(max_retries=3)
    def stubborn(path: str) -> str:
        count_attempt(path)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # ignores a polite cancel
        time.sleep(60)
        return "done"

    ref = stubborn.remote(str(log))
    wait_until(log.exists)
    (pid,) = attempts(log)
    nbray.cancel(ref, force=True)
    with pytest.raises(TaskCancelledError):
        nbray.get(ref, timeout=GET_TIMEOUT)
    wait_until(lambda: process_gone(pid))
    all_resources_free()
    assert attempts(log) == [pid]  # not retried
    task_id = events.task_id_of(ref)
    assert events.states(task_id) == ["PENDING", "RUNNING", "CANCELLED"]


def test_recursive_cancel_cancels_children(
    cluster: nbray.ClusterContext, tmp_path: Path, events: Events
) -> None:
    @nbray.remote
    def child(path: str) -> str:
        count_attempt(path)
        time.sleep(60)
        return "child done"

    @nbray.remote
    def parent(path: str) -> str:
        return str(nbray.get(child.remote(path)))

    log = tmp_path / "child"
    ref = parent.remote(str(log))
    wait_until(log.exists)
    nbray.cancel(ref)
    with pytest.raises(TaskCancelledError):
        nbray.get(ref, timeout=GET_TIMEOUT)
    # the child sleeping 60 s would hold a CPU: it was cancelled too
    all_resources_free()
    cancelled = wait_until(
        lambda: [
            e
            for e in events.snapshot()
            if e.get("type") == "task"
            and e["name"].endswith("<locals>.child")
            and e["state"] == "CANCELLED"
        ]
    )
    assert len(cancelled) == 1
    assert cancelled[0]["parent"] == events.task_id_of(ref)


def test_non_recursive_cancel_leaves_children_running(
    cluster: nbray.ClusterContext, tmp_path: Path
) -> None:
    started, release, done = tmp_path / "started", tmp_path / "release", tmp_path / "done"

    @nbray.remote
    def child() -> None:
        Path(started).touch()
        wait_for_file(release)
        Path(done).touch()

    @nbray.remote
    def parent() -> None:
        nbray.get(child.remote())

    ref = parent.remote()
    wait_until(started.exists)
    nbray.cancel(ref, recursive=False)
    with pytest.raises(TaskCancelledError):
        nbray.get(ref, timeout=GET_TIMEOUT)
    release.touch()
    wait_until(done.exists)  # the child ran to its end
    all_resources_free()


# --- code shipping and output ----------------------------------------------------------------


def test_redefined_functions_in_main_run_the_new_code() -> None:
    result = run_python(
        """
        import nbray

        nbray.init(num_cpus=1)
        SCALE = 1
        OFFSET = 10

        def helper(x):
            return x + OFFSET

        @nbray.remote
        def f(x):
            return helper(x) * SCALE

        print("A", nbray.get(f.remote(1)))

        @nbray.remote
        def f(x):
            return helper(x) * SCALE * 2

        print("B", nbray.get(f.remote(1)))

        def helper(x):
            return x - OFFSET

        print("C", nbray.get(f.remote(1)))
        SCALE = 100
        print("D", nbray.get(f.remote(1)))
        OFFSET = 20  # read by helper only
        print("E", nbray.get(f.remote(1)))

        @nbray.remote
        def squares(xs):
            return [helper(x) for x in xs]  # helper is named in a nested code object

        print("F", nbray.get(squares.remote([1, 2])))

        def helper(x):
            return x * 1000

        print("G", nbray.get(squares.remote([1, 2])))

        def g(x):
            return x + 1

        old_g = nbray.remote(g)

        def g(x):
            return x + 2

        print("H", nbray.get(old_g.remote(0)), nbray.get(nbray.remote(g).remote(0)))
        nbray.shutdown()
        """,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "A 11",
        "B 22",
        "C -18",
        "D -1800",
        "E -3800",
        "F [-19, -18]",
        "G [1000, 2000]",
        "H 1 2",
    ]


def test_task_output_reaches_the_driver_with_a_prefix() -> None:
    result = run_python(
        """
        import os, sys
        import nbray

        nbray.init(num_cpus=1)

        @nbray.remote
        def hello(n):
            print("hello from task", n)
            print("to stderr", file=sys.stderr)
            sys.stdout.write("two\\nli")
            print("nes")
            sys.stdout.write("partial line")
            return os.getpid()

        pid = nbray.get(hello.remote(7))
        print("PID", pid)
        print("NAMED", nbray.get(hello.options(name="greeter").remote(8)))
        nbray.shutdown()
        """,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    pid = int(next(line for line in lines if line.startswith("PID "))[4:])
    assert lines == [
        f"(hello pid={pid}) hello from task 7",
        f"(hello pid={pid}) two",
        f"(hello pid={pid}) lines",
        f"(hello pid={pid}) partial line",
        f"PID {pid}",
        f"(greeter pid={pid}) hello from task 8",
        f"(greeter pid={pid}) two",
        f"(greeter pid={pid}) lines",
        f"(greeter pid={pid}) partial line",
        f"NAMED {pid}",
    ]
    assert result.stderr.splitlines() == [
        f"(hello pid={pid}) to stderr",
        f"(greeter pid={pid}) to stderr",
    ]


# --- events ------------------------------------------------------------------------------------


def test_task_events(cluster: nbray.ClusterContext, tmp_path: Path, events: Events) -> None:
    @nbray.remote
    def ok() -> int:
        return os.getpid()

    ref = ok.remote()
    pid = nbray.get(ref, timeout=GET_TIMEOUT)
    tid = events.task_id_of(ref)
    wait_until(lambda: "FINISHED" in events.states(tid))
    assert events.states(tid) == ["PENDING", "RUNNING", "FINISHED"]
    submitted, running, finished = (events.of(tid, s) for s in ("PENDING", "RUNNING", "FINISHED"))
    assert submitted["name"] == running["name"] == "test_task_events.<locals>.ok"
    assert submitted["returns"] == [ref.hex()] and submitted["resources"] == {"CPU": 1.0}
    assert running["pid"] == pid and running["worker_id"] > 0
    assert finished["worker_id"] == running["worker_id"]

    bad = fails.remote("for the event")
    with pytest.raises(ValueError):
        nbray.get(bad, timeout=GET_TIMEOUT)
    bad_id = events.task_id_of(bad)
    wait_until(lambda: "FAILED" in events.states(bad_id))
    assert events.states(bad_id) == ["PENDING", "RUNNING", "FAILED"]
    assert "for the event" in events.of(bad_id, "FAILED")["error"]

    @nbray.remote
    def crash_once(path: str) -> int:
        if count_attempt(path) == 1:
            os.kill(os.getpid(), signal.SIGKILL)
        return 1

    retried = crash_once.remote(str(tmp_path / "attempts"))
    assert nbray.get(retried, timeout=GET_TIMEOUT) == 1
    rid = events.task_id_of(retried)
    wait_until(lambda: "FINISHED" in events.states(rid))
    assert events.states(rid) == ["PENDING", "RUNNING", "RETRYING", "RUNNING", "FINISHED"]
    assert events.of(rid, "RETRYING")["attempt"] == 2
    first_pid, second_pid = attempts(tmp_path / "attempts")
    assert [e["pid"] for e in events.snapshot() if e.get("task_id") == rid and "pid" in e] == [
        first_pid,
        second_pid,
    ]

    cancelled = blocker.remote(str(tmp_path / "s"), str(tmp_path / "never"))
    wait_until((tmp_path / "s").exists)
    nbray.cancel(cancelled)
    with pytest.raises(TaskCancelledError):
        nbray.get(cancelled, timeout=GET_TIMEOUT)
    cid = events.task_id_of(cancelled)
    wait_until(lambda: "CANCELLED" in events.states(cid))
    assert events.states(cid) == ["PENDING", "RUNNING", "CANCELLED"]


def test_tasks_that_ran_unwatched_are_replayed_to_a_later_subscriber(
    cluster: nbray.ClusterContext, tmp_path: Path
) -> None:
    @nbray.remote
    def ok() -> int:
        return os.getpid()

    done = ok.remote()
    pid = nbray.get(done, timeout=GET_TIMEOUT)
    bad = fails.remote("while nobody watched")
    with pytest.raises(ValueError):
        nbray.get(bad, timeout=GET_TIMEOUT)
    running = blocker.remote(str(tmp_path / "s"), str(tmp_path / "go"))
    wait_until((tmp_path / "s").exists)

    late = Events()
    engine = session.get_engine()
    assert engine is not None
    unsubscribe = engine.subscribe(late)  # nobody listened before: the head replays
    try:
        tid, bad_id, run_id = (late.task_id_of(r) for r in (done, bad, running))
        assert late.states(tid) == ["PENDING", "RUNNING", "FINISHED"]
        assert late.of(tid, "RUNNING")["pid"] == pid
        assert late.of(tid, "PENDING")["returns"] == [done.hex()]
        assert late.states(bad_id) == ["PENDING", "RUNNING", "FAILED"]
        assert "while nobody watched" in late.of(bad_id, "FAILED")["error"]
        assert late.states(run_id) == ["PENDING", "RUNNING"]
        times = [e["time"] for e in late.snapshot() if e.get("type") == "task"]
        assert times == sorted(times)
        (tmp_path / "go").write_text("1")
        assert nbray.get(running, timeout=GET_TIMEOUT) == "released"
        wait_until(lambda: late.states(run_id) == ["PENDING", "RUNNING", "FINISHED"])
    finally:
        unsubscribe()


def test_metrics_events(cluster: nbray.ClusterContext, events: Events) -> None:
    metrics = wait_until(
        lambda: [e for e in events.snapshot() if e.get("type") == "metrics"][1:] or None,
        timeout=10.0,
    )
    status = session.get_engine().status()  # type: ignore[union-attr]
    worker_pids = {int(p) for p in status["worker_pids"].values()}
    last = metrics[-1]
    assert last["num_cpus"] == psutil.cpu_count()
    assert last["resources_total"] == {"CPU": 2.0}
    assert len(last["cpu_percent_per_core"]) == psutil.cpu_count()
    assert last["memory_total"] == psutil.virtual_memory().total
    assert {w["pid"] for w in last["workers"].values()} == worker_pids
    assert len(worker_pids) == 2
    for w in last["workers"].values():
        assert w["state"] == "IDLE" and w["rss"] > 0


def test_unsubscribe_stops_delivery(cluster: nbray.ClusterContext) -> None:
    engine = session.get_engine()
    assert engine is not None
    first, second = Events(), Events()
    unsubscribe_first = engine.subscribe(first)
    unsubscribe_second = engine.subscribe(second)
    try:
        ref = combine.remote(1, c=2)
        nbray.get(ref, timeout=GET_TIMEOUT)
        wait_until(lambda: "FINISHED" in first.states(first.task_id_of(ref)))
        unsubscribe_first()
        ref2 = combine.remote(2, c=2)
        nbray.get(ref2, timeout=GET_TIMEOUT)
        tid2 = second.task_id_of(ref2)
        wait_until(lambda: "FINISHED" in second.states(tid2))
        assert first.states(tid2) == []
    finally:
        unsubscribe_second()


def test_tasks_import_modules_from_the_drivers_path(tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "helpermod_nbray.py").write_text("VALUE = 41\n\ndef bump(x):\n    return x + 1\n")
    work = tmp_path / "work"
    work.mkdir()
    (work / "data.txt").write_text("from the driver's directory")
    result = run_python(
        f"""
        import sys
        sys.path.insert(0, {str(lib)!r})
        import helpermod_nbray
        import nbray
        nbray.init(num_cpus=1)

        @nbray.remote
        def f():
            with open("data.txt") as fh:
                return helpermod_nbray.bump(helpermod_nbray.VALUE), fh.read()

        print(nbray.get(f.remote(), timeout=30))
        nbray.shutdown()
        """,
        cwd=str(work),
    )
    assert result.returncode == 0, result.stderr
    assert '(42, "from the driver\'s directory")' in result.stdout


def test_unpicklable_capture_names_the_variable_first_without_nbray_frames(
    cluster: nbray.ClusterContext, tmp_path: Path
) -> None:
    log = open(tmp_path / "log.txt", "w")
    try:

        @nbray.remote
        def write_log(x: int) -> None:
            log.write(str(x))

        with pytest.raises(SerializationError) as info:
            write_log.remote(1)
    finally:
        log.close()
    message = str(info.value)
    assert message.startswith(
        f"remote function {write_log._name} captures a value that cannot be pickled: "
        f"write_log -> log -> <file {tmp_path / 'log.txt'} (w)>"
    )
    assert info.value.__cause__ is None and info.value.__suppress_context__
    frames = [f.filename for f in traceback.extract_tb(info.value.__traceback__)]
    assert [f for f in frames if "/nbray/" in f] == [frames[-1]]  # only the .remote() call
    assert frames[-1].endswith("remote_function.py")


def test_get_says_which_item_is_not_a_ref(cluster: nbray.ClusterContext) -> None:
    ref = nbray.put(1)
    with pytest.raises(TypeError, match=r"item 1 of the list is int 5, not an ObjectRef"):
        nbray.get([ref, 5])
    with pytest.raises(TypeError, match=r"the argument is str 'x'"):
        nbray.cancel("x")  # type: ignore[arg-type]
