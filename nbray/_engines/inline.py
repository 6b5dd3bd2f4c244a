"""An engine that runs every ``.remote()`` call at once, in the calling process: Ray's local
mode (``nbray.init(local_mode=True)``), and ``%%compare``'s serial run.

    %%compare / init(local_mode=True) ──▶ session engine is an InlineEngine
        f.remote(x) ──▶ f(x) runs now ──▶ value (or exception) kept under a new ObjectRef
        Actor.remote() ──▶ the instance lives in this process; method calls run at once
        nbray.get(ref) ──▶ the kept value, or the exception raised again

A task's exception is raised by ``get`` as a ``TaskError`` that is also an instance of its
class, with the task's own traceback: ``%debug`` (or ``pdb.post_mortem()``) lands in the
task's frame, and breakpoints in remote functions stop as in plain code.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import threading
from collections.abc import Callable, Sequence
from typing import Any

from nbray._base.errors import ActorDiedError, ActorNotFoundError, TaskError, _task_error_for
from nbray._base.options import ActorOptions, TaskOptions
from nbray._model.actor import ActorHandle, actor_methods, bound_method, is_async_class
from nbray._model.engine import Engine
from nbray._model.generator import (
    DYNAMIC,
    STREAMING,
    ObjectRefGenerator,
    dynamic,
    returns_code,
)
from nbray._model.object_ref import ObjectRef
from nbray._wire.serialization import check_function_size, dumps

__all__ = ["InlineEngine"]


class _Failed:
    __slots__ = ("exc", "name")

    def __init__(self, exc: BaseException, name: str = "") -> None:
        self.exc = exc
        self.name = name


class _ExitActor(Exception):
    """Raised by ``exit_actor()`` in an actor method run inline."""


class _Stream:
    """A generator task run lazily: each ``next`` runs the generator to its next yield."""

    __slots__ = ("buffer", "done", "gen", "loop", "name")

    def __init__(self, gen: Any, name: str) -> None:
        self.gen = gen
        self.name = name
        self.buffer: list[ObjectRef] = []  # yields run ahead by a get of the completion
        self.done = False
        self.loop: asyncio.AbstractEventLoop | None = None

    def step(self) -> Any:
        """The next value; StopIteration at the end."""
        if not hasattr(self.gen, "__anext__"):
            return next(self.gen)
        if self.loop is None:
            self.loop = asyncio.new_event_loop()
        try:
            return self.loop.run_until_complete(self.gen.__anext__())
        except StopAsyncIteration:
            raise StopIteration from None

    def close(self) -> None:
        self.done = True
        if self.loop is not None:
            self.loop.close()


class InlineEngine(Engine):
    """Runs tasks and actor calls synchronously in this process; one CPU."""

    name = "inline"

    def __init__(self, namespace: str = "default") -> None:
        self._ids = itertools.count(1)
        self._values: dict[int, Any] = {}
        self._counts: dict[int, int] = {}
        self._actors: dict[int, Any] = {}
        self._actor_info: dict[int, tuple[str, ActorOptions]] = {}
        self._names: dict[tuple[str, str], ActorHandle] = {}
        self._lock = threading.Lock()
        self._streams: dict[int, _Stream] = {}  # by completion id
        self.namespace = namespace
        # what runs now, innermost last: (task id, task name, actor id or 0, resources)
        self._running: list[tuple[int, str, int, dict[str, float]]] = []
        self.calls = 0  # tasks, actor creations and actor calls run so far (%%compare)
        self._sized: set[Any] = set()  # functions and classes whose size was checked

    def _check_size(self, key: Any, target: Any, kind: str, name: str) -> None:
        """Refuse a function or class over Ray's size limit, as a cluster would (once per
        function): code that runs inline then runs on a cluster too. One that cannot be
        pickled at all is left to run here (inline needs no pickle)."""
        if key in self._sized:
            return
        try:
            blob = dumps(target)
        except Exception:
            blob = b""
        check_function_size(blob, kind, name)  # raises every time, as a cluster refuses it
        self._sized.add(key)

    def _store(self, value: Any) -> ObjectRef:
        oid = next(self._ids)
        self._values[oid] = value
        return ObjectRef(oid, self)

    def _resolve(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, Any]:
        def value(a: Any) -> Any:
            return self.get([a], None)[0] if isinstance(a, ObjectRef) else a

        return [value(a) for a in args], {k: value(v) for k, v in kwargs.items()}

    def _call(
        self,
        func: Callable[..., Any],
        args: Any,
        kwargs: Any,
        n: int | str,
        name: str,
        actor_id: int = 0,
        resources: dict[str, float] | None = None,
    ) -> list[Any]:
        code = returns_code(n)
        if code == DYNAMIC:
            return self._call(dynamic(func), args, kwargs, 1, name, actor_id, resources)
        self.calls += 1
        if code == STREAMING:
            return [self._generator(func, args, kwargs, name)]
        self._running.append((next(self._ids), name, actor_id, resources or {}))
        try:
            a, k = self._resolve(args, kwargs)
            result = func(*a, **k)
            if asyncio.iscoroutine(result):
                result = asyncio.run(result)
            values = [result] if code <= 1 else list(result)
        except _ExitActor:
            raise
        except Exception as exc:
            values = [_Failed(exc, name)] * max(code, 1)
        finally:
            self._running.pop()
        refs = [self._store(v) for v in values]
        return refs if code else []

    def submit_task(
        self,
        func: Any,
        fingerprint: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        options: TaskOptions,
        name: str,
    ) -> list[ObjectRef]:
        self._check_size(fingerprint, func, "remote function", name)
        return self._call(
            func, args, kwargs, options.num_returns, name, 0, options.resource_request()
        )

    def create_actor(
        self, cls: type, args: tuple[Any, ...], kwargs: dict[str, Any], options: ActorOptions
    ) -> ActorHandle:
        namespace = options.namespace or self.namespace
        if options.name and options.get_if_exists:
            existing = self._names.get((namespace, options.name))
            if existing is not None:
                return existing
        self._check_size(cls, cls, "actor", cls.__name__)
        self.calls += 1
        a, k = self._resolve(args, kwargs)
        aid = next(self._ids)
        self._actor_info[aid] = (cls.__name__, options)
        self._running.append((next(self._ids), f"{cls.__name__}.__init__", aid, {}))
        try:
            self._actors[aid] = cls(*a, **k)
        finally:
            self._running.pop()
        handle = ActorHandle(
            self,
            aid,
            cls.__name__,
            actor_methods(cls),
            is_async=is_async_class(cls),
            original=True,
            collectable=not options.name and options.lifetime != "detached",
        )
        if options.name:
            self._names[(namespace, options.name)] = handle
        return handle

    def call_actor(
        self,
        handle: ActorHandle,
        method: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        num_returns: int,
        concurrency_group: str = "",
    ) -> list[ObjectRef]:
        aid = handle._actor_id
        instance = self._actors.get(aid)
        what = f"{handle._class_name}.{method}"
        if instance is None:
            err = ActorDiedError(f"the actor {handle._class_name} is dead: {what} cannot run")
            return [self._store(_Failed(err)) for _ in range(max(num_returns, 1))]
        options = self._actor_info[aid][1]
        try:
            return self._call(
                bound_method(instance, method),
                args,
                kwargs,
                num_returns,
                what,
                aid,
                options.resource_request(),
            )
        except _ExitActor:
            self._end_actor(aid, graceful=True)
            err = ActorDiedError(
                f"the actor {handle._class_name} exited: {method}() called exit_actor()"
            )
            return [self._store(_Failed(err)) for _ in range(max(num_returns, 1))]

    def _end_actor(self, actor_id: int, graceful: bool) -> None:
        instance = self._actors.pop(actor_id, None)
        for key, handle in list(self._names.items()):
            if handle._actor_id == actor_id:
                del self._names[key]
        if graceful and instance is not None:
            hook = getattr(instance, "__ray_shutdown__", None)
            if callable(hook):
                hook()

    def exit_actor(self) -> None:
        if not any(actor_id for _, _, actor_id, _ in self._running[-1:]):
            super().exit_actor()  # raises: not in an actor
        raise _ExitActor()

    def runtime_context(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "job_id": "00000001",
            "node_id": "inline",
            "worker_id": f"{os.getpid():08x}",
            "namespace": self.namespace,
            "task_id": None,
            "actor_id": None,
            "resources": None,
            "gpu_ids": [],
            "in_worker": bool(self._running),
        }
        if self._running:
            task_id, name, actor_id, resources = self._running[-1]
            out.update(task_id=f"{task_id:016x}", task_name=name, resources=resources)
            if actor_id:
                class_name, options = self._actor_info[actor_id]
                cls = type(self._actors.get(actor_id))
                out.update(
                    actor_id=f"{actor_id:016x}",
                    actor_name=options.name,
                    actor_class=class_name,
                    actor_methods=actor_methods(cls),
                    actor_id_int=actor_id,
                    restarted=False,
                )
        return out

    def put(self, value: Any) -> ObjectRef:
        return self._store(value)

    # --- generator tasks: run lazily, one yield per next --------------------------------------

    def _generator(
        self, func: Callable[..., Any], args: Any, kwargs: Any, name: str
    ) -> ObjectRefGenerator:
        completed = ObjectRef(next(self._ids), self)
        try:
            a, k = self._resolve(args, kwargs)
            st = _Stream(func(*a, **k), name)
        except Exception as exc:
            st = _Stream(iter(()), name)
            st.close()
            self._values[completed.id] = _Failed(exc, name)
        self._streams[completed.id] = st
        return ObjectRefGenerator(completed, self)

    def _step(self, cid: int, st: _Stream) -> ObjectRef | None:
        """Run the generator to its next yield: its ref, or None once it has ended."""
        try:
            return self._store(st.step())
        except StopIteration:
            self._values[cid] = None
        except Exception as exc:
            self._values[cid] = _Failed(exc, st.name)
            st.close()
            return self._store(_Failed(exc, st.name))
        st.close()
        return None

    def stream_next(self, completed: ObjectRef, index: int, timeout: float | None) -> Any:
        st = self._streams.get(completed.id)
        if st is None:
            return None
        if st.buffer:
            return st.buffer.pop(0)
        if st.done:
            if isinstance(self._values.get(completed.id), _Failed) and index == 0:
                st.done = False  # the call itself raised: its error is the first ref, once
                st.close()
                return completed
            return None
        return self._step(completed.id, st)

    def stream_ready(self, completed: ObjectRef, index: int) -> bool:
        return True

    def stream_finished(self, completed: ObjectRef, index: int) -> bool:
        st = self._streams.get(completed.id)
        return st is None or (st.done and not st.buffer)

    def stream_drop(self, completed: ObjectRef, index: int) -> None:
        self._streams.pop(completed.id, None)

    def _finish(self, cid: int) -> None:
        """``get`` of a generator's completion: run the rest of it now."""
        st = self._streams.get(cid)
        while st is not None and not st.done:
            ref = self._step(cid, st)
            if ref is not None:
                st.buffer.append(ref)

    def get(self, refs: list[ObjectRef], timeout: float | None) -> list[Any]:
        out = []
        for ref in refs:
            if ref.id not in self._values:
                self._finish(ref.id)
            value = self._values[ref.id]
            if isinstance(value, _Failed):
                raise _as_task_error(value)
            out.append(value)
        return out

    def wait(
        self, refs: list[ObjectRef], num_returns: int, timeout: float | None
    ) -> list[ObjectRef]:
        return refs[:num_returns]

    def cancel(self, ref: ObjectRef, force: bool, recursive: bool) -> None:
        return None  # it already ran

    def cancel_ids(self, object_ids: Sequence[int], force: bool = False) -> None:
        return None

    def kill_actor(self, handle: ActorHandle, no_restart: bool) -> None:
        self._end_actor(handle._actor_id, graceful=False)  # as ray.kill: no clean-up hook

    def release_actor(self, handle: ActorHandle) -> None:
        self._end_actor(handle._actor_id, graceful=True)  # out of scope: __ray_shutdown__

    def get_actor(self, name: str, namespace: str | None) -> ActorHandle:
        handle = self._names.get((namespace or self.namespace, name))
        if handle is None:
            raise ActorNotFoundError(f"no actor named {name!r} in this process (local mode)")
        return ActorHandle(
            self,
            handle._actor_id,
            handle._class_name,
            tuple(handle._methods.items()),
            is_async=handle._is_async,
        )

    def cluster_info(self) -> dict[str, Any]:
        total = {"CPU": 1.0}
        node = {"NodeID": "inline", "Alive": True, "Resources": total}
        return {"nodes": [node], "total": total, "available": total}

    def subscribe(self, callback: Callable[[dict[str, Any]], None]) -> Callable[[], None]:
        return lambda: None

    def incref(self, object_id: int, borrowed: bool) -> None:
        with self._lock:
            self._counts[object_id] = self._counts.get(object_id, 0) + 1

    def decref(self, object_id: int) -> None:
        with self._lock:
            n = self._counts.get(object_id, 0) - 1
            if n > 0:
                self._counts[object_id] = n
                return
            self._counts.pop(object_id, None)
            self._values.pop(object_id, None)

    def shutdown(self) -> None:
        self._values.clear()
        self._actors.clear()
        self._streams.clear()
        self._names.clear()


def _as_task_error(failed: _Failed) -> BaseException:
    """The error ``get`` raises for a task's exception: nbray's errors as they are, others as
    a TaskError that is also of their class, carrying the task's own frames (so that a
    post-mortem debugger opens in the task)."""
    exc = failed.exc
    if not isinstance(exc, Exception) or (isinstance(exc, TaskError) and not failed.name):
        return exc
    if type(exc).__module__ == "nbray._base.errors" and not isinstance(exc, TaskError):
        return exc  # ActorDiedError and the like
    cause = exc.cause if isinstance(exc, TaskError) and exc.cause is not None else exc
    err = _task_error_for(cause)
    err.function_name = failed.name
    err.task_id = ""
    err.cause = cause
    err.remote_traceback = ""
    err.__cause__ = None
    err.__suppress_context__ = True
    return err.with_traceback(exc.__traceback__)
