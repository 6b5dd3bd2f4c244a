"""An actor's worker taking calls straight from their callers (direct actor calls).

    start_actor ──listen()──▶ a Unix socket beside the head's, in the session's 0700
        directory ──Listening(address)──▶ head ──ActorAddress──▶ callers
    caller ──connect, HMAC handshake (Connection.accept)──▶ accept thread ──attach──▶
        the worker client's reader (the same poll as the head's socket)
    caller ──RunActorCall──▶ route recorded ──▶ the worker's inbox, as the head's calls
    the call's answer ──answer()──▶ the caller (TaskDone/TaskFailed, or ViaHead when the
        answer must follow output or generator items through the head)
                     └──▶ the head's copy (direct=True): it records and stores as always

Nothing is read from a connection before its peer proved the cluster's secret.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import socket
import threading
import time
from typing import TYPE_CHECKING, Any

from nbray._wire import protocol as P
from nbray._wire.transport import Connection

from .direct import Outbox

if TYPE_CHECKING:
    from .client import Client

__all__ = ["DirectCallers"]

log = logging.getLogger("nbray._engines.local.worker")
ACCEPT_TIMEOUT = 5.0  # seconds a connecting caller has to authenticate
MAX_UNIX_PATH = 100  # sun_path holds 108 bytes


class DirectCallers:
    """The calls this worker's actor takes straight from callers, and where to answer."""

    def __init__(self, client: Client, secret: bytes) -> None:
        self.client = client
        self.secret = secret
        self.routes: dict[int, tuple[Connection, int]] = {}  # task id -> (caller, stream)
        self.outbox = Outbox()  # answers not sent yet
        self.address = ""

    def listen(self, actor_id: int) -> None:
        """Take direct calls for ``actor_id`` (a cluster reached over TCP: only through
        the head, which is where its callers are)."""
        head = self.client.address
        if not head.startswith("unix:") and "/" not in head:
            return
        path = os.path.join(os.path.dirname(head.removeprefix("unix:")), f"a{os.getpid()}")
        if len(path.encode()) > MAX_UNIX_PATH:
            return
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)  # a former worker's, with the same pid
            listener.bind(path)
            os.chmod(path, 0o600)
            listener.listen(64)
        except OSError as exc:
            listener.close()
            log.info("direct actor calls are off for this actor: %s", exc)
            return
        self.address = f"unix:{path}"
        threading.Thread(
            target=self._accept_loop, args=(listener,), name="nbray-direct", daemon=True
        ).start()
        self.client.send(P.Listening(actor_id, self.address))

    def _accept_loop(self, listener: socket.socket) -> None:
        while True:
            try:
                conn = Connection.accept(listener, self.secret, ACCEPT_TIMEOUT)
            except OSError as exc:
                if listener.fileno() < 0:
                    return
                log.info("refused a direct caller: %s", exc)
                time.sleep(0.01)  # (out of file descriptors, say: do not spin)
                continue
            self.client.attach(conn, functools.partial(self._on_message, conn))

    def _on_message(self, conn: Connection, msg: Any) -> None:
        if type(msg) is not P.RunActorCall:  # a caller sends nothing else
            return
        self.routes[msg.spec.task_id] = (conn, msg.spec.stream)
        deliver = self.client.task_handler  # the worker's inbox, as for the head's calls
        if deliver is not None:
            deliver(msg)

    def answer(self, reply: Any, spoke: bool, now: bool) -> Any:
        """Answer a direct call's caller, ``now`` or at the next ``flush`` (a run of
        calls answered together); returns what the head gets (its copy, marked)."""
        route = self.routes.pop(reply.task_id, None)
        if route is None:
            return reply
        conn, stream = route
        via_head = (
            spoke or stream or (type(reply) is P.TaskDone and any(c for _, _, c in reply.results))
        )
        self.outbox.add(conn, P.ViaHead(reply.task_id) if via_head else reply)
        if now:
            self.outbox.flush()
        return reply._replace(direct=True)
