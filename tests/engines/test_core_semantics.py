"""Ray's core semantics held by every engine (issue 15), modelled on what Ray documents:
``get`` raises at the first failed ref, nested errors keep their class, arguments bound at
``.remote()``, the user's class visible through the actor class, the actor lifecycle API,
option checks, the runtime context, concurrency groups and Ray's exception names.

Functions used by tasks are self-contained (imports inside): on Ray they are pickled by
value and run in workers that cannot import this test module.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest
from nbray_testing import wait_until

import nbray
from nbray import exceptions


@nbray.remote
def wait_for_file(path: str) -> str:
    import time
    from pathlib import Path

    deadline = time.monotonic() + 60
    while not Path(path).exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    return "released"


@nbray.remote(max_retries=0)
def fail(message: str) -> None:
    raise ValueError(message)


@nbray.remote(max_retries=0)
def divide_by_zero() -> float:
    return 1 / 0


@nbray.remote(max_retries=0)
def call_divide_by_zero() -> float:
    import nbray

    @nbray.remote(max_retries=0)
    def inner_divide() -> float:
        return 1 / 0

    return float(nbray.get(inner_divide.remote()))


@nbray.remote
def add(a: int, b: int = 1, *, c: int = 0) -> int:
    return a + b + c


@nbray.remote
def context_in_task() -> dict[str, Any]:
    import nbray

    ctx = nbray.get_runtime_context()
    return {
        "job": ctx.get_job_id(),
        "task": ctx.get_task_id(),
        "actor": ctx.get_actor_id(),
        "node": ctx.get_node_id(),
        "worker": ctx.get_worker_id(),
        "resources": ctx.get_assigned_resources(),
        "gpus": ctx.get_accelerator_ids(),
    }


@nbray.remote
class Counter:
    """A counter."""

    LIMIT = 10

    def __init__(self, start: int) -> None:
        self.n = start

    @classmethod
    def describe(cls) -> str:
        return f"{cls.__name__} up to {cls.LIMIT}"

    @staticmethod
    def double(x: int) -> int:
        return 2 * x

    def incr(self, by: int = 1) -> int:
        self.n += by
        return self.n

    @nbray.method(num_returns=2)
    def pair(self) -> tuple[int, int]:
        return self.n, -self.n

    def context(self) -> dict[str, Any]:
        import nbray

        ctx = nbray.get_runtime_context()
        return {
            "actor": ctx.get_actor_id(),
            "task": ctx.get_task_id(),
            "name": ctx.get_actor_name(),
            "resources": ctx.get_assigned_resources(),
            "restarted": ctx.was_current_actor_reconstructed,
            "me": ctx.current_actor,
        }

    def stop(self) -> None:
        import nbray

        nbray.actor.exit_actor()


# --- get and errors ------------------------------------------------------------------------


def test_get_raises_at_the_first_failed_ref(engine: str, tmp_path: Path) -> None:
    # the code after the error is what releases the slow task: waiting for every ref
    # first would never get there (GetTimeoutError instead of the ValueError)
    release = tmp_path / "release"
    slow = wait_for_file.remote(str(release))
    with pytest.raises(ValueError, match="first failure"):
        nbray.get([slow, fail.remote("first failure")], timeout=45)
    release.write_text("go")
    assert nbray.get(slow, timeout=60) == "released"


def test_nested_task_error_keeps_its_class_and_both_tracebacks(engine: str) -> None:
    with pytest.raises(ZeroDivisionError) as info:
        nbray.get(call_divide_by_zero.remote(), timeout=60)
    err = info.value
    assert isinstance(err, exceptions.RayTaskError)
    assert isinstance(err, nbray.exceptions.TaskError)
    tb = err.remote_traceback
    assert "inner_divide" in tb and "call_divide_by_zero" in tb
    assert "1 / 0" in tb


@nbray.remote(max_retries=0)
def raise_plain_exception() -> None:
    raise Exception("plain")


def test_as_instanceof_cause_and_a_plain_exception(engine: str) -> None:
    with pytest.raises(exceptions.RayTaskError) as info:
        nbray.get(divide_by_zero.remote(), timeout=60)
    assert isinstance(info.value.as_instanceof_cause(), ZeroDivisionError)
    with pytest.raises(exceptions.RayTaskError) as plain:
        nbray.get(raise_plain_exception.remote(), timeout=60)
    # the cause's class is one TaskError already derives from: no class is made for it
    assert type(plain.value).__name__ in ("TaskError", "RayTaskError")
    assert isinstance(plain.value.as_instanceof_cause(), Exception)


def test_exception_names_are_ray_s(engine: str) -> None:
    e = exceptions
    assert e.RayError is e.NbrayError and e.RayTaskError is e.TaskError
    assert issubclass(e.ActorDiedError, e.RayActorError)
    assert issubclass(e.ActorUnavailableError, e.RayActorError)
    assert issubclass(e.OwnerDiedError, e.ObjectLostError)
    assert issubclass(e.GetTimeoutError, TimeoutError)
    assert issubclass(e.ActorAlreadyExistsError, ValueError)
    for name in (
        "TaskCancelledError",
        "WorkerCrashedError",
        "OutOfMemoryError",
        "RaySystemError",
        "ObjectStoreFullError",
        "PendingCallsLimitExceeded",
        "NodeDiedError",
        "TaskUnschedulableError",
        "ActorUnschedulableError",
        "ObjectReconstructionFailedError",
        "ObjectFetchTimedOutError",
    ):
        assert issubclass(getattr(e, name), e.RayError), name
    never = wait_for_file.remote("/nonexistent/never")
    with pytest.raises(e.GetTimeoutError):
        nbray.get(never, timeout=0.05)
    nbray.cancel(never, force=True)  # its CPU is the next tests'


# --- arguments and options -------------------------------------------------------------------


def test_arguments_are_bound_at_remote(engine: str) -> None:
    assert nbray.get(add.remote(1, 2, c=3)) == 6
    with pytest.raises(TypeError, match="missing a required argument: 'a'"):
        add.remote()
    with pytest.raises(TypeError, match="too many positional arguments"):
        add.remote(1, 2, 3)
    with pytest.raises(TypeError, match="unexpected keyword argument 'd'"):
        add.options(num_cpus=1).remote(1, d=4)
    with pytest.raises(TypeError, match="missing a required argument: 'start'"):
        Counter.remote()
    c = Counter.remote(0)
    with pytest.raises(TypeError, match="too many positional arguments"):
        c.incr.remote(1, 2)
    assert nbray.get(c.incr.remote(by=5)) == 5


@nbray.remote
def call_badly(incr: Any) -> str:
    try:
        incr.remote(1, 2)
    except TypeError as exc:
        return str(exc)
    return "accepted"


@nbray.remote
def relay(boxed: list[Any]) -> str:
    import nbray

    return str(nbray.get(call_badly.remote(boxed[0])))


def test_a_handle_in_another_process_binds_arguments_too(engine: str) -> None:
    c = Counter.remote(0)
    assert "too many positional arguments" in nbray.get(call_badly.remote(c.incr), timeout=60)
    # and after a second journey (the handle re-pickled in a worker)
    assert "too many positional arguments" in nbray.get(relay.remote([c.incr]), timeout=60)


def test_underscore_remote_takes_args_kwargs_and_options(engine: str) -> None:
    assert nbray.get(add._remote(args=[1], kwargs={"b": 2}, num_cpus=1)) == 3
    c = Counter._remote(args=[4], kwargs={}, max_restarts=0)
    assert nbray.get(c.incr._remote(args=[1])) == 5
    assert nbray.ObjectID is nbray.ObjectRef


def test_options_are_type_checked_as_ray_does(engine: str) -> None:
    with pytest.raises(TypeError, match="max_retries"):
        add.options(max_retries=1.5)
    with pytest.raises(ValueError, match="num_returns"):
        add.options(num_returns=-1)
    with pytest.raises(TypeError, match="num_cpus"):
        add.options(num_cpus="2")
    with pytest.raises(ValueError, match="cannot be negative"):
        nbray.remote(num_gpus=-1)(lambda: None)
    with pytest.raises(ValueError, match="max_calls"):
        add.options(max_calls=2)
    with pytest.raises(TypeError, match="get_if_exists"):
        Counter.options(get_if_exists="yes")
    with pytest.raises(ValueError, match="max_restarts"):
        Counter.options(max_restarts=-2)
    # None means the default, as in Ray
    assert nbray.get(add.options(num_cpus=None, max_retries=None).remote(1)) == 2


# --- the actor class and its handles ---------------------------------------------------------


def test_actor_class_keeps_the_user_s_class_visible(engine: str) -> None:
    assert Counter.LIMIT == 10
    assert Counter.describe() == "Counter up to 10"
    assert Counter.double(4) == 8
    assert Counter.__doc__ == "A counter."
    with pytest.raises(AttributeError, match="no attribute 'missing'"):
        _ = Counter.missing
    with pytest.raises(AttributeError, match=r"Counter.remote\(...\).incr.remote"):
        _ = Counter.incr  # a method of the actors, not of the class
    c = Counter.remote(1)
    names = dir(c)  # as Ray's: the methods, __init__ and __ray_terminate__
    for method in ("incr", "pair", "describe", "double", "__init__", "__ray_terminate__"):
        assert method in names, method
    assert "n" not in names and "LIMIT" not in names and "__ray_call__" not in names
    with pytest.raises(TypeError, match="Inheriting from actor classes is not currently"):

        class Derived(Counter):  # type: ignore[misc,valid-type]
            pass

    assert nbray.get(c.double.remote(3)) == 6  # a static method called on the actor
    assert nbray.get(c.pair.remote()) == [1, -1]


def test_ray_ready_call_and_terminate(engine: str) -> None:
    c = Counter.remote(2)
    assert nbray.get(c.__ray_ready__.remote(), timeout=60) is True
    assert nbray.get(c.__ray_call__.remote(lambda self, k: self.n + k, 10)) == 12
    before = c.incr.remote()
    c.__ray_terminate__.remote()  # runs after the calls submitted before it
    assert nbray.get(before, timeout=60) == 3
    with pytest.raises(exceptions.RayActorError):
        nbray.get(c.incr.remote(), timeout=60)


def test_exit_actor_ends_the_actor_for_good(engine: str) -> None:
    c = Counter.options(max_restarts=2).remote(0)
    assert nbray.get(c.incr.remote()) == 1
    with pytest.raises(exceptions.ActorDiedError):
        nbray.get(c.stop.remote(), timeout=60)
    with pytest.raises(exceptions.ActorDiedError):  # not restarted, despite max_restarts
        nbray.get(c.incr.remote(), timeout=60)
    with pytest.raises(TypeError, match="exit_actor API is called on a non-actor worker"):
        nbray.actor.exit_actor()  # not in an actor
    with pytest.raises(TypeError, match="exit_actor API is called on a non-actor worker"):
        nbray.get(exit_in_a_task.remote(), timeout=60)


@nbray.remote(max_retries=0)
def exit_in_a_task() -> None:
    import nbray

    nbray.actor.exit_actor()


@nbray.remote
class AtExit:
    """Registers an atexit handler that writes a file."""

    def __init__(self, path: str) -> None:
        import atexit
        from pathlib import Path

        atexit.register(Path(path).write_text, "atexit ran")

    def stop(self) -> None:
        import nbray

        nbray.actor.exit_actor()


@pytest.mark.parametrize("how", ["exit_actor", "__ray_terminate__"])
def test_a_graceful_exit_runs_the_actor_s_atexit_handlers(
    engine: str, tmp_path: Path, how: str
) -> None:
    """The actor's process ends as by sys.exit() (as Ray's): atexit handlers run."""
    path = tmp_path / "atexit"
    a = AtExit.remote(str(path))
    nbray.get(a.__ray_ready__.remote(), timeout=60)
    if how == "exit_actor":
        with pytest.raises(exceptions.ActorDiedError):
            nbray.get(a.stop.remote(), timeout=60)
    else:
        a.__ray_terminate__.remote()
    wait_until(lambda: path.exists(), timeout=30)
    assert path.read_text() == "atexit ran"
    with pytest.raises(exceptions.RayActorError):
        nbray.get(a.__ray_ready__.remote(), timeout=60)


@nbray.remote
class Shadowed:
    def __init__(self) -> None:
        self.collected = False

    def collect(self) -> None:
        self.collected = True  # an instance attribute named like a method

    def collected(self) -> bool:
        return bool(self.__dict__["collected"])


def test_a_method_is_called_even_when_an_attribute_shares_its_name(engine: str) -> None:
    s = Shadowed.remote()
    nbray.get(s.collect.remote(), timeout=60)
    assert nbray.get(s.collected.remote(), timeout=60) is True


@nbray.remote
class ExitsAtOnce:
    def __init__(self, path: str) -> None:
        import atexit
        from pathlib import Path

        import nbray

        atexit.register(Path(path).write_text, "atexit ran")
        nbray.actor.exit_actor()
        Path(path + ".after").write_text("not reached")

    def ping(self) -> str:
        return "pong"


def test_exit_actor_in_the_constructor_ends_the_actor(engine: str, tmp_path: Path) -> None:
    path = tmp_path / "atexit"
    a = ExitsAtOnce.remote(str(path))
    with pytest.raises(exceptions.ActorDiedError):
        nbray.get(a.ping.remote(), timeout=60)
    wait_until(lambda: path.exists(), timeout=30)
    assert not (tmp_path / "atexit.after").exists()


@nbray.remote
class CatchesExit:
    def stop(self) -> str:
        import nbray

        try:
            nbray.actor.exit_actor()
        except SystemExit:
            pass
        return "caught"

    def ping(self) -> str:
        return "pong"


@nbray.remote
class AsyncCatchesExit:
    async def stop(self) -> str:
        import nbray

        try:
            nbray.actor.exit_actor()
        except nbray.exceptions.AsyncioActorExit:
            pass
        return "caught"

    async def ping(self) -> str:
        return "pong"


@pytest.mark.parametrize("cls", [CatchesExit, AsyncCatchesExit], ids=["sync", "async"])
def test_exit_actor_ends_the_actor_even_when_the_method_catches_it(engine: str, cls: Any) -> None:
    """As Ray: exit_actor() sets a flag; the actor ends when the call returns."""
    a = cls.remote()
    nbray.get(a.__ray_ready__.remote(), timeout=60)
    with pytest.raises(exceptions.RayActorError):
        nbray.get(a.stop.remote(), timeout=60)
    with pytest.raises(exceptions.RayActorError):
        nbray.get(a.ping.remote(), timeout=60)


@nbray.remote
class ExitsInBackground:
    """exit_actor() in an asyncio task of its own: one a method started, or the
    constructor's; either ends the actor, gracefully (its atexit handlers run)."""

    def __init__(self, path: str, from_constructor: bool) -> None:
        import atexit
        from pathlib import Path

        self.path = path
        atexit.register(lambda: Path(path).write_text("atexit ran"))
        self.tasks: list[Any] = []
        if from_constructor:  # the constructor runs on the event loop, as in Ray
            self.tasks.append(asyncio.create_task(self._exit(0.5)))

    async def start_exit(self) -> str:
        self.tasks.append(asyncio.create_task(self._exit(0.5)))
        return "started"

    async def _exit(self, delay: float) -> None:
        import nbray

        await asyncio.sleep(delay)
        nbray.actor.exit_actor()
        self._mark_after()  # never reached

    def _mark_after(self) -> None:
        from pathlib import Path

        Path(self.path + ".after").write_text("ran on")


