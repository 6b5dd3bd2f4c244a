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
from nbray._model.object_ref import ObjectRef

__all__ = ["InlineEngine"]


class _Failed:
    __slots__ = ("exc",)

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


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
        self.calls = 0  # tasks, actor creations and actor calls run so far (%%compare)

    def _store(self, value: Any) -> ObjectRef:
        oid = next(self._ids)
        self._values[oid] = value
        return ObjectRef(oid, self)

    def _resolve(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, Any]:
        def value(a: Any) -> Any:
            return self.get([a], None)[0] if isinstance(a, ObjectRef) else a

        return [value(a) for a in args], {k: value(v) for k, v in kwargs.items()}

    def _call(self, func: Callable[..., Any], args: Any, kwargs: Any, n: int) -> list[ObjectRef]:
        self.calls += 1
        try:
            a, k = self._resolve(args, kwargs)
            result = func(*a, **k)
            if asyncio.iscoroutine(result):
                result = asyncio.run(result)
            values = [result] if n <= 1 else list(result)
        except Exception as exc:
            values = [_Failed(exc)] * max(n, 1)
        refs = [self._store(v) for v in values]
        return refs if n else []

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
        self.calls += 1
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

    def get(self, refs: list[ObjectRef], timeout: float | None) -> list[Any]:
        out = []
        for ref in refs:
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
