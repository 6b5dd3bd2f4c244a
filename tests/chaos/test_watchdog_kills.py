"""The head's watchdog under real faults: a task eating the node's memory is killed by
nbray's memory monitor (not by the OS OOM killer, which could pick the head or the kernel),
and a worker stopped with SIGSTOP is killed so nothing waits on it forever.

The memory threshold is set a little above what the machine uses now, so the scenario
needs only ~1.5 GiB more; the task would allocate up to 8 GiB if nothing stopped it.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cloudpickle
import pytest
from chaos_support import BOUNDED, kill
from nbray_testing import wait_until

import nbray
from nbray._node.watchdog import read_memory_use
from nbray.exceptions import OutOfMemoryError, WorkerCrashedError

cloudpickle.register_pickle_by_value(sys.modules[__name__])

pytestmark = pytest.mark.timeout(180)

HEADROOM = 1.5 * 2**30
CHUNK = 64 * 2**20
CAP = 8 * 2**30


def hog(path: str) -> str:
    """Allocate (and touch) memory until killed; note each attempt's pid."""
    with open(path, "a") as f:
        f.write(f"{os.getpid()}\n")
    held = []
    while len(held) * CHUNK < CAP:
        held.append(b"x" * CHUNK)
        time.sleep(0.02)
    return "nothing stopped me"


def attempts(path: Path) -> list[int]:
    return [int(x) for x in path.read_text().split()] if path.exists() else []


@pytest.fixture
def tight_memory(monkeypatch: pytest.MonkeyPatch) -> float:
    """A threshold ~1.5 GiB above the memory in use now."""
    use = read_memory_use()
    threshold = (use.used + HEADROOM) / use.limit
    if threshold >= 0.95:
        pytest.skip(f"the machine has less than {HEADROOM / 2**30:.1f} GiB free")
    monkeypatch.setenv("NBRAY_MEMORY_USAGE_THRESHOLD", f"{threshold:.4f}")
    monkeypatch.setenv("NBRAY_MEMORY_MONITOR_REFRESH_MS", "100")
    return threshold


def test_memory_hog_is_killed_by_the_monitor_and_named(
    cluster_factory: Callable[..., Any], tight_memory: float, tmp_path: Path
) -> None:
    cluster_factory(num_cpus=2)
    log = tmp_path / "attempts"
    ref = nbray.remote(max_retries=0)(hog).remote(str(log))
    with pytest.raises(OutOfMemoryError) as info:
        nbray.get(ref, timeout=BOUNDED)
    message = str(info.value)
    assert "hog" in message and "memory monitor" in message and "threshold" in message
    assert len(attempts(log)) == 1

    # the node recovered and carries on
    @nbray.remote
    def fine(x: int) -> int:
        return x + 1

    assert nbray.get([fine.remote(i) for i in range(20)], timeout=BOUNDED) == list(range(1, 21))
    wait_until(lambda: nbray.available_resources().get("CPU") == 2.0)


def test_memory_kills_count_against_max_retries(
    cluster_factory: Callable[..., Any], tight_memory: float, tmp_path: Path
) -> None:
    cluster_factory(num_cpus=2)
    log = tmp_path / "attempts"
    ref = nbray.remote(max_retries=1)(hog).remote(str(log))
    with pytest.raises(OutOfMemoryError, match=r"after 2 attempt"):
        nbray.get(ref, timeout=BOUNDED)
    first, second = attempts(log)
    assert first != second


def test_memory_monitor_kills_the_newest_retriable_task(
    cluster_factory: Callable[..., Any], tight_memory: float, tmp_path: Path
) -> None:
    """Two tasks share the node: the older one holds 256 MiB and waits; the newer one eats
    memory. The newer one is the victim; the older one finishes untouched."""
    cluster_factory(num_cpus=2)
    started = tmp_path / "holder-started"
    release = tmp_path / "release"

    @nbray.remote(max_retries=0)
    def holder(started: str, release: str) -> int:
        block = b"y" * (256 * 2**20)
        Path(started).write_text("1")
        while not os.path.exists(release):
            time.sleep(0.02)
        return len(block)

    old = holder.remote(str(started), str(release))
    wait_until(started.exists, BOUNDED)
    new = nbray.remote(max_retries=0)(hog).remote(str(tmp_path / "attempts"))
    with pytest.raises(OutOfMemoryError):
        nbray.get(new, timeout=BOUNDED)
    release.write_text("1")
    assert nbray.get(old, timeout=BOUNDED) == 256 * 2**20


@pytest.fixture
def hung_after_one_second(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NBRAY_HUNG_WORKER_TIMEOUT_S", "1")


def stop_first_attempt(path: str) -> str:
    """The first attempt notes its pid and waits to be stopped; a retry returns."""
    with open(path, "a") as f:
        f.write(f"{os.getpid()}\n")
    if len(Path(path).read_text().split()) == 1:
        time.sleep(600)
    return "retried"


def test_stopped_worker_is_killed_and_its_task_retried(
    cluster_factory: Callable[..., Any], hung_after_one_second: None, tmp_path: Path
) -> None:
    cluster_factory(num_cpus=2)
    log = tmp_path / "attempts"
    ref = nbray.remote(max_retries=1)(stop_first_attempt).remote(str(log))
    wait_until(lambda: attempts(log), BOUNDED)
    assert kill(attempts(log)[0], signal.SIGSTOP)
    assert nbray.get(ref, timeout=BOUNDED) == "retried"
    assert len(attempts(log)) == 2


def test_stopped_worker_without_retries_fails_with_the_reason(
    cluster_factory: Callable[..., Any], hung_after_one_second: None, tmp_path: Path
) -> None:
    cluster_factory(num_cpus=2)
    log = tmp_path / "attempts"
    ref = nbray.remote(max_retries=0)(stop_first_attempt).remote(str(log))
    wait_until(lambda: attempts(log), BOUNDED)
    kill(attempts(log)[0], signal.SIGSTOP)
    with pytest.raises(WorkerCrashedError, match="SIGSTOP"):
        nbray.get(ref, timeout=BOUNDED)