@pytest.mark.parametrize("from_constructor", [False, True], ids=["method", "constructor"])
def test_exit_actor_in_a_background_asyncio_task_ends_the_actor(
    engine: str, tmp_path: Path, from_constructor: bool
) -> None:
    path = tmp_path / "exit"
    a = ExitsInBackground.remote(str(path), from_constructor)
    if not from_constructor:
        assert nbray.get(a.start_exit.remote(), timeout=60) == "started"
    wait_until(path.exists, 30)
    with pytest.raises(exceptions.RayActorError):
        nbray.get(a.start_exit.remote(), timeout=60)
    assert not Path(str(path) + ".after").exists()


def test_actor_module_names(engine: str) -> None:
    from nbray.actor import ActorClass, ActorHandle, ActorMethod, exit_actor, method

    assert isinstance(Counter, ActorClass)
    c = Counter.remote(0)
    assert isinstance(c, ActorHandle)
    assert isinstance(c.incr, ActorMethod)
    assert callable(exit_actor) and method is nbray.method


# --- runtime context -------------------------------------------------------------------------


def test_runtime_context_in_the_driver_tasks_and_actors(engine: str) -> None:
    ctx = nbray.get_runtime_context()
    assert ctx.get_job_id() and ctx.get_node_id() and ctx.get_worker_id()
    assert ctx.get_task_id() is None and ctx.get_actor_id() is None
    assert ctx.get_actor_name() is None
    assert isinstance(ctx.namespace, str)
    task = nbray.get(context_in_task.remote(), timeout=60)
    assert task["job"] == ctx.get_job_id()
    assert task["task"] and task["actor"] is None
    assert task["node"] == ctx.get_node_id()
    assert task["resources"] == {"CPU": 1.0}
    assert task["gpus"].get("GPU", []) == []
    other = nbray.get(context_in_task.remote(), timeout=60)
    assert other["task"] != task["task"]

    c = Counter.options(name="ctx-counter", num_cpus=1).remote(5)
    info = nbray.get(c.context.remote(), timeout=60)
    assert info["actor"] == c.actor_id
    assert info["name"] == "ctx-counter"
    assert info["task"]
    assert info["resources"] == {"CPU": 1.0}
    assert info["restarted"] is False
    me = info["me"]
    assert isinstance(me, nbray.ActorHandle) and me == c
    assert nbray.get(me.incr.remote()) == 6
    nbray.kill(c)


