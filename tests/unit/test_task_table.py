"""The server extension's bounded table of recent tasks (the one fold, as REST answers),
fed typed events by hand."""

from __future__ import annotations

from typing import Any

import pytest

from nbray._base.events import TASK_STATES
from nbray.server_ext.tasks import TaskLogs, TaskTable


def ev(task_id: str, state: str, t: float, **extra: Any) -> dict[str, Any]:
    return {"type": "task", "task_id": task_id, "name": f"f{task_id}", "state": state,
            "time": t, "owner": 1, **extra}  # fmt: skip


def test_lifecycle_of_one_task() -> None:
    table = TaskTable()
    table.apply(ev("a", "PENDING", 1.0, deps=["x"], returns=["y"]))
    table.apply(ev("b", "PENDING", 1.5, deps=["y"], returns=["z"]))  # takes a's result
    table.apply(ev("a", "RUNNING", 2.0, worker_id=3, pid=99, node_id="n1"))
    table.apply(ev("a", "FINISHED", 4.0, worker_id=3))
    rec = table.get("a")
    assert rec is not None and rec["state"] == "FINISHED"
    assert (rec["submitted"], rec["started"], rec["ended"]) == (1.0, 2.0, 4.0)
    assert (rec["worker_id"], rec["pid"], rec["returns"], rec["worker"]) == (3, 99, ["y"], "n1:3")
    assert (rec["attempts"], rec["owner"]) == (1, 1)
    b = table.get("b")
    assert b is not None and b["deps"] == ["a"] and b["stage"] == 1  # deps: producing tasks
    assert table.get("nope") is None


def test_filters_newest_first() -> None:
    table = TaskTable()
    for i, state in enumerate(["FINISHED", "FAILED", "RUNNING", "FINISHED"]):
        table.apply(ev(str(i), state, float(i), error="boom" if state == "FAILED" else ""))
    assert [r["task_id"] for r in table.query()] == ["3", "2", "1", "0"]
    assert [r["task_id"] for r in table.query(state="failed,running")] == ["2", "1"]
    assert [r["task_id"] for r in table.query(name="F3")] == ["3"]
    assert [r["task_id"] for r in table.query(name="2")] == ["2"]  # the start of the id
    with pytest.raises(ValueError, match="unknown task state WAITING; the states are PENDING"):
        table.query(state="waiting")
    assert table.query(owner=2) == []
    assert len(table.query(limit=2)) == 2


def test_summary_counts_rate_and_failures() -> None:
    table = TaskTable()
    for i in range(5):
        table.apply(ev(str(i), "FINISHED", 100.0 + i))
    table.apply(ev("x", "FAILED", 104.0, error="Traceback...\nValueError: bad"))
    table.apply(ev("old", "FINISHED", 50.0))  # outside the 10 s window (a late replay)
    table.apply(ev("new", "FINISHED", 103.0))
    summary = table.summary(now=105.0)
    assert {k: v for k, v in summary["counts"].items() if v} == {"FINISHED": 7, "FAILED": 1}
    assert set(summary["counts"]) == set(TASK_STATES)  # every state listed
    assert summary["rate"] == 0.7  # 7 finishes in the last 10 s
    assert summary["failures"][0]["error"].endswith("ValueError: bad")


def test_bounded_and_drops_finished_first() -> None:
    table = TaskTable(capacity=3)
    table.apply(ev("run", "RUNNING", 0.0))
    for i in range(5):
        table.apply(ev(str(i), "FINISHED", float(i)))
    ids = [r["task_id"] for r in table.query()]
    assert len(ids) == 3
    assert "run" in ids  # the running task is kept; the oldest finished ones went


def test_malformed_events_are_ignored() -> None:
    table = TaskTable()
    table.apply({"type": "task"})
    table.apply({"type": "task", "task_id": 5, "state": "RUNNING"})
    assert table.query() == []


def log(task_id: str, text: str, stream: str = "stdout") -> dict[str, Any]:
    return {"type": "log", "task_id": task_id, "stream": stream, "text": text, "time": 1.0}


def test_task_logs_are_bounded_per_task_and_in_tasks() -> None:
    logs = TaskLogs(lines=3, chars=10, tasks=2)
    for i in range(5):
        logs.apply(log("a", f"{i}\n"))
    got = logs.get("a")
    assert got is not None
    assert [p["text"] for p in got["lines"]] == ["2\n", "3\n", "4\n"] and got["dropped"] == 2
    logs.apply(log("a", "abcdefgh", "stderr"))  # 8 chars: only the last piece and one more fit
    got = logs.get("a")
    assert got is not None
    assert [p["text"] for p in got["lines"]] == ["4\n", "abcdefgh"]
    assert got["lines"][-1]["stream"] == "stderr"
    logs.apply(log("b", "b\n"))
    logs.apply(log("a", "again"))  # a was written last: b is the least recent
    logs.apply(log("c", "c\n"))
    assert logs.get("b") is None and logs.get("a") is not None and logs.get("c") is not None
    logs.apply({"type": "log", "task_id": 7, "text": "bad"})  # malformed: ignored
    assert logs.get("unknown") is None
    logs.clear()
    assert logs.get("a") is None
