"""The head's connections: each client, worker and watcher, from handshake to close.

    Reactor Stream ──bytes──▶ Peer: handshake (ServerAuth), frames (FrameDecoder)
        ──each message──▶ Connections.on_message (the Router) ──▶ handlers
    Hello ──▶ Connections.hello: a connection id, and a worker's id, are registered
    handlers ──Peer.send──▶ outbox ──one frame per peer per loop turn (flush_soon)──▶ Stream
    Stream closed ──▶ Connections.lost ──▶ on_lost (the head: free holds, cancel work)

A peer knows nothing of the head: it reports to its ``PeerHost`` (``Connections``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol

from nbray._wire import protocol as P
from nbray._wire.transport import FrameDecoder, ServerAuth, encode

from .reactor import Reactor, Stream, Timer

__all__ = ["HANDSHAKE_TIMEOUT", "Connections", "Peer", "PeerHost"]

log = logging.getLogger("nbray.head")
HANDSHAKE_TIMEOUT = 5.0


class PeerHost(Protocol):
    """What a connection reports to."""

    def message(self, peer: Peer, msg: Any) -> None: ...

    def flush_soon(self, peer: Peer) -> None: ...

    def lost(self, peer: Peer) -> None: ...


class Peer:
    """One connection: handshake, then frames, each message handed to the host."""

    def __init__(self, host: PeerHost, stream: Stream, secret: bytes, reactor: Reactor) -> None:
        self.host = host
        self.stream = stream
        self.auth: ServerAuth | None = ServerAuth(secret)
        self.decoder = FrameDecoder()
        self.conn_id = 0
        self.role = ""
        self.pid = 0
        self.worker_id = 0
        self.holds: set[int] = set()
        self.outbox: list[Any] = []
        self.known_funcs: set[bytes] = set()
        self.job: P.Job | None = None  # a client's cwd and sys.path (from Hello)
        stream.on_data = self.data_received
        stream.on_close = self.connection_lost
        stream.write(self.auth.hello())
        self.timeout: Timer | None = reactor.call_later(HANDSHAKE_TIMEOUT, self._handshake_timeout)

    def abort(self) -> None:
        self.stream.abort()

    def _handshake_timeout(self) -> None:
        if self.auth is not None:
            log.warning("closing a connection that did not authenticate in time")
            self.abort()

    def data_received(self, data: bytes | memoryview) -> None:
        if self.auth is not None:
            verdict, reply, data = self.auth.feed(data)
            if verdict is None:
                return
            if verdict is False:
                log.warning("rejected a connection that failed authentication")
                self.auth = None
                self.role = "rejected"
                self.abort()
                return
            self.auth = None
            if self.timeout is not None:
                self.timeout.cancel()
            self.stream.write(reply)
            if not data:
                return
        if self.role == "rejected":
            return
        try:
            frames = self.decoder.feed(data)
        except Exception as exc:  # malformed frame from an authenticated peer
            log.warning("closing connection %s: bad frame (%s)", self.conn_id, exc)
            self.abort()
            return
        host = self.host
        for msgs in frames:
            if type(msgs) is not list:
                log.warning(
                    "closing connection %s: a frame that is not a message list", self.conn_id
                )
                self.abort()
                return
            for msg in msgs:
                try:
                    host.message(self, msg)
                except Exception:  # a malformed record: drop this peer, keep the cluster
                    log.exception("closing connection %s: bad %s", self.conn_id, type(msg))
                    self.abort()
                    return

    def send(self, msg: Any) -> None:
        if not self.outbox:
            self.host.flush_soon(self)
        self.outbox.append(msg)

    def flush(self) -> None:
        if self.outbox and not self.stream.closed:
            self.stream.write(encode(self.outbox))
        self.outbox = []

    def connection_lost(self) -> None:
        if self.timeout is not None:
            self.timeout.cancel()
        if self.conn_id:
            self.host.lost(self)


class Connections:
    """Every open connection by id, the workers' by worker id; batches their writes.

    ``on_message(peer, msg)`` gets each message (the router), ``on_lost(peer)`` each
    registered connection that closed, after it left the tables."""

    def __init__(
        self,
        secret: bytes,
        reactor: Reactor,
        on_message: Callable[[Peer, Any], None],
        on_lost: Callable[[Peer], None],
    ) -> None:
        self.secret = secret
        self.reactor = reactor
        self.message = on_message  # PeerHost.message, without a hop
        self.on_lost = on_lost
        self.peers: dict[int, Peer] = {}
        self.workers: dict[int, Peer] = {}  # worker id -> its connection
        self._next_conn = 1
        self._dirty: list[Peer] = []

    def accept(self, stream: Stream) -> Peer:
        return Peer(self, stream, self.secret, self.reactor)

    def hello(self, peer: Peer, msg: P.Hello) -> bool:
        """Register ``peer`` under a new connection id; False if it said Hello before."""
        if peer.conn_id:
            return False
        peer.conn_id = self._next_conn
        self._next_conn += 1
        peer.role = msg.role
        peer.pid = msg.pid
        if msg.cwd:
            peer.job = P.Job(msg.cwd, msg.sys_path)
        self.peers[peer.conn_id] = peer
        if msg.role == "worker":
            peer.worker_id = msg.worker_id
            self.workers[msg.worker_id] = peer
        return True

    def lost(self, peer: Peer) -> None:
        self.peers.pop(peer.conn_id, None)
        if peer.role == "worker" and self.workers.get(peer.worker_id) is peer:
            del self.workers[peer.worker_id]
        self.on_lost(peer)

    def drop_worker(self, worker_id: int) -> None:
        """The worker's process exited: close its connection if still open."""
        peer = self.workers.pop(worker_id, None)
        if peer is not None:
            peer.abort()

    def clients(self) -> dict[int, int]:
        """The client (not worker) connections: id -> process id."""
        return {c: p.pid for c, p in self.peers.items() if p.role != "worker"}

    def flush_soon(self, peer: Peer) -> None:
        if not self._dirty:
            self.reactor.call_soon(self.flush)
        self._dirty.append(peer)

    def flush(self) -> None:
        dirty, self._dirty = self._dirty, []
        for peer in dirty:
            peer.flush()

    def flush_all(self) -> None:
        for peer in list(self.peers.values()):
            peer.flush()
