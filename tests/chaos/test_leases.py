"""Worker leases under faults: a driver that waits for each task sends the next straight to
a worker it leases, and everything the head path guarantees still holds: retries or
WorkerCrashedError when the leased worker dies mid-task (also before the head heard of
the task), cancellation, retriable exceptions, output, a leasing client killed, and the
lease given back when another client's work waits."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cloudpickle
import psutil
import pytest
from chaos_support import BOUNDED, head_pid, kill
from nbray_testing import wait_until
from test_direct_actor_calls import SlowHeadLink

import nbray
from nbray._model import session
from nbray.exceptions import TaskCancelledError, WorkerCrashedError

cloudpickle.register_pickle_by_value(sys.modules[__name__])

pytestmark = pytest.mark.timeout(240)


@nbray.remote
def pid() -> int:
    return os.getpid()


@nbray.remote
def echo(x: Any) -> Any:
    return x


@nbray.remote
def hang(marker: str) -> int:
    """Blocks (until killed or cancelled) the first time, anywhere; returns the pid after."""
    if not os.path.exists(marker):
        open(marker, "w").close()
        time.sleep(BOUNDED * 2)
    return os.getpid()


@nbray.remote
def crash(path: str) -> None:
    with open(path, "a") as f:
        f.write("x")
    os._exit(1)


class Flaky(Exception):
    pass


@nbray.remote
def flaky(marker: str, say: bool = False) -> str:
    if say:
        print(f"try {'2' if os.path.exists(marker) else '1'}")
    if not os.path.exists(marker):
        open(marker, "w").close()
        raise Flaky("the first try fails")
    return "ok"


@nbray.remote
def pause(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def leases() -> Any:
    return session.current_engine().client.leases  # type: ignore[attr-defined]


def go_leased() -> int:
    """Run tasks one by one until one went on a lease; returns the leased worker's pid."""
    sent = leases().sent

    def leased() -> int:
        worker = nbray.get(pid.remote(), timeout=BOUNDED)
        return worker if leases().sent > sent else 0

    return int(wait_until(leased, BOUNDED))


def on_lease(fn: Any, *args: Any, **options: Any) -> Any:
    """Submit ``fn`` on the lease (it is idle: the last task was answered); its ref."""
    sent = leases().sent
    ref = fn.options(**options).remote(*args) if options else fn.remote(*args)
    assert leases().sent == sent + 1, "the task went through the head"
    return ref


def test_tasks_on_a_lease_are_answered_while_the_head_is_stopped(
    cluster: nbray.ClusterContext,
) -> None:
    worker = go_leased()
    head = head_pid(cluster.session_dir)
    os.kill(head, signal.SIGSTOP)
    try:
        # the head is off the tasks' way
        assert [nbray.get(echo.remote(i), timeout=BOUNDED) for i in range(20)] == list(range(20))
        assert nbray.get(pid.remote(), timeout=BOUNDED) == worker
        last = echo.remote("last")
        assert nbray.get(last, timeout=BOUNDED) == "last"
    finally:
        os.kill(head, signal.SIGCONT)
    # the head recorded each task and its value: the ref can be passed on
    assert nbray.get(echo.remote(last), timeout=BOUNDED) == "last"
    wait_until(lambda: nbray.available_resources().get("CPU") == 2.0, BOUNDED)


def test_a_leased_worker_killed_mid_task_retries_it_elsewhere(
    cluster: nbray.ClusterContext, tmp_path: Path
) -> None:
    worker = go_leased()
    marker = tmp_path / "hung-once"
    ref = on_lease(hang, str(marker), max_retries=1)
    wait_until(marker.exists, BOUNDED)
    assert kill(worker)
    assert nbray.get(ref, timeout=BOUNDED) != worker  # retried through the head
    assert go_leased() != worker  # and the driver leases a live worker again


def test_a_leased_worker_killed_mid_task_fails_it_without_retries(
    cluster: nbray.ClusterContext, tmp_path: Path
) -> None:
    worker = go_leased()
    marker = tmp_path / "hung"
    ref = on_lease(hang, str(marker), max_retries=0)
    wait_until(marker.exists, BOUNDED)
    assert kill(worker)
    with pytest.raises(WorkerCrashedError):
        nbray.get(ref, timeout=BOUNDED)
    # the head has nothing of it left running
    wait_until(lambda: nbray.available_resources().get("CPU") == 2.0, BOUNDED)


def test_a_task_whose_leased_worker_died_before_the_head_heard_of_it_runs_once(
    cluster: nbray.ClusterContext, tmp_path: Path
) -> None:
    go_leased()
    ran = tmp_path / "ran"
    client = session.current_engine().client  # type: ignore[attr-defined]
    with SlowHeadLink(client.conn, delay=0.5):
        # the worker dies at once; the head handles the death before the driver's record
        # of the task arrives: it was on that worker, so with no retries it fails
        ref = on_lease(crash, str(ran), max_retries=0)
        with pytest.raises(WorkerCrashedError):
            nbray.get(ref, timeout=BOUNDED)
    assert ran.read_text() == "x"
    assert nbray.get(echo.remote(1), timeout=BOUNDED) == 1


