"""A worker process: runs tasks, or hosts one actor, and streams their output back.

    head ──RunTask/StartActor/RunActorCall──▶ reader thread ──queue──▶ main thread
        ──▶ resolve ObjectRef arguments ──▶ call user code (stdout/stderr captured)
        ──▶ results stored inline or in shared memory ──TaskDone/TaskFailed──▶ head
    head ──CancelTask──▶ SIGINT to this process ──▶ TaskCancelledError raised in the task

Forked from the fork server (``main`` is called in the child). Tasks run one at a time in
the main thread. An actor runs its calls in order on the main thread, on a thread pool when
``max_concurrency > 1``, or on an asyncio loop for async actors. Inside a task the nbray
API works as in a driver: nested tasks, ``get`` (which lends this worker's CPU back while it
waits), ``put``, actors.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import importlib
import io
import os
import pickle
import random
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from nbray._base.errors import NbrayError, RemoteError, TaskCancelledError
from nbray._model import session
from nbray._model.object_ref import ObjectRef
from nbray._model.tracebacks import capture_frames
from nbray._wire import protocol as P
from nbray._wire.serialization import unpack

from .client import Client
from .engine import LocalEngine

_current_task: contextvars.ContextVar[tuple[int, str]] = contextvars.ContextVar(
    "nbray_task", default=(0, "")
)
OUTPUT_CHUNK = 8192
REPLY_BATCH = 16  # task results sent together while more tasks wait in the inbox


class TaskStream(io.TextIOBase):
    """sys.stdout/sys.stderr of a worker: text goes to the client that submitted the task."""

    def __init__(self, client: Client, stream: str) -> None:
        self._client = client
        self._stream = stream
        self._buf: dict[int, list[str]] = {}
        self._lock = threading.Lock()

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
            self._client.send(P.Output(task_id, self._stream, data, name))


class Worker:
    def __init__(self) -> None:
        self.client: Client
        self.engine: LocalEngine
        self.inbox: deque[Any] = deque()
        self.inbox_cv = threading.Condition()
        self.unflushed = 0  # task results deferred in the client's queue (see serve)
        self.functions: dict[bytes, Any] = {}
        # code that came with a task given back or dropped before it ran: the head counts
        # it as sent, so the next task of that function comes without it
        self.unloaded: dict[bytes, bytes] = {}
        self.running_task = 0
        self.cancel_requested = 0
        self.actor: Any = None
        self.actor_error: RemoteError | None = None
        self.actor_spec: P.ActorSpec | None = None
        self.pool: ThreadPoolExecutor | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.semaphore: asyncio.Semaphore | None = None
        self.streams: tuple[TaskStream, TaskStream]
        self.handlers: dict[type, Callable[[Any], None]] = {
            P.RunTask: self.run_task,
            P.StartActor: self.start_actor,
            P.RunActorCall: self.run_actor_call,
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
                for run in self._take_queued({msg.task_id}):  # cancelled: it never runs
                    exc = TaskCancelledError("the task was cancelled before it ran")
                    self.client.send(self._failure(run.spec, exc))
            return
        if kind is P.Unqueue:
            with self.inbox_cv:
                taken = self._take_queued(set(msg.task_ids))
                self.client.send(P.Unqueued(tuple(run.spec.task_id for run in taken)))
            return
        with self.inbox_cv:
            self.inbox.append(msg)
            self.inbox_cv.notify()

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
            raise TaskCancelledError("the task was cancelled while running")

    # --- main thread ---------------------------------------------------------------------

    def serve(self) -> None:
        signal.signal(signal.SIGINT, self._on_sigint)
        inbox, cv = self.inbox, self.inbox_cv
        while True:
            with cv:
                if not inbox and self.unflushed:
                    cv.release()
                    try:
                        self.flush_replies()  # nothing else to do: report now
                    finally:
                        cv.acquire()
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
            self.client.send()

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

    def _send_reply(self, reply: Any) -> None:
        self.client.send(reply)
        self._release_contained(reply)

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
        if isinstance(exc, TaskCancelledError):
            err = RemoteError(
                kind="cancelled",
                message=f"task {spec.name} ({tid}) was cancelled while running",
                function_name=spec.name,
                task_id=tid,
            )
            return P.TaskFailed(spec.task_id, pickle.dumps(err), False)
        err = RemoteError.from_exception(exc, spec.name, tid, capture_frames(exc))
        return P.TaskFailed(spec.task_id, pickle.dumps(err), _retriable(spec, exc))

    def _execute(self, spec: P.TaskSpec, fn: Any, deps: dict[int, P.Payload]) -> Any:
        """Run one call; returns the message reporting its outcome."""
        token = _current_task.set((spec.task_id, spec.name))
        started = time.perf_counter()
        try:
            args, kwargs = self._resolve(spec.args, deps)
            result = fn(*args, **kwargs)
            return self._results(spec, result)._replace(duration=time.perf_counter() - started)
        except SystemExit:  # sys.exit() in a task ends the worker, as in Ray
            raise
        except BaseException as exc:
            return self._failure(spec, exc)._replace(duration=time.perf_counter() - started)
        finally:
            for s in self.streams:
                s.flush_task(spec.task_id, spec.name)
            _current_task.reset(token)

    def run_task(self, msg: P.RunTask) -> None:
        spec = msg.spec
        if msg.env:
            os.environ.update(msg.env)
        if msg.job is not None:
            apply_job(msg.job)
        if spec.job_namespace:  # run in the submitter's namespace, as Ray's jobs do
            self.client.namespace = spec.job_namespace
        fn = self.functions.get(spec.func_id)
        if fn is None:
            try:
                code = msg.func or self.unloaded.pop(spec.func_id, b"")
                fn = self.functions[spec.func_id] = pickle.loads(code)
            except Exception as exc:  # e.g. a module only the driver can import
                fn = _unloadable(exc)  # the task fails, the worker lives
                self.head_forgets_function(spec.func_id)
        self.running_task = spec.task_id
        try:
            reply = self._execute(spec, fn, msg.deps)
        except TaskCancelledError as exc:  # the cancel landed outside the user's code
            reply = self._failure(spec, exc)
        finally:
            self.running_task = 0
        # deferred in the client's ordered queue, not held here: what the next task sends
        # (a nested Submit, Blocked, output) must reach the head after this result
        self.client.defer(reply)
        self._release_contained(reply)  # queued after the reply, so released after it
        self.unflushed += 1

    def head_forgets_function(self, func_id: bytes) -> None:
        """Loading failed (and was not cached): have the code sent again next time."""
        self.client.send(P.ForgetFunction(func_id))

    def start_actor(self, msg: P.StartActor) -> None:
        spec = msg.spec
        self.actor_spec = spec
        if msg.env:
            os.environ.update(msg.env)
        if msg.job is not None:
            apply_job(msg.job)
        if spec.job_namespace:
            self.client.namespace = spec.job_namespace
        token = _current_task.set((0, spec.class_name))
        try:
            cls = pickle.loads(msg.cls)
            args, kwargs = self._resolve(spec.args, msg.deps)
            if not spec.is_async and spec.max_concurrency == 1:
                self.engine.serial_actor_id = spec.actor_id
            self.actor = cls(*args, **kwargs)
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
            for s in self.streams:
                s.flush_task(0, spec.class_name)
            _current_task.reset(token)
        if self.actor_error is not None:  # dead on arrival, as in Ray: no restart
            self.client.send(P.ActorStartFailed(spec.actor_id, self.actor_error.message))
            return
        if spec.is_async:
            self.loop = asyncio.new_event_loop()
            threading.Thread(
                target=self.loop.run_forever, name="nbray-actor-loop", daemon=True
            ).start()
            self.semaphore = asyncio.Semaphore(spec.max_concurrency)
        elif spec.max_concurrency > 1:
            self.pool = ThreadPoolExecutor(spec.max_concurrency, thread_name_prefix="nbray-actor")

    def run_actor_call(self, msg: P.RunActorCall) -> None:
        spec = msg.spec
        if self.actor_error is not None:
            self.client.send(P.TaskFailed(spec.task_id, pickle.dumps(self.actor_error), False))
            return
        method = getattr(self.actor, spec.method)
        if self.loop is not None:
            asyncio.run_coroutine_threadsafe(self._async_call(spec, method, msg.deps), self.loop)
        elif self.pool is not None:
            self.pool.submit(self._call, spec, method, msg.deps)
        else:
            self.running_task = spec.task_id
            try:
                self._call(spec, method, msg.deps)
            finally:
                self.running_task = 0

    def _call(self, spec: P.TaskSpec, method: Any, deps: dict[int, P.Payload]) -> None:
        try:
            reply = self._execute(spec, method, deps)
        except SystemExit:  # sys.exit() on a pool thread ends the actor, as on the main one
            os._exit(1)
        self._send_reply(reply)

    async def _async_call(self, spec: P.TaskSpec, method: Any, deps: dict[int, P.Payload]) -> None:
        assert self.semaphore is not None
        exiting = False
        async with self.semaphore:
            token = _current_task.set((spec.task_id, spec.name))
            try:
                args, kwargs = await asyncio.to_thread(self._resolve, spec.args, deps)
                result = method(*args, **kwargs)
                if asyncio.iscoroutine(result):
                    result = await result
                reply: Any = self._results(spec, result)
            except SystemExit:  # sys.exit() in a method ends the actor, as in a sync actor
                exiting = True
            except BaseException as exc:  # CancelledError too: every call gets an answer
                reply = self._failure(spec, exc)
            finally:
                for s in self.streams:
                    s.flush_task(spec.task_id, spec.name)
                _current_task.reset(token)
        if exiting:
            os._exit(1)
        self._send_reply(reply)


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


def apply_job(job: P.Job) -> None:
    """Run in the submitting client's working directory, with its import path, so modules
    next to a notebook import in tasks as they do in the kernel (as Ray's workers do)."""
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


def main(address: str, secret: bytes, worker_id: int, session_token: str) -> int:
    """Entry point in a freshly forked worker; returns the exit code."""
    random.seed()
    worker = Worker()
    client = Client(
        address, secret, role="worker", worker_id=worker_id, task_handler=worker.on_message
    )
    worker.client = client
    worker.engine = engine = LocalEngine(client)
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
    sys.stdout, sys.stderr = worker.streams
    worker.serve()
    return 0
