"""An engine that runs every ``.remote()`` call at once, in the kernel (Ray's local mode).

    %%compare ──serial run──▶ session engine swapped for InlineEngine
        f.remote(x) ──▶ f(x) runs now ──▶ value (or exception) kept under a new ObjectRef
        Actor.remote() ──▶ the instance lives in the kernel; method calls run at once
        nbray.get(ref) ──▶ the kept value, or the exception raised again

Used by ``%%compare`` to time the cell as if there were no cluster.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import Callable, Sequence
from typing import Any

from nbray._base.errors import ActorNotFoundError
from nbray._base.options import ActorOptions, TaskOptions
from nbray._model.actor import ActorHandle, actor_methods, is_async_class
from nbray._model.engine import Engine
from nbray._model.generator import (
    DYNAMIC,
    STREAMING,
    ObjectRefGenerator,
    dynamic,
    returns_code,
)
from nbray._model.object_ref import ObjectRef

__all__ = ["InlineEngine"]


class _Failed:
    __slots__ = ("exc",)

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


class _Stream:
    """A generator task run lazily: each ``next`` runs the generator to its next yield."""

    __slots__ = ("buffer", "done", "gen", "loop")

    def __init__(self, gen: Any) -> None:
        self.gen = gen
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

    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self._values: dict[int, Any] = {}
        self._counts: dict[int, int] = {}
        self._actors: dict[int, Any] = {}
        self._names: dict[tuple[str, str], ActorHandle] = {}
        self._lock = threading.Lock()
        self._streams: dict[int, _Stream] = {}  # by completion id

    def _store(self, value: Any) -> ObjectRef:
        oid = next(self._ids)
        self._values[oid] = value
        return ObjectRef(oid, self)

    def _resolve(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, Any]:
        def value(a: Any) -> Any:
            return self.get([a], None)[0] if isinstance(a, ObjectRef) else a

        return [value(a) for a in args], {k: value(v) for k, v in kwargs.items()}

    def _call(self, func: Callable[..., Any], args: Any, kwargs: Any, n: int | str) -> list[Any]:
        code = returns_code(n)
        if code == DYNAMIC:
            return self._call(dynamic(func), args, kwargs, 1)
        if code == STREAMING:
            return [self._generator(func, args, kwargs)]
        try:
            a, k = self._resolve(args, kwargs)
            result = func(*a, **k)
            if asyncio.iscoroutine(result):
                result = asyncio.run(result)
            values = [result] if code <= 1 else list(result)
        except Exception as exc:
            values = [_Failed(exc)] * max(code, 1)
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
        return self._call(func, args, kwargs, options.num_returns)

    def create_actor(
        self, cls: type, args: tuple[Any, ...], kwargs: dict[str, Any], options: ActorOptions
    ) -> ActorHandle:
        if options.name and options.get_if_exists:
            existing = self._names.get((options.namespace or "", options.name))
            if existing is not None:
                return existing
        a, k = self._resolve(args, kwargs)
        aid = next(self._ids)
        self._actors[aid] = cls(*a, **k)
        handle = ActorHandle(
            self, aid, cls.__name__, actor_methods(cls), is_async=is_async_class(cls)
        )
        if options.name:
            self._names[(options.namespace or "", options.name)] = handle
        return handle

    def call_actor(
        self,
        handle: ActorHandle,
        method: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        num_returns: int,
    ) -> list[ObjectRef]:
        instance = self._actors.get(handle._actor_id)
        if instance is None:
            from nbray._base.errors import ActorDiedError

            return [self._store(_Failed(ActorDiedError("the actor was killed")))]
        return self._call(getattr(instance, method), args, kwargs, num_returns)

    def put(self, value: Any) -> ObjectRef:
        return self._store(value)

    # --- generator tasks: run lazily, one yield per next --------------------------------------

    def _generator(self, func: Callable[..., Any], args: Any, kwargs: Any) -> ObjectRefGenerator:
        completed = ObjectRef(next(self._ids), self)
        try:
            a, k = self._resolve(args, kwargs)
            st = _Stream(func(*a, **k))
        except Exception as exc:
            st = _Stream(iter(()))
            st.close()
            self._values[completed.id] = _Failed(exc)
        self._streams[completed.id] = st
        return ObjectRefGenerator(completed, self)

    def _step(self, cid: int, st: _Stream) -> ObjectRef | None:
        """Run the generator to its next yield: its ref, or None once it has ended."""
        try:
            return self._store(st.step())
        except StopIteration:
            self._values[cid] = None
        except Exception as exc:
            self._values[cid] = _Failed(exc)
            st.close()
            return self._store(_Failed(exc))
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
                raise value.exc
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
        self._actors.pop(handle._actor_id, None)

    def release_actor(self, handle: ActorHandle) -> None:
        self._actors.pop(handle._actor_id, None)

    def get_actor(self, name: str, namespace: str | None) -> ActorHandle:
        handle = self._names.get((namespace or "", name))
        if handle is None:
            raise ActorNotFoundError(f"no actor named {name!r} ran in this serial run")
        return handle

    def cluster_info(self) -> dict[str, Any]:
        total = {"CPU": 1.0}
        return {"nodes": [], "total": total, "available": total}

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
