"""A worker process: runs tasks, or hosts one actor, and streams their output back.

    head ──RunTask/StartActor/RunActorCall──▶ reader thread ──queue──▶ main thread
        ──▶ resolve ObjectRef arguments ──▶ call user code (stdout/stderr captured)
        ──▶ results stored inline or in shared memory ──TaskDone/TaskFailed──▶ head
    head ──CancelTask──▶ SIGINT to this process ──▶ KeyboardInterrupt raised in the task
        (uncaught: the task fails with TaskCancelledError; caught: its value, as in Ray)

Forked from the fork server (``main`` is called in the child). Tasks run one at a time in
the main thread. An actor runs its calls in order on the main thread, on a thread pool when
``max_concurrency > 1``, or on an asyncio loop for async actors. Inside a task the nbray
API works as in a driver: nested tasks, ``get`` (which lends this worker's CPU back while it
waits), ``put``, actors.
"""

from __future__ import annotations

import atexit
import contextlib
import contextvars
import importlib
import inspect
import io
import json
import os
import pickle
import random
import signal
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from nbray._base.errors import (
    AsyncioActorExit,
    NbrayError,
    RemoteError,
    RuntimeEnvSetupError,
    TaskCancelledError,
)
from nbray._model import session
from nbray._model.actor import EXIT_OUTSIDE_ACTOR, bound_method, concurrency_group_of
from nbray._model.generator import DYNAMIC, DynamicObjectRefGenerator
from nbray._model.object_ref import ObjectRef
from nbray._model.tracebacks import capture_frames
from nbray._wire import protocol as P
from nbray._wire.serialization import unpack

from .client import Client
from .direct_serving import DirectCallers
from .engine import LocalEngine

if TYPE_CHECKING:  # imported where used: a worker of plain tasks never needs them, and
    # asyncio alone is a third of the fork server's start-up
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

_current_task: contextvars.ContextVar[tuple[int, str]] = contextvars.ContextVar(
    "nbray_task", default=(0, "")
)
#: the spec of the task or actor call running in this thread (or async task)
_current_spec: contextvars.ContextVar[P.TaskSpec | None] = contextvars.ContextVar(
    "nbray_spec", default=None
)
EXIT_GRACE = 30.0  # seconds an exiting actor waits for the head to end its process
OUTPUT_CHUNK = 8192
REPLY_BATCH = 16  # task results sent together while more tasks wait in the inbox
CANCEL_AHEAD = 1000  # cancels kept for tasks not here yet (a leasing caller's)
# the pool's first workers connect before the head serves (forkserver.py): their handshake
# waits for the head's imports, as long as the driver waits for the head (START_TIMEOUT)
HANDSHAKE_TIMEOUT = 30.0


class TaskStream(io.TextIOBase):
    """sys.stdout/sys.stderr of a worker: text goes to the client that submitted the task."""

    def __init__(self, client: Client, stream: str) -> None:
        self._client = client
        self._stream = stream
        self._buf: dict[int, list[str]] = {}
        self._lock = threading.Lock()
        self.spoke: set[int] = set()  # tasks that sent output, until they are answered

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        task_id, name = _current_task.get()
        with self._lock:
            buf = self._buf.setdefault(task_id, [])
            buf.append(text)
            if "\n" not in text and sum(map(len, buf)) < OUTPUT_CHUNK:
                return len(text)
            data = "".join(buf)
            # send whole lines; a partial last line waits for its end (or the task's end)
            cut = data.rfind("\n") + 1
            if len(data) - cut >= OUTPUT_CHUNK:  # a very long line goes in pieces
                cut = len(data)
            data, rest = data[:cut], data[cut:]
            if rest:
                self._buf[task_id] = [rest]
            else:
                self._buf.pop(task_id, None)
        self._send(task_id, name, data)
        return len(text)

    def flush_task(self, task_id: int, name: str) -> None:
        with self._lock:
            data = "".join(self._buf.pop(task_id, []))
        if data:
            self._send(task_id, name, data)

    def flush(self) -> None:
        task_id, name = _current_task.get()
        self.flush_task(task_id, name)

    def _send(self, task_id: int, name: str, data: str) -> None:
        if not self._client.closed:
            self.spoke.add(task_id)
            self._client.send(P.Output(task_id, self._stream, data, name))


