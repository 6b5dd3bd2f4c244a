"""The head's cyclic garbage collection: by the heap's growth, once a second.

    Head.serve ──▶ GrowthCollector.start(): CPython's automatic collector off
    Head.tick (1 s) ──▶ GrowthCollector.tick(busy): tracked objects grown by more than a
                        quarter of the last survivors (at least MIN_GROWTH; 4 times that
                        while tasks are in flight), or by any for a minute? ──▶ gc.collect()

CPython collects its youngest generation every 700 net new container objects, and the
older ones every 10 of those. The head holds every task in flight (a flood of 10,000
submissions is 10,000 records and their specs), so each of those collections walks the
same live records again: 0.12 s of a run of 10,000 no-op tasks, ~13% of the head's CPU,
to find ~0.1 garbage object per task (what refcounting cannot free: a few cycles, such as
an exception and its frames). Counted from the heap's growth instead, a collection comes
when a quarter more objects are tracked than survived the previous one, as CPython's own
rule for full collections: amortised linear in what is allocated, and the garbage waiting
for it bounded by that growth. While tasks are in flight, their live records are most of
that growth, so the head waits for four times as much before it walks them (a collection
in the middle of a flood of 10,000 tasks took ~50 ms of the head's loop).

Only the head does this: workers and drivers run the user's code, whose objects keep
CPython's collector as the user expects it.
"""

from __future__ import annotations

import gc
import time

__all__ = ["BUSY_FACTOR", "MAX_WAIT_S", "MIN_GROWTH", "GrowthCollector"]

MIN_GROWTH = 50_000  # net new tracked objects that always wait for the next tick
GROWTH_SHARE = 0.25  # ... or this share of the objects that survived the last collection
# while tasks are in flight, their records are most of the growth: collecting then walks
# them all for nothing (and stalls the flood), so it waits for this much more growth
BUSY_FACTOR = 4
# a quiet head grows slowly: its garbage (which may hold a large message) waits at most
# this long
MAX_WAIT_S = 60.0


class GrowthCollector:
    """Collect cyclic garbage when the heap has grown, at the caller's ticks.

    Example::

        collector = GrowthCollector()
        collector.start()       # the automatic collector is off from here
        ...
        collector.tick()        # once a second: True when it collected
        collector.stop()        # the automatic collector is back
    """

    def __init__(self, min_growth: int = MIN_GROWTH, share: float = GROWTH_SHARE) -> None:
        self.min_growth = min_growth
        self.share = share
        self.survivors = 0
        self.collections = 0
        self.last = 0.0  # time.monotonic() of the last collection (or the start)

    def start(self) -> None:
        gc.disable()
        self.survivors = len(gc.get_objects())
        self.last = time.monotonic()

    def stop(self) -> None:
        gc.enable()

    def due(self, busy: bool = False, now: float | None = None) -> bool:
        """Whether to collect now; ``busy``: work is in flight, whose live objects count as
        growth too, so the growth must be BUSY_FACTOR times as large. Any growth waits
        MAX_WAIT_S at most."""
        # the young generation's count: net new tracked objects since the last collection
        # (also counted while the automatic collector is off)
        growth = gc.get_count()[0]
        needed = max(self.min_growth, self.share * self.survivors)
        if growth > (BUSY_FACTOR * needed if busy else needed):
            return True
        now = time.monotonic() if now is None else now
        return growth > 0 and now - self.last >= MAX_WAIT_S

    def tick(self, busy: bool = False, now: float | None = None) -> bool:
        """Collect if ``due``; returns whether it did."""
        if not self.due(busy, now):
            return False
        gc.collect()
        self.survivors = len(gc.get_objects())
        self.last = time.monotonic()
        self.collections += 1
        return True