# --- concurrency groups --------------------------------------------------------------------


@nbray.remote(concurrency_groups={"io": 2, "blocking": 1})
class Service:
    def __init__(self) -> None:
        self.released = threading.Event()

    @nbray.method(concurrency_group="blocking")
    def block(self) -> str:
        self.released.wait(60)
        return "released"

    @nbray.method(concurrency_group="io")
    def io(self) -> str:
        return threading.current_thread().name

    def default(self) -> str:
        return threading.current_thread().name

    def release(self) -> None:
        self.released.set()


@nbray.remote(concurrency_groups={"io": 2})
class AsyncService:
    def __init__(self) -> None:
        self.event: asyncio.Event | None = None

    @nbray.method(concurrency_group="io")
    async def wait(self) -> str:
        self.event = self.event or asyncio.Event()
        await asyncio.wait_for(self.event.wait(), 60)
        return "released"

    async def ping(self) -> str:
        return "pong"

    @nbray.method(concurrency_group="io")
    async def release(self) -> None:
        if self.event is not None:
            self.event.set()


def test_concurrency_groups_run_apart(engine: str) -> None:
    s = Service.remote()
    blocked = s.block.remote()  # holds the "blocking" group's only thread
    # the other groups still answer while it waits
    names = nbray.get([s.io.remote(), s.default.remote()], timeout=60)
    assert names[0] != names[1]
    # a call moved to the held group by .options() waits behind it
    moved = s.io.options(concurrency_group="blocking").remote()
    ready, _ = nbray.wait([moved], timeout=0.5)
    assert ready == []
    s.release.remote()
    assert nbray.get([blocked, moved], timeout=60)[0] == "released"


