"""The watchdog's decisions: memory readings from cgroup files, the victim policy, and the
settings read from the environment. The kills themselves are in tests/chaos/."""

from __future__ import annotations

from pathlib import Path

import psutil
import pytest

from nbray._node.instructions import BusyWorker
from nbray._node.watchdog import (
    DEFAULT_THRESHOLD,
    MemoryUse,
    Watchdog,
    WatchdogSettings,
    pick_oom_victim,
    read_memory_use,
)

GiB = 2**30


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_cgroup_v2_limit_minus_reclaimable_cache(tmp_path: Path) -> None:
    root = write(
        tmp_path,
        {
            "memory.max": f"{4 * GiB}\n",
            "memory.current": f"{3 * GiB}\n",
            "memory.stat": f"anon 100\ninactive_file {GiB}\nactive_file 5\n",
        },
    )
    assert read_memory_use(root) == MemoryUse(2 * GiB, 4 * GiB, "cgroup")


def test_cgroup_v1_limit(tmp_path: Path) -> None:
    root = write(
        tmp_path,
        {
            "memory/memory.limit_in_bytes": f"{2 * GiB}\n",
            "memory/memory.usage_in_bytes": f"{GiB}\n",
            "memory/memory.stat": f"inactive_file 7\ntotal_inactive_file {GiB // 2}\n",
        },
    )
    use = read_memory_use(root)
    assert use == MemoryUse(GiB // 2, 2 * GiB, "cgroup")
    assert use.fraction == 0.25


@pytest.mark.parametrize(
    "files",
    [
        {"memory.max": "max\n", "memory.current": "5\n"},
        {"memory/memory.limit_in_bytes": "9223372036854771712\n"},
        {},
    ],
    ids=["v2-unlimited", "v1-unlimited", "no-cgroup"],
)
def test_without_a_cgroup_limit_the_machine_counts(tmp_path: Path, files: dict[str, str]) -> None:
    use = read_memory_use(write(tmp_path, files))
    assert use.source == "machine"
    assert use.limit == psutil.virtual_memory().total
    assert 0 < use.used < use.limit


def test_victim_is_the_newest_retriable_else_the_newest() -> None:
    old_retriable = BusyWorker(1, 10, 0, True)
    new_final = BusyWorker(2, 11, 0, False)
    newer_retriable = BusyWorker(3, 12, 0, True)
    order = {1: 1, 2: 3, 3: 2}
    assert pick_oom_victim([old_retriable, new_final, newer_retriable], order) == newer_retriable
    assert pick_oom_victim([old_retriable, new_final], order) == old_retriable
    assert pick_oom_victim([new_final, BusyWorker(4, 13, 0, False)], {2: 3, 4: 9}).worker_id == 4
    assert pick_oom_victim([], order) is None


def test_under_the_threshold_nothing_is_killed() -> None:
    dog = Watchdog(WatchdogSettings(), read_memory=lambda: MemoryUse(90, 100, "machine"))
    assert dog.check([BusyWorker(1, 10, 0, True)], {1: 12345}, {1: 1}) == []


def test_over_the_threshold_with_no_task_running_kills_nothing() -> None:
    dog = Watchdog(WatchdogSettings(), read_memory=lambda: MemoryUse(99, 100, "machine"))
    assert dog.check([], {}, {}) == []


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NBRAY_MEMORY_USAGE_THRESHOLD", "0.5")
    monkeypatch.setenv("NBRAY_MEMORY_MONITOR_REFRESH_MS", "0")
    monkeypatch.setenv("NBRAY_HUNG_WORKER_TIMEOUT_S", "3")
    assert WatchdogSettings.from_env() == WatchdogSettings(0.5, 0.0, 3.0)
    monkeypatch.setenv("NBRAY_MEMORY_USAGE_THRESHOLD", "7")
    assert WatchdogSettings.from_env().threshold == DEFAULT_THRESHOLD
    monkeypatch.setenv("NBRAY_MEMORY_USAGE_THRESHOLD", "lots")
    assert WatchdogSettings.from_env().threshold == DEFAULT_THRESHOLD
