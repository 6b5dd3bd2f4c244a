"""The head's cyclic garbage collection (``nbray._node.collector``): off between ticks, at a
tick only once the heap has grown enough, and the automatic collector back at the end."""

from __future__ import annotations

import gc
import weakref

import pytest

from nbray._node.collector import MAX_WAIT_S, GrowthCollector

pytestmark = pytest.mark.timeout(30)


class Cycle:
    def __init__(self) -> None:
        self.me = self


def garbage(n: int) -> weakref.ref[Cycle]:
    """``n`` objects that only the cyclic collector frees; a weak ref to the last one."""
    for _ in range(n):
        c = Cycle()
    return weakref.ref(c)


def test_cycles_wait_for_a_tick_after_enough_growth() -> None:
    # share=0: the growth needed is min_growth, whatever this process holds (the whole
    # suite's imports are ~200,000 objects)
    collector = GrowthCollector(min_growth=20_000, share=0.0)
    try:
        collector.start()
        assert not gc.isenabled()
        few = garbage(1_000)
        assert not collector.tick()  # not enough yet: left for later, not collected
        assert few() is not None
        many = garbage(30_000)
        assert many() is not None  # nothing collects between ticks
        assert collector.tick() and collector.collections == 1
        assert few() is None and many() is None
        assert not collector.tick()  # the growth is counted from the last collection
    finally:
        collector.stop()
    assert gc.isenabled()


def test_the_growth_needed_follows_what_survived() -> None:
    keep = [Cycle() for _ in range(40_000)]  # live: the survivors, and the growth needed, grow
    collector = GrowthCollector(min_growth=1_000, share=0.25)
    try:
        collector.start()
        assert collector.survivors >= len(keep)
        needed = int(collector.share * collector.survivors)
        assert needed > 10_000
        garbage(needed // 2)
        assert not collector.tick()  # short of a quarter of the survivors
        garbage(needed // 2 + 1_000)
        # while work is in flight its live objects are most of the growth: wait for more
        assert not collector.tick(busy=True)
        assert collector.tick()
    finally:
        collector.stop()
    del keep


def test_some_growth_waits_a_minute_at_most() -> None:
    """A quiet head grows slowly: its garbage is collected within MAX_WAIT_S anyway."""
    collector = GrowthCollector(min_growth=1_000_000)
    try:
        collector.start()
        started = collector.last
        left = garbage(5_000)
        assert not collector.tick(now=started + MAX_WAIT_S / 2)
        assert left() is not None
        assert collector.tick(now=started + MAX_WAIT_S)
        assert left() is None
    finally:
        collector.stop()
