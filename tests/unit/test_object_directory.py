"""The head's object directory: holds, pins, waiters and freeing, with real segments."""

from __future__ import annotations

import pickle
import secrets
from pathlib import Path

import pytest

from nbray._node.objects import GlobalGC, ObjectDirectory
from nbray._wire import shm
from nbray._wire.protocol import ERROR, INLINE, SHM, Payload

TOKEN = secrets.token_hex(4)


def inline(data: bytes = b"x") -> Payload:
    return Payload(INLINE, data)


def segment(object_id: int, data: bytes) -> Payload:
    """A real /dev/shm segment holding ``data``."""
    with shm.create(shm.segment_name(TOKEN, object_id), len(data)) as new:
        new.write([data])
    return Payload(SHM, segment=new.segment, size=len(data))


@pytest.fixture(autouse=True)
def no_segments_left() -> object:
    yield
    assert shm.sweep(TOKEN) == 0, "a test left /dev/shm segments behind"


def test_waiters_are_told_when_the_value_arrives() -> None:
    d = ObjectDirectory()
    d.create(1, holder=10)
    assert d.wait(1, conn=20) is None
    assert d.set(1, inline(), ()) == {20}
    assert d.wait(1, conn=30) == inline()


def test_unknown_object_is_reported_lost() -> None:
    payload = ObjectDirectory().wait(99, conn=1)
    assert payload is not None and payload.kind == ERROR
    assert "freed" in pickle.loads(payload.data).message


def test_freed_when_last_holder_releases() -> None:
    d = ObjectDirectory()
    d.set(1, inline(), (), holder=10)
    d.add_hold(1, 11)
    d.release(1, 10)
    assert d.known(1)
    d.release(1, 11)
    assert not d.known(1)
    assert d.inline_bytes == 0


def test_pins_keep_objects_alive_and_containers_pin_contents() -> None:
    d = ObjectDirectory()
    d.set(1, inline(), (), holder=10)
    d.set(2, inline(), (1,), holder=10)  # object 2 contains a ref to 1
    d.release(1, 10)
    assert d.known(1)  # pinned by 2
    d.release(2, 10)
    assert not d.known(2) and not d.known(1)


def test_result_of_a_released_pending_object_is_discarded(tmp_path: Path) -> None:
    d = ObjectDirectory()
    d.create(1, holder=10)
    d.release(1, 10)
    payload = segment(1, b"0123456789")
    assert d.set(1, payload, ()) == set()
    assert not shm.path_of(payload.segment).exists()


def test_a_second_result_of_the_same_object_keeps_the_segment_both_wrote() -> None:
    d = ObjectDirectory()
    d.set(1, segment(1, b"first"), (), holder=10)
    again = segment(1, b"again, longer")  # a second attempt: its file replaces the first's
    assert d.set(1, again, ()) == set()
    kept = d.ready(1)
    assert kept == again and shm.path_of(again.segment).read_bytes() == b"again, longer"
    assert d.shm_bytes == len(b"again, longer")
    d.release(1, 10)
    assert not shm.path_of(again.segment).exists() and d.shm_bytes == 0


def test_a_second_result_in_another_place_is_discarded() -> None:
    d = ObjectDirectory()
    d.set(1, inline(b"first"), (), holder=10)
    late = segment(1, b"late")
    assert d.set(1, late, ()) == set()
    assert d.ready(1) == inline(b"first") and not shm.path_of(late.segment).exists()
    d.release(1, 10)


def test_shared_memory_segment_unlinked_on_free() -> None:
    d = ObjectDirectory()
    payload = segment(2, b"y" * 4096)
    name = payload.segment
    assert (shm.SHM_DIR / name).stat().st_mode & 0o777 == 0o600
    d.set(2, payload, (), holder=1)
    assert d.shm_bytes == 4096
    d.release(2, 1)
    assert not (shm.SHM_DIR / name).exists()
    assert d.shm_bytes == 0


# --- capacity and spilling ------------------------------------------------------------------


def read(payload: Payload, spill_dir: str, segment_name: str | None = None) -> bytes:
    with shm.open_readonly(segment_name or payload.segment, payload.size, spill_dir) as mm:
        return bytes(mm[: payload.size])


def test_over_capacity_the_least_recently_used_spill_to_disk(tmp_path: Path) -> None:
    d = ObjectDirectory(capacity=3000, spill_dir=str(tmp_path))
    for oid, fill in ((1, b"a"), (2, b"b"), (3, b"c")):
        d.set(oid, segment(oid, fill * 1000), (), holder=9)
    assert d.wait(1, conn=9) is not None  # object 1 was used: 2 is now the oldest
    d.set(4, segment(4, b"d" * 1000), (), holder=9)
    assert (d.shm_bytes, d.spilled_bytes, d.spill_count) == (3000, 1000, 1)
    spilled = d.ready(2)
    assert spilled is not None and spilled.segment == str(tmp_path / shm.segment_name(TOKEN, 2))
    assert (tmp_path / Path(spilled.segment).name).stat().st_mode & 0o777 == 0o600
    assert read(spilled, str(tmp_path)) == b"b" * 1000
    # a reader that learnt the old name before the spill still finds the object
    assert read(spilled, str(tmp_path), shm.segment_name(TOKEN, 2)) == b"b" * 1000
    for oid in (1, 2, 3, 4):
        d.release(oid, 9)
    assert (d.shm_bytes, d.spilled_bytes) == (0, 0)
    assert list(tmp_path.iterdir()) == []