class Worker:
    def __init__(self) -> None:
        self.client: Client
        self.engine: LocalEngine
        self.inbox: deque[Any] = deque()
        self.inbox_cv = threading.Condition()
        self.unflushed = 0  # task results deferred in the client's queue (see serve)
        # the arguments read from shared memory of the tasks whose results are deferred:
        # unmapping 100 MB costs ~10 ms, paid after the results are sent (flush_replies)
        self.held_args: list[Any] = []
        self.functions: dict[bytes, Any] = {}
        # code that came with a task given back or dropped before it ran: the head counts
        # it as sent, so the next task of that function comes without it
        self.unloaded: dict[bytes, bytes] = {}
        self.running_task = 0
        self.cancel_requested = 0
        self.cancelled_task = 0  # the task nbray.cancel interrupted (is_canceled())
        # cancelled before they came (a leasing caller's, sent straight here): as a set
        self.cancel_ahead: dict[int, None] = {}
        self.actor: Any = None
        self.constructing = False  # the actor's __init__ is running
        self.exit_requested = 0  # the call that called exit_actor() (it ends the actor anyway)
        self.async_calls: set[int] = set()  # an async actor's calls running now
        self.exit_started = False  # exit_actor() in a background asyncio task began the end
        self.actor_error: RemoteError | None = None
        self.actor_spec: P.ActorSpec | None = None
        self.secret = b""
        self.direct: DirectCallers | None = None  # an actor's callers that call it directly
        # this worker's runtime_env could not be set up: every task and actor fails with it
        self.setup_error = ""
        self.fixed_cwd = False  # runtime_env working_dir: the client's cwd does not apply
        self.pool: ThreadPoolExecutor | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.semaphore: asyncio.Semaphore | None = None
        # concurrency groups: name -> its threads, or its event loop and limit (async)
        self.group_pools: dict[str, ThreadPoolExecutor] = {}
        self.group_loops: dict[str, tuple[asyncio.AbstractEventLoop, asyncio.Semaphore]] = {}
        self.method_groups: dict[str, str] = {}
        # calls running now, and whether exit_actor() was called (see exit_gracefully)
        self.running_calls = 0
        self.received = 0  # actor calls received, and finished (answered)
        self.finished = 0
        self.calls_cv = threading.Condition()
        self.exiting = False
        self.calls_by_func: dict[bytes, int] = {}  # max_calls: runs per function
        self._restarted: bool | None = None
        self.streams: tuple[TaskStream, TaskStream]
        # generator tasks: yields consumed by the caller, by completion id (backpressure)
        self.acks: dict[int, int] = {}
        self.acks_cv = threading.Condition()
        self.handlers: dict[type, Callable[[Any], None]] = {
            P.RunTask: self.run_task,
            P.StartActor: self.start_actor,
            P.RunActorCall: self.run_actor_call,
            P.Leased: self.leased,
        }

    # --- reader thread side --------------------------------------------------------------

    def on_message(self, msg: Any) -> None:
        kind = type(msg)
        if kind is P.CancelTask:
            with self.inbox_cv:
                if msg.task_id == self.running_task:
                    self.cancel_requested = msg.task_id
                    os.kill(os.getpid(), signal.SIGINT)
                    return
                # answer before the next task can start (and, say, report Blocked)
                taken = self._take_queued({msg.task_id})
                for run in taken:  # cancelled: it never runs
                    self._cancelled_before(run)
                if not taken:  # (a task its caller sends here itself, still on its way)
                    self.cancel_ahead[msg.task_id] = None
                    while len(self.cancel_ahead) > CANCEL_AHEAD:
                        self.cancel_ahead.pop(next(iter(self.cancel_ahead)))
            return
        if kind is P.StreamAck:
            with self.acks_cv:
                self.acks[msg.completed] = max(self.acks.get(msg.completed, 0), msg.consumed)
                self.acks_cv.notify_all()
            return
        if kind is P.Unqueue:
            with self.inbox_cv:
                taken = self._take_queued(set(msg.task_ids))
                self.client.send(P.Unqueued(tuple(run.spec.task_id for run in taken)))
            return
        if kind is P.RunTask and self.cancel_ahead and msg.spec.task_id in self.cancel_ahead:
            del self.cancel_ahead[msg.spec.task_id]
            self._cancelled_before(msg)
            return
        with self.inbox_cv:
            self.inbox.append(msg)
            self.inbox_cv.notify()

    def _cancelled_before(self, run: P.RunTask) -> None:
        """Answer a task cancelled before it ran (to its leasing caller too)."""
        exc = TaskCancelledError("the task was cancelled before it ran")
        self._send_reply(self._failure(run.spec, exc))

    def _take_queued(self, task_ids: set[int]) -> list[P.RunTask]:
        """Remove RunTasks for these ids that have not started (call with inbox_cv held)."""
        taken = [m for m in self.inbox if type(m) is P.RunTask and m.spec.task_id in task_ids]
        for m in taken:
            self.inbox.remove(m)
            if m.func:
                self.unloaded[m.spec.func_id] = m.func
        return taken

    def _on_sigint(self, signum: int, frame: Any) -> None:
        if self.cancel_requested and self.cancel_requested == self.running_task:
            self.cancel_requested = 0
            self.cancelled_task = self.running_task
            # as Ray: a KeyboardInterrupt, which the task may catch and still return a value
            raise KeyboardInterrupt("the task was cancelled (nbray.cancel)")

    # --- main thread ---------------------------------------------------------------------

    def serve(self) -> None:
        signal.signal(signal.SIGINT, self._on_sigint)
        inbox, cv = self.inbox, self.inbox_cv

        def has_work() -> bool:
            return bool(inbox)

        while True:
            if not inbox:
                if self.unflushed:
                    self.flush_replies()  # nothing else to do: report now
                # idle: read the next task off the socket in this thread (see reading.py)
                self.client.pump(has_work, None)
            with cv:
                while not inbox:
                    cv.wait()
                msg = inbox.popleft()
                if type(msg) is P.RunTask:
                    self.running_task = msg.spec.task_id
            if msg is None:  # the head went away
                return
            self.handlers[type(msg)](msg)
            if self.unflushed >= REPLY_BATCH:
                self.flush_replies()

    def flush_replies(self) -> None:
        """Send the deferred task results now (whenever the inbox is empty, or a batch is
        full). Every message sent goes after them anyway, and the client's flusher sends
        them within 50 ms if the next task runs long."""
        if self.unflushed:
            self.unflushed = 0
            if self.direct is not None:  # direct callers first: they wait for these
                self.direct.outbox.flush()
            self.client.send()
        self.held_args.clear()

    def _resolve(self, args_blob: bytes, deps: dict[int, P.Payload]) -> tuple[Any, Any]:
        args, kwargs = unpack(args_blob)
        if not any(isinstance(a, ObjectRef) for a in (*args, *kwargs.values())):
            return args, kwargs
        missing = [
            a for a in (*args, *kwargs.values()) if isinstance(a, ObjectRef) and a.id not in deps
        ]

        def value(a: Any) -> Any:
            if not isinstance(a, ObjectRef):
                return a
            if a.id in fetched:
                return fetched[a.id]
            return self.client.decode(a.id, deps[a.id])

        try:
            fetched = dict(
                zip((r.id for r in missing), self.engine.get(missing, None), strict=True)
            )
            return [value(a) for a in args], {k: value(v) for k, v in kwargs.items()}
        except NbrayError as exc:  # an argument holds an error: it is this call's result
            raise _ArgumentFailed(exc) from exc

    def _results(self, spec: P.TaskSpec, result: Any) -> P.TaskDone:
        n = len(spec.return_ids)
        if n == 1:
            values = [result]
        else:
            values = list(result) if result is not None else []
            if len(values) != n:
                raise ValueError(
                    f"task {spec.name} declared num_returns={n} but returned {len(values)} value(s)"
                )
        out = []
        for oid, value in zip(spec.return_ids, values, strict=True):
            payload, contained = self.client.store(value, oid, f"the result of {spec.name}")
            out.append((oid, payload, contained))
        # refs inside the values (objects the task put, say) must outlive the task's own
        # ObjectRefs, whose releases would reach the head before the TaskDone that pins them:
        # hold them until the reply is sent (_send_reply)
        for _, _, contained in out:
            for ref_id in contained:
                self.client.incref(ref_id, borrowed=False)
        return P.TaskDone(spec.task_id, tuple(out))

    def _answer(self, reply: Any, now: bool, forward: Callable[..., None]) -> None:
        """A direct call's caller gets its answer (``now``, or with the next flush); the
        head gets ``reply`` (a copy, for a direct call) through ``forward``."""
        spoke = False
        for s in self.streams:
            if s.spoke and reply.task_id in s.spoke:
                s.spoke.discard(reply.task_id)
                spoke = True
        if self.direct is None or not self.direct.routes:
            forward(reply)
        else:
            self.direct.answer(reply, spoke, now, forward)

    def _send_reply(self, reply: Any) -> None:
        self._answer(reply, True, self.client.send)
        self._release_contained(reply)

    def _defer_reply(self, reply: Any) -> None:
        """Queue ``reply`` to go out with the next flush (a batch of results)."""
        self._answer(reply, False, self.client.defer)
        self._release_contained(reply)  # queued after the reply, so released after it
        self.unflushed += 1

    def _release_contained(self, reply: Any) -> None:
        if type(reply) is P.TaskDone:
            for _, _, contained in reply.results:
                for ref_id in contained:
                    self.client.decref(ref_id)

    def _failure(self, spec: P.TaskSpec, exc: BaseException) -> P.TaskFailed:
        tid = f"{spec.task_id:016x}"
        if isinstance(exc, _ArgumentFailed):  # as in Ray: the argument's error, unwrapped
            return P.TaskFailed(
                spec.task_id, pickle.dumps(RemoteError.from_error(exc.error)), False
            )
        if isinstance(exc, TaskCancelledError) or (
            isinstance(exc, KeyboardInterrupt) and self.cancelled_task == spec.task_id
        ):
            err = RemoteError(
                kind="cancelled",
                message=f"task {spec.name} ({tid}) was cancelled while running",
                function_name=spec.name,
                task_id=tid,
            )
            return P.TaskFailed(spec.task_id, pickle.dumps(err), False)
        err = RemoteError.from_exception(exc, spec.name, tid, capture_frames(exc))
        # a generator's error is one of its yields, already sent: a retry would not replay it
        retriable = not spec.stream and _retriable(spec, exc)
        return P.TaskFailed(spec.task_id, pickle.dumps(err), retriable)

    def _execute(
        self, spec: P.TaskSpec, fn: Any, deps: dict[int, P.Payload], hold: list[Any]
    ) -> Any:
        """Run one call; returns the message reporting its outcome. Arguments mapped from
        shared memory go into ``hold``, for the caller to drop once the message is sent:
        the unmap is then off the result's way."""
        token = _current_task.set((spec.task_id, spec.name))
        spec_token = _current_spec.set(spec)
        started = time.perf_counter()
        try:
            args, kwargs = self._resolve(spec.args, deps)
            if deps and any(p.kind == P.SHM for p in deps.values()):
                hold.append((args, kwargs))
            result = fn(*args, **kwargs)
            if spec.stream:
                result = self._generate(spec, result)
            return self._results(spec, result)._replace(duration=time.perf_counter() - started)
        except SystemExit:  # sys.exit() in a task ends the worker, as in Ray
            raise
        except BaseException as exc:
            return self._failure(spec, exc)._replace(duration=time.perf_counter() - started)
        finally:
            for s in self.streams:
                s.flush_task(spec.task_id, spec.name)
            _current_task.reset(token)
            _current_spec.reset(spec_token)

    def run_task(self, msg: P.RunTask) -> None:
        spec = msg.spec
        if self.setup_error:
            err = RemoteError(
                kind="runtime_env",
                message=self.setup_error,
                function_name=spec.name,
                task_id=f"{spec.task_id:016x}",
            )
            self.client.defer(P.TaskFailed(spec.task_id, pickle.dumps(err), False))
            self.unflushed += 1
            return
        if msg.env:
            os.environ.update(msg.env)
        if msg.job is not None:
            apply_job(msg.job, self.fixed_cwd)
        if spec.job_namespace:  # run in the submitter's namespace, as Ray's jobs do
            self.client.namespace = spec.job_namespace
        self.engine.job_id = spec.job_id or spec.task_id >> 32
        self.engine.parent_task = spec.task_id  # (what it submits says so: see P.Submit)
        fn = self.functions.get(spec.func_id)
        if fn is None:
            try:
                code = msg.func or self.unloaded.pop(spec.func_id, b"")
                fn = self.functions[spec.func_id] = pickle.loads(code)
            except Exception as exc:  # e.g. a module only the driver can import
                fn = _unloadable(exc)  # the task fails, the worker lives
                self.head_forgets_function(spec.func_id)
        self.running_task = spec.task_id
        # placement_group_capture_child_tasks: the tasks it submits run in its group too
        placement = spec.placement
        self.engine.captured = (placement[0], -1, True) if placement and placement[2] else None
        try:
            reply = self._execute(spec, fn, msg.deps, self.held_args)
        except (TaskCancelledError, KeyboardInterrupt) as exc:  # it landed outside user code
            reply = self._failure(spec, exc)
        finally:
            self.running_task = 0
        # deferred in the client's ordered queue, not held here: what the next task sends
        # (a nested Submit, Blocked, output) must reach the head after this result
        self._defer_reply(reply)
        if spec.max_calls:
            n = self.calls_by_func[spec.func_id] = self.calls_by_func.get(spec.func_id, 0) + 1
            if n >= spec.max_calls:
                self.retire()

    def retire(self) -> None:
        """``max_calls`` reached: report (the results first), and exit. The head runs the
        tasks it had sent here elsewhere, and starts another worker when one is needed."""
        self.unflushed = 0
        self.client.send(P.Retire())  # after the results deferred in the client's queue
        self.client.close()
        os._exit(0)

    def head_forgets_function(self, func_id: bytes) -> None:
        """Loading failed (and was not cached): have the code sent again next time."""
        self.client.send(P.ForgetFunction(func_id))

    def start_actor(self, msg: P.StartActor) -> None:
        spec = msg.spec
        self.actor_spec = spec
        if self.setup_error:
            self.actor_error = RemoteError(
                kind="actor_died",
                message=(f"the actor {spec.class_name} could not start: {self.setup_error}"),
            )
            self.client.send(P.ActorStartFailed(spec.actor_id, self.actor_error.message))
            return
        if msg.env:
            os.environ.update(msg.env)
        if msg.job is not None:
            apply_job(msg.job, self.fixed_cwd)
        if spec.job_namespace:
            self.client.namespace = spec.job_namespace
        placement = spec.placement
        self.engine.captured = (placement[0], -1, True) if placement and placement[2] else None
        token = _current_task.set((0, spec.class_name))
        self.engine.job_id = spec.job_id or spec.actor_id >> 32
        try:
            cls = pickle.loads(msg.cls)
            self.method_groups = {
                name: group
                for name, _ in spec.methods
                if (group := concurrency_group_of(cls, name))
            }
            args, kwargs = self._resolve(spec.args, msg.deps)
            if not spec.is_async and spec.max_concurrency == 1 and not spec.concurrency_groups:
                self.engine.serial_actor_id = spec.actor_id
            self.constructing = True
            if spec.is_async:  # as Ray: the constructor runs on the event loop (it may start
                # asyncio tasks)
                self.loop, self.semaphore = self._start_loop("default", spec.max_concurrency)
                self._construct_on_loop(cls, args, kwargs)
            else:
                self.actor = cls(*args, **kwargs)
        except _ExitActor:  # exit_actor() in __init__: the actor ends, as in Ray
            atexit._run_exitfuncs()
            self.actor_error = RemoteError(
                kind="actor_died",
                message=(
                    f"the actor {spec.class_name} ({spec.actor_id:016x}) exited: its "
                    "constructor called exit_actor(); it is not restarted"
                ),
            )
        except BaseException as exc:
            cause = exc.error if isinstance(exc, _ArgumentFailed) else exc
            err = RemoteError.from_exception(
                cause, f"{spec.class_name}.__init__", "", capture_frames(cause)
            )
            self.actor_error = RemoteError(
                kind="actor_died",
                message=(
                    f"the actor {spec.class_name} could not start: its constructor raised "
                    f"{err.message}\n\nRemote traceback:\n{err.traceback}"
                ),
            )
        finally:
            self.constructing = False
            for s in self.streams:
                s.flush_task(0, spec.class_name)
            _current_task.reset(token)
        if self.actor_error is not None:  # dead on arrival, as in Ray: no restart
            self.client.send(P.ActorStartFailed(spec.actor_id, self.actor_error.message))
            return
        self.serving().serve_actor(spec.actor_id)
        groups = dict(spec.concurrency_groups)
        if spec.is_async:
            for name, size in groups.items():
                self.group_loops[name] = self._start_loop(name, size)
        else:
            from concurrent.futures import ThreadPoolExecutor

            if spec.max_concurrency > 1 or groups:  # Ray: groups make the actor threaded
                self.pool = ThreadPoolExecutor(
                    spec.max_concurrency, thread_name_prefix="nbray-actor"
                )
            for name, size in groups.items():
                self.group_pools[name] = ThreadPoolExecutor(
                    size, thread_name_prefix=f"nbray-actor-{name}"
                )

    def serving(self) -> DirectCallers:
        """What takes this worker's calls and tasks straight from their callers."""
        if self.direct is None:
            self.direct = DirectCallers(self.client, self.secret)
            self.client.extra_flush = self.direct.outbox.flush
        return self.direct

    def leased(self, msg: P.Leased) -> None:
        """A client leases this worker: from now on (this message is in the inbox's
        order), its tasks come straight from it, and run in its job."""
        if msg.job is not None:
            apply_job(msg.job, self.fixed_cwd)
        self.client.send(P.LeaseReady(msg.lease_id, self.serving().listen()))

    def _construct_on_loop(self, cls: type, args: Any, kwargs: Any) -> None:
        """An async actor's ``cls(*args, **kwargs)`` on its event loop; raises what it
        raised (``exit_actor()`` included) here, never on the loop, which must run on."""
        assert self.loop is not None

        async def construct() -> BaseException | None:
            _current_task.set((0, cls.__name__))  # its output, and its tasks', is the actor's
            try:
                self.actor = cls(*args, **kwargs)
                return None
            except BaseException as exc:  # SystemExit (exit_actor()) would stop the loop
                return exc
            finally:
                self.constructing = False  # before the tasks it started run

        import asyncio

        error = asyncio.run_coroutine_threadsafe(construct(), self.loop).result()
        if error is not None:
            raise error

    @staticmethod
    def _start_loop(name: str, size: int) -> tuple[asyncio.AbstractEventLoop, asyncio.Semaphore]:
        import asyncio

        loop = asyncio.new_event_loop()
        loop.set_exception_handler(_quiet_actor_exit)
        threading.Thread(target=loop.run_forever, name=f"nbray-actor-{name}", daemon=True).start()
        return loop, asyncio.Semaphore(size)

    def run_actor_call(self, msg: P.RunActorCall) -> None:
        spec = msg.spec
        if self.actor_error is not None:
            self._send_reply(P.TaskFailed(spec.task_id, pickle.dumps(self.actor_error), False))
            return
        if self.exiting:  # exit_actor() was called: the head fails the calls left
            return
        self.received += 1
        if spec.method == "__ray_terminate__":
            # a termination queued like a call, as Ray's: the calls received before it
            # finish first (on their threads or event loops), then the actor ends gracefully
            if self.pool is None and self.loop is None and not self.group_pools:
                self.exit_gracefully(spec)  # in order on this thread: the others are done
                return
            before = self.received - 1
            threading.Thread(target=self.exit_gracefully, args=(spec, before), daemon=True).start()
            return
        group = spec.concurrency_group or self.method_groups.get(spec.method, "")
        try:
            method = bound_method(self.actor, spec.method)
            if group and group not in self.group_pools and group not in self.group_loops:
                declared = sorted({*self.group_pools, *self.group_loops}) or "none"
                raise ValueError(
                    f"concurrency group {group!r} is not declared by actor "
                    f"{self.actor_spec.class_name if self.actor_spec else ''} (declared: "
                    f"{declared}); declare it with concurrency_groups={{{group!r}: N}}"
                )
        except (AttributeError, ValueError) as exc:
            self._send_reply(self._failure(spec, exc))
            with self.calls_cv:
                self.finished += 1
                self.calls_cv.notify_all()
            return
        if self.loop is not None:
            import asyncio

            loop, semaphore = self.group_loops.get(group) or (self.loop, self.semaphore)
            coro = self._async_call(spec, method, msg.deps, semaphore)  # type: ignore[arg-type]
            asyncio.run_coroutine_threadsafe(coro, loop)
        elif group:
            self.group_pools[group].submit(self._call, spec, method, msg.deps)
        elif self.pool is not None:
            self.pool.submit(self._call, spec, method, msg.deps)
        else:
            self.running_task = spec.task_id
            try:
                self._call(spec, method, msg.deps, on_main_thread=True)
            finally:
                self.running_task = 0

    def _enter_call(self) -> bool:
        with self.calls_cv:
            if self.exiting:
                return False
            self.running_calls += 1
            return True

    def _leave_call(self) -> None:
        with self.calls_cv:
            self.running_calls -= 1
            self.finished += 1
            self.calls_cv.notify_all()

    def _call(
        self,
        spec: P.TaskSpec,
        method: Any,
        deps: dict[int, P.Payload],
        on_main_thread: bool = False,
    ) -> None:
        """Run one actor call. On the main thread (an actor running one call at a time) its
        answer is deferred like a task's result, so the answers to a run of pipelined
        calls go out together (serve); on a pool thread it is sent at once."""
        if not self._enter_call():
            return
        # dropped after the answer is sent: when this returns, or after serve's flush
        hold: list[Any] = self.held_args if on_main_thread else []
        try:
            reply = self._execute(spec, method, deps, hold)
        except _ExitActor:
            self._leave_call()
            self.exit_gracefully(spec)
            return
        except SystemExit:  # sys.exit() on a pool thread ends the actor, as on the main one
            os._exit(1)
        if self.exit_requested == spec.task_id:  # it caught exit_actor()'s exception
            self._leave_call()
            self.exit_gracefully(spec)
            return
        # the answer goes out (or into the ordered queue) before the call counts as
        # finished: a graceful end waiting for it (exit_gracefully) must not end the actor
        # ahead of the answer
        if on_main_thread:
            self._defer_reply(reply)
        else:
            self._send_reply(reply)
        self._leave_call()

    async def _async_call(
        self,
        spec: P.TaskSpec,
        method: Any,
        deps: dict[int, P.Payload],
        semaphore: asyncio.Semaphore,
    ) -> None:
        import asyncio

        exiting = graceful = False
        if not self._enter_call():
            return
        async with semaphore:
            token = _current_task.set((spec.task_id, spec.name))
            spec_token = _current_spec.set(spec)
            self.async_calls.add(spec.task_id)
            try:
                args, kwargs = await asyncio.to_thread(self._resolve, spec.args, deps)
                result = method(*args, **kwargs)
                if asyncio.iscoroutine(result):
                    result = await result
                if spec.stream:
                    result = await self._agenerate(spec, result)
                reply: Any = self._results(spec, result)
                # it caught exit_actor()'s exception: the actor ends anyway
                graceful = self.exit_requested == spec.task_id
            except (AsyncioActorExit, _ExitActor):  # nbray.actor.exit_actor()
                graceful = True
            except SystemExit:  # sys.exit() in a method ends the actor, as in a sync actor
                exiting = True
            except BaseException as exc:  # CancelledError too: every call gets an answer
                reply = self._failure(spec, exc)
            finally:
                self.async_calls.discard(spec.task_id)
                for s in self.streams:
                    s.flush_task(spec.task_id, spec.name)
                _current_task.reset(token)
                _current_spec.reset(spec_token)
        if not (graceful or exiting):
            self._send_reply(reply)  # before the call counts as finished (see _call)
        self._leave_call()
        if graceful:  # off the loop: the calls still running on it must finish first
            threading.Thread(target=self.exit_gracefully, args=(spec,), daemon=True).start()
            return
        if exiting:
            os._exit(1)

    # --- generator tasks -----------------------------------------------------------------

    def _generate(self, spec: P.TaskSpec, gen: Any) -> Any:
        """Run a generator task's generator: each yield goes to the head as it comes
        (streaming), or into a DynamicObjectRefGenerator of puts (dynamic, the result)."""
        if spec.stream == DYNAMIC:
            return DynamicObjectRefGenerator([self.engine.put(v) for v in gen])
        index = 0
        try:
            for value in gen:
                self._yield(spec, index, value)
                index += 1
                self._backpressure(spec, index)
        except BaseException as exc:
            self._yield_error(spec, index, exc)
            raise
        finally:
            self.acks.pop(spec.return_ids[0], None)
        return None

    async def _agenerate(self, spec: P.TaskSpec, gen: Any) -> Any:
        """``_generate`` for an async actor: an async generator runs on the actor's loop."""
        import asyncio

        if not inspect.isasyncgen(gen):
            return await asyncio.to_thread(self._generate, spec, gen)
        if spec.stream == DYNAMIC:
            return DynamicObjectRefGenerator([self.engine.put(v) async for v in gen])
        index = 0
        try:
            async for value in gen:
                self._yield(spec, index, value)
                index += 1
                if spec.backpressure > 0:
                    await asyncio.to_thread(self._backpressure, spec, index)
        except BaseException as exc:
            self._yield_error(spec, index, exc)
            raise
        finally:
            self.acks.pop(spec.return_ids[0], None)
        return None

    def _yield(self, spec: P.TaskSpec, index: int, value: Any) -> None:
        oid = self.client.new_id()
        payload, contained = self.client.store(value, oid, f"a value yielded by {spec.name}")
        # sent now, while ``value`` keeps the refs it contains alive
        direct = self._direct(spec)
        self.client.send(P.Yielded(spec.task_id, index, oid, payload, contained, direct))

    def _yield_error(self, spec: P.TaskSpec, index: int, exc: BaseException) -> None:
        """The generator raised: its error is the value of the caller's next ``next``."""
        if isinstance(exc, SystemExit):
            return
        error = self._failure(spec, exc).error
        oid, payload = self.client.new_id(), P.Payload(P.ERROR, error)
        self.client.send(P.Yielded(spec.task_id, index, oid, payload, (), self._direct(spec)))

    def _direct(self, spec: P.TaskSpec) -> bool:
        """Whether ``spec`` came straight from its caller (not through the head)."""
        return self.direct is not None and spec.task_id in self.direct.routes

    def _backpressure(self, spec: P.TaskSpec, produced: int) -> None:
        """Pause while ``spec.backpressure`` yields are unconsumed by the caller."""
        limit = spec.backpressure
        if limit <= 0:
            return
        completed = spec.return_ids[0]
        with self.acks_cv:
            while produced - self.acks.get(completed, 0) >= limit:
                self.acks_cv.wait(1.0)

    # --- the runtime context -------------------------------------------------------------

    def runtime_context(self) -> dict[str, Any]:
        """What this worker runs now, for ``nbray.get_runtime_context()``."""
        spec = _current_spec.get()
        actor = self.actor_spec
        if actor is not None:  # in an actor, its resources, as Ray reports them
            resources = dict(actor.resources)
        else:
            resources = dict(spec.resources) if spec is not None else {}
        gpu_ids: list[str] = []
        if resources.get("GPU"):
            visible = os.environ.get("CUDA_VISIBLE_DEVICES", "")
            gpu_ids = [g.strip() for g in visible.split(",") if g.strip()]
        out: dict[str, Any] = {
            "task_id": f"{spec.task_id:016x}" if spec is not None else None,
            "task_name": spec.name if spec is not None else None,
            "resources": resources,
            "gpu_ids": gpu_ids,
            "in_worker": True,
            "canceled": spec is not None and spec.task_id == self.cancelled_task,
        }
        if actor is not None:
            out["actor_id"] = f"{actor.actor_id:016x}"
            out["actor_name"] = actor.name
            out["actor_class"] = actor.class_name
            out["actor_methods"] = actor.methods
            out["actor_is_async"] = actor.is_async
            out["actor_id_int"] = actor.actor_id
            out["restarted"] = self.restarted  # asked only when read: one round trip
        return out

    def restarted(self) -> bool:
        """Whether this actor was restarted (the head counts; asked once per process)."""
        if self._restarted is None:
            assert self.actor_spec is not None
            info = self.client.request("actor_info", self.actor_spec.actor_id)
            self._restarted = bool(info.get("restarts"))
        return self._restarted

    # --- exit_actor() --------------------------------------------------------------------

    def request_exit(self) -> None:
        """``nbray.actor.exit_actor()`` in this process: unwind the calling method."""
        if self.constructing:  # in __init__ (also an async actor's): start_actor ends it
            raise _ExitActor(0)
        if self.actor is None or self.actor_spec is None:
            raise TypeError(EXIT_OUTSIDE_ACTOR)
        spec = _current_spec.get()  # as Ray's flag: the actor ends when the call returns
        if self.loop is not None:  # as in Ray: SystemExit would only stop the event loop
            if spec is None or spec.task_id not in self.async_calls:
                # an asyncio task of its own (its call returned, or the constructor made
                # it): no call to end with, so the end starts here
                if not self.exit_started:
                    self.exit_started = True
                    threading.Thread(target=self.exit_gracefully, args=(None,), daemon=True).start()
            else:
                self.exit_requested = spec.task_id
            raise AsyncioActorExit("exit_actor() was called")
        self.exit_requested = spec.task_id if spec is not None else 0
        raise _ExitActor(0)

    def exit_gracefully(self, spec: P.TaskSpec | None, after: int = 0) -> None:
        """The call ``spec`` (exit_actor() in a method, or ``__ray_terminate__``) ends the
        actor: wait until the first ``after`` calls received have finished (for
        ``__ray_terminate__``) and the calls running on other threads too, run
        ``__ray_shutdown__``, answer the call with ActorDiedError and have the head end the
        actor for good (calls not started fail with ActorDiedError)."""
        actor_spec = self.actor_spec
        assert actor_spec is not None
        with self.calls_cv:
            self.calls_cv.wait_for(lambda: self.finished >= after, timeout=None)
            self.exiting = True
            self.calls_cv.wait_for(lambda: self.running_calls <= 0, timeout=EXIT_GRACE)
        token = _current_task.set((0, actor_spec.class_name))
        try:
            run_shutdown_hook(self.actor)
            # the process ends as if by sys.exit() (as Ray's does): the user's atexit
            # handlers run, after __ray_shutdown__
            atexit._run_exitfuncs()
        finally:
            for s in self.streams:
                s.flush_task(0, actor_spec.class_name)
            _current_task.reset(token)
        if spec is None:
            why = "exit_actor() was called in one of its asyncio tasks"
        elif spec.method == "__ray_terminate__":
            why = "__ray_terminate__ ended it"
        else:
            why = f"{spec.method}() called exit_actor()"
        err = RemoteError(
            kind="actor_died",
            message=(
                f"the actor {actor_spec.class_name} ({actor_spec.actor_id:016x}) exited: "
                f"{why}; it is not restarted"
            ),
        )
        self.flush_replies()
        kill = P.KillActor(actor_spec.actor_id, True, reason=err.message)
        if spec is None:
            self.client.send(kill)
        else:
            self.client.send(P.TaskFailed(spec.task_id, pickle.dumps(err), False), kill)
        time.sleep(EXIT_GRACE)  # the head ends this process; if it does not, end it here
        os._exit(0)


