"""Values to blobs and back; out-of-band buffers come back as views, not copies."""

from __future__ import annotations

import secrets
import threading

import numpy as np
import pytest

from nbray._wire import shm
from nbray._wire.serialization import chunks, pack, packed_size, serialize, unpack
from nbray.exceptions import SerializationError


@pytest.mark.parametrize(
    "value", [None, 1, 2.5, "text", b"bytes", [1, {"a": (2, 3)}], {1, 2}, {"k": None}]
)
def test_round_trip(value: object) -> None:
    assert unpack(pack(serialize(value))) == value


def test_closures_and_lambdas_round_trip() -> None:
    k = 3
    f = unpack(pack(serialize(lambda x: x * k)))
    assert f(2) == 6


def test_numpy_buffers_are_out_of_band_and_zero_copy() -> None:
    arr = np.arange(100_000, dtype=np.float64)
    s = serialize({"a": arr})
    assert len(s.buffers) == 1
    assert len(s.main) < 1000  # the array's bytes are not in the pickle stream
    size = packed_size(s)
    with shm.create(shm.segment_name(secrets.token_hex(4), 1), size) as new:
        new.write(chunks(s))
    try:
        mm = shm.open_readonly(new.segment, size)
    finally:
        shm.unlink(new.segment)
    out = unpack(memoryview(mm))["a"]
    np.testing.assert_array_equal(out, arr)
    base = np.frombuffer(mm, dtype=np.uint8)
    assert np.shares_memory(out, base)
    assert out.__array_interface__["data"][0] % 64 == 0  # aligned
    assert not out.flags.writeable


def test_a_segment_of_more_buffers_than_one_pwritev_takes_is_whole() -> None:
    """``NewSegment.write`` goes on past the 1,024 buffers one ``pwritev`` takes: 1,500
    arrays of odd sizes (so padding between them) come back equal."""
    arrays = [np.full(i % 7 + 1, i % 251, dtype=np.uint8) for i in range(1500)]
    s = serialize(arrays)
    assert len(s.buffers) == 1500
    size = packed_size(s)
    with shm.create(shm.segment_name(secrets.token_hex(4), 2), size) as new:
        new.write(chunks(s))
    try:
        with shm.open_readonly(new.segment, size) as mm:
            out = unpack(bytes(mm))
    finally:
        shm.unlink(new.segment)
    assert all(np.array_equal(a, b) for a, b in zip(arrays, out, strict=True))
    assert pack(s) == b"".join(bytes(c) for c in chunks(s))


def test_read_only_source_gives_read_only_arrays() -> None:
    blob = pack(serialize(np.ones(1000)))
    out = unpack(blob)  # bytes are immutable
    assert out.flags.writeable is False


def test_unpicklable_value_names_the_object() -> None:
    with pytest.raises(SerializationError, match="lock"):
        serialize({"l": threading.Lock()}, "argument 0")
