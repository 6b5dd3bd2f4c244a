"""The caller's side of generator tasks: the yields' refs as the head reports them.

    head ──StreamItem(completed, index, object)──▶ reader thread ──▶ Streams.on_item
        ──▶ the stream's table (index -> object id) ──▶ wakes ObjectRefGenerator.__next__
    next(gen) ──▶ Streams.next ──▶ the index's ref, or, once the completion object is here
        and no more yields came, StopIteration (after one ref holding the task's error when
        it failed without yielding it, e.g. its worker died)
    backpressure ──▶ StreamAck(completed, consumed) ──▶ head ──▶ the worker

Each yield is held by the head for this connection when it arrives; the ObjectRef handed
out by ``next`` takes that hold over (a local count, no AddHold), and a generator dropped
before its yields are consumed releases them.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from nbray._base.errors import GetTimeoutError, NbrayConnectionError
from nbray._wire import protocol as P

from .waiter import Waiter

if TYPE_CHECKING:
    from .client import Client

__all__ = ["Streams"]


class _Stream:
    __slots__ = ("backpressure", "dropped", "failed", "items", "waiter")

    def __init__(self, backpressure: int) -> None:
        self.backpressure = backpressure
        self.items: dict[int, int] = {}  # index -> object id, not yet handed out
        self.failed = False  # a yield carried the generator's error (or it was handed out)
        self.dropped = False
        self.waiter: Waiter | None = None


class Streams:
    """The generator tasks this process called, by completion object id."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.live: dict[int, _Stream] = {}

    def open(self, completed: int, backpressure: int) -> None:
        """Before the task is submitted: its first yield may come at once."""
        self.live[completed] = _Stream(backpressure)

    def on_item(self, msg: P.StreamItem) -> None:
        st = self.live.get(msg.completed)
        if st is None or st.dropped:
            self._release(msg.object_id)
            return
        with self.client._lock:
            st.items[msg.seq] = msg.object_id
            if msg.error:
                st.failed = True
            waiter = st.waiter
            if waiter is not None:
                waiter.event.set()
        if st.dropped:  # dropped while this item went in
            self._drain(st)

    def _release(self, object_id: int) -> None:
        c = self.client
        if c.closed:  # the cluster is gone, and its objects with it
            return
        with c._ref_lock:
            c._outq.append(-object_id)
        c._flush_needed.set()

    def _drain(self, st: _Stream) -> None:
        while st.items:
            try:
                _, oid = st.items.popitem()
            except KeyError:
                return
            self._release(oid)

    def next(self, completed: int, index: int, timeout: float | None) -> tuple[int, bool] | None:
        """``(object id, taken over)`` of yield ``index``: taken over is False for the
        completion object itself (the task's error); None once the stream has ended."""
        c = self.client
        st = self.live.get(completed)
        if st is None:
            return None
        c.fetch([completed])
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with c._lock:
                oid = st.items.pop(index, None)
                if oid is not None:
                    break
                payload = c._objects.get(completed)
                if payload is not None:
                    if payload.kind == P.ERROR and not st.failed:
                        st.failed = True
                        return completed, False
                    return None
                waiter = Waiter(1)
                st.waiter = waiter
                c._waiters.setdefault(completed, []).append(waiter)
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            hook = c.blocked_hook
            if hook is not None:
                hook(True)
            try:
                waiter.event.wait(remaining)
            finally:
                if hook is not None:
                    hook(False)
                with c._lock:
                    st.waiter = None
                    waiting = c._waiters.get(completed)
                    if waiting is not None and waiter in waiting:
                        waiting.remove(waiter)
                        if not waiting:
                            del c._waiters[completed]
            if c.closed:
                raise NbrayConnectionError(
                    "lost the connection to the cluster while waiting for a generator's next "
                    f"value ({c.disconnect_reason}); call nbray.init() again"
                )
            if not waiter.event.is_set() and deadline is not None:
                if time.monotonic() >= deadline:
                    raise GetTimeoutError(
                        f"the generator task {completed:016x} yielded no value {index} within "
                        f"{timeout} s; it keeps running: call next again or cancel it"
                    )
        if st.backpressure > 0:
            c.send(P.StreamAck(completed, index + 1))
        return oid, True

    def ready(self, completed: int, index: int) -> bool:
        st = self.live.get(completed)
        if st is None:
            return True
        self.client.fetch([completed])
        return index in st.items or completed in self.client._objects

    def finished(self, completed: int, index: int) -> bool:
        st = self.live.get(completed)
        if st is None:
            return True
        c = self.client
        c.fetch([completed])
        with c._lock:
            payload = c._objects.get(completed)
            if payload is None or index in st.items:
                return False
            return payload.kind != P.ERROR or st.failed

    def drop(self, completed: int) -> None:
        """The generator is gone: release what it never handed out (never blocks: this runs
        from ``__del__``)."""
        st = self.live.pop(completed, None)
        if st is not None:
            st.dropped = True
            self._drain(st)
