"""Generator tasks on a real local cluster: a worker killed mid-stream (a retry replays the
generator and the caller sees each value once; without retries a clear error), dropping a
generator frees its values, and nothing is left after ``shutdown``.

Each test starts its own cluster (the ``cluster`` fixture, whose teardown proves no process,
segment or session directory is left). Timeouts only bound hangs.
"""

from __future__ import annotations

import gc
import os
import signal
import sys
from pathlib import Path

import cloudpickle
import pytest
from nbray_testing import session_segments, wait_until

import nbray
from nbray._model import session
from nbray.exceptions import WorkerCrashedError

cloudpickle.register_pickle_by_value(sys.modules[__name__])

GET_TIMEOUT = 30.0
BIG = 1024 * 1024  # bytes: above the inline limit, so each value is a shm segment


@nbray.remote
def pid_then_gate(run_dir: str, n: int) -> object:
    """Yields 0, records its pid (one file per attempt), waits for ``gate``, yields 1..n-1."""
    import os
    import time
    from pathlib import Path

    yield 0
    Path(run_dir, f"pid-{os.getpid()}").touch()
    deadline = time.monotonic() + 60
    while not Path(run_dir, "gate").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    yield from range(1, n)


def _attempts(run_dir: Path) -> list[int]:
    return [int(p.name[4:]) for p in run_dir.glob("pid-*")]


def _own_segments() -> set[str]:
    return session_segments(session.get_engine().client.session)  # type: ignore[union-attr]


def test_worker_killed_mid_stream_is_retried_without_duplicates(
    cluster: nbray.ClusterContext, tmp_path: Path
) -> None:
    gen = pid_then_gate.options(max_retries=1).remote(str(tmp_path), 4)
    assert nbray.get(next(gen), timeout=GET_TIMEOUT) == 0
    wait_until(lambda: len(_attempts(tmp_path)) == 1, GET_TIMEOUT)
    first = _attempts(tmp_path)[0]
    os.kill(first, signal.SIGKILL)
    wait_until(lambda: len(_attempts(tmp_path)) == 2, GET_TIMEOUT)  # the retry replayed 0
    (tmp_path / "gate").touch()
    assert nbray.get(list(gen), timeout=GET_TIMEOUT) == [1, 2, 3]  # 0 once, then the rest
    assert nbray.get(gen.completed(), timeout=GET_TIMEOUT) is None


def test_worker_killed_mid_stream_without_retries_is_a_clear_error(
    cluster: nbray.ClusterContext, tmp_path: Path
) -> None:
    gen = pid_then_gate.options(max_retries=0).remote(str(tmp_path), 4)
    assert nbray.get(next(gen), timeout=GET_TIMEOUT) == 0
    wait_until(lambda: len(_attempts(tmp_path)) == 1, GET_TIMEOUT)
    os.kill(_attempts(tmp_path)[0], signal.SIGKILL)
    failed = next(gen)
    with pytest.raises(WorkerCrashedError):
        nbray.get(failed, timeout=GET_TIMEOUT)
    with pytest.raises(StopIteration):
        next(gen)
    with pytest.raises(WorkerCrashedError):
        nbray.get(gen.completed(), timeout=GET_TIMEOUT)


@nbray.remote
def big_values(n: int) -> object:
    import numpy as np

    for i in range(n):
        yield np.full(BIG // 8, i, dtype=np.float64)


def test_dropping_a_generator_frees_its_values(cluster: nbray.ClusterContext) -> None:
    gen = big_values.remote(3)
    kept = next(gen)
    nbray.get(gen.completed(), timeout=GET_TIMEOUT)
    wait_until(lambda: len(_own_segments()) == 3, GET_TIMEOUT)  # every yield is a segment
    assert float(nbray.get(kept, timeout=GET_TIMEOUT)[0]) == 0.0
    del gen  # two values never handed out: released now
    gc.collect()
    wait_until(lambda: len(_own_segments()) == 1, GET_TIMEOUT)
    del kept
    gc.collect()
    wait_until(lambda: not _own_segments(), GET_TIMEOUT)


def test_values_of_a_generator_dropped_while_running_are_freed(
    cluster: nbray.ClusterContext, tmp_path: Path
) -> None:
    @nbray.remote
    def big_gated(run_dir: str) -> object:
        import time
        from pathlib import Path

        import numpy as np

        yield np.zeros(BIG // 8)
        deadline = time.monotonic() + 60
        while not Path(run_dir, "gate").exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        yield np.ones(BIG // 8)

    gen = big_gated.remote(str(tmp_path))
    done = gen.completed()
    wait_until(lambda: len(_own_segments()) == 1, GET_TIMEOUT)
    del gen
    gc.collect()
    (tmp_path / "gate").touch()  # the second value arrives for nobody
    nbray.get(done, timeout=GET_TIMEOUT)
    wait_until(lambda: not _own_segments(), GET_TIMEOUT)


def test_generator_inside_a_task(cluster: nbray.ClusterContext) -> None:
    @nbray.remote
    def numbers(n: int) -> object:
        yield from range(n)

    @nbray.remote
    def consume(n: int) -> list[int]:
        import nbray

        return [nbray.get(ref) for ref in numbers.remote(n)]

    assert nbray.get(consume.remote(5), timeout=GET_TIMEOUT) == [0, 1, 2, 3, 4]
