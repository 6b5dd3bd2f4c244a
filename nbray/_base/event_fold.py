"""The one fold of the event stream: a bounded picture of the cluster, built event by event.

    engine.subscribe ──Event──▶ EventFold.apply ──▶ tasks, graph, timeline, workers,
                                                    node history, finish rate, failures
    widgets (in the kernel) ──▶ graph() / timeline() / nodes() / counts() (plain data)
    server extension ──▶ query() / get() / summary() / graph_record() ──▶ REST ──▶ dashboard

The events and the records are typed in ``nbray._base.events`` (one vocabulary of task
states: PENDING, RUNNING, RETRYING, FINISHED, FAILED, CANCELLED). Nothing here imports a
widget library or tornado, starts a thread or does I/O, so the kernel's widgets and the
server extension share it and the unit tests feed it events by hand. Every collection is
bounded (finished tasks dropped first), so a 100,000-task run costs a fixed amount of
memory.

All methods are thread-safe: events arrive on the engine's reader thread while widgets
read from their redraw thread (or the server from its request threads).
"""

from __future__ import annotations

import threading
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any, cast

from .events import (
    STATE_COLORS,
    TASK_STATES,
    TERMINAL_STATES,
    GraphNodeRecord,
    GraphRecord,
    SegmentRecord,
    SummaryRecord,
    TaskRecord,
    TaskState,
)

__all__ = [
    "STATES",
    "STATE_COLORS",
    "EventFold",
    "GraphNode",
    "GraphView",
    "Segment",
    "TaskInfo",
    "worker_key",
]

STATES = TASK_STATES
_STATE_SET = frozenset(TASK_STATES)
TERMINAL = TERMINAL_STATES
RATE_WINDOW = 10.0  # seconds over which the finish rate is measured
MAX_FAILURES = 20


@dataclass(slots=True)
class TaskInfo:
    """What is known about one task or actor call."""

    task_id: str
    name: str
    state: TaskState = "PENDING"
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
    owner: int = 0
    parent: str = ""
    worker_id: int | None = None
    pid: int | None = None

    @property
    def duration(self) -> float | None:
        """Run time of the latest attempt, or None before it started."""
        if not self.started:
            return None
        return (self.ended or time.time()) - self.started

    def record(self) -> TaskRecord:
        """The task as the REST API and the dashboard see it."""
        return {
            "task_id": self.task_id,
            "name": self.name,
            "state": self.state,
            "owner": self.owner,
            "node_id": self.node_id,
            "actor_id": self.actor_id,
            "parent": self.parent,
            "deps": list(self.deps),
            "returns": list(self.returns),
            "submitted": self.submitted,
            "started": self.started or None,
            "ended": self.ended or None,
            "worker": self.worker,
            "worker_id": self.worker_id,
            "pid": self.pid,
            "attempts": self.attempts,
            "stage": self.stage,
            "error": self.error,
        }


@dataclass(slots=True)
class Segment:
    """One attempt of a task on one worker: a bar of the timeline."""

    worker: str
    task_id: str
    name: str
    start: float
    end: float
    state: TaskState

    def record(self) -> SegmentRecord:
        return cast(SegmentRecord, asdict(self))


@dataclass(slots=True)
class GraphNode:
    """A task, or with grouping a (function, stage) group of tasks."""

    key: str
    name: str
    stage: int
    count: int
    state: TaskState  # the state colouring the node
    states: dict[str, int]
    duration: float | None  # mean run time of those that ran
    workers: list[str]
    error: str
    task_ids: list[str] = field(default_factory=list)  # at most a few, for hover text
    x: float = 0.0  # layered layout: the column
    y: float = 0.0  # the place within the column, in [-0.5, 0.5]

    def record(self) -> GraphNodeRecord:
        return cast(GraphNodeRecord, asdict(self))


@dataclass(slots=True)
class GraphView:
    nodes: list[GraphNode]
    edges: list[tuple[int, int]]  # indices into nodes, dependency -> dependent
    grouped: bool
    total_tasks: int

    def record(self) -> GraphRecord:
        return {
            "nodes": [n.record() for n in self.nodes],
            "edges": list(self.edges),
            "grouped": self.grouped,
            "total_tasks": self.total_tasks,
        }


class _Node:
    """Latest sample and rolling history of one node."""

    __slots__ = ("history", "sample")

    def __init__(self, history: int) -> None:
        self.sample: dict[str, Any] = {}
        # (time, cpu %, memory %, object store bytes, mean GPU utilisation or None)
        self.history: deque[tuple[float, float, float, int, float | None]] = deque(maxlen=history)


