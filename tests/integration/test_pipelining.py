"""Pipelining on a real cluster: short tasks queued on busy workers behind a task of the
same resource shape (see ``nbray._node.scheduler``).

The head pipelines a function once its average run time is under ``SHORT_TASK``, so each
test first runs it a few times (``warm_up``). Where a test needs tasks to be queued on a
worker, it holds that worker with a task waiting for a file and waits until the head
reports more tasks RUNNING (dispatched) than there are CPUs. Outcomes are exact; timeouts
only bound hangs.
"""

from __future__ import annotations

import os
import re
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cloudpickle
import psutil
import pytest
from nbray_testing import run_python, wait_until

import nbray
from nbray._model import session
from nbray.exceptions import TaskCancelledError

# pytest imports this file as a top-level module the workers cannot import: ship the
# functions defined here by value, as a notebook's would be.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

GET_TIMEOUT = 60.0
INNER_TIMEOUT = 30.0  # a nested get that deadlocked fails the task instead of hanging
WARM_UP = 20  # runs that bring a function's moving-average run time under SHORT_TASK


def wait_for_file(path: str | Path, timeout: float = 60.0) -> None:
    """Used inside tasks: block until ``path`` exists (bounded)."""
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} never appeared")
        time.sleep(0.005)


@nbray.remote
def value(i: int) -> int:
    return i


@nbray.remote
def whoami() -> int:
    return os.getpid()


@nbray.remote
def hold(started: str, release: str) -> int:
    """Occupies a worker (one CPU, the shape of the short tasks) until ``release`` exists;
    ``started`` appears (atomically) holding the worker's pid."""
    Path(started + ".tmp").write_text(str(os.getpid()))
    os.replace(started + ".tmp", started)
    wait_for_file(release)
    return os.getpid()


@nbray.remote
def step(i: int, gate: str = "", spawn: str = "", kill_once: str = "") -> int:
    """Short unless told otherwise: wait for ``gate``; submit a child that waits on ``spawn``;
    kill its own worker the first time (``kill_once`` is the marker)."""
    if kill_once and not os.path.exists(kill_once):
        wait_for_file(gate)
        Path(kill_once).touch()
        os.kill(os.getpid(), signal.SIGKILL)
    if spawn:
        child.options(num_cpus=0).remote(spawn)
        Path(spawn + ".submitted").touch()
    if gate:
        wait_for_file(gate)
    return i


@nbray.remote
def child(path: str) -> str:
    Path(path).touch()
    wait_for_file(path + ".gate")
    return "child ran"


@nbray.remote
def chained(i: int, previous: list[nbray.ObjectRef]) -> int:
    """i plus the result of the task before it, fetched with a nested get."""
    return i + (nbray.get(previous[0], timeout=INNER_TIMEOUT) if previous else 0)


@nbray.remote
def fan(depth: int) -> int:
    """A binary tree of nested tasks: each level submits two and waits for them."""
    if depth == 0:
        return 1
    return sum(nbray.get([fan.remote(depth - 1) for _ in range(2)], timeout=INNER_TIMEOUT))


@nbray.remote(num_cpus=0)
def fan0(depth: int) -> int:
    """``fan`` with tasks that hold no CPU (and lend none when they block)."""
    if depth == 0:
        return 1
    return sum(nbray.get([fan0.remote(depth - 1) for _ in range(2)], timeout=INNER_TIMEOUT))


def warm_up(call: Callable[[], nbray.ObjectRef]) -> Any:
    """Run a task WARM_UP times, one at a time, so the head counts its function as short;
    then give back the worker lease those ran on (this file tests the head's pipelining:
    the tasks after this go through the head, not straight to a leased worker)."""
    result = None
    for _ in range(WARM_UP):
        result = nbray.get(call(), timeout=GET_TIMEOUT)
    session.get_engine().client.leases.return_idle(at_once=True)  # type: ignore[union-attr]
    return result


def task_counts() -> dict[str, int]:
    status = session.get_engine().status()  # type: ignore[union-attr]
    return dict(status["tasks"])


def dispatched_beyond(n: int) -> Callable[[], bool]:
    """More than ``n`` tasks RUNNING: the rest are queued on busy workers (pipelined)."""
    return lambda: task_counts()["RUNNING"] > n


def all_resources_free() -> None:
    total = nbray.cluster_resources()
    wait_until(lambda: nbray.available_resources() == total, timeout=30.0)


