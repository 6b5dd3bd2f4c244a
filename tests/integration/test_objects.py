"""Objects on a real local cluster: put/get, shared memory and zero-copy reads, reference
counting (segments unlinked when the last ObjectRef goes), refs inside objects, lost objects.

Segments are observed directly in /dev/shm (``nbray-<session>-<object id>``); frees are
awaited with ``wait_until`` since releases reach the head asynchronously.
"""

from __future__ import annotations

import gc
import pickle
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cloudpickle
import numpy as np
import pytest
from nbray_testing import session_segments, wait_until

import nbray
from nbray._model import session
from nbray.exceptions import ObjectLostError, TaskError

# pytest imports this file as a top-level module the workers cannot import: ship the
# classes defined here by value, as a notebook's would be.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

GET_TIMEOUT = 30.0
BIG = 20 * 1024 * 1024  # bytes: well above the 100 KiB inline limit


@dataclass
class Point:
    x: int
    y: float
    tags: list[str]


def big_array(seed: int = 0) -> np.ndarray:
    return np.arange(BIG // 8, dtype=np.float64) + seed


def own_segments() -> set[str]:
    """This test's cluster's segments (other clusters on the machine may have theirs)."""
    return session_segments(session.get_engine().client.session)  # type: ignore[union-attr]


def segment_of(ref: nbray.ObjectRef) -> str:
    """The /dev/shm segment holding ``ref``'s value (it must exist)."""
    matches = [s for s in own_segments() if s.endswith(f"-{ref.hex()}")]
    assert len(matches) == 1, (ref, sorted(own_segments()))
    return matches[0]


def segment_gone(name: str) -> bool:
    return not (Path("/dev/shm") / name).exists()


def release(*names: str) -> None:
    gc.collect()
    for name in names:
        wait_until(lambda n=name: segment_gone(n))


@pytest.mark.parametrize(
    "value",
    [
        0,
        -(2**70),
        3.5,
        True,
        None,
        "text é ✓",
        b"\x00\xffbytes",
        bytearray(b"mutable"),
        [1, [2, [3]]],
        (1, "two", None),
        {"a": {"b": [1, 2]}, 3: (4,)},
        {1, 2, 3},
        frozenset({"x"}),
        complex(1, -2),
        range(3, 9, 2),
        Point(1, 2.5, ["a"]),
        ValueError("a value, not raised"),
        b"x" * (200 * 1024),
    ],
    ids=lambda v: type(v).__name__,
)
def test_put_get_round_trip(cluster: nbray.ClusterContext, value: Any) -> None:
    ref = nbray.put(value)
    assert isinstance(ref, nbray.ObjectRef)
    got = nbray.get(ref)
    assert type(got) is type(value)
    if isinstance(value, Exception):
        assert got.args == value.args  # returned as a value, not raised
    else:
        assert got == value


def test_numpy_and_nested_values_round_trip(cluster: nbray.ClusterContext) -> None:
    small = np.arange(12, dtype=np.int32).reshape(3, 4)
    value = {"small": small, "f": np.float32(1.5), "items": [small.T, "s"]}
    got = nbray.get(nbray.put(value))
    assert got["small"].dtype == np.int32 and got["small"].shape == (3, 4)
    np.testing.assert_array_equal(got["small"], small)
    np.testing.assert_array_equal(got["items"][0], small.T)
    assert got["f"] == np.float32(1.5) and got["items"][1] == "s"


def test_small_objects_inline_large_ones_in_shared_memory(cluster: nbray.ClusterContext) -> None:
    before = own_segments()
    small = nbray.put(b"s" * (50 * 1024))
    assert nbray.get(small) == b"s" * (50 * 1024)
    assert own_segments() == before  # inline: no segment
    large = nbray.put(b"l" * (200 * 1024))
    name = segment_of(large)
    assert own_segments() == before | {name}
    assert (Path("/dev/shm") / name).stat().st_mode & 0o777 == 0o600
    assert nbray.get(large) == b"l" * (200 * 1024)
    del large
    release(name)
    assert nbray.get(small) == b"s" * (50 * 1024)


def test_large_array_is_a_zero_copy_read_only_view(cluster: nbray.ClusterContext) -> None:
    arr = big_array()
    ref = nbray.put(arr)
    name = segment_of(ref)
    assert (Path("/dev/shm") / name).stat().st_size >= arr.nbytes

    first, second = nbray.get(ref), nbray.get(ref)
    assert first.flags.writeable is False
    assert not first.flags.owndata
    np.testing.assert_array_equal(first, arr)
    assert np.shares_memory(first, second)
    assert first.__array_interface__["data"][0] == second.__array_interface__["data"][0]
    assert not np.shares_memory(first, arr)  # the store's copy, not the driver's array
    with pytest.raises(ValueError, match="read-only"):
        first[0] = 1.0

    # dropping the last ref frees the segment; views already taken stay valid
    del ref
    release(name)
    assert first[-1] == arr[-1] and float(second.sum()) == float(arr.sum())


def test_large_array_passed_to_a_task(cluster: nbray.ClusterContext) -> None:
    @nbray.remote
    def describe(a: np.ndarray) -> tuple[bool, float, int]:
        return (bool(a.flags.writeable), float(a.sum()), a.shape[0])

    arr = big_array(1)
    ref = nbray.put(arr)
    name = segment_of(ref)
    results = nbray.get([describe.remote(ref), describe.remote(ref)], timeout=GET_TIMEOUT)
    assert results == [(False, float(arr.sum()), arr.shape[0])] * 2
    del ref
    release(name)


def test_large_argument_by_value_travels_through_shared_memory(
    cluster: nbray.ClusterContext,
) -> None:
    # as in Ray: a large argument is put in the store first, then read without a copy
    @nbray.remote
    def inspect(a: np.ndarray, small: list[int]) -> tuple[float, list[int], list[str]]:
        import os

        return float(a.sum()), small, sorted(n for n in os.listdir("/dev/shm") if "nbray-" in n)

    before = own_segments()
    arr = big_array(3)
    total, small, during = nbray.get(inspect.remote(arr, [1, 2]), timeout=GET_TIMEOUT)
    assert total == float(arr.sum()) and small == [1, 2]
    assert set(during) - before  # the argument's segment existed while the task ran
    wait_until(lambda: own_segments() <= before, 10)  # and was freed after


def test_large_task_result(cluster: nbray.ClusterContext) -> None:
    @nbray.remote
    def make(seed: int) -> np.ndarray:
        return big_array(seed)

    @nbray.remote
    def total(a: np.ndarray) -> float:
        return float(a.sum())

    ref = make.remote(2)
    out = nbray.get(ref, timeout=GET_TIMEOUT)
    name = segment_of(ref)
    assert out.flags.writeable is False
    np.testing.assert_array_equal(out, big_array(2))
    assert np.shares_memory(out, nbray.get(ref))
    assert nbray.get(total.remote(ref), timeout=GET_TIMEOUT) == float(big_array(2).sum())
    del ref, out
    release(name)


def test_result_dropped_before_the_task_ends_is_freed(
    cluster: nbray.ClusterContext, tmp_path: Path
) -> None:
    finished: list[str] = []
    engine = session.get_engine()
    assert engine is not None
    unsubscribe = engine.subscribe(
        lambda e: finished.append(e["task_id"]) if e.get("state") == "FINISHED" else None
    )
    before = own_segments()

    @nbray.remote
    def make(path: str) -> np.ndarray:
        deadline = time.monotonic() + 30
        while not Path(path).exists() and time.monotonic() < deadline:  # until the ref is gone
            time.sleep(0.01)
        return big_array()

    go = tmp_path / "go"
    ref = make.remote(str(go))
    oid = ref.hex()
    del ref
    gc.collect()
    go.touch()
    try:
        wait_until(lambda: len(finished) == 1)
        # nobody holds the result: its segment is unlinked as soon as it arrives
        wait_until(lambda: own_segments() == before)
        assert not any(s.endswith(oid) for s in own_segments())
    finally:
        unsubscribe()


def test_put_of_an_object_ref_raises_type_error(cluster: nbray.ClusterContext) -> None:
    ref = nbray.put(1)
    with pytest.raises(TypeError, match="ObjectRef"):
        nbray.put(ref)
    assert nbray.get(nbray.put([ref]))[0] == ref  # inside a container it is fine


def test_refs_inside_objects_keep_their_objects_alive(cluster: nbray.ClusterContext) -> None:
    inner = nbray.put(big_array(3))
    inner_segment = segment_of(inner)
    outer = nbray.put({"inner": inner, "label": "holder"})
    del inner
    gc.collect()
    # the head got the release; outer still pins the inner object
    other = nbray.put(big_array(4))
    other_segment = segment_of(other)
    del other
    release(other_segment)  # releases are processed in order: inner's release came first
    assert not segment_gone(inner_segment)

    value = nbray.get(outer)
    assert value["label"] == "holder" and isinstance(value["inner"], nbray.ObjectRef)
    np.testing.assert_array_equal(nbray.get(value["inner"]), big_array(3))

    del outer, value
    release(inner_segment)


def test_refs_returned_by_a_task_outlive_the_task(cluster: nbray.ClusterContext) -> None:
    @nbray.remote
    def producer() -> list[nbray.ObjectRef]:
        return [nbray.put(big_array(5)), nbray.put("small")]

    holder = producer.remote()
    refs = nbray.get(holder, timeout=GET_TIMEOUT)
    assert all(isinstance(r, nbray.ObjectRef) for r in refs)
    del holder
    gc.collect()
    name = segment_of(refs[0])
    np.testing.assert_array_equal(nbray.get(refs[0], timeout=GET_TIMEOUT), big_array(5))
    assert nbray.get(refs[1], timeout=GET_TIMEOUT) == "small"
    del refs
    release(name)


def test_task_returning_a_pending_ref_of_a_nested_task(
    cluster: nbray.ClusterContext, tmp_path: Path
) -> None:
    go = tmp_path / "go"

    @nbray.remote
    def child(path: str) -> str:
        deadline = time.monotonic() + 30
        while not Path(path).exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        return "from child"

    @nbray.remote
    def parent(path: str) -> nbray.ObjectRef:
        return child.remote(path)  # returned while the child still runs

    holder = parent.remote(str(go))
    inner = nbray.get(holder, timeout=GET_TIMEOUT)
    assert isinstance(inner, nbray.ObjectRef)
    del holder
    gc.collect()
    go.touch()
    assert nbray.get(inner, timeout=GET_TIMEOUT) == "from child"


def test_ref_rebuilt_after_its_object_was_freed_raises_object_lost(
    cluster: nbray.ClusterContext,
) -> None:
    ref = nbray.put(big_array(6))
    name = segment_of(ref)
    blob = pickle.dumps(ref)  # out-of-band: does not keep the object alive
    del ref
    release(name)
    revived = pickle.loads(blob)
    with pytest.raises(ObjectLostError, match="freed"):
        nbray.get(revived, timeout=GET_TIMEOUT)

    @nbray.remote
    def use(x: Any) -> Any:
        return x

    # as an argument, the task fails with the same error instead of running
    with pytest.raises(ObjectLostError):
        nbray.get(use.remote(revived), timeout=GET_TIMEOUT)


def test_refs_are_usable_from_other_threads(cluster: nbray.ClusterContext) -> None:
    refs = [nbray.put(i) for i in range(20)]
    results: list[Any] = []

    def reader(chunk: list[nbray.ObjectRef]) -> None:
        results.extend(nbray.get(chunk, timeout=GET_TIMEOUT))

    threads = [threading.Thread(target=reader, args=(refs[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(GET_TIMEOUT)
    assert sorted(results) == list(range(20))


def test_error_values_are_not_raised_by_put_but_failed_refs_raise(
    cluster: nbray.ClusterContext,
) -> None:
    @nbray.remote
    def boom() -> None:
        raise KeyError("k")

    failed = boom.remote()
    holder = nbray.put([failed])
    inner = nbray.get(holder)[0]
    with pytest.raises(KeyError) as info:
        nbray.get(inner, timeout=GET_TIMEOUT)
    assert isinstance(info.value, TaskError)


def test_many_objects_are_all_freed(cluster_factory: Callable[..., Any]) -> None:
    cluster_factory(num_cpus=1)
    refs = [nbray.put(np.full(20_000, i, dtype=np.float64)) for i in range(30)]  # 160 kB each
    names = [segment_of(r) for r in refs]
    assert [float(nbray.get(r)[0]) for r in refs] == [float(i) for i in range(30)]
    del refs
    release(*names)
    info = session.get_engine().cluster_info()["raw"]["object_store"]  # type: ignore[union-attr]
    assert info["shm_bytes"] == 0


def _maps_segment(pid: int, name: str) -> bool:
    return name in Path(f"/proc/{pid}/maps").read_text()


def test_a_worker_unmaps_a_large_argument_once_its_result_is_sent(
    cluster: nbray.ClusterContext,
) -> None:
    """The unmap (~10 ms for 100 MB) comes after the result goes out, not before; but it
    comes: neither a task's worker nor an actor's keeps the mapping."""

    @nbray.remote
    def pid_of(a: np.ndarray) -> int:
        import os

        return os.getpid()

    @nbray.remote
    class Reader:
        def pid_of(self, a: np.ndarray) -> int:
            import os

            return os.getpid()

    reader = Reader.remote()  # type: ignore[attr-defined]
    for call in (pid_of.remote, reader.pid_of.remote):
        ref = nbray.put(big_array(4))
        name = segment_of(ref)
        pid = nbray.get(call(ref), timeout=GET_TIMEOUT)
        wait_until(lambda p=pid, n=name: not _maps_segment(p, n), 10)
        del ref
        wait_until(lambda n=name: segment_gone(n))


def test_get_of_a_put_reads_it_here_without_the_head(cluster: nbray.ClusterContext) -> None:
    """The process that put a large object knows its segment: ``get`` and ``wait`` answer
    with the head stopped (SIGSTOP). A small one is asked of the head, as before."""
    import os
    import signal

    head = int((Path(cluster.session_dir) / "head.pid").read_text())
    small, large = nbray.put([1, 2, 3]), nbray.put(big_array(5))
    os.kill(head, signal.SIGSTOP)
    try:
        np.testing.assert_array_equal(nbray.get(large, timeout=5), big_array(5))
        assert nbray.wait([large], timeout=5)[1] == []
        assert nbray.wait([small], timeout=0.2)[0] == []  # its answer waits for the head
    finally:
        os.kill(head, signal.SIGCONT)
    del large
    assert nbray.get(small, timeout=GET_TIMEOUT) == [1, 2, 3]
