"""ObjectRef: a reference to a value in the cluster, counted so the value is freed with it.

creation (put, .remote()) ──incref──▶ engine ──▶ head holds the object for this process
pickled into a value/args ──note_contained_ref──▶ the holder object pins it
unpickled elsewhere ──incref(borrowed)──▶ AddHold from that process
last local ObjectRef gone (__del__) ──decref──▶ Release ──▶ freed when nobody holds it
"""

from __future__ import annotations

import threading
from collections.abc import Generator
from typing import TYPE_CHECKING, Any

from nbray._wire.serialization import note_contained_ref

if TYPE_CHECKING:
    import concurrent.futures

    from .engine import Engine

__all__ = ["ObjectID", "ObjectRef"]


class ObjectRef:
    """A future value computed or stored by the cluster (Ray: ``ray.ObjectRef``).

    Example::

        ref = nbray.put([1, 2, 3])
        assert nbray.get(ref) == [1, 2, 3]
    """

    __slots__ = ("__weakref__", "_engine", "id")

    def __init__(self, object_id: int, engine: Engine, borrowed: bool = False) -> None:
        self.id = object_id
        self._engine = engine
        engine.incref(object_id, borrowed)

    def __del__(self) -> None:
        engine = getattr(self, "_engine", None)
        if engine is not None:
            try:
                engine.decref(self.id)
            except Exception:  # interpreter shutdown: nothing left to release to
                return

    def hex(self) -> str:
        """The id as 16 hex digits."""
        return f"{self.id:016x}"

    def binary(self) -> bytes:
        return self.id.to_bytes(8, "big")

    def __repr__(self) -> str:
        return f"ObjectRef({self.hex()})"

    def _repr_html_(self) -> str:
        from .reprs import object_ref_html

        return object_ref_html(self)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ObjectRef) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    def __reduce__(self) -> tuple[Any, ...]:
        note_contained_ref(self.id)
        return (_rebuild_ref, (self.id,))

    def future(self) -> concurrent.futures.Future[Any]:
        """A ``concurrent.futures.Future`` resolved with the value (or its error)."""
        import concurrent.futures

        fut: concurrent.futures.Future[Any] = concurrent.futures.Future()

        def resolve() -> None:
            try:
                fut.set_result(self._engine.get([self], None)[0])
            except BaseException as exc:
                fut.set_exception(exc)

        threading.Thread(target=resolve, name="nbray-future", daemon=True).start()
        return fut

    def __await__(self) -> Generator[Any, None, Any]:
        import asyncio

        return asyncio.wrap_future(self.future()).__await__()


#: Ray's older name for ObjectRef (``ray.ObjectID``)
ObjectID = ObjectRef


def _rebuild_ref(object_id: int) -> ObjectRef:
    from .session import current_engine

    return ObjectRef(object_id, current_engine(), borrowed=True)
