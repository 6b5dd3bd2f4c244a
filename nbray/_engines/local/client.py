"""The client: one per process (kernel, script or worker) talking to the head.

    API call (kernel thread) ──send()──▶ Connection ──▶ head
    head ──▶ reader thread ──handlers──▶ object cache (wakes get/wait), replies,
                                         task output, events, and (in workers) tasks to run
    ObjectRef.__del__ / unpickled refs ──▶ ordered hold/release queue ──▶ flushed before the
                                            next send, or by the flusher thread within ~20 ms

The reader thread never runs user code except event and output callbacks, which must be
quick. Payloads fetched from the head are cached while a local ObjectRef to them lives.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import logging
import mmap
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from nbray._base.errors import GetTimeoutError, NbrayConnectionError, RemoteError
from nbray._wire import progress_lines, serialization, shm
from nbray._wire import protocol as P
from nbray._wire.transport import Connection

from .direct import DirectCalls
from .leases import Leases
from .reading import Reading
from .streams import Streams
from .waiter import Waiter as _Waiter

log = logging.getLogger("nbray._engines.local.client")
INLINE_LIMIT = 100 * 1024  # larger values go to shared memory
LONE_AGE = 0.002  # seconds after which a call's result not back does not batch the next


def _nothing() -> None:
    pass


class Client:
    """A connection to the head, with the object cache and reference counts of this process."""

    def __init__(
        self,
        address: str,
        secret: bytes,
        role: str = "client",
        worker_id: int = 0,
        task_handler: Callable[[Any], None] | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.address = address
        self.role = role
        self.secret = secret
        self.conn = Connection(address, secret, timeout=timeout)
        if role == "worker":
            hello = P.Hello(role, os.getpid(), worker_id)
        else:
            cwd = os.getcwd()
            path = tuple(os.path.abspath(p) if p else cwd for p in sys.path)
            hello = P.Hello(role, os.getpid(), worker_id, cwd, path)
        self.conn.send([hello])
        first = self.conn.recv()
        if not first or not isinstance(first[0], P.Welcome):
            self.conn.close()
            raise NbrayConnectionError(f"the cluster at {address} did not welcome this client")
        welcome: P.Welcome = first[0]
        self.client_id = welcome.client_id
        self.session = welcome.session
        self.spill_dir = welcome.spill_dir
        self.node_id = welcome.node_id
        self.namespace = welcome.namespace
        self._counter = itertools.count(1)
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._send_lock = threading.Lock()
        self._objects: dict[int, P.Payload] = {}
        self._requested: set[int] = set()
        self._maps: dict[int, mmap.mmap] = {}
        self._refs: dict[int, int] = {}
        self._ref_lock = threading.Lock()
        self._late_drops: deque[int] = deque()  # released, local copy not yet dropped
        # messages to send, and object holds (+id) and releases (-id), in order
        self._outq: deque[Any] = deque()
        self._posted = False  # a message was posted since the last send began
        # the result of the last call sent by its caller's thread (post_call), until it
        # comes back here, and when that send was
        self._lone = 0
        self._lone_sent = 0.0
        self._waiters: dict[int, list[_Waiter]] = {}
        self._flush_needed = threading.Event()
        self._replies: dict[int, list[Any]] = {}
        self.closed = False
        self.disconnect_reason = ""
        self.output_handler: Callable[[P.Output], None] | None = None
        self.event_handlers: list[Callable[[dict[str, Any]], None]] = []
        self.task_handler = task_handler
        self.blocked_hook: Callable[[bool], None] | None = None
        self.known_funcs: set[bytes] = set()
        self.handlers: dict[type, Callable[[Any], None]] = {
            P.ObjectReady: self._on_object_ready,
            P.Reply: self._on_reply,
            P.Output: self._on_output,
            P.Events: self._on_events,
            P.CollectGarbage: _collect_garbage,
        }
        self.streams = Streams(self)  # generator tasks this process called
        self.handlers[P.StreamItem] = self.streams.on_item
        self.direct = DirectCalls(self)  # actor calls sent straight to the actor's worker
        # told of each object that arrives (an actor's worker: direct calls held on it)
        self.arrival_hook: Callable[[int], None] | None = None
        # sends what waits for direct connections (the flusher runs it after its own send)
        self.extra_flush: Callable[[], None] = self.direct.flush
        self.handlers[P.ActorAddress] = self.direct.on_address
        # a driver on this machine leases workers for the tasks it waits for one by one
        local = address.startswith("unix:") or "/" in address
        self.leases = Leases(self) if role != "worker" and local else None
        if self.leases is not None:
            self.handlers[P.LeaseGranted] = self.leases.on_granted
            self.handlers[P.LeaseRevoke] = self.leases.on_revoke
        for queued in first[1:]:
            self._handle(queued)
        self._reading = Reading(self.conn, self._handle, self._connection_ended)
        self._reader = threading.Thread(target=self._reading.run, name="nbray-reader", daemon=True)
        self._reader.start()
        self._flusher = threading.Thread(target=self._flush_loop, name="nbray-flush", daemon=True)
        self._flusher.start()

    # --- ids and sending -------------------------------------------------------------------

    def new_id(self) -> int:
        return (self.client_id << 32) | next(self._counter)

    def send(self, *msgs: Any) -> None:
        """Send now, after everything queued before (posts, holds and releases)."""
        if self.closed:
            raise NbrayConnectionError(
                f"the connection to the cluster is closed ({self.disconnect_reason or 'shut down'})"
                "; call nbray.init() again"
            )
        with self._send_lock:
            self._posted = False
            batch = self._drain()
            batch.extend(msgs)
            if batch:
                self.conn.send(batch)

    def send_posted(self) -> None:
        """Send the queue if a message was posted to it since the last send, or wait for a
        send under way: what was posted is sent when this returns (what is only deferred
        may wait)."""
        if self._posted or self._send_lock.locked():
            self.send()

    def post(self, msg: Any) -> None:
        """Queue ``msg``: the flusher thread sends it at once, batched with whatever else
        is queued by then; any ``send`` (every blocking call) sends it first."""
        if self.closed:
            self.send()  # raises the connection error
        self._outq.append(msg)
        self._posted = True
        self.nudge()

    def post_call(self, msg: Any, result_id: int) -> bool:
        """Post a task or call whose first result is ``result_id``. A lone one (the
        result of the last sent this way is back, or that was over ``LONE_AGE`` ago) is
        sent by this thread, which waits for its result next, as a synchronous caller
        does: no hand-off to the flusher thread. A run of them is batched by the flusher
        (one frame, one wake of the head, for many). True: the last one's result was back
        (its caller waits for each: a synchronous caller)."""
        now = time.monotonic()
        back = not self._lone
        if (not back and now - self._lone_sent < LONE_AGE) or self._send_lock.locked():
            self.post(msg)
            return False
        self._lone = result_id
        self._lone_sent = now
        self.send(msg)
        return back

    def nudge(self) -> None:
        """Wake the flusher thread: it sends what is queued, here and in ``extra_flush``."""
        if not self._flush_needed.is_set():  # (set() takes a lock even when it is set)
            self._flush_needed.set()

    def defer(self, msg: Any) -> None:
        """Queue ``msg`` without waking the flusher: it goes ahead of the next message
        sent, or with the flusher's next tick (50 ms) at the latest."""
        self._outq.append(msg)

    def _drain(self) -> list[Any]:
        """Queued items as messages, in order; runs of hold (+id) / release (-id) marks
        become one AddHold / Release each."""
        out: list[Any] = []
        q = self._outq
        run: list[int] = []
        holding = True
        while q:
            try:
                item = q.popleft()
            except IndexError:
                break
            if type(item) is int:
                hold = item > 0
                if run and hold is not holding:
                    out.append(P.AddHold(tuple(run)) if holding else P.Release(tuple(run)))
                    run = []
                holding = hold
                run.append(item if hold else -item)
                continue
            if run:
                out.append(P.AddHold(tuple(run)) if holding else P.Release(tuple(run)))
                run = []
            out.append(item)
        if run:
            out.append(P.AddHold(tuple(run)) if holding else P.Release(tuple(run)))
        return out

    def _flush_loop(self) -> None:
        # posts wake this thread at once; releases ride along, or go within 50 ms
        while not self.closed:
            self._flush_needed.wait(0.05)
            self._flush_needed.clear()
            if self._outq and not self.closed:
                with contextlib.suppress(NbrayConnectionError):
                    self.send()
            self.extra_flush()
            if self.leases is not None:
                self.leases.return_idle()
            if self._late_drops:
                with self._lock:
                    self._drop_late()

    # --- reference counting ------------------------------------------------------------------

    def incref(self, oid: int, borrowed: bool) -> None:
        with self._ref_lock:
            n = self._refs.get(oid, 0)
            self._refs[oid] = n + 1
            if n == 0 and borrowed:
                self._outq.append(oid)
                self._flush_needed.set()

    def decref(self, oid: int) -> None:
        if self.closed:
            return
        with self._ref_lock:
            n = self._refs.get(oid, 0) - 1
            if n > 0:
                self._refs[oid] = n
                return
            self._refs.pop(oid, None)
            self._outq.append(-oid)
        self._late_drops.append(oid)
        # decref runs from ObjectRef.__del__, so also from a garbage collection that fires
        # while this very thread holds the lock (in fetch, say): never block on it here
        if self._lock.acquire(blocking=False):
            try:
                self._drop_late()
            finally:
                self._lock.release()

    def _drop_late(self) -> None:
        """Forget the local copies of released objects (the lock is held)."""
        while self._late_drops:
            oid = self._late_drops.popleft()
            self._objects.pop(oid, None)
            self._requested.discard(oid)
            self._maps.pop(oid, None)

    # --- objects -----------------------------------------------------------------------------

    def store(self, value: Any, oid: int, what: str = "value") -> tuple[P.Payload, tuple[int, ...]]:
        """Serialise ``value`` as object ``oid``: inline when small, else a shm segment."""
        return self.store_serialized(serialization.serialize(value, what), oid)

    def store_serialized(
        self, s: serialization.Serialized, oid: int
    ) -> tuple[P.Payload, tuple[int, ...]]:
        size = serialization.packed_size(s)
        if size <= INLINE_LIMIT:
            return P.Payload(P.INLINE, serialization.pack(s)), s.contained
        name = shm.segment_name(self.session, oid)
        try:
            new = shm.create(name, size, self.spill_dir)
        except OSError as exc:
            from nbray._base.errors import ObjectStoreFullError

            disk = shm.available_bytes(self.spill_dir) if self.spill_dir else 0
            raise ObjectStoreFullError(
                f"cannot store a {size / 1e6:.1f} MB object: neither /dev/shm "
                f"({shm.available_bytes() / 1e6:.1f} MB free) nor the spill directory "
                f"{self.spill_dir} ({disk / 1e6:.1f} MB free) has room ({exc}). Free "
                "objects (drop their ObjectRefs) or make room on those filesystems."
            ) from exc
        with new:
            new.write(serialization.chunks(s))
        return P.Payload(P.SHM, segment=new.segment, size=size), s.contained

    def stored(self, oid: int, payload: P.Payload) -> None:
        """This process put ``oid`` in shared memory itself: its ``get`` maps the segment
        without asking the head, for as long as this process holds a ref to it. (A small,
        inline value is not kept here too: the head has it, and a program holding many
        small refs would hold every value twice.)"""
        if payload.kind != P.SHM:
            return
        with self._lock:
            if oid in self._refs:
                self._objects[oid] = payload

    def fetch(self, oids: Iterable[int]) -> None:
        """Ask the head for these objects, once each."""
        with self._lock:
            wanted = tuple(o for o in oids if o not in self._objects and o not in self._requested)
            self._requested.update(wanted)
        if wanted:
            self.send(P.Fetch(wanted))

    def expect(self, oids: Iterable[int]) -> None:
        """These objects come without a Fetch (a direct call's answer): ``get`` waits."""
        with self._lock:
            self._requested.update(oids)

    def refetch(self, oids: Iterable[int]) -> None:
        """Expected objects that will not come that way after all: ask the head, for the
        ones still referenced here."""
        with self._lock:
            wanted = [o for o in oids if o not in self._objects and o in self._refs]
            self._requested.difference_update(wanted)
        if wanted and not self.closed:
            with contextlib.suppress(NbrayConnectionError):
                self.fetch(wanted)

    def payloads(self, oids: Iterable[int]) -> dict[int, P.Payload] | None:
        """The payloads of these objects, if all are here; else None."""
        objects = self._objects
        with self._lock:
            if not all(o in objects for o in oids):
                return None
            return {o: objects[o] for o in oids}

    def forget(self, oids: Iterable[int]) -> None:
        """Drop cached objects this process holds no ref to (they were passed on)."""
        with self._lock:
            for o in oids:
                if o not in self._refs:
                    self._objects.pop(o, None)
                    self._requested.discard(o)

    def arrived(self, oid: int, payload: P.Payload) -> None:
        """An object's payload came on another connection (a direct call's answer)."""
        self._on_object_ready(P.ObjectReady(oid, payload))

    def answered(self, msg: Any, return_ids: tuple[int, ...]) -> None:
        """A worker's answer on a direct connection (to a direct actor call, or a task
        sent on a lease): its values, its error, or (ViaHead) fetch them from the head."""
        kind = type(msg)
        if kind is P.TaskDone:
            for oid, payload, _ in msg.results:
                self.arrived(oid, payload)
        elif kind is P.TaskFailed:
            error = P.Payload(P.ERROR, msg.error)
            for oid in return_ids:
                self.arrived(oid, error)
        else:  # ViaHead
            self.refetch(return_ids)

    def attach(
        self, conn: Connection, handle: Callable[[Any], None], closed: Callable[[], None] = _nothing
    ) -> None:
        """Read ``conn`` too, with this client's own connection (see reading.py)."""
        self._reading.attach(conn, handle, closed)

    def read_attached(self) -> None:
        """Read what the attached connections hold now (a handler runs on the thread that
        reads them)."""
        self._reading.read_extras()

    def fetch_for(self, task_id: int, oids: Iterable[int]) -> None:
        """Ask the head for a direct call's arguments, once it has the call's record
        (it then says so: CallKnown)."""
        with self._lock:
            wanted = tuple(o for o in oids if o not in self._objects and o not in self._requested)
            self._requested.update(wanted)
        self.send(P.Fetch(wanted, task_id))

    def ready(self, oid: int) -> bool:
        return oid in self._objects

    def wait_for(
        self, oids: list[int], num_ready: int, timeout: float | None, stop_on_error: bool = False
    ) -> list[int]:
        """Block until ``num_ready`` of ``oids`` are here (or timeout, or with
        ``stop_on_error`` one of them is an error); returns those ready."""
        self.fetch(oids)
        self.extra_flush()  # direct calls queued: their answers come without a fetch
        objects = self._objects
        with self._lock:
            missing = [o for o in oids if o not in objects]
            waiter = _Waiter(num_ready - (len(oids) - len(missing)), stop_on_error)
            failed = stop_on_error and any(objects[o].kind == P.ERROR for o in oids if o in objects)
            if waiter.remaining > 0 and not self.closed and not failed:
                for o in missing:
                    self._waiters.setdefault(o, []).append(waiter)
            else:
                waiter.event.set()
        if not waiter.event.is_set() and self.blocked_hook is not None:
            # a worker: ask the head first (one round trip); objects that exist already
            # arrive before its answer, and a task whose objects are all there is not
            # blocked, so its CPU is not lent and no worker starts in its place
            self.barrier()
        if not waiter.event.is_set():
            blocked = self.blocked_hook is not None
            if blocked:
                self.blocked_hook(True)  # type: ignore[misc]
            try:
                # read the answer in this thread, which waits anyway (see reading.py)
                if self._reading.pump(waiter.event.is_set, timeout) is None:
                    waiter.event.wait(timeout)
            finally:
                if blocked:
                    self.blocked_hook(False)  # type: ignore[misc]
                with self._lock:
                    for o in missing:
                        waiting = self._waiters.get(o)
                        if waiting is not None:
                            with contextlib.suppress(ValueError):
                                waiting.remove(waiter)
                            if not waiting:
                                del self._waiters[o]
        done = [o for o in oids if o in objects]
        if self.closed and len(done) < num_ready:
            raise NbrayConnectionError(
                f"lost the connection to the cluster while waiting for objects "
                f"({self.disconnect_reason}); call nbray.init() again"
            )
        return done

    def get_values(self, oids: list[int], timeout: float | None) -> list[Any]:
        done = self.wait_for(oids, len(oids), timeout, stop_on_error=True)
        if len(done) < len(oids):
            for o in done:  # raise at the first failed object, as Ray does
                if self._objects[o].kind == P.ERROR:
                    self.value(o)
            missing = [f"{o:016x}" for o in oids if o not in self._objects]
            raise GetTimeoutError(
                f"get timed out after {timeout} s: {len(missing)} of {len(oids)} objects "
                f"not ready ({', '.join(missing[:5])}{'...' if len(missing) > 5 else ''}). "
                "The tasks keep running; call get again or cancel them."
            )
        return [self.value(o) for o in oids]

    def value(self, oid: int) -> Any:
        payload = self._objects[oid]
        return self.decode(oid, payload)

    def decode(self, oid: int, payload: P.Payload) -> Any:
        if payload.kind == P.INLINE:
            return serialization.unpack(payload.data)
        if payload.kind == P.SHM:
            mm = self._maps.get(oid)
            if mm is None:
                try:
                    mm = shm.open_readonly(payload.segment, payload.size, self.spill_dir)
                except FileNotFoundError:
                    return self.decode(oid, P.lost_payload(oid))
                if oid in self._refs:
                    self._maps[oid] = mm
            return serialization.unpack(memoryview(mm)[: payload.size])
        import pickle

        err: RemoteError = pickle.loads(payload.data)
        raise err.to_exception()

    # --- requests ----------------------------------------------------------------------------

    def barrier(self) -> None:
        """Return once the head answered everything sent before (objects it had when it
        read a Fetch sent earlier are here by then)."""
        self.request("object_info", [])

    def request(self, what: str, *args: Any, timeout: float = 60.0) -> Any:
        req_id = next(self._counter)
        slot: list[Any] = []
        with self._lock:
            self._replies[req_id] = slot
        self.send(P.Request(req_id, what, args))
        self._reading.pump(lambda: bool(slot) or self.closed, timeout)
        deadline = time.monotonic() + timeout
        with self._cond:
            while not slot and not self.closed:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            self._replies.pop(req_id, None)
        if not slot:
            raise NbrayConnectionError(f"the cluster did not answer {what!r} in {timeout} s")
        reply: P.Reply = slot[0]
        if not reply.ok:
            raise reply.value
        return reply.value

    # --- the reader thread -------------------------------------------------------------------

    def _connection_ended(self, reason: str) -> None:
        """The stream ended (read by the reader thread or a blocked caller): wake everyone."""
        if not self.disconnect_reason:
            self.disconnect_reason = reason
        self.closed = True
        self._flush_needed.set()
        with self._cond:
            self._cond.notify_all()
            for waiting in self._waiters.values():
                for waiter in waiting:
                    waiter.event.set()
        if self.task_handler is not None:
            self.task_handler(None)

    def pump(self, done: Callable[[], bool], timeout: float | None) -> bool | None:
        """Read the connection in this (blocked) thread until ``done()``; see reading.py."""
        return self._reading.pump(done, timeout)

    def _handle(self, msg: Any) -> None:
        handler = self.handlers.get(type(msg))
        if handler is not None:
            handler(msg)
        elif self.task_handler is not None:
            self.task_handler(msg)

    def _on_object_ready(self, msg: P.ObjectReady) -> None:
        oid = msg.object_id
        if oid == self._lone:
            self._lone = 0  # the next call is a lone one too (see post_call)
        with self._lock:
            if oid in self._requested:
                self._objects[oid] = msg.payload
                failed = msg.payload.kind == P.ERROR
                for waiter in self._waiters.pop(oid, ()):
                    waiter.remaining -= 1
                    if waiter.remaining <= 0 or (failed and waiter.stop_on_error):
                        waiter.event.set()
        if self.arrival_hook is not None:
            self.arrival_hook(oid)

    def _on_reply(self, msg: P.Reply) -> None:
        with self._cond:
            slot = self._replies.get(msg.req_id)
            if slot is not None:
                slot.append(msg)
                self._cond.notify_all()

    def _on_output(self, msg: P.Output) -> None:
        if self.role != "worker" and progress_lines.MAGIC in msg.text:
            rest = progress_lines.intercept(msg, self)  # progress bars of tasks (tqdm_ray)
            if rest is None:
                return
            msg = rest
        if self.output_handler is not None:
            self.output_handler(msg)

    def _on_events(self, msg: P.Events) -> None:
        handlers = list(self.event_handlers)
        for data in msg.events:
            for handler in handlers:
                try:
                    handler(data)
                except Exception:
                    log.exception("an nbray event handler failed")

    # --- lifecycle ---------------------------------------------------------------------------

    def close(self) -> None:
        if self.closed:
            return
        if self.leases is not None:
            self.leases.return_all()  # (else the head kills the leased workers)
        with contextlib.suppress(NbrayConnectionError):
            self.send()
        self.closed = True
        self.disconnect_reason = "shut down"
        self._flush_needed.set()
        self._reading.detach_all()
        self._reading.stop()
        self.conn.close()
        self._reader.join(timeout=5)
        self._reading.close_pipe()
        with self._lock:
            self._objects.clear()
            self._maps.clear()


def _collect_garbage(msg: P.CollectGarbage) -> None:
    """The store is nearly full (the head asks every process): free the objects that
    reference cycles hold, now rather than at Python's next automatic collection."""
    gc.collect()
