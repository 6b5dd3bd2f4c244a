"""Workers dying under real signals while work runs: results stay exact, attempts stay
within ``max_retries + 1``, every ``get`` returns or raises, and the CPUs come back.

Each attempt of a task appends its task index to a log file (O_APPEND, one short line:
atomic), so the test counts exactly how often each task ran.
"""

from __future__ import annotations

import collections
import ctypes
import os
import random
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cloudpickle
import pytest
from chaos_support import BOUNDED, head_pid, kill, size, worker_pids
from nbray_testing import wait_until

import nbray
from nbray._node.watchdog import read_memory_use
from nbray.exceptions import OutOfMemoryError, WorkerCrashedError

cloudpickle.register_pickle_by_value(sys.modules[__name__])

pytestmark = pytest.mark.timeout(300)


def note_attempt(log: str, i: int) -> None:
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, f"{i}\n".encode())
    finally:
        os.close(fd)


def attempts_by_task(log: Path) -> collections.Counter[int]:
    return collections.Counter(int(x) for x in log.read_text().split())


def all_cpus_free(total: float) -> bool:
    return nbray.available_resources().get("CPU") == total


def test_random_sigkills_during_a_thousand_tasks(
    cluster_factory: Callable[..., Any], tmp_path: Path, figures: dict[str, Any]
) -> None:
    ctx = cluster_factory(num_cpus=2)
    log = tmp_path / "attempts"
    n = size(1000, 20_000)

    @nbray.remote(max_retries=3)
    def work(i: int, log: str) -> int:
        note_attempt(log, i)
        time.sleep(0.01)
        return i * i

    rng = random.Random(20261126)
    stop = threading.Event()
    kills: list[int] = []

    def killer() -> None:
        while not stop.wait(rng.uniform(1.5, 2.5)):
            pids = worker_pids(head_pid(ctx.session_dir))
            if pids and kill(victim := rng.choice(pids)):
                kills.append(victim)

    thread = threading.Thread(target=killer, daemon=True)
    refs = [work.remote(i, str(log)) for i in range(n)]
    thread.start()
    try:
        results = nbray.get(refs, timeout=BOUNDED * 5)
    finally:
        stop.set()
        thread.join()
    assert results == [i * i for i in range(n)]
    assert kills, "the job ended before any worker was killed"
    counts = attempts_by_task(log)
    assert set(counts) == set(range(n))
    assert max(counts.values()) <= 3 + 1
    wait_until(lambda: all_cpus_free(2.0), 10)
    figures.update(
        tasks=n,
        workers_killed=len(kills),
        tasks_retried=sum(1 for c in counts.values() if c > 1),
        most_attempts=max(counts.values()),
    )


def segfault(log: str) -> None:
    note_attempt(log, 0)
    ctypes.string_at(0)  # a real segmentation fault in native code


def test_a_task_that_always_segfaults_runs_max_retries_plus_one_times(
    cluster_factory: Callable[..., Any], tmp_path: Path
) -> None:
    cluster_factory(num_cpus=2)
    log = tmp_path / "attempts"
    ref = nbray.remote(max_retries=2)(segfault).remote(str(log))
    with pytest.raises(WorkerCrashedError) as info:
        nbray.get(ref)  # no timeout: it must come back by itself
    assert info.value.exit_code == -signal.SIGSEGV
    assert "segfault" in str(info.value) and "segmentation fault" in str(info.value)
    assert "after 3 attempt(s)" in str(info.value)
    assert attempts_by_task(log) == {0: 3}

    @nbray.remote
    def fine(x: int) -> int:
        return -x

    assert nbray.get([fine.remote(i) for i in range(50)]) == [-i for i in range(50)]
    wait_until(lambda: all_cpus_free(2.0), 10)


# --- every kind of death, many times: no get hangs ------------------------------------------


def die(how: str, log: str) -> None:
    note_attempt(log, 0)
    if how == "sigkill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif how == "segfault":
        ctypes.string_at(0)
    elif how == "exit":
        os._exit(7)
    elif how == "sigstop":
        os.kill(os.getpid(), signal.SIGSTOP)
    elif how == "memory":
        held = []
        while len(held) < 128:  # 8 GiB at most
            held.append(b"m" * (64 * 2**20))
            time.sleep(0.01)
    raise AssertionError(f"{how} did not kill the worker")


EXPECTED = {
    "sigkill": (WorkerCrashedError, "SIGKILL"),
    "segfault": (WorkerCrashedError, "segmentation fault"),
    "exit": (WorkerCrashedError, "exit code 7"),
    "sigstop": (WorkerCrashedError, "SIGSTOP"),
    "memory": (OutOfMemoryError, "memory monitor"),
}


@pytest.mark.parametrize("how", list(EXPECTED))
def test_every_get_returns_whatever_kills_the_worker(
    how: str,
    cluster_factory: Callable[..., Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    figures: dict[str, Any],
) -> None:
    monkeypatch.setenv("NBRAY_HUNG_WORKER_TIMEOUT_S", "1")
    if how == "memory":
        use = read_memory_use()
        monkeypatch.setenv(
            "NBRAY_MEMORY_USAGE_THRESHOLD", f"{(use.used + 1.5 * 2**30) / use.limit:.4f}"
        )
        monkeypatch.setenv("NBRAY_MEMORY_MONITOR_REFRESH_MS", "100")
    cluster_factory(num_cpus=2)
    error, text = EXPECTED[how]
    rounds = size(4, 40)
    log = tmp_path / "attempts"
    dying = nbray.remote(max_retries=0)(die)
    for _ in range(rounds):
        with pytest.raises(error, match=text):
            nbray.get(dying.remote(how, str(log)))  # no timeout: bounded by itself
    assert attempts_by_task(log) == {0: rounds}
    figures.update(fault=how, deaths=rounds)
    assert nbray.get(nbray.remote(lambda: "alive").remote()) == "alive"
    wait_until(lambda: all_cpus_free(2.0), 10)
