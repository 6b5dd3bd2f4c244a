"""The head's object directory: holds, pins, waiters and freeing, with real segments."""

from __future__ import annotations

import pickle
from pathlib import Path

from nbray.runtime import shm
from nbray.runtime.objects import ObjectDirectory
from nbray.runtime.protocol import ERROR, INLINE, SHM, Payload


def inline(data: bytes = b"x") -> Payload:
    return Payload(INLINE, data)


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
    name = shm.segment_name("unittest", 1)
    with shm.create(name, 10):
        pass
    assert d.set(1, Payload(SHM, segment=name, size=10), ()) == set()
    assert not (shm.SHM_DIR / name).exists()


def test_shared_memory_segment_unlinked_on_free() -> None:
    d = ObjectDirectory()
    name = shm.segment_name("unittest", 2)
    with shm.create(name, 4096):
        pass
    assert (shm.SHM_DIR / name).stat().st_mode & 0o777 == 0o600
    d.set(2, Payload(SHM, segment=name, size=4096), (), holder=1)
    assert d.shm_bytes == 4096
    d.release(2, 1)
    assert not (shm.SHM_DIR / name).exists()
    assert d.shm_bytes == 0