def process_gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


# --- throughput and order --------------------------------------------------------------


def test_many_no_op_tasks_return_their_values_in_order(cluster: nbray.ClusterContext) -> None:
    warm_up(lambda: value.remote(0))
    refs = [value.remote(i) for i in range(3000)]
    assert nbray.get(refs, timeout=GET_TIMEOUT) == list(range(3000))
    all_resources_free()
    assert task_counts()["RUNNING"] == 0


def test_pipelined_result_is_not_withheld_while_the_next_task_runs(
    cluster_factory: Callable[..., Any], tmp_path: Path
) -> None:
    # The worker batches results while more tasks wait in its inbox; one that runs long
    # (here until the driver, having the first result, lets it go) must not hold them back.
    cluster_factory(num_cpus=1)
    warm_up(lambda: step.remote(0))
    started, release, gate = tmp_path / "started", tmp_path / "release", tmp_path / "gate"
    held = hold.remote(str(started), str(release))
    wait_until(started.exists)
    first = step.remote(1)
    second = step.remote(2, gate=str(gate))
    wait_until(dispatched_beyond(2))  # both queued behind the held task
    release.touch()
    assert nbray.get(first, timeout=GET_TIMEOUT) == 1  # while the second one still waits
    gate.touch()
    assert nbray.get(second, timeout=GET_TIMEOUT) == 2
    assert nbray.get(held, timeout=GET_TIMEOUT) == int(started.read_text())
    all_resources_free()


# --- nested get / nested submission in short tasks -------------------------------------