def _quiet_actor_exit(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """The loop's handler of errors nobody awaited: exit_actor() in a background asyncio
    task is the actor ending (``request_exit`` saw to it), not an error to print."""
    if isinstance(context.get("exception"), AsyncioActorExit):
        return
    loop.default_exception_handler(context)


class _ExitActor(SystemExit):
    """Raised by ``exit_actor()`` in a method of a sync actor; the worker catches it."""


def run_shutdown_hook(actor: Any) -> None:
    """Call the actor's ``__ray_shutdown__()`` if it has one (Ray's clean-up hook on a
    graceful end); an error in it is printed, not raised."""
    hook = getattr(actor, "__ray_shutdown__", None)
    if callable(hook):
        try:
            hook()
        except Exception:
            traceback.print_exc()


def _unloadable(exc: Exception) -> Any:
    """Stands in for a function whose pickle failed to load: raises that error when called."""
    tb = exc.__traceback__

    def fail(*args: Any, **kwargs: Any) -> Any:
        raise exc.with_traceback(tb)

    return fail


class _ArgumentFailed(Exception):
    """Raised while resolving a call's ObjectRef arguments when one holds an error."""

    def __init__(self, error: NbrayError) -> None:
        super().__init__(str(error))
        self.error = error


def apply_job(job: P.Job, fixed_cwd: bool = False) -> None:
    """Run in the submitting client's working directory, with its import path, so modules
    next to a notebook import in tasks as they do in the kernel (as Ray's workers do).
    A runtime_env ``working_dir`` (``fixed_cwd``) stays the working directory."""
    if not fixed_cwd:
        with contextlib.suppress(OSError):
            os.chdir(job.cwd)
    missing = [p for p in job.sys_path if p not in sys.path]
    if missing:
        sys.path.extend(missing)
        importlib.invalidate_caches()


def _retriable(spec: P.TaskSpec, exc: BaseException) -> bool:
    retry = spec.retry_exceptions
    if isinstance(retry, bool):
        return retry and isinstance(exc, Exception)
    classes = pickle.loads(retry)
    return isinstance(exc, classes)


def main(
    address: str, secret: bytes, worker_id: int, session_token: str, runtime_env: str = ""
) -> int:
    """Entry point in a freshly forked worker; returns the exit code. A worker for a
    ``runtime_env`` sets it up first; one with a pip/uv env re-executes itself from that
    env's python (``main_from_argv``), which comes back here."""
    random.seed()
    worker = Worker()
    if runtime_env:
        from . import runtime_env as renv  # (only a worker started for an env needs it)

        env = json.loads(runtime_env)
        try:
            python = renv.prepare(env)
        except RuntimeEnvSetupError as exc:
            worker.setup_error = str(exc)
        else:
            if python and os.path.realpath(sys.prefix) != os.path.realpath(
                os.path.dirname(os.path.dirname(python))
            ):
                sys.stdout.flush()
                os.execv(
                    python,
                    [python, "-c", _REEXEC, address, str(worker_id), session_token, runtime_env],
                )
            renv.apply(env)
            worker.fixed_cwd = "working_dir" in env
    client = Client(
        address,
        secret,
        role="worker",
        worker_id=worker_id,
        task_handler=worker.on_message,
        timeout=HANDSHAKE_TIMEOUT,
    )
    worker.client = client
    worker.secret = secret
    worker.engine = engine = LocalEngine(client)
    engine.inherited_env = "" if worker.setup_error else runtime_env  # nested tasks inherit it
    worker.streams = (TaskStream(client, "stdout"), TaskStream(client, "stderr"))
    session.set_engine(engine)
    session.in_worker = True

    def blocked_hook(blocked: bool) -> None:
        if blocked:
            worker.flush_replies()  # what this task waits for may be among them
            client.send(P.Blocked())
        else:
            client.send(P.Unblocked())

    client.blocked_hook = blocked_hook
    engine.exit_hook = worker.request_exit
    engine.context_hook = worker.runtime_context
    sys.stdout, sys.stderr = worker.streams
    worker.serve()
    return 0


_REEXEC = "from nbray._engines.local.worker import main_from_argv; main_from_argv()"


def main_from_argv() -> None:
    """A worker re-executed from a runtime_env's virtualenv: the same worker, another python.
    The secret is read from the session directory's 0600 file, never passed in argv."""
    from pathlib import Path

    address, worker_id, session_token, runtime_env = sys.argv[1:5]
    secret = (Path(address.removeprefix("unix:")).parent / "secret").read_bytes()
    os._exit(main(address, secret, int(worker_id), session_token, runtime_env))
