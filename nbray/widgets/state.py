"""The widgets' state model: one bounded picture of the cluster, built from its event dicts.

    engine.subscribe ──event dict──▶ EventAggregator.apply ──▶ tasks, graph, timeline,
                                                               workers, node history
    widgets / a dashboard ──▶ graph() / timeline() / nodes() / counts() (plain data)

Nothing here imports a widget library or tornado, starts a thread or does I/O, so the
server extension can reuse it and the unit tests feed it events by hand. Every collection
is bounded (oldest entries dropped first), so a 100,000-task run costs a fixed amount of
memory. The event shapes are the engine's (see ``nbray/runtime/head.py``): ``task``
(``SUBMITTED`` with ``deps``/``returns``, ``RUNNING`` with ``worker_id``, then
``FINISHED``/``FAILED``/``CANCELLED``, or ``RETRYING``), ``actor``, ``worker`` and
``metrics`` (one sample per node per second).

All methods are thread-safe: events arrive on the engine's reader thread while widgets
read from their redraw thread.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "STATES",
    "STATE_COLORS",
    "EventAggregator",
    "GraphNode",
    "GraphView",
    "Segment",
    "TaskInfo",
]

# engine task state -> the state a user sees
_STATE_OF = {
    "SUBMITTED": "waiting",
    "RUNNING": "running",
    "FINISHED": "finished",
    "FAILED": "failed",
    "RETRYING": "retried",
    "CANCELLED": "cancelled",
}
STATES = ("waiting", "running", "retried", "finished", "failed", "cancelled")
TERMINAL = frozenset({"finished", "failed", "cancelled"})
STATE_COLORS = {
    "waiting": "#b0b7c3",
    "running": "#3b82f6",
    "retried": "#f59e0b",
    "finished": "#22c55e",
    "failed": "#ef4444",
    "cancelled": "#6b7280",
}


@dataclass(slots=True)
class TaskInfo:
    """What is known about one task or actor call."""

    task_id: str
    name: str
    state: str = "waiting"
    submitted: float = 0.0
    started: float = 0.0
    ended: float = 0.0
    worker: str = ""  # "node:worker id" of the latest attempt
    node_id: str = ""
    actor_id: str = ""
    deps: tuple[str, ...] = ()  # ids of the tasks whose results it takes
    returns: tuple[str, ...] = ()
    stage: int = 0  # 0 without task dependencies, else 1 + the deepest dependency's stage
    attempts: int = 0
    error: str = ""
    cell: int | None = None  # the notebook cell it was submitted from, when known

    @property
    def duration(self) -> float | None:
        """Run time of the latest attempt, or None before it started."""
        if not self.started:
            return None
        return (self.ended or time.time()) - self.started


@dataclass(slots=True)
class Segment:
    """One attempt of a task on one worker: a bar of the timeline."""

    worker: str
    task_id: str
    name: str
    start: float
    end: float
    state: str


@dataclass(slots=True)
class GraphNode:
    """A task, or with grouping a (function, stage) group of tasks."""

    key: str
    name: str
    stage: int
    count: int
    state: str  # the state colouring the node
    states: dict[str, int]
    duration: float | None  # mean run time of those that ran
    workers: list[str]
    error: str
    task_ids: list[str] = field(default_factory=list)  # at most a few, for hover text


@dataclass(slots=True)
class GraphView:
    nodes: list[GraphNode]
    edges: list[tuple[int, int]]  # indices into nodes, dependency -> dependent
    grouped: bool
    total_tasks: int


class _Node:
    """Latest sample and rolling history of one node."""

    __slots__ = ("history", "sample")

    def __init__(self, history: int) -> None:
        self.sample: dict[str, Any] = {}
        # (time, cpu %, memory %, object store bytes, mean GPU utilisation or None)
        self.history: deque[tuple[float, float, float, int, float | None]] = deque(maxlen=history)


def worker_key(node_id: str, worker_id: Any) -> str:
    return f"{node_id[:8]}:{worker_id}" if node_id else str(worker_id)


def _dominant(states: Counter[str]) -> str:
    """The state a group shows: activity first (running, retried, waiting), then the most
    common end state (a group's failures also show as a red outline)."""
    for s in ("running", "retried", "waiting"):
        if states.get(s):
            return s
    return states.most_common(1)[0][0] if states else "waiting"


class EventAggregator:
    """Bounded state of a cluster, fed one event dict at a time.

    Example::

        agg = EventAggregator()
        unsubscribe = engine.subscribe(agg.apply)
        ...
        agg.counts()          # {'finished': 10, 'running': 2, ...}
        agg.graph().nodes     # GraphNode list, grouped once there are many tasks
    """

    def __init__(
        self,
        *,
        max_tasks: int = 20_000,
        max_segments: int = 20_000,
        history: int = 300,
        cell_of: Callable[[], int | None] | None = None,
        deferred: bool = False,
        max_pending: int = 50_000,
        drain_above: int = 500,
    ) -> None:
        self.max_tasks = max_tasks
        self.max_pending = max_pending
        self.drain_above = min(drain_above, max_pending)
        self._pending: deque[tuple[dict[str, Any], int | None]] | None = (
            deque() if deferred else None
        )
        self._cell_now: int | None = None  # the cell of the queued event being taken in
        self.history = history
        self._cell_of = cell_of
        self._lock = threading.RLock()
        self.tasks: OrderedDict[str, TaskInfo] = OrderedDict()
        self._producer: dict[str, str] = {}  # object id -> task id
        # finished attempts as plain tuples (the fields of Segment): tuples of strings and
        # floats are left alone by the cyclic GC, which otherwise walks every one of them
        # at each full collection, in every thread of the kernel
        self.segments: deque[tuple[str, str, str, float, float, str]] = deque(maxlen=max_segments)
        self.workers: dict[str, dict[str, Any]] = {}
        self.actors: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._nodes: dict[str, _Node] = {}
        self._counts: Counter[str] = Counter()
        self.version = 0  # bumped by every event that changed something
        self.last_event = 0.0  # local time of the latest event
        self.dropped_tasks = 0
        self._handlers: dict[str, Callable[[dict[str, Any]], None]] = {
            "task": self._on_task,
            "metrics": self._on_metrics,
            "worker": self._on_worker,
            "actor": self._on_actor,
        }

    # --- input -----------------------------------------------------------------------------

    def apply(self, event: dict[str, Any]) -> None:
        """Take one event dict (unknown types are ignored). With ``deferred=True`` it is
        only queued (an O(1) append, so the thread delivering events never waits for a
        reader), and taken in by the next read or ``drain``."""
        if event.get("type") not in self._handlers:
            return
        self.last_event = time.monotonic()
        if self._pending is None:
            with self._lock:
                self._handlers[event["type"]](event)
                self.version += 1
            return
        # the cell is read now: by the time the queue is drained another may be running
        cell = self._cell_of() if self._cell_of and event.get("state") == "SUBMITTED" else None
        self._pending.append((event, cell))
        self.version += 1
        # take the queue in while its events are young (before the GC promotes them), but
        # never wait for a reader that holds the lock, unless the queue is far too long
        if len(self._pending) > self.drain_above:
            blocking = len(self._pending) > self.max_pending
            if self._lock.acquire(blocking=blocking):
                try:
                    self.drain()
                finally:
                    self._lock.release()

    def drain(self) -> None:
        """Take in the queued events (deferred mode)."""
        pending = self._pending
        if not pending:
            return
        with self._lock:
            while pending:
                event, cell = pending.popleft()
                self._cell_now = cell
                self._handlers[event["type"]](event)
            self._cell_now = None

    @contextmanager
    def _reading(self) -> Iterator[None]:
        with self._lock:
            self.drain()
            yield

    def apply_all(self, events: Iterable[dict[str, Any]]) -> None:
        for event in events:
            self.apply(event)

    def _task(self, ev: dict[str, Any]) -> TaskInfo:
        tid = ev["task_id"]
        info = self.tasks.get(tid)
        if info is None:
            info = TaskInfo(tid, ev.get("name", "?"), submitted=ev.get("time", 0.0))
            info.actor_id = ev.get("actor_id", "")
            self.tasks[tid] = info
            self._counts[info.state] += 1
            while len(self.tasks) > self.max_tasks:
                self._evict()
        return info

    def _evict(self) -> None:
        _, old = self.tasks.popitem(last=False)
        self._counts[old.state] -= 1
        for oid in old.returns:
            self._producer.pop(oid, None)
        self.dropped_tasks += 1

    def _set_state(self, info: TaskInfo, state: str) -> None:
        self._counts[info.state] -= 1
        self._counts[state] += 1
        info.state = state

    def _on_task(self, ev: dict[str, Any]) -> None:
        info = self._task(ev)
        kind = ev.get("state", "")
        now = ev.get("time", 0.0)
        if kind == "SUBMITTED":
            info.submitted = now
            info.returns = tuple(ev.get("returns", ()))
            deps = [self._producer[d] for d in ev.get("deps", ()) if d in self._producer]
            info.deps = tuple(dict.fromkeys(deps))
            info.stage = 1 + max(
                (self.tasks[d].stage for d in info.deps if d in self.tasks), default=-1
            )
            for oid in info.returns:
                self._producer[oid] = info.task_id
            if self._pending is not None:
                info.cell = self._cell_now
            elif self._cell_of is not None:
                info.cell = self._cell_of()
            return
        state = _STATE_OF.get(kind)
        if state is None:
            return
        if state == "running":
            info.started, info.ended, info.error = now, 0.0, ""
            info.attempts += 1
            info.node_id = ev.get("node_id", "")
            info.worker = worker_key(info.node_id, ev.get("worker_id", ""))
        elif info.started and not info.ended and state != "waiting":
            info.ended = now  # the attempt ended (done, failed, cancelled or retried)
            self.segments.append((info.worker, info.task_id, info.name, info.started, now, state))
        if state == "retried" and info.started:
            info.started = info.ended = 0.0  # the next attempt starts afresh
        if "error" in ev:
            info.error = str(ev["error"])[:2000]
        elif state == "retried":
            info.error = str(ev.get("reason", ""))[:2000]
        self._set_state(info, state)

    def _on_metrics(self, ev: dict[str, Any]) -> None:
        node_id = ev.get("node_id", "")
        node = self._nodes.get(node_id)
        if node is None:
            node = self._nodes[node_id] = _Node(self.history)
        node.sample = ev
        gpus = ev.get("gpus") or []
        gpu = sum(g.get("utilization", 0.0) for g in gpus) / len(gpus) if gpus else None
        node.history.append(
            (
                ev.get("time", 0.0),
                float(ev.get("cpu_percent", 0.0)),
                float(ev.get("memory_percent", 0.0)),
                int(ev.get("object_store_bytes", 0)),
                gpu,
            )
        )
        seen = set()
        for wid, w in (ev.get("workers") or {}).items():
            key = worker_key(node_id, wid)
            seen.add(key)
            self.workers[key] = {**w, "worker": key, "node_id": node_id, "exit_code": None}
        for key, w in self.workers.items():  # workers the sample no longer lists are gone
            if w.get("node_id") == node_id and key not in seen and w.get("state") != "DEAD":
                w["state"] = "DEAD"

    def _on_worker(self, ev: dict[str, Any]) -> None:
        key = worker_key(ev.get("node_id", ""), ev.get("worker_id", ""))
        w = self.workers.setdefault(key, {"worker": key, "node_id": ev.get("node_id", "")})
        w["state"] = ev.get("state", "DEAD")
        w["pid"] = ev.get("pid", w.get("pid"))
        w["exit_code"] = ev.get("exit_code")
        while len(self.workers) > 4 * self.history:  # dead workers of a long session
            dead = next((k for k, v in self.workers.items() if v.get("state") == "DEAD"), None)
            if dead is None:
                break
            del self.workers[dead]

    def _on_actor(self, ev: dict[str, Any]) -> None:
        self.actors[ev.get("actor_id", "")] = {
            k: ev.get(k) for k in ("class_name", "name", "state", "reason", "time")
        }
        self.actors.move_to_end(ev.get("actor_id", ""))
        while len(self.actors) > 1000:
            self.actors.popitem(last=False)

    # --- output ----------------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        """Number of known tasks in each state (every state listed)."""
        with self._reading():
            return {s: self._counts.get(s, 0) for s in STATES}

    def nodes(self) -> list[dict[str, Any]]:
        """Per node: its latest metrics sample and its history (oldest first)."""
        with self._reading():
            return [
                {"node_id": nid, "sample": dict(n.sample), "history": list(n.history)}
                for nid, n in self._nodes.items()
            ]

    def worker_rows(self) -> list[dict[str, Any]]:
        """One dict per worker: state, pid, cpu %, rss, and the task it runs (by name)."""
        with self._reading():
            rows = []
            for w in self.workers.values():
                row = dict(w)
                running = self.tasks.get(w.get("task_id") or "")
                row["task"] = running.name if running is not None else ""
                rows.append(row)
            return rows

    def task_ids(self, scope: str | int | Iterable[str] = "session") -> list[str]:
        """Task ids in a scope: ``"session"`` (all), a cell number (tasks submitted from
        that cell), or object ids (hex) of refs: the tasks making them and their ancestors."""
        with self._reading():
            if scope == "session":
                return list(self.tasks)
            if isinstance(scope, int):
                return [t for t, i in self.tasks.items() if i.cell == scope]
            if isinstance(scope, str):
                raise ValueError(f"scope must be 'session', a cell number or refs, got {scope!r}")
            todo = [self._producer[o] for o in scope if o in self._producer]
            out: dict[str, None] = {}
            while todo:
                tid = todo.pop()
                if tid in out or tid not in self.tasks:
                    continue
                out[tid] = None
                todo.extend(self.tasks[tid].deps)
            return [t for t in self.tasks if t in out]

    def producer_states(self, object_ids: Iterable[str]) -> Counter[str]:
        """States of the tasks making the given objects (objects with no known task are
        left out)."""
        with self._reading():
            found: Counter[str] = Counter()
            for oid in object_ids:
                tid = self._producer.get(oid)
                if tid is not None and tid in self.tasks:
                    found[self.tasks[tid].state] += 1
            return found

    def graph(
        self,
        scope: str | int | Iterable[str] = "session",
        *,
        group_above: int = 150,
        max_columns: int = 60,
    ) -> GraphView:
        """The task DAG of ``scope``; once it has more than ``group_above`` tasks, tasks of
        the same function and stage are merged into one node. A deep graph (more than
        ``max_columns`` stages) also merges neighbouring stages, so the number of nodes
        stays bounded by functions x ``max_columns`` whatever the graph."""
        with self._reading():
            ids = self.task_ids(scope)
            grouped = len(ids) > group_above
            deepest = max((self.tasks[t].stage for t in ids), default=0)
            span = -(-(deepest + 1) // max_columns)  # stages per column, rounded up
            index: dict[str, int] = {}
            members: list[list[TaskInfo]] = []
            key_of: dict[str, str] = {}
            for tid in ids:
                info = self.tasks[tid]
                key = f"{info.name}@{info.stage // span}" if grouped else tid
                key_of[tid] = key
                if key not in index:
                    index[key] = len(members)
                    members.append([])
                members[index[key]].append(info)
            nodes = [
                self._graph_node(key, group) for key, group in zip(index, members, strict=True)
            ]
            edges: set[tuple[int, int]] = set()
            for tid in ids:
                dst = index[key_of[tid]]
                for dep in self.tasks[tid].deps:
                    if dep in key_of and index[key_of[dep]] != dst:
                        edges.add((index[key_of[dep]], dst))
            return GraphView(nodes, sorted(edges), grouped, len(ids))

    @staticmethod
    def _graph_node(key: str, group: list[TaskInfo]) -> GraphNode:
        states = Counter(t.state for t in group)
        ran = [d for d in (t.duration for t in group) if d is not None]
        first = group[0]
        return GraphNode(
            key=key,
            name=first.name,
            stage=first.stage,
            count=len(group),
            state=_dominant(states),
            states=dict(states),
            duration=sum(ran) / len(ran) if ran else None,
            workers=sorted({t.worker for t in group if t.worker})[:8],
            error=next((t.error for t in group if t.error), ""),
            task_ids=[t.task_id for t in group[:5]],
        )

    def timeline(self, *, limit: int = 2000, now: float | None = None) -> list[Segment]:
        """The latest ``limit`` attempts, finished ones and those still running (which end
        at ``now``), oldest first."""
        now = time.time() if now is None else now
        with self._reading():
            done = [Segment(*seg) for seg in list(self.segments)[-limit:]]
            running = [
                Segment(t.worker, t.task_id, t.name, t.started, now, "running")
                for t in self.tasks.values()
                if t.state == "running" and t.started
            ]
        return sorted(done + running[-limit:], key=lambda s: s.start)[-limit:]

    def chrome_trace(self) -> list[dict[str, Any]]:
        """Every recorded attempt as Chrome trace events (``chrome://tracing``, Perfetto),
        one process per node and one thread per worker, like ``ray.timeline``."""
        segments = self.timeline(limit=self.segments.maxlen or 20_000)
        events: list[dict[str, Any]] = []
        for s in segments:
            node, _, worker = s.worker.rpartition(":")
            events.append(
                {
                    "name": s.name,
                    "cat": "task",
                    "ph": "X",
                    "ts": s.start * 1e6,
                    "dur": max(0.0, s.end - s.start) * 1e6,
                    "pid": f"node {node}" if node else "node",
                    "tid": f"worker {worker}",
                    "args": {"task_id": s.task_id, "state": s.state},
                }
            )
        return events