@pytest.mark.parametrize("num_cpus", [1, 2])
def test_nested_get_in_pipelined_tasks_does_not_deadlock(
    cluster_factory: Callable[..., Any], num_cpus: int
) -> None:
    cluster_factory(num_cpus=num_cpus)
    warm_up(lambda: chained.remote(0, []))
    refs: list[nbray.ObjectRef] = []
    for i in range(300):
        refs.append(chained.remote(i, refs[-1:]))  # in a list: the task gets it itself
    assert nbray.get(refs, timeout=GET_TIMEOUT) == [i * (i + 1) // 2 for i in range(300)]
    all_resources_free()


@pytest.mark.parametrize("fn", [fan, fan0], ids=["one-cpu-tasks", "zero-cpu-tasks"])
def test_nested_fan_out_of_short_tasks_does_not_deadlock(
    cluster_factory: Callable[..., Any], fn: Any
) -> None:
    # children submitted by a running task queue behind it (no worker is idle); when it
    # waits for them they must be taken back, and not queued behind it again
    cluster_factory(num_cpus=1)
    warm_up(lambda: fn.remote(0))
    assert nbray.get(fn.remote(3), timeout=GET_TIMEOUT) == 8
    assert nbray.get([fn.remote(2) for _ in range(10)], timeout=GET_TIMEOUT) == [4] * 10
    all_resources_free()


def test_task_submitted_by_a_pipelined_task_is_its_child(
    cluster_factory: Callable[..., Any], tmp_path: Path
) -> None:
    # The result of the task before it may still be unsent when a pipelined task submits a
    # child: the head must not take that earlier task for the parent (recursive cancel).
    cluster_factory(num_cpus=1)
    warm_up(lambda: step.remote(0))
    started, release = tmp_path / "started", tmp_path / "release"
    gate, spawn = tmp_path / "gate", tmp_path / "child"
    held = hold.remote(str(started), str(release))
    wait_until(started.exists)
    before = step.remote(1)
    parent = step.remote(2, gate=str(gate), spawn=str(spawn))
    wait_until(dispatched_beyond(2))
    release.touch()
    wait_until(Path(str(spawn) + ".submitted").exists)
    wait_until(spawn.exists)  # the child runs (it holds no CPU)
    cancelled_before = task_counts()["CANCELLED"]
    nbray.cancel(parent)  # recursive by default
    with pytest.raises(TaskCancelledError):
        nbray.get(parent, timeout=GET_TIMEOUT)
    assert nbray.get(before, timeout=GET_TIMEOUT) == 1

    def parent_and_child_cancelled() -> bool:
        counts = task_counts()
        return counts["CANCELLED"] == cancelled_before + 2 and counts["RUNNING"] == 0

    wait_until(parent_and_child_cancelled, timeout=30.0)
    assert nbray.get(held, timeout=GET_TIMEOUT) == int(started.read_text())
    all_resources_free()


# --- cancellation -----------------------------------------------------------------------


def test_cancel_many_queued_short_tasks(
    cluster_factory: Callable[..., Any], tmp_path: Path
) -> None:
    cluster_factory(num_cpus=1)
    pid = warm_up(whoami.remote)
    warm_up(lambda: value.remote(0))
    started, release = tmp_path / "started", tmp_path / "release"
    held = hold.remote(str(started), str(release))
    wait_until(started.exists)
    assert int(started.read_text()) == pid
    refs = [value.remote(i) for i in range(2000)]
    wait_until(dispatched_beyond(1))  # some are queued on the held worker
    cancelled, kept = refs[::2], refs[1::2]
    for n, ref in enumerate(cancelled):
        # force only kills a running task: queued ones are dropped, the worker lives
        nbray.cancel(ref, force=n % 2 == 1)
    # cancel is asynchronous: once released, the worker could start one not dropped yet
    wait_until(lambda: task_counts()["CANCELLED"] == len(cancelled))
    release.touch()
    assert nbray.get(held, timeout=GET_TIMEOUT) == pid  # not killed, not retried
    assert nbray.get(kept, timeout=GET_TIMEOUT) == list(range(1, 2000, 2))
    for ref in cancelled:
        with pytest.raises(TaskCancelledError):
            nbray.get(ref, timeout=GET_TIMEOUT)
    assert psutil.pid_exists(pid)
    all_resources_free()


def test_code_sent_with_a_dropped_task_is_not_lost(
    cluster_factory: Callable[..., Any], tmp_path: Path
) -> None:
    # The head sends a function's code to a worker once, with the first task of it. When
    # that task is queued, and dropped (cancelled, or taken back) before it runs, the next
    # one of the same function comes without the code.
    cluster_factory(num_cpus=2)
    first = hold.remote(str(tmp_path / "a"), str(tmp_path / "release"))
    wait_until((tmp_path / "a").exists)
    warm_up(lambda: value.remote(0))  # on the other worker: the held one never ran it
    second = hold.remote(str(tmp_path / "b"), str(tmp_path / "release"))
    wait_until((tmp_path / "b").exists)
    dropped = [value.remote(i) for i in range(2)]  # one queued on each held worker
    wait_until(lambda: task_counts()["RUNNING"] == 4)
    for ref in dropped:  # with the code, for the worker that never ran the function
        nbray.cancel(ref)
    wait_until(lambda: task_counts()["CANCELLED"] == 2)  # the workers dropped them
    refs = [value.remote(i) for i in range(2, 4)]  # queued again, one on each
    wait_until(lambda: task_counts()["RUNNING"] == 4)
    (tmp_path / "release").touch()
    assert nbray.get(refs, timeout=GET_TIMEOUT) == [2, 3]
    for ref in dropped:
        with pytest.raises(TaskCancelledError):
            nbray.get(ref, timeout=GET_TIMEOUT)
    assert nbray.get([first, second], timeout=GET_TIMEOUT) == [
        int((tmp_path / name).read_text()) for name in ("a", "b")
    ]
    all_resources_free()


# --- worker death -----------------------------------------------------------------------


def test_sigkill_of_a_worker_holding_a_pipeline(
    cluster_factory: Callable[..., Any], tmp_path: Path
) -> None:
    cluster_factory(num_cpus=1)
    pid = warm_up(whoami.remote)
    warm_up(lambda: value.remote(0))
    started, release = tmp_path / "started", tmp_path / "release"
    held = hold.remote(str(started), str(release))  # max_retries: the default, 3
    wait_until(started.exists)
    assert int(started.read_text()) == pid
    # queued behind the held task, so none has started when the worker dies: none may be
    # counted as an attempt, and with max_retries=0 none could be retried
    refs = [value.options(max_retries=0).remote(i) for i in range(200)]
    wait_until(dispatched_beyond(1))
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: process_gone(pid))
    release.touch()
    assert nbray.get(refs, timeout=GET_TIMEOUT) == list(range(200))
    assert nbray.get(held, timeout=GET_TIMEOUT) != pid  # retried on a new worker
    all_resources_free()