def test_an_object_larger_than_the_capacity_goes_to_disk_itself(tmp_path: Path) -> None:
    d = ObjectDirectory(capacity=100, spill_dir=str(tmp_path))
    d.set(1, segment(1, b"z" * 500), (), holder=9)
    payload = d.ready(1)
    assert payload is not None and shm.is_spilled(payload.segment)
    assert read(payload, str(tmp_path)) == b"z" * 500
    d.release(1, 9)
    assert list(tmp_path.iterdir()) == []


def test_when_spilling_fails_the_object_stays_in_memory(tmp_path: Path) -> None:
    d = ObjectDirectory(capacity=100, spill_dir=str(tmp_path / "missing"))
    d.set(1, segment(1, b"z" * 500), (), holder=9)
    assert (d.shm_bytes, d.spilled_bytes) == (500, 0)
    d.release(1, 9)


def test_create_falls_back_to_the_spill_dir_when_shm_has_no_room(tmp_path: Path) -> None:
    too_big = shm.available_bytes() + 2**30
    with pytest.raises(OSError):
        shm.create(shm.segment_name(TOKEN, 7), too_big)
    with shm.create(shm.segment_name(TOKEN, 8), 10, str(tmp_path)) as new:
        new.write([b"x" * 10])
    assert new.segment == shm.segment_name(TOKEN, 8)  # small enough for /dev/shm
    shm.unlink(new.segment)


def test_segments_a_dead_creator_never_stored_are_swept(tmp_path: Path) -> None:
    d = ObjectDirectory(spill_dir=str(tmp_path), session=TOKEN)
    stored = segment((5 << 32) | 1, b"kept")
    d.set((5 << 32) | 1, stored, (), holder=9)  # stored, and held by another connection
    orphan = segment((5 << 32) | 2, b"orphan")  # written, never stored
    other = segment((6 << 32) | 1, b"another creator's")
    assert d.sweep_creator(5) == 1
    assert not shm.path_of(orphan.segment).exists()
    assert shm.path_of(stored.segment).exists() and shm.path_of(other.segment).exists()
    d.release((5 << 32) | 1, 9)
    shm.unlink(other.segment)


def test_partial_results_of_a_dead_worker_are_discarded_and_can_be_rewritten() -> None:
    d = ObjectDirectory(session=TOKEN)
    d.create(7, holder=1)
    partial = segment(7, b"half")
    d.discard_partial((7,))
    assert not shm.path_of(partial.segment).exists()
    again = segment(7, b"whole")  # the retry writes the same name afresh
    segment(7, b"whole")  # and a stale one of the same name is replaced, not an error
    d.set(7, again, (), holder=1)
    d.release(7, 1)


def test_global_gc_is_due_over_the_threshold_at_most_once_per_interval() -> None:
    gc = GlobalGC(threshold=0.7, min_interval_s=10.0)
    assert not gc.due(used=70, capacity=100, now=0.0)  # at the threshold: not over it
    assert gc.due(used=71, capacity=100, now=0.0)
    assert not gc.due(used=90, capacity=100, now=9.9)  # too soon after the last
    assert gc.due(used=90, capacity=100, now=10.0)
    assert not gc.due(used=10**9, capacity=0, now=100.0)  # no capacity set: never


# --- the unlinker: large segments freed off the head's loop --------------------------------


def test_small_segments_go_at_once_large_ones_on_the_unlinkers_thread() -> None:
    unlinker = shm.Unlinker(threshold=4096)
    small, large = segment(20, b"s" * 100), segment(21, b"l" * 4096)
    unlinker.unlink(small.segment, small.size)
    assert not shm.path_of(small.segment).exists()  # no thread was needed for it
    assert unlinker._thread is None
    unlinker.unlink(large.segment, large.size)
    assert unlinker._thread is not None and unlinker._thread.name == "nbray-unlink"
    unlinker.close()  # waits for what was queued
    assert not shm.path_of(large.segment).exists()
    # a later large segment starts the thread again; an already gone one is no error
    again = segment(22, b"a" * 8192)
    unlinker.unlink(again.segment, again.size)
    unlinker.unlink(again.segment, again.size)
    unlinker.close()
    assert not shm.path_of(again.segment).exists()


def test_free_all_leaves_no_large_segment_behind() -> None:
    d = ObjectDirectory()
    d.unlinker.threshold = 4096
    payloads = [segment(30 + i, b"z" * 8192) for i in range(5)]
    for i, p in enumerate(payloads):
        d.set(30 + i, p, (), holder=1)
    d.release(30, 1)  # queued on the thread
    d.free_all()
    assert not any(shm.path_of(p.segment).exists() for p in payloads)