def worker_key(node_id: str, worker_id: Any) -> str:
    return f"{node_id[:8]}:{worker_id}" if node_id else str(worker_id)


def _dominant(states: Counter[str]) -> TaskState:
    """The state a group shows: activity first (running, retrying, pending), then the most
    common end state (a group's failures also show as a red outline)."""
    for s in ("RUNNING", "RETRYING", "PENDING"):
        if states.get(s):
            return cast(TaskState, s)
    return cast(TaskState, states.most_common(1)[0][0]) if states else "PENDING"


def layered_layout(nodes: list[GraphNode], edges: list[tuple[int, int]]) -> None:
    """Place the nodes in columns by stage (``x``, consecutive column numbers), and within a
    column (``y`` in [-0.5, 0.5]) in the order of their predecessors' mean place, which
    keeps edges from crossing in the common fan-out/fan-in shapes."""
    columns = sorted({n.stage for n in nodes})
    column_of = {stage: i for i, stage in enumerate(columns)}
    preds: dict[int, list[int]] = {}
    for a, b in edges:
        preds.setdefault(b, []).append(a)
    by_column: dict[int, list[int]] = {}
    for i, n in enumerate(nodes):
        n.x = float(column_of[n.stage])
        by_column.setdefault(column_of[n.stage], []).append(i)

    def barycenter(i: int) -> float:
        placed = [nodes[p].y for p in preds.get(i, ()) if nodes[p].x < nodes[i].x]
        return sum(placed) / len(placed) if placed else 0.0

    for col in range(len(columns)):
        idx = by_column.get(col, [])
        order = sorted(range(len(idx)), key=lambda j: (-barycenter(idx[j]), j))  # top first
        k = len(idx)
        for rank, j in enumerate(order):
            nodes[idx[j]].y = ((k - 1) / 2 - rank) / k if k > 1 else 0.0  # first on top