def test_short_task_killing_its_worker_leaves_its_queue_unharmed(
    cluster_factory: Callable[..., Any], tmp_path: Path
) -> None:
    cluster_factory(num_cpus=1)
    pid = warm_up(whoami.remote)
    warm_up(lambda: step.remote(0))
    gate, marker = tmp_path / "gate", tmp_path / "killed"
    # short (warmed up) and on the idle worker; it waits for the queue to build, then
    # SIGKILLs its own worker, once (the marker): its retry returns
    killer = step.remote(-1, gate=str(gate), kill_once=str(marker))
    refs = [step.options(max_retries=0).remote(i) for i in range(200)]
    wait_until(dispatched_beyond(1))
    gate.touch()
    assert nbray.get(killer, timeout=GET_TIMEOUT) == -1
    assert nbray.get(refs, timeout=GET_TIMEOUT) == list(range(200))
    assert marker.exists()
    wait_until(lambda: process_gone(pid))
    all_resources_free()


# --- output -----------------------------------------------------------------------------


def test_output_of_pipelined_tasks_all_arrives(tmp_path: Path) -> None:
    result = run_python(
        f"""
        import os, sys, time
        import nbray
        from nbray._model import session

        nbray.init(num_cpus=1)

        @nbray.remote
        def say(i):
            print("out", i)
            print("err", i, file=sys.stderr)
            return i

        @nbray.remote
        def hold(release):
            while not os.path.exists(release):
                time.sleep(0.005)
            return "held"

        for _ in range(20):
            nbray.get(say.remote(-1))
        release = {str(tmp_path / "release")!r}
        held = hold.remote(release)
        refs = [say.remote(i) for i in range(1000)]
        while session.get_engine().status()["tasks"]["RUNNING"] < 2:
            time.sleep(0.01)
        open(release, "w").close()
        assert nbray.get(refs, timeout=120) == list(range(1000))
        assert nbray.get(held, timeout=120) == "held"
        print("DONE")
        nbray.shutdown()
        """,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr
    pattern = re.compile(r"^\(say pid=\d+\) (out|err) (-?\d+)$")

    def numbers(text: str, stream: str) -> list[int]:
        found = [pattern.match(line) for line in text.splitlines()]
        return sorted(int(m.group(2)) for m in found if m and m.group(1) == stream)

    expected = [-1] * 20 + list(range(1000))
    assert numbers(result.stdout, "out") == expected
    assert numbers(result.stderr, "err") == expected
    assert result.stdout.splitlines()[-1] == "DONE"


# --- answers of an actor that runs one call at a time ------------------------------------


@nbray.remote
class Answers:
    """Counts, for each frame its worker sends, the call answers (TaskDone) in it."""

    def __init__(self) -> None:
        self.per_frame: list[int] = []
        client = session.current_engine().client  # type: ignore[attr-defined]
        send = client.conn.send

        def counting(batch: list[Any]) -> None:
            done = sum(type(m).__name__ == "TaskDone" for m in batch)
            if done:
                self.per_frame.append(done)
            send(batch)

        client.conn.send = counting

    def ping(self, i: int) -> int:
        return i

    def wait_for(self, path: str) -> str:
        wait_for_file(path)
        return path

    def frames(self) -> list[int]:
        return self.per_frame


def test_answers_to_pipelined_actor_calls_go_out_together(cluster: nbray.ClusterContext) -> None:
    actor = Answers.remote()  # type: ignore[attr-defined]
    refs = [actor.ping.remote(i) for i in range(300)]
    assert nbray.get(refs, timeout=GET_TIMEOUT) == list(range(300))  # in order, all there
    per_frame = nbray.get(actor.frames.remote(), timeout=GET_TIMEOUT)
    assert sum(per_frame) == 300
    assert max(per_frame) > 1  # one frame per answer without batching


def test_an_actors_answer_is_not_withheld_while_its_next_call_runs(
    cluster: nbray.ClusterContext, tmp_path: Path
) -> None:
    # the answer to ping waits in the worker's queue while wait_for runs; the client's
    # flusher sends it (within ~50 ms), before wait_for ends
    actor = Answers.remote()  # type: ignore[attr-defined]
    nbray.get(actor.ping.remote(0), timeout=GET_TIMEOUT)
    gate = tmp_path / "gate"
    first = actor.ping.remote(1)
    second = actor.wait_for.remote(str(gate))
    assert nbray.get(first, timeout=GET_TIMEOUT) == 1  # while the second one still waits
    assert nbray.wait([second], timeout=0.1)[1] == [second]
    gate.touch()
    assert nbray.get(second, timeout=GET_TIMEOUT) == str(gate)
