"""An actor killed (SIGKILL) while a thousand calls stream in: with ``max_restarts=2`` and
``max_task_retries=-1`` every call is answered, in order; the third death fails the
pending calls promptly with ActorDiedError."""

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
from chaos_support import BOUNDED, kill, size
from nbray_testing import wait_until

import nbray
from nbray.exceptions import ActorDiedError

cloudpickle.register_pickle_by_value(sys.modules[__name__])

pytestmark = pytest.mark.timeout(180)


class Stepper:
    """Notes its pid on each (re)start, and the index of each call it runs."""

    def __init__(self, pids: str, progress: str) -> None:
        with open(pids, "a") as f:
            f.write(f"{os.getpid()}\n")
        self.progress = progress

    def step(self, i: int) -> int:
        with open(self.progress, "a") as f:
            f.write(f"{i}\n")
        time.sleep(0.002)
        return i


def lines(path: Path) -> list[int]:
    return [int(x) for x in path.read_text().split()] if path.exists() else []


def test_actor_killed_twice_answers_every_call_in_order_and_a_third_kill_fails_fast(
    cluster_factory: Callable[..., Any], tmp_path: Path, figures: dict[str, Any]
) -> None:
    cluster_factory(num_cpus=2)
    pids, progress = tmp_path / "pids", tmp_path / "progress"
    n = size(1000, 10_000)
    actor = (
        nbray.remote(Stepper)
        .options(max_restarts=2, max_task_retries=-1)
        .remote(str(pids), str(progress))
    )
    refs = [actor.step.remote(i) for i in range(n)]
    for restart, at in enumerate((n // 3, 2 * n // 3), start=1):
        wait_until(lambda at=at: len(lines(progress)) >= at, BOUNDED)
        assert kill(lines(pids)[-1])
        wait_until(lambda restart=restart: len(lines(pids)) == restart + 1, BOUNDED)
    assert nbray.get(refs, timeout=BOUNDED) == list(range(n))
    ran = lines(progress)
    # calls ran in submission order; a call in flight at a kill ran again after the restart
    assert sorted(set(ran)) == list(range(n))
    assert list(dict.fromkeys(ran)) == list(range(n))  # first runs, in order

    # restarts used up: the third death fails what is pending (a get with a timeout
    # raises ActorDiedError, not GetTimeoutError)
    more = [actor.step.remote(n + i) for i in range(200)]
    wait_until(lambda: len(lines(progress)) > len(ran), BOUNDED)
    assert kill(lines(pids)[-1], signal.SIGKILL)
    with pytest.raises(ActorDiedError, match="died"):
        nbray.get(more[-1], timeout=BOUNDED)
    failed = 0
    for r in more:
        try:
            nbray.get(r, timeout=BOUNDED)
        except ActorDiedError:
            failed += 1
    assert failed >= 1
    figures.update(
        calls=n, restarts=2, calls_run_twice=len(ran) - n, failed_after_third_kill=failed
    )
