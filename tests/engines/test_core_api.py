"""The core API contract, held by every engine (fixture ``engine``: "local" and "ray").

Functions used by tasks are self-contained (imports inside): on Ray they are pickled by
value and run in workers that cannot import this test module.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from nbray_testing import wait_until

import nbray
from nbray._base import errors


@nbray.remote
def square(x: int) -> int:
    return x * x


@nbray.remote(num_returns=2)
def pair(x: int) -> tuple[int, int]:
    return x, -x


@nbray.remote
def total(xs: list[int], extra: int = 0) -> int:
    return sum(xs) + extra


@nbray.remote
def fan_out(n: int) -> int:
    import nbray

    @nbray.remote
    def one(i: int) -> int:
        return i + 1

    return sum(nbray.get([one.remote(i) for i in range(n)]))


@nbray.remote
def get_nested(refs: list[Any]) -> list[Any]:
    import nbray

    return nbray.get(refs)


@nbray.remote(max_retries=0)
def fail(message: str) -> None:
    raise ValueError(message)


@nbray.remote(max_retries=0)
def crash() -> None:
    import os

    os._exit(7)


@nbray.remote
def sleep(seconds: float) -> float:
    import time

    time.sleep(seconds)
    return seconds


@nbray.remote(max_retries=2, retry_exceptions=[KeyError])
def flaky(path: str) -> int:
    from pathlib import Path

    p = Path(path)
    attempts = int(p.read_text()) + 1 if p.exists() else 1
    p.write_text(str(attempts))
    if attempts < 2:
        raise KeyError("first attempt fails")
    return attempts


@nbray.remote
class Counter:
    def __init__(self, start: int = 0) -> None:
        self.n = start

    def incr(self, by: int = 1) -> int:
        self.n += by
        return self.n

    def fail(self) -> None:
        raise KeyError("no such key")


@nbray.remote
def use_counter(counter: Any) -> int:
    import nbray

    return int(nbray.get(counter.incr.remote(10)))


def test_tasks_and_multiple_returns(engine: str) -> None:
    assert nbray.get([square.remote(i) for i in range(6)]) == [0, 1, 4, 9, 16, 25]
    a, b = pair.remote(3)
    assert nbray.get([a, b]) == [3, -3]
    assert nbray.get(square.options(num_cpus=0.5).remote(7)) == 49


def test_put_and_refs_as_arguments(engine: str) -> None:
    data = nbray.put(list(range(100)))
    assert nbray.get(total.remote(data, extra=1)) == 4951
    # top-level refs are resolved to values; refs nested in a list travel as refs
    refs = [square.remote(i) for i in range(3)]
    assert nbray.get(get_nested.remote(refs)) == [0, 1, 4]
    assert nbray.get(data)[:3] == [0, 1, 2]


def test_tasks_submit_tasks(engine: str) -> None:
    assert nbray.get(fan_out.remote(5)) == 15


def test_exception_keeps_its_class_and_remote_traceback(engine: str) -> None:
    with pytest.raises(ValueError, match="bad input") as info:
        nbray.get(fail.remote("bad input"))
    err = info.value
    assert isinstance(err, errors.TaskError)
    assert "fail" in err.function_name
    assert "in fail" in err.remote_traceback
    assert "ValueError: bad input" in err.remote_traceback


def test_retry_exceptions(engine: str, tmp_path: Path) -> None:
    assert nbray.get(flaky.remote(str(tmp_path / "attempts"))) == 2


def test_crashed_worker_raises_worker_crashed(engine: str) -> None:
    with pytest.raises(errors.WorkerCrashedError):
        nbray.get(crash.remote(), timeout=60)


def test_get_timeout(engine: str) -> None:
    ref = sleep.remote(5)
    with pytest.raises(errors.GetTimeoutError) as info:
        nbray.get(ref, timeout=0.2)
    assert isinstance(info.value, TimeoutError)
    nbray.cancel(ref, force=True)


def test_wait_splits_ready_and_pending(engine: str) -> None:
    fast = square.remote(2)
    slow = sleep.remote(30)
    ready, pending = nbray.wait([slow, fast], num_returns=1, timeout=20)
    assert ready == [fast] and pending == [slow]
    ready, pending = nbray.wait([slow, fast], num_returns=2, timeout=0.2)
    assert ready == [fast] and pending == [slow]
    nbray.cancel(slow, force=True)


@nbray.remote
def mark_and_sleep(path: str, seconds: float) -> None:
    import time
    from pathlib import Path

    Path(path).write_text("started")
    # short sleeps: Ray delivers a cancel between Python bytecodes, not inside a C call
    for _ in range(int(seconds * 10)):
        time.sleep(0.1)


def test_cancel_a_running_task(engine: str, tmp_path: Path) -> None:
    started = tmp_path / "started"
    ref = mark_and_sleep.remote(str(started), 60)
    wait_until(started.exists, 30)
    nbray.cancel(ref)
    with pytest.raises(errors.TaskCancelledError):
        nbray.get(ref, timeout=30)


@nbray.remote
def catch_the_cancel(path: str) -> str:
    import time
    from pathlib import Path

    import nbray

    Path(path).write_text("started")
    try:
        for _ in range(600):
            time.sleep(0.1)
    except KeyboardInterrupt:  # as Ray delivers a cancel
        return f"cleaned up, canceled={nbray.get_runtime_context().is_canceled()}"
    return "not cancelled"


def test_a_task_may_catch_its_cancel_and_return(engine: str, tmp_path: Path) -> None:
    started = tmp_path / "started"
    ref = catch_the_cancel.remote(str(started))
    wait_until(started.exists, 30)
    nbray.cancel(ref)
    assert nbray.get(ref, timeout=30) == "cleaned up, canceled=True"
    with pytest.raises(RuntimeError, match="only available in a task"):
        nbray.get_runtime_context().is_canceled()


def test_unpicklable_argument_is_a_serialization_error(engine: str) -> None:
    with pytest.raises(errors.SerializationError):
        square.remote(threading.Lock())


def test_actor_state_and_handles_in_tasks(engine: str) -> None:
    c = Counter.remote(5)
    assert nbray.get([c.incr.remote() for _ in range(3)]) == [6, 7, 8]
    assert nbray.get(use_counter.remote(c)) == 18
    with pytest.raises(KeyError):
        nbray.get(c.fail.remote())
    assert nbray.get(c.incr.remote()) == 19  # an exception does not kill the actor


def test_named_actor_get_actor_and_kill(engine: str) -> None:
    c = Counter.options(name="shared-counter").remote()
    assert nbray.get(c.incr.remote()) == 1
    same = nbray.get_actor("shared-counter")
    assert nbray.get(same.incr.remote()) == 2
    with pytest.raises(errors.ActorNotFoundError) as info:
        nbray.get_actor("no-such-actor")
    assert isinstance(info.value, ValueError)
    nbray.kill(c)
    with pytest.raises(errors.ActorDiedError):
        nbray.get(c.incr.remote(), timeout=30)


def test_cluster_resources_and_nodes(engine: str) -> None:
    assert nbray.cluster_resources()["CPU"] == 2.0
    nodes = nbray.nodes()
    assert nodes and all({"NodeID", "Alive", "Resources"} <= set(n) for n in nodes)
    assert any(n["Alive"] for n in nodes)
    assert 0 <= nbray.available_resources().get("CPU", 0) <= 2.0


def test_event_stream_has_task_lifecycle_and_node_metrics(engine: str) -> None:
    from nbray._base.events import event_problems, separate_states
    from nbray._model.session import current_engine

    events: list[dict[str, Any]] = []
    raw: list[dict[str, Any]] = []

    def collect(event: dict[str, Any]) -> None:
        raw.append(event)
        events.extend(separate_states(event))  # a short task's states may come as one event

    unsubscribe = current_engine().subscribe(collect)
    try:
        ref = square.options(name="watched").remote(3)
        assert nbray.get(ref) == 9

        def states() -> set[str]:
            return {e["state"] for e in events if e["type"] == "task" and e["name"] == "watched"}

        wait_until(lambda: {"PENDING", "FINISHED"} <= states(), 10)
        metrics = wait_until(lambda: [e for e in events if e["type"] == "metrics"], 15)
        sample = metrics[-1]
        for key in ("node_id", "cpu_percent", "memory_total", "memory_used", "gpus", "workers"):
            assert key in sample, key
        assert sample["memory_total"] > 0
        submitted = next(e for e in events if e["type"] == "task" and e["state"] == "PENDING")
        for key in ("task_id", "name", "time", "returns", "resources"):
            assert key in submitted, key
        # every event keeps the one contract (nbray/_base/events.py)
        assert [p for e in list(raw) for p in event_problems(e)] == []
    finally:
        unsubscribe()


def test_submissions_are_reported_and_cancellable_by_id(engine: str, tmp_path: Path) -> None:
    # what the magics use: a kernel interrupt cancels the interrupted cell's tasks by id
    from nbray._model.session import current_engine

    eng = current_engine()
    seen: list[tuple[int, int]] = []
    eng.submit_listener = lambda task_id, first_id: seen.append((task_id, first_id))
    try:
        started = tmp_path / "started"
        ref = mark_and_sleep.remote(str(started), 60)
        assert seen and seen[-1][1] == ref.id
        counter = Counter.remote()
        call = counter.incr.remote()
        assert seen[-1][1] == call.id and seen[-1][0] > seen[-2][0]
        assert 0 < ref.id < 2**64
        wait_until(started.exists, 30)
        eng.cancel_ids([seen[0][1]])
        with pytest.raises(errors.TaskCancelledError):
            nbray.get(ref, timeout=30)
        assert nbray.get(call) == 1
    finally:
        eng.submit_listener = None