class EventFold:
    """Bounded state of a cluster, fed one event (``nbray._base.events.Event``) at a time.

    Example::

        fold = EventFold()
        unsubscribe = engine.subscribe(fold.apply)
        ...
        fold.counts()          # {'PENDING': 0, 'RUNNING': 2, 'FINISHED': 10, ...}
        fold.graph().nodes     # GraphNode list, grouped once there are many tasks
        fold.summary()         # counts, finish rate, latest failures (the REST answer)
    """

    def __init__(
        self,
        *,
        max_tasks: int = 20_000,
        max_segments: int = 20_000,
        history: int = 300,
        cell_of: Callable[[TaskInfo], int | None] | None = None,
        deferred: bool = False,
        max_pending: int = 50_000,
        drain_above: int = 500,
    ) -> None:
        self.max_tasks = max_tasks
        self.max_pending = max_pending
        self.drain_above = min(drain_above, max_pending)
        self._pending: deque[Mapping[str, Any]] | None = deque() if deferred else None
        self.history = history
        # the notebook cell a task was submitted from, asked once its submission is folded
        # (its id, owner and time are known): a replay of earlier cells' tasks keeps them
        # in their own cells
        self._cell_of = cell_of
        self._lock = threading.RLock()
        self.tasks: OrderedDict[str, TaskInfo] = OrderedDict()
        # ids of tasks in the order they ended: eviction takes the first still ended
        self._ended_order: deque[str] = deque()
        self._producer: dict[str, str] = {}  # object id -> task id
        # finished attempts as plain tuples (the fields of Segment): tuples of strings and
        # floats are left alone by the cyclic GC, which otherwise walks every one of them
        # at each full collection, in every thread of the kernel
        self.segments: deque[tuple[str, str, str, float, float, str]] = deque(maxlen=max_segments)
        self.workers: dict[str, dict[str, Any]] = {}
        self.actors: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._nodes: dict[str, _Node] = {}
        self._counts: Counter[str] = Counter()
        # end times (a replay may deliver them out of order) and the latest failures
        self._ends: deque[float] = deque(maxlen=200_000)
        self._failures: deque[str] = deque(maxlen=MAX_FAILURES)
        self.version = 0  # bumped by every event that changed something
        self.last_event = 0.0  # local time of the latest event
        self.dropped_tasks = 0
        self._handlers: dict[str, Callable[[Mapping[str, Any]], bool | None]] = {
            "task": self._on_task,
            "metrics": self._on_metrics,
            "worker": self._on_worker,
            "actor": self._on_actor,
        }

    # --- input -----------------------------------------------------------------------------

    def apply(self, event: Mapping[str, Any]) -> None:
        """Take one event (types it does not fold, such as ``log``, are ignored). With
        ``deferred=True`` it is only queued (an O(1) append, so the thread delivering events
        never waits for a reader), and taken in by the next read or ``drain``."""
        handler = self._handlers.get(event.get("type"))  # type: ignore[arg-type]
        if handler is None:
            return
        self.last_event = time.monotonic()
        if self._pending is None:
            with self._lock:
                if handler(event) is not False:  # False: malformed, nothing folded
                    self.version += 1
            return
        self._pending.append(event)
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
                event = pending.popleft()
                self._handlers[event["type"]](event)

    @contextmanager
    def _reading(self) -> Iterator[None]:
        with self._lock:
            self.drain()
            yield

    def apply_all(self, events: Iterable[Mapping[str, Any]]) -> None:
        for event in events:
            self.apply(event)

    def clear(self) -> None:
        """Forget everything (a new cluster, or a replay of its history is coming)."""
        with self._lock:
            if self._pending is not None:
                self._pending.clear()
            self.tasks.clear()
            self._ended_order.clear()
            self._producer.clear()
            self.segments.clear()
            self.workers.clear()
            self.actors.clear()
            self._nodes.clear()
            self._counts.clear()
            self._ends.clear()
            self._failures.clear()
            self.version += 1

    def _task(self, ev: Mapping[str, Any]) -> TaskInfo:
        tid = ev["task_id"]
        info = self.tasks.get(tid)
        if info is None:
            # first seen: since its earliest state this event tells of (a coalesced one)
            first = ev.get("submitted") or ev.get("started") or ev.get("time", 0.0)
            info = TaskInfo(tid, ev.get("name", "?"), submitted=first)
            info.actor_id = ev.get("actor_id", "")
            info.owner = ev.get("owner", 0) or 0
            info.parent = ev.get("parent", "") or ""
            info.node_id = ev.get("node_id", "") or ""
            self.tasks[tid] = info
            self._counts[info.state] += 1
            while len(self.tasks) > self.max_tasks:
                self._evict()
        return info

    def _evict(self) -> None:
        """Drop the task that ended first, else (none has ended) the oldest one. O(1): a
        flood of submissions keeps the table full of pending tasks, and each new one evicts."""
        ended, tasks = self._ended_order, self.tasks
        old = None
        while ended:
            info = tasks.get(ended.popleft())
            # (an id is stale once its task was dropped, or runs again after a retry)
            if info is not None and info.state in TERMINAL:
                old = tasks.pop(info.task_id)
                break
        if old is None:
            old = tasks.popitem(last=False)[1]
        self._counts[old.state] -= 1
        for oid in old.returns:
            self._producer.pop(oid, None)
        self.dropped_tasks += 1

    def _submitted(self, info: TaskInfo, ev: Mapping[str, Any], when: float) -> None:
        """The PENDING part of a task event: its returns, dependencies, stage and cell."""
        info.submitted = when
        info.returns = tuple(ev.get("returns", ()))
        deps = [self._producer[d] for d in ev.get("deps", ()) if d in self._producer]
        info.deps = tuple(dict.fromkeys(deps))
        info.stage = 1 + max(
            (self.tasks[d].stage for d in info.deps if d in self.tasks), default=-1
        )
        for oid in info.returns:
            self._producer[oid] = info.task_id
        if self._cell_of is not None:
            info.cell = self._cell_of(info)

    def _set_state(self, info: TaskInfo, state: TaskState) -> None:
        self._counts[info.state] -= 1
        self._counts[state] += 1
        info.state = state

    def _on_task(self, ev: Mapping[str, Any]) -> bool:
        state: TaskState = ev.get("state")  # type: ignore[assignment]
        if state not in _STATE_SET or type(ev.get("task_id")) is not str:
            return False  # malformed, or outside the vocabulary: nothing to fold
        info = self._task(ev)
        now = ev.get("time", 0.0)
        if state == "PENDING":
            self._submitted(info, ev, now)
            return True
        # a coalesced event (``events.TaskEvent``) also stands for its PENDING and RUNNING
        submitted = ev.get("submitted")
        if submitted is not None:
            self._submitted(info, ev, submitted)
        started = now if state == "RUNNING" else ev.get("started")
        if started is not None:
            info.started, info.ended, info.error = started, 0.0, ""
            info.attempts += 1
            info.node_id = ev.get("node_id", "") or info.node_id
            info.worker_id = ev.get("worker_id")
            info.pid = ev.get("pid")
            info.worker = worker_key(info.node_id, ev.get("worker_id", ""))
        if state != "RUNNING" and info.started and not info.ended:
            info.ended = now  # the attempt ended (done, failed, cancelled or retried)
            self.segments.append((info.worker, info.task_id, info.name, info.started, now, state))
        if state == "RETRYING":
            info.started = info.ended = 0.0  # the next attempt starts afresh
            info.error = str(ev.get("reason", ""))[:2000]
        elif "error" in ev:
            info.error = str(ev["error"])[:2000]
        if state in TERMINAL:
            info.ended = info.ended or now  # also when it never started
            if info.state not in TERMINAL:
                self._ended_order.append(info.task_id)
            self._ends.append(now)
            if state == "FAILED":
                self._failures.append(info.task_id)
        self._set_state(info, state)
        return True

    def _on_metrics(self, ev: Mapping[str, Any]) -> None:
        node_id = ev.get("node_id", "")
        node = self._nodes.get(node_id)
        if node is None:
            node = self._nodes[node_id] = _Node(self.history)
        node.sample = dict(ev)
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

    def _on_worker(self, ev: Mapping[str, Any]) -> None:
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

    def _on_actor(self, ev: Mapping[str, Any]) -> None:
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

    def summary(self, now: float | None = None) -> SummaryRecord:
        """Counts by state, tasks ended per second over the last ten seconds, and the
        latest failures (newest first)."""
        now = time.time() if now is None else now
        with self._reading():
            cutoff = now - RATE_WINDOW
            while self._ends and self._ends[0] < cutoff:
                self._ends.popleft()  # mostly in time order: the old ones are in front
            recent = sum(1 for t in self._ends if t >= cutoff)
            failures = [self.tasks[t].record() for t in reversed(self._failures) if t in self.tasks]
            return {
                "counts": {s: self._counts.get(s, 0) for s in STATES},
                "rate": recent / RATE_WINDOW,
                "failures": failures,
            }

    def query(
        self,
        *,
        state: str | None = None,
        name: str | None = None,
        owner: int | None = None,
        limit: int = 200,
    ) -> list[TaskRecord]:
        """The newest tasks first, filtered by state (a comma-separated list, any case), a
        substring of the name or the start of the task id (case-insensitive) and the
        owning connection."""
        states = {s.strip().upper() for s in state.split(",") if s.strip()} if state else None
        unknown = (states or set()) - set(STATES)
        if unknown:
            raise ValueError(
                f"unknown task state {', '.join(sorted(unknown))}; the states are "
                + ", ".join(STATES)
            )
        needle = name.lower() if name else None
        out: list[TaskRecord] = []
        with self._reading():
            for info in reversed(self.tasks.values()):
                if states and info.state not in states:
                    continue
                if (
                    needle
                    and needle not in info.name.lower()
                    and not info.task_id.startswith(needle)
                ):
                    continue
                if owner is not None and info.owner != owner:
                    continue
                out.append(info.record())
                if len(out) >= limit:
                    break
        return out

    def get(self, task_id: str) -> TaskRecord | None:
        """One task's record, or None when the fold does not hold it."""
        with self._reading():
            info = self.tasks.get(task_id)
            return info.record() if info is not None else None

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
        newest: int | None = None,
    ) -> GraphView:
        """The task DAG of ``scope``, laid out in layers (each node's ``x``, ``y``); once it
        has more than ``group_above`` tasks, tasks of the same function and stage are merged
        into one node. A deep graph (more than ``max_columns`` stages) also merges
        neighbouring stages, so the number of nodes stays bounded by functions x
        ``max_columns`` whatever the graph. ``newest`` keeps only that many of the scope's
        latest tasks."""
        with self._reading():
            ids = self.task_ids(scope)
            if newest is not None:
                ids = ids[-newest:] if newest > 0 else []
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
            ordered = sorted(edges)
            layered_layout(nodes, ordered)
            return GraphView(nodes, ordered, grouped, len(ids))

    @staticmethod
    def _graph_node(key: str, group: list[TaskInfo]) -> GraphNode:
        states: Counter[str] = Counter(t.state for t in group)
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
            done = [Segment(*seg) for seg in list(self.segments)[-limit:]]  # type: ignore[arg-type]
            running = [
                Segment(t.worker, t.task_id, t.name, t.started, now, "RUNNING")
                for t in self.tasks.values()
                if t.state == "RUNNING" and t.started
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