def test_async_concurrency_groups(engine: str) -> None:
    a = AsyncService.remote()
    waiting = a.wait.remote()
    assert nbray.get(a.ping.remote(), timeout=60) == "pong"
    nbray.get(a.release.remote(), timeout=60)
    assert nbray.get(waiting, timeout=60) == "released"


def test_undeclared_concurrency_group_is_refused(engine: str) -> None:
    @nbray.remote
    class Bad:
        @nbray.method(concurrency_group="nowhere")
        def m(self) -> None: ...

    with pytest.raises(ValueError, match="nowhere"):
        nbray.get(Bad.remote().m.remote(), timeout=60)


# --- calls to one actor from several callers -------------------------------------------------


@nbray.remote
class Log:
    """A serial actor recording the order its calls ran in."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def note(self, what: str) -> list[str]:
        self.seen.append(what)
        return list(self.seen)


@nbray.remote
def note_from_a_task(log: Any, what: str) -> list[str]:
    import nbray

    return list(nbray.get(log.note.remote(what)))


def test_an_unready_argument_holds_back_only_its_own_caller(engine: str, tmp_path: Path) -> None:
    """Ray orders calls per caller: the driver's call waiting on an argument keeps the
    driver's later call behind it, but not another caller's (a task's) calls."""
    release = tmp_path / "release"
    log = Log.remote()
    first = log.note.remote(wait_for_file.remote(str(release)))  # the driver, unready arg
    second = log.note.remote("driver's second")  # the driver: must wait for `first`
    other = note_from_a_task.remote(log, "task's call")  # another caller: must not
    assert nbray.get(other, timeout=45) == ["task's call"]
    assert nbray.wait([second], timeout=0.5)[0] == []
    release.write_text("go")
    assert nbray.get(second, timeout=60) == ["task's call", "released", "driver's second"]
    assert nbray.get(first, timeout=60) == ["task's call", "released"]


# --- actors end when their last handle goes, in whatever process it was ----------------------


@nbray.remote
class Probe:
    def pid(self) -> int:
        import os

        return os.getpid()


@nbray.remote
class Keeper:
    """Keeps the handles it is given."""

    def __init__(self) -> None:
        self.kept: list[Any] = []

    def keep(self, boxed: list[Any]) -> int:
        import nbray

        self.kept.extend(boxed)
        return int(nbray.get(boxed[0].pid.remote()))

    def drop(self) -> None:
        self.kept.clear()


@nbray.remote
def ping_through(boxed: list[Any]) -> int:
    import nbray

    return int(nbray.get(boxed[0].pid.remote()))


@nbray.remote
def start_probe() -> Any:
    return Probe.remote()


def _process_ended(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] == "Z"
    except OSError:
        return True


def test_an_actor_whose_handle_went_to_a_task_ends_after_the_last_handle(engine: str) -> None:
    p = Probe.remote()
    pid = nbray.get(p.pid.remote(), timeout=60)
    assert nbray.get(ping_through.remote([p]), timeout=60) == pid  # shared with a task
    del p
    wait_until(lambda: _process_ended(pid), 30)


def test_a_handle_kept_elsewhere_keeps_the_actor(engine: str) -> None:
    p = Probe.remote()
    pid = nbray.get(p.pid.remote(), timeout=60)
    keeper = Keeper.remote()
    assert nbray.get(keeper.keep.remote([p]), timeout=60) == pid
    box = nbray.put([p])  # and one inside an object
    del p
    # both still hold it: the actor serves calls through them
    assert nbray.get(ping_through.remote(box), timeout=60) == pid
    nbray.get(keeper.drop.remote(), timeout=60)
    assert nbray.get(ping_through.remote(box), timeout=60) == pid
    del box  # the last one
    wait_until(lambda: _process_ended(pid), 30)


def test_an_actor_made_in_a_task_lives_as_long_as_the_handle_it_returned(engine: str) -> None:
    p = nbray.get(start_probe.remote(), timeout=60)
    pid = nbray.get(p.pid.remote(), timeout=60)
    assert nbray.get(p.pid.remote(), timeout=60) == pid  # the task ended: still alive
    del p
    wait_until(lambda: _process_ended(pid), 30)
