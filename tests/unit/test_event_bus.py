"""Unit tests for nbray._node.bus, the head's event bus (in-process: no head, no socket).

A subscriber here is a list of the Event records it was sent, as a connection's outbox is.
"""

from __future__ import annotations

from typing import Any

from nbray._node.bus import LOG_EVENT_CHARS, EventBus, log_event
from nbray._node.head_records import TaskRecord
from nbray._wire import protocol as P


class Outbox:
    def __init__(self) -> None:
        self.sent: list[Any] = []

    def send(self, msg: Any) -> None:
        self.sent.append(msg)

    def events(self) -> list[tuple[str, str]]:
        return [(m.data["type"], m.data.get("state", "")) for m in self.sent]


def record(task_id: int, submitted: float = 1.0) -> TaskRecord:
    spec = P.TaskSpec(
        task_id, f"f{task_id}", b"", b"", (), (), (task_id << 8,), {"CPU": 1.0}, 3, False
    )
    return TaskRecord(spec, owner=1, parent=0, submitted=submitted)


def test_nobody_subscribed_builds_no_event_but_keeps_the_end() -> None:
    bus = EventBus("node1")
    rec = record(1)
    bus.task_event(rec, "PENDING")
    bus.task_event(rec, "RUNNING", worker_id=2, pid=99)
    assert (rec.state, rec.pid, rec.published) == ("RUNNING", 99, False)
    bus.task_ended(rec, "FINISHED")
    assert list(bus.events) == []
    assert [(e.task_id, e.state) for e in bus.unwatched] == [(1, "FINISHED")]


def test_a_late_subscriber_gets_the_unwatched_lifecycles_in_time_order() -> None:
    bus = EventBus("node1")
    ended, live = record(1, submitted=1.0), record(2, submitted=2.0)
    for rec in (ended, live):
        bus.task_event(rec, "PENDING")
        bus.task_event(rec, "RUNNING", worker_id=3, pid=7)
    bus.task_ended(ended, "FAILED", error="boom")
    bus.publish({"type": "actor", "state": "ALIVE", "time": 0.5})
    sub = Outbox()
    bus.subscribe(10, sub, [live], replay=True)
    assert sub.events() == [
        ("actor", "ALIVE"),
        ("task", "PENDING"),
        ("task", "PENDING"),
        ("task", "RUNNING"),
        ("task", "RUNNING"),
        ("task", "FAILED"),
    ]
    times = [m.data["time"] for m in sub.sent]
    assert times == sorted(times)
    failed = sub.sent[-1].data
    assert (failed["task_id"], failed["error"], failed["node_id"]) == (f"{1:016x}", "boom", "node1")
    assert live.published and not bus.unwatched
    # replayed once: what was missed is now part of the history
    assert len(bus.history()) == 6
    again = Outbox()
    bus.subscribe(11, again, [live], replay=True)
    assert again.events() == sub.events()


def test_subscribers_get_live_events_until_they_unsubscribe() -> None:
    bus = EventBus("node1")
    a, b = Outbox(), Outbox()
    bus.subscribe(1, a, [], replay=False)
    bus.subscribe(2, b, [], replay=False)
    rec = record(5)
    bus.task_event(rec, "PENDING")
    assert rec.published
    bus.unsubscribe(1)
    bus.task_ended(rec, "FINISHED")
    assert a.events() == [("task", "PENDING")]
    assert b.events() == [("task", "PENDING"), ("task", "FINISHED")]
    assert not bus.unwatched  # someone watched its end
    submitted = b.sent[0].data
    assert submitted["returns"] == [f"{5 << 8:016x}"] and submitted["resources"] == {"CPU": 1.0}


def test_logs_go_to_subscribers_not_to_the_history() -> None:
    bus = EventBus("node1")
    sub = Outbox()
    bus.subscribe(1, sub, [], replay=False)
    ev = log_event(P.Output(3, "stdout", "x" * (LOG_EVENT_CHARS + 10)), pid=42)
    bus.publish(ev, history=False)
    assert sub.sent[0].data["truncated"] and len(sub.sent[0].data["text"]) == LOG_EVENT_CHARS
    assert bus.history() == []
