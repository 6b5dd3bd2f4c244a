"""Worker leases, the client's side: a driver that waits for each task's result sends the
next one straight to a worker it leases, which answers straight back (Ray's direct task
submission; the head's side is ``nbray._node.leases``).

    a lone task (its caller waits for it) through the head ──want()──▶ LeaseRequest
        ──▶ head (scheduled as a task) ──LeaseGranted(worker, address)──▶ on_granted
    send(spec): the lease idle ──connect once per worker, HMAC handshake──▶ RunTask ──▶
        the worker ──TaskDone/TaskFailed──▶ on_answer ──▶ the object cache (``get``
        reads this connection with the head's) ; ViaHead ──▶ fetched from the head
                   └──Submit(spec, lease) deferred──▶ head (its record, with the next
                      message or within 50 ms)
    idle for LEASE_IDLE / LeaseRevoke (work waits for a worker: another driver's, or this
        one's run of tasks through the head) / close ──▶ LeaseReturn (after its task)
    the connection ends (the worker died) ──▶ the task out on it is fetched from the head,
        which retries or fails it; the lease is gone

One task is out on a lease at a time: a task sent behind another could wait on a worker
blocked in ``get`` for it. Tasks eligible: no ObjectRef arguments (the worker would fetch
them from the head, which records the task only later), no generator, runtime_env,
placement group, GPU or ``max_calls``; submitted by a driver on this machine (Unix socket).
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import TYPE_CHECKING, Any

from nbray._base.errors import NbrayConnectionError
from nbray._wire import protocol as P
from nbray._wire.transport import Connection

if TYPE_CHECKING:
    from .client import Client

__all__ = ["LEASE_IDLE", "Leases", "eligible"]

CONNECT_TIMEOUT = 5.0
LEASE_IDLE = 0.05  # seconds a lease goes unused before it is returned (at the flush tick)

Shape = tuple[tuple[str, float], ...]


def eligible(spec: P.TaskSpec) -> bool:
    """Whether a task may go on a lease (see the module's docstring)."""
    return not (
        spec.deps
        or spec.contained
        or spec.stream
        or spec.runtime_env
        or spec.placement
        or spec.max_calls
        or "GPU" in spec.resources
    )


def shape_of(resources: dict[str, float]) -> Shape:
    return tuple(sorted(resources.items()))


class Lease:
    __slots__ = (
        "address",
        "granted",
        "lease_id",
        "out",
        "resources",
        "returning",
        "used",
        "worker_id",
    )

    def __init__(self, lease_id: int, resources: dict[str, float]) -> None:
        self.lease_id = lease_id
        self.resources = resources
        self.granted = False
        self.worker_id = 0
        self.address = ""
        self.out = 0  # the task out on it (0: none)
        self.returning = False  # returned once ``out`` is answered
        self.used = time.monotonic()


class Leases:
    """This driver's leases, one per resource shape, and their connections."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self._lock = threading.Lock()
        self._by_shape: dict[Shape, Lease] = {}
        self._by_id: dict[int, Lease] = {}
        # one connection per worker, kept across leases of it: worker id -> connection
        self._conns: dict[int, Connection] = {}
        self._known: dict[int, set[bytes]] = {}  # worker id -> functions sent to it
        self._out: dict[int, tuple[Lease, Connection, tuple[int, ...]]] = {}  # by task id
        self._refused: set[str] = set()  # addresses that could not be reached
        self.sent = 0  # tasks sent on leases (for tests and the status view)

    # --- sending -----------------------------------------------------------------------------

    def send(self, spec: P.TaskSpec, head_func: bytes, func: bytes) -> bool:
        """Send ``spec`` to its idle leased worker; False: it goes through the head.
        ``head_func``: the code for the head's record (b"" if it has it); ``func``: the
        code, sent to a worker the first time."""
        if not self._by_shape:
            return False
        shape = shape_of(spec.resources)
        with self._lock:
            lease = self._by_shape.get(shape)
            if lease is None or lease.returning or lease.out:
                return False
            if not lease.granted:
                # not granted yet: it may hold the resources this task needs (granted
                # while the task waits behind it), so it goes back first
                self._give_back(lease)
                return False
            conn = self._connection(lease)
            if conn is None:
                self._give_back(lease)
                return False
            known = self._known.setdefault(lease.worker_id, set())
            code = b"" if spec.func_id in known else func
            known.add(spec.func_id)
            lease.out = spec.task_id
            lease.used = time.monotonic()
            self._out[spec.task_id] = (lease, conn, spec.return_ids)
            client = self.client
            client.expect(spec.return_ids)
            client.defer(P.Submit(spec, head_func, lease.lease_id))  # the head's record
            self.sent += 1
        with contextlib.suppress(NbrayConnectionError):
            client.send_posted()  # what this process posted first goes first
        try:
            conn.send([P.RunTask(spec, code, {}, {})])
        except NbrayConnectionError:
            pass  # the connection's end is read, and the task fetched from the head
        return True

    def _connection(self, lease: Lease) -> Connection | None:
        conn = self._conns.get(lease.worker_id)
        if conn is not None:
            return conn
        if lease.address in self._refused:
            return None
        try:
            conn = Connection(lease.address, self.client.secret, timeout=CONNECT_TIMEOUT)
        except (NbrayConnectionError, OSError):
            self._refused.add(lease.address)
            return None
        wid = lease.worker_id
        self._conns[wid] = conn
        self.client.attach(conn, self.on_answer, lambda: self._lost(wid, conn))
        return conn

    def on_answer(self, msg: Any) -> None:
        """The worker's answer (read by whichever thread reads)."""
        with self._lock:
            out = self._out.pop(msg.task_id, None)
            if out is None:
                return
            lease = out[0]
            lease.out = 0
            lease.used = time.monotonic()
            if lease.returning:
                self._give_back(lease)
        self.client.answered(msg, out[2])

    def _lost(self, worker_id: int, conn: Connection) -> None:
        """The connection to a worker ended (it died): its lease is gone (the head ends
        it), and the task out on it comes from the head."""
        with self._lock:
            if self._conns.get(worker_id) is conn:
                del self._conns[worker_id]
            self._known.pop(worker_id, None)
            for lease in [x for x in self._by_id.values() if x.worker_id == worker_id]:
                self._forget(lease)  # (back, in case the worker lives: a bad frame, say)
                self._post(P.LeaseReturn(lease.lease_id))
            lost = [t for t, (_, c, _) in self._out.items() if c is conn]
            oids = [oid for t in lost for oid in self._out.pop(t)[2]]
        self.client.refetch(oids)

    # --- the lease's life --------------------------------------------------------------------

    def want(self, resources: dict[str, float]) -> None:
        """A lone task of this shape went through the head: lease a worker for the next."""
        shape = shape_of(resources)
        with self._lock:
            if shape in self._by_shape:
                return
            lease = Lease(self.client.new_id(), dict(resources))
            self._by_shape[shape] = self._by_id[lease.lease_id] = lease
            # (queued under the lock: a return of it, from another thread, comes after)
            self._post(P.LeaseRequest(lease.lease_id, lease.resources))

    def _give_back(self, lease: Lease) -> None:
        """Return the lease now, or once the task out on it is answered (lock held)."""
        lease.returning = True
        if lease.out:
            return
        self._forget(lease)
        self._post(P.LeaseReturn(lease.lease_id))

    def _post(self, msg: Any) -> None:
        """Queue a message for the head; nothing once the client closed (a grant read
        while it shuts down, say: the head ends what the client held with it)."""
        with contextlib.suppress(NbrayConnectionError):
            self.client.post(msg)

    def _forget(self, lease: Lease) -> None:
        self._by_id.pop(lease.lease_id, None)
        shape = shape_of(lease.resources)
        if self._by_shape.get(shape) is lease:
            del self._by_shape[shape]

    def on_granted(self, msg: P.LeaseGranted) -> None:
        """The head's grant (on the reader thread): used from the next task on."""
        with self._lock:
            lease = self._by_id.get(msg.lease_id)
            if lease is None:  # forgotten here (its worker's connection ended): back
                self._post(P.LeaseReturn(msg.lease_id))
                return
            if not msg.address or msg.address in self._refused:
                self._give_back(lease)  # the worker takes no direct tasks
                return
            lease.worker_id, lease.address, lease.granted = msg.worker_id, msg.address, True
            lease.used = time.monotonic()

    def on_revoke(self, msg: P.LeaseRevoke) -> None:
        """Others wait for workers (or the lease ended): return it after its task."""
        with self._lock:
            lease = self._by_id.get(msg.lease_id)
            if lease is not None:
                self._give_back(lease)
            else:  # forgotten here: back (the head drops a return of what it ended)
                self._post(P.LeaseReturn(msg.lease_id))

    def return_idle(self, at_once: bool = False) -> None:
        """Return the leases unused for LEASE_IDLE (the flusher's tick), or (``at_once``)
        every lease with no task on it (the resources they hold are about to be shown)."""
        if not self._by_id:
            return
        horizon = time.monotonic() - LEASE_IDLE
        with self._lock:
            for lease in list(self._by_id.values()):
                if not lease.out and (at_once or (lease.granted and lease.used < horizon)):
                    self._give_back(lease)

    def return_all(self) -> None:
        """The client closes: its leases go back (the head would kill their workers)."""
        with self._lock:
            for lease in list(self._by_id.values()):
                lease.out = 0
                self._give_back(lease)
