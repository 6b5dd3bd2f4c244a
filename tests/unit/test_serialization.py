"""Values to blobs and back; out-of-band buffers come back as views, not copies."""

from __future__ import annotations

import mmap
import threading

import numpy as np
import pytest

from nbray._wire.serialization import pack, pack_into, packed_size, serialize, unpack
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
    mm = mmap.mmap(-1, size)
    pack_into(s, memoryview(mm))
    view = memoryview(mm)
    out = unpack(view)["a"]
    np.testing.assert_array_equal(out, arr)
    base = np.frombuffer(mm, dtype=np.uint8)
    assert np.shares_memory(out, base)
    assert out.__array_interface__["data"][0] % 64 == 0  # aligned


def test_read_only_source_gives_read_only_arrays() -> None:
    blob = pack(serialize(np.ones(1000)))
    out = unpack(blob)  # bytes are immutable
    assert out.flags.writeable is False


def test_unpicklable_value_names_the_object() -> None:
    with pytest.raises(SerializationError, match="lock"):
        serialize({"l": threading.Lock()}, "argument 0")
