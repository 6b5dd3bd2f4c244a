"""The head's object directory: where each object is, who keeps it alive, who waits for it.

    Put / TaskDone ──▶ set() ──▶ waiters (connections that sent Fetch) get ObjectReady
    Submit          ──▶ create() pending return objects; pin() ObjectRef arguments
    AddHold/Release ──▶ holders (connections with a live ObjectRef); 0 holders + 0 pins ─▶ free
    free            ──▶ unpin what the object contained; unlink its shared-memory segment
    over capacity   ──▶ spill the least recently used segments from /dev/shm to disk

An object is alive while a connection holds it (a live ObjectRef in that process), a
pending task pins it (an argument), or another live object contains it. No I/O here but
unlinking and spilling segments; sending is the head's job.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable

from nbray._wire import shm
from nbray._wire.protocol import SHM, Payload, lost_payload

log = logging.getLogger("nbray.head")


class _Entry:
    __slots__ = ("contained", "holders", "payload", "pins", "waiters")

    def __init__(self) -> None:
        self.payload: Payload | None = None
        self.holders: set[int] = set()
        self.pins = 0
        self.waiters: set[int] = set()
        self.contained: tuple[int, ...] = ()


class GlobalGC:
    """When every process should run ``gc.collect()``, as Ray's global GC: /dev/shm objects
    use over ``threshold`` of the store's capacity (Ray's ``high_plasma_storage_usage``),
    at most once per ``min_interval_s``. Reference cycles that hold ObjectRefs (kept alive
    until Python's collector runs, which a busy process may put off) then free their
    objects before the store has to spill."""

    def __init__(self, threshold: float = 0.7, min_interval_s: float = 10.0) -> None:
        self.threshold = threshold
        self.min_interval_s = min_interval_s
        self._last = -float("inf")

    def due(self, used: int, capacity: int, now: float) -> bool:
        if not capacity or used <= self.threshold * capacity:
            return False
        if now - self._last < self.min_interval_s:
            return False
        self._last = now
        return True


class ObjectDirectory:
    """``capacity``: bytes of /dev/shm objects may use before the least recently used are
    spilled to ``spill_dir`` (0: no limit)."""

    def __init__(self, capacity: int = 0, spill_dir: str = "", session: str = "") -> None:
        self.entries: dict[int, _Entry] = {}
        self.session = session  # the segment-name prefix (shm.segment_name)
        self.capacity = capacity
        self.spill_dir = spill_dir
        self.shm_bytes = 0  # in /dev/shm
        self.spilled_bytes = 0  # on disk (spilled, or created there for want of room)
        self.inline_bytes = 0
        self.spill_count = 0
        self._in_shm: OrderedDict[int, None] = OrderedDict()  # least recently used first
        # actor handle tokens: entries with no value whose holders and pins are the handles
        # to an actor, wherever they are; ``on_token_freed(actor id)`` when the last goes
        self.tokens: set[int] = set()
        self.on_token_freed: Callable[[int], None] | None = None
        self.unlinker = shm.Unlinker()

    def __len__(self) -> int:
        return len(self.entries) - len(self.tokens)

    def create_token(self, actor_id: int, holder: int) -> None:
        """The handle token of an actor (counted like an object, id = the actor's)."""
        self.create(actor_id, holder)
        self.tokens.add(actor_id)

    def create(self, object_id: int, holder: int) -> None:
        """A pending object (a task's return value), held by its submitter."""
        e = self.entries.get(object_id)
        if e is None:
            e = self.entries[object_id] = _Entry()
        e.holders.add(holder)

    def set(
        self, object_id: int, payload: Payload, contained: tuple[int, ...], holder: int = 0
    ) -> set[int]:
        """Store a value; returns the connections waiting for it."""
        e = self.entries.get(object_id)
        if e is None:
            if not holder:
                # nobody holds it any more (released before its task finished): drop it
                self._discard(payload)
                return set()
            e = self.entries[object_id] = _Entry()
        if holder:
            e.holders.add(holder)
        if e.payload is not None:  # a retried task finished twice: keep the first value
            if payload.kind == SHM and payload.segment == e.payload.segment:
                # both attempts wrote the segment of this object id, the second one's file
                # replacing the first's: that file is what the name holds now, so keep it
                self._account(e.payload, -1)
                e.payload = payload
                self._account(payload, +1)
            else:
                self._discard(payload)
            return set()
        e.payload = payload
        self._account(payload, +1)
        if payload.kind == SHM and not shm.is_spilled(payload.segment):
            self._in_shm[object_id] = None
            self._spill_over_capacity()
        e.contained = contained
        self.pin(contained)
        waiters, e.waiters = e.waiters, set()
        if not e.holders and not e.pins:
            self._free(object_id, e)
        return waiters

    def ready(self, object_id: int) -> Payload | None:
        e = self.entries.get(object_id)
        return None if e is None else e.payload

    def known(self, object_id: int) -> bool:
        return object_id in self.entries

    def wait(self, object_id: int, conn: int) -> Payload | None:
        """The payload if ready (a lost-object error if unknown), else register ``conn``."""
        e = self.entries.get(object_id)
        if e is None:
            return lost_payload(object_id)
        if e.payload is not None:
            if object_id in self._in_shm:
                self._in_shm.move_to_end(object_id)
            return e.payload
        e.waiters.add(conn)
        return None

    def add_hold(self, object_id: int, conn: int) -> bool:
        e = self.entries.get(object_id)
        if e is None:
            return False
        e.holders.add(conn)
        return True

    def release(self, object_id: int, conn: int) -> None:
        e = self.entries.get(object_id)
        if e is None:
            return
        e.holders.discard(conn)
        e.waiters.discard(conn)
        if not e.holders and not e.pins:
            self._free(object_id, e)

    def pin(self, object_ids: tuple[int, ...]) -> None:
        for oid in object_ids:
            e = self.entries.get(oid)
            if e is not None:
                e.pins += 1

    def unpin(self, object_ids: tuple[int, ...]) -> None:
        for oid in object_ids:
            e = self.entries.get(oid)
            if e is None:
                continue
            e.pins -= 1
            if e.pins <= 0 and not e.holders:
                self._free(oid, e)

    def _free(self, object_id: int, e: _Entry) -> None:
        if e.payload is None:
            # still pending: forget it; the result is discarded when it arrives
            self.entries.pop(object_id, None)
            if object_id in self.tokens:
                self.tokens.discard(object_id)
                if self.on_token_freed is not None:
                    self.on_token_freed(object_id)
            return
        del self.entries[object_id]
        self._in_shm.pop(object_id, None)
        self._account(e.payload, -1)
        self._discard(e.payload)
        if e.contained:
            self.unpin(e.contained)

    def _account(self, payload: Payload, sign: int) -> None:
        if payload.kind == SHM:
            if shm.is_spilled(payload.segment):
                self.spilled_bytes += sign * payload.size
            else:
                self.shm_bytes += sign * payload.size
        else:
            self.inline_bytes += sign * len(payload.data)

    def _spill_over_capacity(self) -> None:
        """Move the least recently used segments to disk until /dev/shm use is back under
        the capacity. Readers that mapped a segment keep their view; new readers open the
        file (see shm.py)."""
        while self.capacity and self.shm_bytes > self.capacity and self._in_shm:
            oid, _ = self._in_shm.popitem(last=False)
            e = self.entries[oid]
            payload = e.payload
            assert payload is not None
            try:
                path = shm.spill(payload.segment, self.spill_dir)
            except OSError as exc:
                log.warning("cannot spill object %016x to %s: %s", oid, self.spill_dir, exc)
                return  # the disk is full too: the store stays over capacity
            self._account(payload, -1)
            e.payload = payload._replace(segment=path)
            self._account(e.payload, +1)
            self.spill_count += 1

    def _discard(self, payload: Payload) -> None:
        if payload.kind == SHM:
            self.unlinker.unlink(payload.segment, payload.size)

    def discard_partial(self, object_ids: tuple[int, ...]) -> None:
        """Unlink segments that a process died while writing (results of a task whose
        worker died), so a retry can write them afresh and none is left behind."""
        for oid in object_ids:
            e = self.entries.get(oid)
            if e is None or e.payload is None:
                self._unlink_unregistered(shm.segment_name(self.session, oid))

    def sweep_creator(self, creator: int) -> int:
        """Unlink the segments that connection ``creator`` created (object ids carry their
        creator in the upper 32 bits) but never registered: it died between writing one and
        sending the Put. Returns how many there were."""
        prefix = shm.segment_name(self.session, creator << 32)[:-8]
        count = 0
        for name in shm.names_with_prefix(prefix, self.spill_dir):
            oid = int(name[len(prefix) - 8 :], 16)
            e = self.entries.get(oid)
            if e is None or e.payload is None:
                self._unlink_unregistered(name)
                count += 1
        return count

    def _unlink_unregistered(self, name: str) -> None:
        shm.unlink(name)
        if self.spill_dir:
            shm.unlink(f"{self.spill_dir}/{name}")

    def free_all(self) -> None:
        """Unlink every segment (the head's shutdown), those queued on the unlinker's
        thread included, before returning."""
        for e in self.entries.values():
            if e.payload is not None:
                self._discard(e.payload)
        self.entries.clear()
        self.unlinker.close()
        self._in_shm.clear()
        self.shm_bytes = self.spilled_bytes = self.inline_bytes = 0
