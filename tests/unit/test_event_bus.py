"""Unit tests for nbray._node.bus, the head's event bus (in-process: no head, no socket).

A subscriber here is a list of the Events records it was sent, as a connection's outbox
is; without a scheduler, the bus sends a batch when ``flush`` is called.
"""

from __future__ import annotations

import time
from typing import Any

from nbray._node.bus import LOG_EVENT_CHARS, EventBus, log_event
from nbray._node.head_records import TaskRecord
from nbray._wire import protocol as P


class Outbox:
    def __init__(self) -> None:
        self.sent: list[Any] = []

    def send(self, msg: Any) -> None:
        self.sent.append(msg)

    def data(self) -> list[dict[str, Any]]:
        return [data for m in self.sent for data in m.events]

    def events(self) -> list[tuple[str, str]]:
        return [(d["type"], d.get("state", "")) for d in self.data()]


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
    times = [d["time"] for d in sub.data()]
    assert times == sorted(times)
    failed = sub.data()[-1]
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
    bus.flush()
    bus.unsubscribe(1)
    bus.task_ended(rec, "FINISHED")
    bus.flush()
    assert a.events() == [("task", "PENDING")]
    assert b.events() == [("task", "PENDING"), ("task", "FINISHED")]
    assert not bus.unwatched  # someone watched its end
    submitted = b.data()[0]
    assert submitted["returns"] == [f"{5 << 8:016x}"] and submitted["resources"] == {"CPU": 1.0}


def test_logs_go_to_subscribers_not_to_the_history() -> None:
    bus = EventBus("node1")
    sub = Outbox()
    bus.subscribe(1, sub, [], replay=False)
    ev = log_event(P.Output(3, "stdout", "x" * (LOG_EVENT_CHARS + 10)), pid=42)
    bus.publish(ev, history=False)
    bus.flush()
    assert sub.data()[0]["truncated"] and len(sub.data()[0]["text"]) == LOG_EVENT_CHARS
    assert bus.history() == []


def test_a_batch_goes_out_as_one_message_with_a_short_tasks_states_merged() -> None:
    bus = EventBus("node1")
    sub = Outbox()
    bus.subscribe(1, sub, [], replay=False)
    short, retried, queued = record(1), record(2), record(3)
    for rec in (short, retried, queued):
        bus.task_event(rec, "PENDING")
    bus.publish({"type": "actor", "state": "ALIVE", "time": time.time()})
    short.worker_id = 4  # as the head's dispatch sets it
    bus.task_event(short, "RUNNING", worker_id=4, pid=40)
    bus.task_ended(short, "FINISHED")
    bus.task_event(retried, "RUNNING", worker_id=5, pid=50)
    bus.task_event(retried, "RETRYING", attempt=1, reason="worker died")
    bus.task_event(retried, "RUNNING", worker_id=6, pid=60)  # a new attempt: a new event
    assert sub.sent == []  # nothing before the flush
    bus.flush()
    assert len(sub.sent) == 1
    assert sub.events() == [
        ("task", "FINISHED"),  # in the place of its first state
        ("task", "RETRYING"),
        ("task", "PENDING"),
        ("actor", "ALIVE"),
        ("task", "RUNNING"),
    ]
    done, failed_attempt, waiting, _, again = sub.data()
    assert done["submitted"] < done["started"] <= done["time"]
    assert (done["worker_id"], done["pid"], done["returns"]) == (4, 40, [f"{1 << 8:016x}"])
    assert failed_attempt["reason"] == "worker died" and "started" in failed_attempt
    assert "submitted" not in waiting and "started" not in waiting
    assert (again["task_id"], again["pid"]) == (f"{2:016x}", 60) and "started" not in again
    # the next batch starts afresh: the RUNNING already sent is not merged into
    bus.task_ended(retried, "FINISHED")
    bus.flush()
    assert sub.events()[-1] == ("task", "FINISHED") and "started" not in sub.data()[-1]
    assert len(bus.history()) == 6
    # a replay keeps each coalesced event where its first state was
    late = Outbox()
    bus.task_event(record(4), "PENDING")  # nobody missed it: no lifecycle to add
    bus.unsubscribe(1)
    bus.subscribe(2, late, [], replay=True)
    assert late.events() == [*sub.events(), ("task", "PENDING")]


def test_a_scheduled_flush_and_a_new_subscriber_get_the_batch_first() -> None:
    scheduled: list[tuple[float, Any]] = []

    class Timer:
        def __init__(self, delay: float, callback: Any) -> None:
            scheduled.append((delay, callback))

        def cancel(self) -> None:
            pass

    bus = EventBus("node1", schedule=Timer, delay=0.1)
    first = Outbox()
    bus.subscribe(1, first, [], replay=False)
    bus.task_event(record(1), "PENDING")
    bus.task_event(record(2), "PENDING")
    assert [d for d, _ in scheduled] == [0.1]  # one flush per batch
    late = Outbox()
    bus.subscribe(2, late, [], replay=True)  # the batch goes out before the replay
    assert first.events() == [("task", "PENDING")] * 2
    assert late.events() == [("task", "PENDING")] * 2
    bus.task_event(record(3), "PENDING")
    scheduled[-1][1]()  # the reactor's timer fires
    assert first.events() == late.events() == [("task", "PENDING")] * 3
