"""The head's event bus: task lifecycle, actor, worker, metrics and log events for watchers.

    TaskTable / ActorTable / Head ──publish(event) / task_event(record, state)──▶ EventBus
        ──▶ batch (in order; a task's later states merge into its entry) ──flush, at most
            EVENT_BATCH_DELAY s later, before a request is answered, before a replay──▶
        ├──▶ history (the last EVENT_HISTORY events; not logs) ──▶ Request("events")
        └──▶ each subscriber's connection (one Events message per flush) ──▶ widgets, the
             server extension
    TaskTable ──ended(record) while nobody subscribes──▶ unwatched (compact records)
    Head.on_hello / peer_lost ──client_event (not kept in the history)──▶ subscribers
    Subscribe(replay=True) ──▶ replay: history + the lifecycles nobody watched, in time order

Nobody subscribed is the common case on the hot path (a script, a notebook without
widgets): then a task's state changes build no event at all, and a task that ends leaves
only a compact ``EndedTask``; a later subscriber gets those replayed as events.

While someone subscribes, the events of EVENT_BATCH_DELAY seconds go out together, and a
short task's states within one batch merge into one event (``nbray._base.events``,
"Coalesced task events"): its latest state, carrying ``submitted`` and ``started`` for the
states it skipped, so a run of short tasks costs the head one event per task per batch,
and its watchers one event to fold, with the timeline's data complete. A request is
answered after the events that came before it (``flush`` first), as before batching.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from nbray._wire import protocol as P

from .head_records import EndedTask, TaskRecord

__all__ = [
    "EVENT_BATCH_DELAY",
    "EVENT_HISTORY",
    "LOG_EVENT_CHARS",
    "UNWATCHED_HISTORY",
    "EventBus",
    "Subscriber",
]

EVENT_HISTORY = 10_000
UNWATCHED_HISTORY = 5_000
LOG_EVENT_CHARS = 4096  # a task's output reaches watchers in pieces of at most this size
EVENT_BATCH_DELAY = 0.1  # seconds an event may wait for the batch it goes out in

_OPEN = frozenset({"PENDING", "RUNNING"})  # states a task's batched event may still leave


class Subscriber(Protocol):
    """Where events go: a connection (``peers.Peer``)."""

    def send(self, msg: Any) -> None: ...


class EventBus:
    """Publishes events to subscribers, in batches, and keeps the history a new subscriber
    replays. ``schedule(delay, callback)`` (the reactor's ``call_later``) runs the flush of
    a batch EVENT_BATCH_DELAY s after its first event; without it, the owner calls
    ``flush``."""

    def __init__(
        self,
        node_id: str,
        schedule: Callable[[float, Callable[[], None]], Any] | None = None,
        delay: float = EVENT_BATCH_DELAY,
    ) -> None:
        self.node_id = node_id
        self.events: deque[dict[str, Any]] = deque(maxlen=EVENT_HISTORY)
        # tasks that ended while nobody subscribed, replayed as events to the next one
        self.unwatched: deque[EndedTask] = deque(maxlen=UNWATCHED_HISTORY)
        self.subscribers: dict[int, Subscriber] = {}  # connection id -> connection
        self.schedule = schedule
        self.delay = delay
        # events not yet sent, in order, each with whether the history keeps it
        self.batch: list[tuple[dict[str, Any], bool]] = []
        self._open: dict[int, dict[str, Any]] = {}  # task id -> its event in the batch
        self._timer: Any = None

    def publish(self, data: dict[str, Any], history: bool = True) -> None:
        if not self.subscribers:
            if history:
                self.events.append(data)
            return
        if not self.batch and self.schedule is not None:
            self._timer = self.schedule(self.delay, self.flush)
        self.batch.append((data, history))

    def flush(self) -> None:
        """Send the batch: one ``Events`` message to each subscriber; into the history."""
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()
        batch = self.batch
        if not batch:
            return
        self.batch = []
        self._open.clear()
        self.events.extend([data for data, keep in batch if keep])
        if self.subscribers:
            msg = P.Events([data for data, _ in batch])
            for sub in self.subscribers.values():
                sub.send(msg)

    def task_event(self, rec: TaskRecord, state: str, **extra: Any) -> None:
        """``rec`` moved to ``state``: record it, and tell watchers if there are any."""
        rec.state = state
        if state == "RUNNING":
            rec.started = time.time()
            rec.pid = extra.get("pid", 0)
        if not self.subscribers:  # nobody listens: keep the hot path free of event dicts
            return
        now = time.time()
        task_id = rec.spec.task_id
        data = self._open.get(task_id)
        if (
            data is not None
            and state != "PENDING"
            and (state != "RUNNING" or data["state"] == "PENDING")
        ):
            _merge(data, state, now, extra)  # the batch still holds its earlier state
        else:
            data = task_data(self.node_id, rec.spec, rec.owner, rec.parent, state, now, extra)
            self.publish(data)
        if state in _OPEN:
            self._open[task_id] = data
        else:
            self._open.pop(task_id, None)
        if state == "PENDING":
            rec.published = True

    def task_ended(self, rec: TaskRecord, state: str, **extra: Any) -> None:
        """``rec`` ended in ``state`` (``extra``: its ``error``); kept compactly when nobody
        watches, for a replay."""
        if not self.subscribers:
            self.unwatched.append(EndedTask.of(rec, state, time.time(), extra.get("error", "")))
        self.task_event(
            rec, state, worker_id=rec.worker_id, duration=time.time() - rec.submitted, **extra
        )

    def subscribe(
        self, conn_id: int, sub: Subscriber, live: Iterable[TaskRecord], replay: bool
    ) -> None:
        """A connection subscribes; with ``replay`` it first gets the history, including the
        lifecycle of ``live`` tasks (the head's current ones) nobody saw start."""
        self.flush()  # the events before now go to those already subscribed, and the history
        if replay:
            events = self.replay(live)
            if events:
                sub.send(P.Events(events))
        self.subscribers[conn_id] = sub

    def unsubscribe(self, conn_id: int) -> None:
        self.subscribers.pop(conn_id, None)
        if not self.subscribers:
            self.flush()  # into the history, which is kept at once while nobody subscribes

    def history(self, limit: int = 1000) -> list[dict[str, Any]]:
        self.flush()
        return list(self.events)[-limit:]

    def replay(self, live: Iterable[TaskRecord]) -> list[dict[str, Any]]:
        """The history a new subscriber gets: the recorded events, plus the lifecycle of the
        tasks that ran (or still run) while nobody listened, in time order. What was missed
        becomes part of the recorded history."""
        node = self.node_id
        missed: list[dict[str, Any]] = []
        for ended in self.unwatched:
            missed += _lifecycle(node, ended, ended)
        self.unwatched.clear()
        for rec in live:
            if not rec.published:
                missed += _lifecycle(node, rec, None)
                rec.published = True
        if missed:
            merged = sorted([*self.events, *missed], key=_first_time)
            self.events.clear()
            self.events.extend(merged)
        return list(self.events)


def task_data(
    node_id: str,
    spec: P.TaskSpec,
    owner: int,
    parent: int,
    state: str,
    when: float,
    extra: dict[str, Any],
) -> dict[str, Any]:
    """A task lifecycle event, as subscribers (widgets, the server extension) get it."""
    data = {
        "type": "task",
        "task_id": f"{spec.task_id:016x}",
        "name": spec.name,
        "state": state,
        "time": when,
        "owner": owner,
        "node_id": node_id,
        "actor_id": f"{spec.actor_id:016x}" if spec.actor_id else "",
        "parent": f"{parent:016x}" if parent else "",
    }
    if state == "PENDING":
        data["deps"] = [f"{d:016x}" for d in spec.deps]
        data["returns"] = [f"{r:016x}" for r in spec.return_ids]
        data["resources"] = spec.resources
    data.update(extra)
    return data


def _first_time(data: dict[str, Any]) -> float:
    """When the earliest state an event tells of happened (a coalesced one's ``submitted``
    or ``started``): the order of the batches it came in."""
    return float(data.get("submitted") or data.get("started") or data.get("time", 0.0))


def _merge(data: dict[str, Any], state: str, when: float, extra: dict[str, Any]) -> None:
    """A task's event still in the batch (PENDING or RUNNING) takes its next ``state``: the
    time of each state it leaves stays as ``submitted`` / ``started``."""
    if data["state"] == "PENDING":
        data["submitted"] = data["time"]
    else:
        data["started"] = data["time"]
    data["state"] = state
    data["time"] = when
    data.update(extra)


def _lifecycle(
    node_id: str, t: EndedTask | TaskRecord, ended: EndedTask | None
) -> list[dict[str, Any]]:
    """The events a subscriber missed for one task: PENDING and RUNNING unless they were
    published, and its end if it ended."""
    if isinstance(t, EndedTask):
        spec = P.TaskSpec(
            t.task_id, t.name, b"", b"", t.deps, (), t.return_ids, t.resources, 0, False,
            t.actor_id,
        )  # fmt: skip
        owner, parent, submitted, started, wid, pid = (
            t.owner, t.parent, t.submitted, t.started, t.worker_id, t.pid,
        )  # fmt: skip
    else:
        spec, owner, parent = t.spec, t.owner, t.parent
        submitted, started, wid, pid = t.submitted, t.started, t.worker_id, t.pid
    out = []
    if not t.published:
        out.append(task_data(node_id, spec, owner, parent, "PENDING", submitted, {}))
        if started:
            out.append(
                task_data(
                    node_id, spec, owner, parent, "RUNNING", started, {"worker_id": wid, "pid": pid}
                )
            )
    if ended is not None:
        extra: dict[str, Any] = {"worker_id": wid, "duration": ended.ended - submitted}
        if ended.error:
            extra["error"] = ended.error
        out.append(task_data(node_id, spec, owner, parent, ended.state, ended.ended, extra))
    return out


def client_event(conn_id: int, pid: int, role: str, state: str, clients: int) -> dict[str, Any]:
    """A kernel (or script) connected or left (``ClientEvent``): the side panel's kernel
    count follows it. ``clients``: connections other than workers, after the change."""
    return {
        "type": "client",
        "conn_id": conn_id,
        "pid": pid,
        "role": role,
        "state": state,
        "clients": clients,
        "time": time.time(),
    }


def log_event(msg: P.Output, pid: int) -> dict[str, Any]:
    """A piece of a task's stdout/stderr for the event bus, cut to ``LOG_EVENT_CHARS``
    (the owner still gets it whole). ``{"type": "log", "task_id", "stream", "text",
    "truncated", "pid", "time"}``."""
    text = msg.text
    truncated = len(text) > LOG_EVENT_CHARS
    if truncated:
        text = text[:LOG_EVENT_CHARS]
    return {
        "type": "log",
        "task_id": f"{msg.task_id:016x}",
        "stream": msg.stream,
        "text": text,
        "truncated": truncated,
        "pid": pid,
        "time": time.time(),
    }
