"""A worker taking calls straight from their callers: an actor's (direct actor calls), or
a leased worker's tasks (``leases``).

    start_actor ──listen()──▶ a Unix socket beside the head's, in the session's 0700
        directory ──Listening(address)──▶ head ──ActorAddress──▶ callers
    Leased ──listen()──▶ the same ──LeaseReady(address)──▶ head ──LeaseGranted──▶ client
    caller ──connect, HMAC handshake (Connection.handshake)──▶ accept thread ──attach──▶
        the worker client's reader (the same poll as the head's socket)
    caller ──RunActorCall / RunTask──▶ route recorded ──▶ the worker's inbox, as the head's
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
from collections import deque
from collections.abc import Callable
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
        # task id -> (caller, its stream (a generator call), whether a task not a call)
        self.routes: dict[int, tuple[Connection, int, bool]] = {}
        self.outbox = Outbox()  # answers not sent yet
        self.actor_id = 0
        # calls waiting for their ObjectRef arguments, with their caller's later calls
        self.held: dict[Connection, deque[P.RunActorCall]] = {}
        self.known: set[int] = set()  # held calls the head has the record of
        # held while an answer leaves (route dropped, head's copy queued), and while the
        # head is told which calls of a gone caller are here: a call is one or the other
        self.lock = threading.Lock()
        self.accepting = threading.Lock()  # held from a caller's handshake to its attach
        client.arrival_hook = self.arrived
        client.handlers[P.CallKnown] = self.on_known
        client.handlers[P.CallerGone] = self.on_caller_gone
        self.address = ""

    def serve_actor(self, actor_id: int) -> None:
        """Take direct calls for ``actor_id``, which this worker hosts; the head is told
        where (it tells callers)."""
        self.actor_id = actor_id
        address = self.listen()
        if address:
            self.client.send(P.Listening(actor_id, address))

    def listen(self) -> str:
        """Take direct calls (or, leased, tasks) at the returned address ("": not here; a
        cluster reached over TCP takes them only through the head, where its callers are)."""
        if self.address:
            return self.address
        head = self.client.address
        if not head.startswith("unix:") and "/" not in head:
            return ""
        path = os.path.join(os.path.dirname(head.removeprefix("unix:")), f"a{os.getpid()}")
        if len(path.encode()) > MAX_UNIX_PATH:
            return ""
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)  # a former worker's, with the same pid
            listener.bind(path)
            os.chmod(path, 0o600)
            listener.listen(64)
        except OSError as exc:
            listener.close()
            log.info("direct calls are off for this worker: %s", exc)
            return ""
        self.address = f"unix:{path}"
        threading.Thread(
            target=self._accept_loop, args=(listener,), name="nbray-direct", daemon=True
        ).start()
        return self.address

    def _accept_loop(self, listener: socket.socket) -> None:
        while True:
            try:
                sock, _ = listener.accept()
            except OSError as exc:
                if listener.fileno() < 0:
                    return
                log.info("refused a direct caller: %s", exc)
                time.sleep(0.01)  # (out of file descriptors, say: do not spin)
                continue
            with self.accepting:
                try:
                    conn = Connection.handshake(sock, self.secret, ACCEPT_TIMEOUT)
                except OSError as exc:
                    log.info("refused a direct caller: %s", exc)
                    continue
                self.client.attach(conn, functools.partial(self._on_message, conn))

    def _on_message(self, conn: Connection, msg: Any) -> None:
        """A caller's call (read by whichever thread reads): to the inbox in order, once
        its ObjectRef arguments are here. Held meanwhile, with that caller's later calls,
        as the head holds them: the actor's thread never blocks on an argument, so a call
        it must run first (from a task that argument waits for) is not stuck behind it."""
        kind = type(msg)
        if kind is P.RunTask:  # its caller leases this worker (nbray._engines.local.leases)
            self.routes[msg.spec.task_id] = (conn, 0, True)
            self._deliver(msg)
            return
        if kind is not P.RunActorCall:  # a caller sends nothing else
            return
        spec = msg.spec
        if spec.actor_id != self.actor_id:  # an address out of date (its pid reused)
            raise ValueError(f"a call for actor {spec.actor_id:016x} reached another actor")
        self.routes[spec.task_id] = (conn, spec.stream, False)
        queue = self.held.get(conn)
        if queue is None and not spec.contained:
            self._deliver(msg)
            return
        if queue is None:
            queue = self.held[conn] = deque()
        queue.append(msg)
        if spec.contained:  # (the deps are among them) wait for the head to know the call:
            # the caller's objects it refers to may reach the head after this worker asks
            self.client.fetch_for(spec.task_id, spec.deps)
        self._release(conn)

    def on_caller_gone(self, msg: P.CallerGone) -> None:
        """A caller's connection to the head ended: everything it sent here is in this
        process's socket buffers by now (a connection still in its handshake is waited
        for; then all is read). Its calls here and not answered are named to the head,
        which sends on the ones it recorded that are neither here nor answered."""
        with self.accepting:
            pass
        self.client.read_attached()
        caller = msg.caller
        with self.lock:
            here = tuple(t for t in self.routes if t >> 32 == caller)
            self.client.send(P.CallerCalls(caller, here))

    def on_known(self, msg: P.CallKnown) -> None:
        self.known.add(msg.task_id)
        for conn in list(self.held):
            self._release(conn)

    def arrived(self, oid: int) -> None:
        """An object this worker asked for came: the calls held on it may go."""
        for conn in list(self.held):
            self._release(conn)

    def _release(self, conn: Connection) -> None:
        queue = self.held[conn]
        while queue:
            spec = queue[0].spec
            if spec.contained and spec.task_id not in self.known:
                return
            deps = self.client.payloads(spec.deps)
            if deps is None:  # (asked for again if another call's release dropped it)
                self.client.fetch(spec.deps)
                return
            self.known.discard(spec.task_id)
            self.client.forget(deps)  # they travel with the call (_resolve reads them there)
            self._deliver(queue.popleft()._replace(deps=deps))
        del self.held[conn]

    def _deliver(self, msg: P.RunActorCall | P.RunTask) -> None:
        deliver = self.client.task_handler  # the worker's inbox, as for the head's calls
        if deliver is not None:
            deliver(msg)

    def answer(self, reply: Any, spoke: bool, now: bool, forward: Callable[[Any], None]) -> None:
        """Answer a direct call's caller, ``now`` or at the next ``flush`` (a run of
        calls answered together), and ``forward`` the head its copy (marked)."""
        with self.lock:
            route = self.routes.pop(reply.task_id, None)
            if route is None:
                forward(reply)
                return
            conn, stream, task = route
            via_head = (
                spoke
                or stream
                or (type(reply) is P.TaskDone and any(c for _, _, c in reply.results))
                # a task's retriable failure: the head retries it, or stores the error
                or (task and type(reply) is P.TaskFailed and reply.retriable)
            )
            self.outbox.add(conn, P.ViaHead(reply.task_id) if via_head else reply)
            if now:
                self.outbox.flush()
            forward(reply._replace(direct=True))
