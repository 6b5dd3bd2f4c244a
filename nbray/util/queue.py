"""A first-in, first-out queue shared by the kernel, tasks and actors (``ray.util.queue``).

    Queue(...) ──▶ one async actor holding an ``asyncio.Queue``
    q.put / q.get (kernel, task or actor) ──▶ actor call ──▶ awaits room / an item there

A blocked ``get`` waits inside the actor (an awaiting coroutine, not a thread), so any
number of producers and consumers can block at once. A ``Queue`` pickles as its actor
handle: pass it to tasks and actors like any value.
"""

from __future__ import annotations

import asyncio
import queue
from collections.abc import Iterable
from typing import Any

import nbray
from nbray import errors

__all__ = ["Empty", "Full", "Queue"]


class Empty(queue.Empty):
    """Raised by ``get`` when the queue is empty (at once, or after ``timeout``)."""


class Full(queue.Full):
    """Raised by ``put`` when the queue is full (at once, or after ``timeout``)."""


class _QueueActor:
    """The actor behind a ``Queue``: every method runs on its event loop."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self.queue: asyncio.Queue[Any] = asyncio.Queue(maxsize)

    def qsize(self) -> int:
        return self.queue.qsize()

    def empty(self) -> bool:
        return self.queue.empty()

    def full(self) -> bool:
        return self.queue.full()

    async def put(self, item: Any, timeout: float | None = None) -> None:  # noqa: ASYNC109 (Ray's signature)
        try:
            await asyncio.wait_for(self.queue.put(item), timeout)
        except TimeoutError:
            raise Full(f"the queue stayed full (maxsize {self.maxsize}) for {timeout} s") from None

    async def get(self, timeout: float | None = None) -> Any:  # noqa: ASYNC109 (Ray's signature)
        try:
            return await asyncio.wait_for(self.queue.get(), timeout)
        except TimeoutError:
            raise Empty(f"the queue stayed empty for {timeout} s") from None

    async def put_nowait(self, item: Any) -> None:
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            raise Full(f"the queue is full (maxsize {self.maxsize})") from None

    async def put_nowait_batch(self, items: list[Any]) -> None:
        if self.maxsize > 0 and len(items) + self.queue.qsize() > self.maxsize:
            raise Full(
                f"Cannot add {len(items)} items to queue of size "
                f"{self.queue.qsize()} and maxsize {self.maxsize}."
            )
        for item in items:
            self.queue.put_nowait(item)

    async def get_nowait(self) -> Any:
        try:
            return self.queue.get_nowait()
        except asyncio.QueueEmpty:
            raise Empty("the queue is empty") from None

    async def get_nowait_batch(self, num_items: int) -> list[Any]:
        if num_items > self.queue.qsize():
            raise Empty(f"Cannot get {num_items} items from queue of size {self.queue.qsize()}.")
        return [self.queue.get_nowait() for _ in range(num_items)]


_QueueActorClass = nbray.remote(_QueueActor)


def _check_timeout(timeout: float | None) -> None:
    if timeout is not None and timeout < 0:
        raise ValueError("'timeout' must be a non-negative number")


def _plain(exc: BaseException) -> BaseException:
    """The queue's own ``Empty``/``Full`` for one raised in the actor (which arrives as a
    task error that is also an ``Empty``/``Full``), without the remote traceback."""
    for cls in (Empty, Full):
        if isinstance(exc, cls):
            return cls(*exc.args[:1]) if exc.args else cls()
    return exc


class Queue:
    """A FIFO queue usable from the kernel, tasks and actors at the same time.

    ``maxsize=0`` is unbounded; ``actor_options`` go to the actor's ``.options(...)``
    (e.g. ``{"num_cpus": 1}``).

    Example::

        from nbray.util.queue import Queue

        q = Queue(maxsize=100)

        @nbray.remote
        def produce(q, n):
            for i in range(n):
                q.put(i)

        produce.remote(q, 10)
        assert [q.get(timeout=10) for _ in range(10)] == list(range(10))
        q.shutdown()
    """

    def __init__(self, maxsize: int = 0, actor_options: dict[str, Any] | None = None) -> None:
        if not isinstance(maxsize, int) or isinstance(maxsize, bool):
            raise TypeError(f"maxsize must be an int (0: unbounded), got {maxsize!r}")
        self.maxsize = maxsize
        self.actor: Any = _QueueActorClass.options(**(actor_options or {})).remote(maxsize)

    def _call(self, method: str, *args: Any) -> Any:
        if self.actor is None:
            raise RuntimeError("this Queue was shut down; make a new Queue")
        try:
            return nbray.get(getattr(self.actor, method).remote(*args))
        except (Empty, Full) as exc:
            raise _plain(exc) from None

    async def _call_async(self, method: str, *args: Any) -> Any:
        if self.actor is None:
            raise RuntimeError("this Queue was shut down; make a new Queue")
        try:
            return await getattr(self.actor, method).remote(*args)
        except (Empty, Full) as exc:
            raise _plain(exc) from None

    def __len__(self) -> int:
        return self.size()

    def size(self) -> int:
        """The number of items in the queue."""
        return int(self._call("qsize"))

    def qsize(self) -> int:
        """The number of items in the queue."""
        return self.size()

    def empty(self) -> bool:
        """Whether the queue is empty."""
        return bool(self._call("empty"))

    def full(self) -> bool:
        """Whether the queue holds ``maxsize`` items."""
        return bool(self._call("full"))

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        """Add ``item``; if the queue is full, wait up to ``timeout`` seconds (``None``:
        forever) for room, then raise ``Full``. ``block=False`` raises ``Full`` at once."""
        if not block:
            self._call("put_nowait", item)
            return
        _check_timeout(timeout)
        self._call("put", item, timeout)

    async def put_async(self, item: Any, block: bool = True, timeout: float | None = None) -> None:  # noqa: ASYNC109 (Ray's signature)
        """``put`` for asyncio code (e.g. an async actor): awaits instead of blocking."""
        if not block:
            await self._call_async("put_nowait", item)
            return
        _check_timeout(timeout)
        await self._call_async("put", item, timeout)

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        """Remove and return the oldest item; if the queue is empty, wait up to ``timeout``
        seconds (``None``: forever), then raise ``Empty``. ``block=False``: ``Empty`` at once."""
        if not block:
            return self._call("get_nowait")
        _check_timeout(timeout)
        return self._call("get", timeout)

    async def get_async(self, block: bool = True, timeout: float | None = None) -> Any:  # noqa: ASYNC109 (Ray's signature)
        """``get`` for asyncio code: awaits instead of blocking."""
        if not block:
            return await self._call_async("get_nowait")
        _check_timeout(timeout)
        return await self._call_async("get", timeout)

    def put_nowait(self, item: Any) -> None:
        """``put(item, block=False)``."""
        self.put(item, block=False)

    def put_nowait_batch(self, items: Iterable[Any]) -> None:
        """Add all ``items`` in order in one call, or none of them (``Full``) if they do
        not all fit."""
        if not isinstance(items, Iterable):
            raise TypeError("Argument 'items' must be an Iterable")
        self._call("put_nowait_batch", list(items))

    def get_nowait(self) -> Any:
        """``get(block=False)``."""
        return self.get(block=False)

    def get_nowait_batch(self, num_items: int) -> list[Any]:
        """Remove and return ``num_items`` items in order in one call, or raise ``Empty``
        if fewer are queued (then none is removed)."""
        if not isinstance(num_items, int) or isinstance(num_items, bool):
            raise TypeError("Argument 'num_items' must be an int")
        if num_items < 0:
            raise ValueError("'num_items' must be nonnegative")
        return list(self._call("get_nowait_batch", num_items))

    def shutdown(self, force: bool = False, grace_period_s: int = 5) -> None:
        """Stop the queue's actor; items still in it are lost, and calls blocked in ``get``
        or ``put`` fail with ``ActorDiedError``. Without ``force`` the actor first gets up
        to ``grace_period_s`` seconds to answer the calls queued before this one."""
        actor, self.actor = self.actor, None
        if actor is None:
            return
        if not force:
            nbray.wait([actor.qsize.remote()], timeout=grace_period_s)
        try:
            nbray.kill(actor, no_restart=True)
        except errors.NbrayConnectionError:  # the cluster is gone already, and the actor
            return
