"""Clients (kernels) killed mid-job, again and again: their tasks are cancelled, their
objects freed, the CPUs come back, and nothing of theirs remains; the cluster and its
other clients carry on. Real kernels restarted many times leave nothing behind either."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from chaos_support import BOUNDED, head_pid, size
from kernel_support import assert_cluster_gone, running_kernel, start_cluster_in_kernel
from nbray_testing import session_segments, wait_until

import nbray
from nbray._model import session

CLIENT = """
import os, sys, time
import numpy as np
import nbray

nbray.init()  # NBRAY_ADDRESS: the test's cluster

@nbray.remote
def busy(i):
    time.sleep(60)

refs = [busy.remote(i) for i in range(6)]  # more than the CPUs: some queue
big = nbray.put(np.ones(2**20))           # 8 MB in shared memory
print("submitted", flush=True)
time.sleep(60)
"""


def store_bytes() -> int:
    info = session.current_engine().cluster_info()["raw"]["object_store"]  # type: ignore[attr-defined]
    return int(info["shm_bytes"]) + int(info["spilled_bytes"])


@pytest.mark.timeout(600)
def test_clients_killed_mid_job_fifty_times(
    cluster_factory: Callable[..., Any], tmp_path: Path, figures: dict[str, Any]
) -> None:
    ctx = cluster_factory(num_cpus=2)
    token = Path(ctx.session_dir).name.rsplit("-", 1)[-1]
    script = tmp_path / "client.py"
    script.write_text(CLIENT)
    env = {**os.environ, "NBRAY_ADDRESS": ctx.session_dir}
    baseline_segments = session_segments(token)
    rounds = size(50, 500)
    figures["clients_killed"] = rounds
    for _ in range(rounds):
        proc = subprocess.Popen(
            [sys.executable, str(script)], stdout=subprocess.PIPE, text=True, env=env
        )
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "submitted"
            wait_until(lambda: nbray.available_resources().get("CPU", 0.0) == 0.0, BOUNDED)
        finally:
            proc.send_signal(signal.SIGKILL)  # no atexit, no goodbye
            proc.wait(BOUNDED)
        wait_until(lambda: nbray.available_resources().get("CPU") == 2.0, BOUNDED)
    wait_until(lambda: store_bytes() == 0, BOUNDED)
    assert session_segments(token) == baseline_segments
    status = session.current_engine().status()  # type: ignore[attr-defined]
    tasks = status["tasks"]
    assert (tasks["RUNNING"], tasks["READY"], tasks["WAITING"]) == (0, 0, 0)
    # the cluster's own processes only: head, fork server, its pool of workers
    assert len(worker_processes(ctx.session_dir)) <= 2 + 2

    @nbray.remote
    def still_fine(x: int) -> int:
        return x * 3

    assert nbray.get([still_fine.remote(i) for i in range(10)], timeout=BOUNDED) == [
        3 * i for i in range(10)
    ]


def worker_processes(session_dir: str) -> list[int]:
    import psutil

    return [p.pid for p in psutil.Process(head_pid(session_dir)).children(recursive=True)]


@pytest.mark.timeout(900)
def test_a_kernel_restarted_many_times_leaves_nothing_behind(figures: dict[str, Any]) -> None:
    rounds = figures["kernel_restarts"] = size(5, 50)
    with running_kernel() as km:
        for _ in range(rounds):
            info = start_cluster_in_kernel(km)
            km.restart_kernel(now=True)
            assert_cluster_gone(info)
