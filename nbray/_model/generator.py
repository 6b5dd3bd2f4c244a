"""Generators as tasks: each yielded value becomes an object while the task still runs.

    @nbray.remote def f(): yield ... ──▶ f.remote() ──▶ ObjectRefGenerator
    worker: each yield ──▶ an object ──▶ the head ──▶ the caller's next(gen) returns its ref
    the task ends ──▶ gen.completed() is ready; next(gen) raises StopIteration

``num_returns="streaming"`` (the default for a generator function, as in Ray 2.60) gives an
:class:`ObjectRefGenerator`; ``num_returns="dynamic"`` gives one ObjectRef whose value is a
:class:`DynamicObjectRefGenerator` of the yielded objects, once the task has finished.
An exception raised by the generator arrives as the ref of the matching ``next``: getting it
raises, and the ``next`` after it raises StopIteration.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from .object_ref import ObjectRef

if TYPE_CHECKING:
    from .engine import Engine

__all__ = [
    "DYNAMIC",
    "STREAMING",
    "DynamicObjectRefGenerator",
    "ObjectRefGenerator",
    "is_generator_function",
    "returns_code",
]

STREAMING = -1  # num_returns="streaming", as an int for the engines and the wire
DYNAMIC = -2  # num_returns="dynamic"


def returns_code(num_returns: int | str) -> int:
    """``num_returns`` as an int: a count, STREAMING or DYNAMIC."""
    if num_returns == "streaming":
        return STREAMING
    if num_returns == "dynamic":
        return DYNAMIC
    return int(num_returns)


def is_generator_function(func: Any) -> bool:
    """Whether calling ``func`` makes a generator (sync or async): Ray streams its yields."""
    func = getattr(func, "__func__", func)
    return inspect.isgeneratorfunction(func) or inspect.isasyncgenfunction(func)


class ObjectRefGenerator:
    """The refs of a generator task's yields, in order, each as soon as it is produced
    (Ray: ``ray.ObjectRefGenerator``).

    Example::

        @nbray.remote
        def count(n):
            for i in range(n):
                yield i

        gen = count.remote(3)
        assert [nbray.get(ref) for ref in gen] == [0, 1, 2]
        nbray.get(gen.completed())  # ready once the task has ended
    """

    def __init__(self, completed: ObjectRef, engine: Engine) -> None:
        self._completed = completed
        self._engine = engine
        self._index = 0  # refs handed out so far
        self._done = False

    def __iter__(self) -> ObjectRefGenerator:
        return self

    def __next__(self) -> ObjectRef:
        ref = self._next(None)
        if ref is None:
            raise StopIteration
        return ref

    def _next(self, timeout: float | None) -> ObjectRef | None:
        if self._done:
            return None
        ref = self._engine.stream_next(self._completed, self._index, timeout)
        if ref is None:
            self._done = True
            return None
        self._index += 1
        return ref

    def _next_sync(self, timeout_s: float | None = None) -> ObjectRef | None:
        """The next ref, or None once the stream has ended (Ray's ``_next_sync``); raises
        TimeoutError when nothing came within ``timeout_s``."""
        return self._next(timeout_s)

    def __aiter__(self) -> ObjectRefGenerator:
        return self

    async def __anext__(self) -> ObjectRef:
        import asyncio

        ref = await asyncio.to_thread(self._next, None)
        if ref is None:
            raise StopAsyncIteration
        return ref

    def completed(self) -> ObjectRef:
        """A ref ready when the task has ended; ``get`` raises its error if it failed."""
        return self._completed

    def is_finished(self) -> bool:
        """Whether ``next`` would raise StopIteration now: every yield was consumed and the
        task has ended."""
        return self._done or self._engine.stream_finished(self._completed, self._index)

    def next_ready(self) -> bool:
        """Whether ``next`` would return at once (used by ``wait`` on a generator)."""
        return self._done or self._engine.stream_ready(self._completed, self._index)

    def _cancel(self, force: bool, recursive: bool) -> None:
        """``nbray.cancel(gen)``: cancel the generator's task."""
        self._engine.cancel(self._completed, force, recursive)

    def __del__(self) -> None:
        engine = getattr(self, "_engine", None)
        if engine is not None:
            try:
                engine.stream_drop(self._completed, self._index)
            except Exception:  # interpreter shutdown
                return

    def __repr__(self) -> str:
        return f"ObjectRefGenerator({self._completed.hex()}, next={self._index})"


class DynamicObjectRefGenerator:
    """The value of a ``num_returns="dynamic"`` task: its yields' refs, in order
    (Ray: ``ray.DynamicObjectRefGenerator``).

    Example::

        @nbray.remote(num_returns="dynamic")
        def parts(n):
            yield from range(n)

        gen = nbray.get(parts.remote(2))
        assert [nbray.get(r) for r in gen] == [0, 1]
    """

    def __init__(self, refs: list[ObjectRef]) -> None:
        self._refs = list(refs)

    def __iter__(self) -> Iterator[ObjectRef]:
        return iter(self._refs)

    def __len__(self) -> int:
        return len(self._refs)

    def __repr__(self) -> str:
        return f"DynamicObjectRefGenerator({len(self._refs)} refs)"


def dynamic(func: Any) -> Any:
    """``func`` (a generator function) as a function returning a DynamicObjectRefGenerator
    of its yields, each stored with ``put`` where the task runs."""
    from .session import current_engine

    def run(*args: Any, **kwargs: Any) -> DynamicObjectRefGenerator:
        engine = current_engine()
        return DynamicObjectRefGenerator([engine.put(v) for v in func(*args, **kwargs)])

    run.__name__ = getattr(func, "__name__", "generator")
    run.__qualname__ = getattr(func, "__qualname__", run.__name__)
    return run