def test_a_retriable_exception_on_a_lease_is_retried_and_its_output_comes_first(
    cluster: nbray.ClusterContext, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    go_leased()
    ref = on_lease(flaky, str(tmp_path / "quiet"), max_retries=1, retry_exceptions=True)
    assert nbray.get(ref, timeout=BOUNDED) == "ok"
    go_leased()
    capfd.readouterr()
    ref = on_lease(flaky, str(tmp_path / "says"), True, max_retries=1, retry_exceptions=True)
    assert nbray.get(ref, timeout=BOUNDED) == "ok"
    out = capfd.readouterr().out
    assert "try 1" in out and "try 2" in out
    # without retries the exception is the task's result
    go_leased()
    ref = on_lease(flaky, str(tmp_path / "fails"), max_retries=0, retry_exceptions=True)
    with pytest.raises(Flaky):
        nbray.get(ref, timeout=BOUNDED)


def test_a_task_on_a_lease_is_cancelled(cluster: nbray.ClusterContext, tmp_path: Path) -> None:
    worker = go_leased()
    marker = tmp_path / "started"
    ref = on_lease(hang, str(marker))
    wait_until(marker.exists, BOUNDED)
    nbray.cancel(ref)  # interrupted in its worker, which lives on
    with pytest.raises(TaskCancelledError):
        nbray.get(ref, timeout=BOUNDED)
    assert psutil.pid_exists(worker)
    marker.unlink()
    worker = go_leased()
    ref = on_lease(hang, str(marker))
    wait_until(marker.exists, BOUNDED)
    nbray.cancel(ref, force=True)  # its worker is killed
    with pytest.raises(TaskCancelledError):
        nbray.get(ref, timeout=BOUNDED)
    wait_until(lambda: not psutil.pid_exists(worker), BOUNDED)
    assert nbray.get(echo.remote(2), timeout=BOUNDED) == 2


def test_a_task_on_a_lease_cancelled_before_it_reached_its_worker_never_runs(
    cluster: nbray.ClusterContext, tmp_path: Path
) -> None:
    go_leased()
    (conn,) = leases()._conns.values()
    marker = tmp_path / "started"
    with SlowHeadLink(conn, delay=0.3):
        # the task reaches its worker 0.3 s late; the cancel, through the head, first
        ref = on_lease(hang, str(marker))
        nbray.cancel(ref)
        with pytest.raises(TaskCancelledError):
            nbray.get(ref, timeout=BOUNDED)
    assert not marker.exists()
    assert nbray.get(echo.remote(3), timeout=BOUNDED) == 3


LEASING_DRIVER = """
import os, sys, time, nbray
nbray.init(address=sys.argv[1])
leases = nbray._model.session.current_engine().client.leases

@nbray.remote
def pid():
    return os.getpid()

@nbray.remote
def hang(marker):
    open(marker, "w").close()
    time.sleep(600)

while not leases.sent:
    nbray.get(pid.remote())
ref = hang.remote(sys.argv[2])
assert leases.sent == 2
print(nbray.get(pid.remote()), flush=True)  # (through the head: the lease is busy)
time.sleep(600)
"""


def test_a_client_killed_while_its_task_runs_on_a_lease(
    cluster: nbray.ClusterContext, tmp_path: Path
) -> None:
    script = tmp_path / "leasing.py"
    script.write_text(LEASING_DRIVER)
    marker = tmp_path / "hanging"
    proc = subprocess.Popen(
        [sys.executable, str(script), cluster.session_dir, str(marker)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        proc.stdout.readline()
        wait_until(marker.exists, BOUNDED)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(BOUNDED)
    # its task is cancelled with it (its worker is killed, as for any task of a client
    # that went): both CPUs serve this driver again
    assert nbray.get([pause.remote(0.2), pause.remote(0.2)], timeout=BOUNDED) == [0.2, 0.2]
    wait_until(lambda: nbray.available_resources().get("CPU") == 2.0, BOUNDED)
    go_leased()


OTHER_DRIVER = """
import sys, nbray
nbray.init(address=sys.argv[1])

@nbray.remote
def one():
    return 1

print(nbray.get(one.remote()), flush=True)
"""


def test_a_lease_goes_back_when_another_clients_task_waits(
    cluster_factory: Callable[..., nbray.ClusterContext], tmp_path: Path
) -> None:
    ctx = cluster_factory(num_cpus=2)
    # half a CPU, through the head, for the whole test (another shape: no task of this
    # driver's queues behind it)
    long = pause.options(num_cpus=0.5).remote(BOUNDED * 3)
    go_leased()  # the other
    other_done = threading.Event()
    gave_up = threading.Event()

    def loop() -> None:  # this driver keeps its lease busy until the other is served
        deadline = time.monotonic() + BOUNDED
        while not other_done.is_set():
            nbray.get(echo.remote(1), timeout=BOUNDED)
            if time.monotonic() > deadline:
                gave_up.set()
                return

    thread = threading.Thread(target=loop)
    thread.start()
    script = tmp_path / "other.py"
    script.write_text(OTHER_DRIVER)
    try:
        out = subprocess.run(
            [sys.executable, str(script), ctx.session_dir],
            capture_output=True,
            text=True,
            timeout=BOUNDED * 2,
        )
    finally:
        other_done.set()
        thread.join(BOUNDED)
    assert out.stdout.strip() == "1", out.stderr
    # served while this driver's loop still ran: the head asked for the lease back
    assert not gave_up.is_set(), "the other client waited for the loop to end"
    nbray.cancel(long, force=True)
