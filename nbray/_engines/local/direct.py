"""Direct actor calls, the caller's side: calls go straight to the actor's worker, and
its answers come straight back; the head records every call, off their way.

    head ──ActorAddress(actor, worker, address, last call it saw)──▶ on_address: an offer,
        kept only if this process sent no call to that actor since (so none is unfinished)
    call(spec) ──the offer taken: connect, HMAC handshake──▶ the actor's worker
        ──CallActor(spec, direct_worker)──▶ head (it records the call; sends it on itself
           only if the actor runs elsewhere by then, or to retry it)
        ──RunActorCall──▶ the worker ──TaskDone/TaskFailed──▶ on_answer ──▶ the object
           cache (``get`` waits on it, reading this connection with the head's)
                                    ──ViaHead──▶ refetch: the head sends it
    the connection ends (the worker died) ──▶ every call still out on it is fetched from
        the head, which retries or fails it as for any call; later calls go through the
        head until it offers the actor's new address

The order of one caller's calls to an actor holds whichever path each took: the switch
to direct happens only when the head has seen every earlier call finish, and back only
when the worker is gone.
"""

from __future__ import annotations

import contextlib
import threading
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from nbray._base.errors import NbrayConnectionError
from nbray._wire import protocol as P
from nbray._wire.transport import Connection

if TYPE_CHECKING:
    from .client import Client

__all__ = ["DirectCalls", "Outbox"]

CONNECT_TIMEOUT = 5.0


class Outbox:
    """Messages for direct connections, sent one frame per connection at ``flush`` (the
    client's flusher, within 50 ms; or a thread about to wait for the answers)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # held while sending: frames keep their order
        self._queued: deque[tuple[Connection, Any]] = deque()  # (appends are atomic)

    def __bool__(self) -> bool:
        return bool(self._queued)

    def add(self, conn: Connection, msg: Any) -> None:
        self._queued.append((conn, msg))

    def flush(self, before: Callable[[], None] | None = None) -> None:
        """Send what is queued; ``before()`` first, once these messages are taken (what
        it sends was queued before them)."""
        if not self._queued:
            return
        with self._lock:
            frames: dict[Connection, list[Any]] = {}
            queued = self._queued
            while queued:
                conn, msg = queued.popleft()
                frame = frames.get(conn)
                if frame is None:
                    frame = frames[conn] = []
                frame.append(msg)
            if before is not None:
                before()
            for conn, msgs in frames.items():
                with contextlib.suppress(NbrayConnectionError):  # its end is handled there
                    conn.send(msgs)


class DirectCalls:
    """This process's direct connections to actors, and the calls out on them."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self._lock = threading.Lock()
        self._last: dict[int, int] = {}  # actor id -> the last call id sent to it
        self._offers: dict[int, P.ActorAddress] = {}
        self._conns: dict[int, tuple[int, Connection]] = {}  # actor id -> (worker id, conn)
        # calls out on a direct connection: task id -> (connection, return ids)
        self._out: dict[int, tuple[Connection, tuple[int, ...]]] = {}
        self._busy: dict[Connection, int] = {}  # how many calls are out on each connection
        self._refused: set[str] = set()  # addresses that could not be reached
        self.outbox = Outbox()

    def connected(self, actor_id: int) -> bool:
        """This process sends its calls to that actor straight to its worker now."""
        return actor_id in self._conns

    def on_address(self, msg: P.ActorAddress) -> None:
        """The head's offer (on the reader thread): taken at the next call, if still good."""
        with self._lock:
            if msg.actor_id not in self._conns and self._last.get(msg.actor_id) == msg.last_call:
                self._offers[msg.actor_id] = msg

    def call(self, spec: P.TaskSpec) -> bool:
        """Send ``spec`` directly when this process may; False: post it to the head."""
        aid = spec.actor_id
        with self._lock:
            last = self._last.get(aid)
            self._last[aid] = spec.task_id
            entry = self._conns.get(aid)
            if entry is None:
                offer = self._offers.pop(aid, None) if self._offers else None
                if offer is None or offer.last_call != last:
                    return False
                entry = self._connect(offer)
                if entry is None:
                    return False
            conn = entry[1]
            self._out[spec.task_id] = (conn, spec.return_ids)
            busy = self._busy[conn] = self._busy.get(conn, 0) + 1
            # in this order, before any thread can send the call: its answer is awaited,
            # and whatever asks the head about the call (a refetch) comes after the record
            client = self.client
            client.expect(spec.return_ids)
            record = P.CallActor(spec, entry[0])  # the head records it
            if spec.contained or spec.stream:
                # the worker waits for it to fetch the arguments; a generator's items go
                # to the head, which must know the call to keep them
                client.post(record)
            else:
                client.defer(record)
            self.outbox.add(entry[1], P.RunActorCall(spec, {}))
        if busy == 1:
            self.flush()  # a lone call (a synchronous one, say) goes now, from this thread
        else:
            client.nudge()  # a run of calls: the flusher sends them together
        return True

    def flush(self) -> None:
        """Send the queued calls, after everything queued for the head before them: a
        call's worker may ask the head for an argument submitted just before (a call whose
        worker is gone is fetched from the head once its connection's end is read)."""
        self.outbox.flush(before=self._send_to_head)

    def _send_to_head(self) -> None:
        with contextlib.suppress(NbrayConnectionError):
            self.client.send_posted()

    def _connect(self, offer: P.ActorAddress) -> tuple[int, Connection] | None:
        if offer.address in self._refused:
            return None
        try:
            conn = Connection(offer.address, self.client.secret, timeout=CONNECT_TIMEOUT)
        except (NbrayConnectionError, OSError):
            self._refused.add(offer.address)
            return None
        aid = offer.actor_id
        entry = self._conns[aid] = (offer.worker_id, conn)
        self.client.attach(conn, self.on_answer, lambda: self._lost(aid, conn))
        return entry

    def forget(self, actor_id: int) -> None:
        """This process killed the actor: its later calls go through the head, after the
        kill (the calls out on the connection are answered there, or at its end)."""
        with self._lock:
            self._conns.pop(actor_id, None)
            self._offers.pop(actor_id, None)

    def on_answer(self, msg: Any) -> None:
        """The worker's answer to a call (read by whichever thread reads)."""
        with self._lock:
            out = self._out.pop(msg.task_id, None)
            if out is not None:
                self._busy[out[0]] -= 1  # (it was in _out: its connection is in _busy)
        if out is not None:
            self.client.answered(msg, out[1])

    def _lost(self, aid: int, conn: Connection) -> None:
        """The connection ended: what was out on it comes from the head."""
        with self._lock:
            if self._conns.get(aid, (0, None))[1] is conn:
                del self._conns[aid]
            self._offers.pop(aid, None)  # (its worker is gone: wait for the head's next)
            self._busy.pop(conn, None)
            lost = [t for t, (c, _) in self._out.items() if c is conn]
            oids = [oid for t in lost for oid in self._out.pop(t)[1]]
        self.client.refetch(oids)
