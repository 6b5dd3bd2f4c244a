"""The head's records: its settings, its view of each task and actor, and each connection.

cluster/local.py writes config.json ──▶ HeadConfig
Head._register_task / _create_actor ──▶ TaskRecord / ActorRecord
Reactor Stream ──▶ Peer: handshake (ServerAuth), frames (FrameDecoder) ──▶ Head.dispatch
Head ──▶ Peer.send ──▶ one frame per peer per loop turn (Head.flush_soon)
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from nbray._wire import protocol as P
from nbray._wire.transport import FrameDecoder, ServerAuth, encode

from .reactor import Stream, Timer

if TYPE_CHECKING:
    from .head import Head

log = logging.getLogger("nbray.head")
HANDSHAKE_TIMEOUT = 5.0


class HeadConfig:
    """The cluster's settings, from ``SESSION_DIR/config.json`` (cluster/local.py writes it)."""

    def __init__(
        self,
        session_dir: str,
        session: str,
        node_id: str,
        resources: dict[str, float],
        gpu_ids: list[int] | None,
        namespace: str = "default",
        owner_pid: int = 0,
        tcp_host: str = "",
        tcp_port: int = 0,
        python: str = sys.executable,
        listen_fds: list[int] | None = None,
        object_store_memory: int = 0,
    ) -> None:
        self.session_dir = session_dir
        self.session = session
        self.node_id = node_id
        self.resources = resources
        self.gpu_ids = gpu_ids
        self.namespace = namespace
        self.owner_pid = owner_pid
        self.tcp_host = tcp_host
        self.tcp_port = tcp_port
        self.python = python  # the interpreter that started the cluster (informational)
        self.listen_fds = listen_fds or []
        # bytes of /dev/shm the object store may use before it spills (0: no limit)
        self.object_store_memory = object_store_memory
        self.spill_dir = str(Path(session_dir) / "spill")

    @classmethod
    def load(cls, session_dir: str) -> HeadConfig:
        data = json.loads((Path(session_dir) / "config.json").read_text())
        return cls(session_dir=session_dir, **data)


class TaskRecord:
    __slots__ = (
        "owner",
        "parent",
        "pid",
        "published",
        "spec",
        "started",
        "state",
        "submitted",
        "worker_id",
    )

    def __init__(self, spec: P.TaskSpec, owner: int, parent: int, submitted: float) -> None:
        self.spec = spec
        self.owner = owner  # the client (kernel) the work belongs to
        self.parent = parent
        self.state = "PENDING"
        self.worker_id = 0
        self.submitted = submitted
        self.started = 0.0  # when it was last dispatched
        self.pid = 0
        self.published = False  # its SUBMITTED event went out to subscribers


class EndedTask(NamedTuple):
    """What the head keeps of a task that ended while nobody subscribed to events: enough
    to replay its lifecycle to a later subscriber (head_views.replay), no arguments."""

    task_id: int
    name: str
    owner: int
    parent: int
    actor_id: int
    deps: tuple[int, ...]
    return_ids: tuple[int, ...]
    resources: dict[str, float]
    submitted: float
    started: float
    worker_id: int
    pid: int
    state: str
    ended: float
    error: str
    published: bool

    @classmethod
    def of(cls, rec: TaskRecord, state: str, ended: float, error: str) -> EndedTask:
        spec = rec.spec
        return cls(
            spec.task_id,
            spec.name,
            rec.owner,
            rec.parent,
            spec.actor_id,
            spec.deps,
            spec.return_ids,
            spec.resources,
            rec.submitted,
            rec.started,
            rec.worker_id,
            rec.pid,
            state,
            ended,
            error,
            rec.published,
        )


class ActorRecord:
    def __init__(self, spec: P.ActorSpec, cls: bytes, owner: int) -> None:
        self.spec = spec
        self.cls = cls
        self.owner = owner
        self.state = "PENDING"
        self.calls: set[int] = set()


class Peer:
    """One connection: handshake, then frames dispatched to the head."""

    def __init__(self, head: Head, stream: Stream) -> None:
        self.head = head
        self.stream = stream
        self.auth: ServerAuth | None = ServerAuth(head.secret)
        self.decoder = FrameDecoder()
        self.conn_id = 0
        self.role = ""
        self.pid = 0
        self.worker_id = 0
        self.holds: set[int] = set()
        self.outbox: list[Any] = []
        self.known_funcs: set[bytes] = set()
        self.job: P.Job | None = None  # a client's cwd and sys.path (from Hello)
        self.job_owner = 0  # workers: whose job they were last given
        stream.on_data = self.data_received
        stream.on_close = self.connection_lost
        stream.write(self.auth.hello())
        self.timeout: Timer | None = head.reactor.call_later(
            HANDSHAKE_TIMEOUT, self._handshake_timeout
        )

    def abort(self) -> None:
        self.stream.abort()

    def _handshake_timeout(self) -> None:
        if self.auth is not None:
            log.warning("closing a connection that did not authenticate in time")
            self.abort()

    def data_received(self, data: bytes) -> None:
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
        for msgs in frames:
            if type(msgs) is not list:
                log.warning(
                    "closing connection %s: a frame that is not a message list", self.conn_id
                )
                self.abort()
                return
            for msg in msgs:
                try:
                    self.head.dispatch(self, msg)
                except Exception:  # a malformed record: drop this peer, keep the cluster
                    log.exception("closing connection %s: bad %s", self.conn_id, type(msg))
                    self.abort()
                    return

    def send(self, msg: Any) -> None:
        if not self.outbox:
            self.head.flush_soon(self)
        self.outbox.append(msg)

    def flush(self) -> None:
        if self.outbox and not self.stream.closed:
            self.stream.write(encode(self.outbox))
        self.outbox = []

    def connection_lost(self) -> None:
        if self.timeout is not None:
            self.timeout.cancel()
        if self.conn_id:
            self.head.peer_lost(self)
