"""The event contract: every event on nbray's stream, and the records folded from it.

    producers                                   consumers
    node/head (local engine) ──┐                ┌──▶ widgets (EventFold, in the kernel)
    ray engine (events.py)  ───┼──▶ Event ──────┼──▶ server extension (EventFold ─▶ REST)
    server extension (cluster, SSH nodes) ──┘   └──▶ WebSocket ─▶ panel, dashboard (TS)

One ``TypedDict`` per event type, each with a literal ``type``; the task, worker and graph
records that the fold (``nbray._base.event_fold``) makes of them and the REST API returns;
and ONE vocabulary of task states, ``TaskState``:

    ============  ===========================================================  ==============
    state         meaning                                                      earlier names
    ============  ===========================================================  ==============
    PENDING       submitted, waiting for its arguments, resources or a worker  SUBMITTED,
                  (Ray: PENDING_ARGS_AVAIL, PENDING_NODE_ASSIGNMENT,           waiting,
                  SUBMITTED_TO_WORKER)                                         WAITING, READY
    RUNNING       an attempt runs on a worker                                  running
    RETRYING      an attempt failed (worker died, OOM kill) and another one    retried
                  will run; the task goes back to RUNNING. ``attempts`` counts
    FINISHED      returned its values                                          finished
    FAILED        raised, or ran out of retries                                failed
    CANCELLED     ``nbray.cancel``, a kernel interrupt, or its owner left      cancelled
    ============  ===========================================================  ==============

The scheduler keeps WAITING (arguments not ready) and READY (queued for a worker) apart
internally; on the stream both are PENDING. The TypeScript mirror,
``frontend/src/events.ts``, is generated from this module (``python
scripts/gen_events_ts.py``) and a test fails when it is out of date. This module imports
nothing from nbray: it is the base layer.

Example::

    from nbray._base.events import TASK_STATES, TaskEvent

    ev: TaskEvent = {"type": "task", "task_id": "00000000000000a1", "name": "square",
                     "state": "PENDING", "time": 0.0, "owner": 1, "node_id": "",
                     "actor_id": "", "parent": ""}
    assert ev["state"] in TASK_STATES
"""

from __future__ import annotations

import types
from collections.abc import Mapping
from typing import (
    Any,
    Literal,
    NotRequired,
    TypedDict,
    Union,
    get_args,
    get_origin,
    get_type_hints,
    is_typeddict,
)

__all__ = [
    "ACTOR_STATES",
    "CLUSTER_STATES",
    "EVENT_TYPES",
    "NODE_STATES",
    "STATE_COLORS",
    "TASK_STATES",
    "TERMINAL_STATES",
    "WORKER_STATES",
    "ActorEvent",
    "ActorState",
    "ClientEvent",
    "ClientState",
    "ClusterEvent",
    "ClusterState",
    "ClustersEvent",
    "EngineName",
    "Event",
    "EventType",
    "GpuSample",
    "GraphEdge",
    "GraphNodeRecord",
    "GraphRecord",
    "KernelClusterRecord",
    "LogEvent",
    "MetricsEvent",
    "NodeEvent",
    "NodeState",
    "SegmentRecord",
    "SummaryRecord",
    "TaskEvent",
    "TaskRecord",
    "TaskState",
    "WorkerEvent",
    "WorkerRecord",
    "WorkerSample",
    "WorkerState",
    "event_problems",
    "record_problems",
    "separate_states",
]

TaskState = Literal["PENDING", "RUNNING", "RETRYING", "FINISHED", "FAILED", "CANCELLED"]
TASK_STATES: tuple[TaskState, ...] = get_args(TaskState)
TERMINAL_STATES: frozenset[TaskState] = frozenset({"FINISHED", "FAILED", "CANCELLED"})

WorkerState = Literal["STARTING", "IDLE", "BUSY", "ACTOR", "DEAD"]
WORKER_STATES: tuple[WorkerState, ...] = get_args(WorkerState)

ActorState = Literal["PENDING", "ALIVE", "RESTARTING", "DEAD"]
ACTOR_STATES: tuple[ActorState, ...] = get_args(ActorState)

NodeState = Literal["ALIVE", "DEAD"]
NODE_STATES: tuple[NodeState, ...] = get_args(NodeState)

ClusterState = Literal["stopped", "starting", "running", "stopping"]
CLUSTER_STATES: tuple[ClusterState, ...] = get_args(ClusterState)

ClientState = Literal["CONNECTED", "DISCONNECTED"]

EventType = Literal[
    "task", "actor", "worker", "node", "metrics", "log", "cluster", "client", "clusters"
]
EVENT_TYPES: tuple[EventType, ...] = get_args(EventType)

# The one colour per task state, for the widgets, the side panel and the dashboard (the
# TypeScript mirror carries the same table).
STATE_COLORS: dict[TaskState, str] = {
    "PENDING": "#b0b7c3",
    "RUNNING": "#3b82f6",
    "RETRYING": "#f59e0b",
    "FINISHED": "#22c55e",
    "FAILED": "#ef4444",
    "CANCELLED": "#6b7280",
}


# --- events ----------------------------------------------------------------------------


class TaskEvent(TypedDict):
    """A task (or actor call) changed state. PENDING carries ``deps``/``returns``/
    ``resources``; RUNNING ``worker_id``/``pid``; RETRYING ``attempt``/``reason``; the end
    states ``worker_id``, ``duration`` and (FAILED, CANCELLED) ``error``.

    Coalesced: an event may stand for the states a short task passed through since the
    last batch (the local engine's head sends its events in batches). Then it is the
    latest state (RUNNING, RETRYING or an end) and also carries, for each state it skipped,
    that state's time and fields: ``submitted`` (its PENDING, with ``deps``/``returns``/
    ``resources``) and ``started`` (its RUNNING, with ``pid``). A fold takes such an event
    as PENDING at ``submitted``, RUNNING at ``started``, then its ``state`` at ``time``."""

    type: Literal["task"]
    task_id: str  # 16 hex digits (the local engine), or Ray's task id in hex
    name: str
    state: TaskState
    time: float  # seconds since the epoch
    owner: int  # the connection (kernel) that submitted it; 0 when unknown
    node_id: str
    actor_id: str  # "" unless an actor call
    parent: str  # the task that submitted it, "" from a driver
    deps: NotRequired[list[str]]  # object ids (hex) of its ObjectRef arguments
    returns: NotRequired[list[str]]  # object ids (hex) of its results
    resources: NotRequired[dict[str, float]]
    worker_id: NotRequired[int | None]
    pid: NotRequired[int]
    gpu_ids: NotRequired[list[int]]
    attempt: NotRequired[int]
    reason: NotRequired[str]
    error: NotRequired[str]
    duration: NotRequired[float]
    submitted: NotRequired[float]  # coalesced: the time of the PENDING it stands for
    started: NotRequired[float]  # coalesced: the time of the RUNNING it stands for


class ActorEvent(TypedDict):
    type: Literal["actor"]
    actor_id: str
    class_name: str
    name: str  # "" unless named
    state: ActorState
    reason: str
    time: float


class WorkerEvent(TypedDict):
    """A worker process exited."""

    type: Literal["worker"]
    worker_id: int
    pid: int
    state: WorkerState
    exit_code: int | None
    time: float
    node_id: NotRequired[str]


class NodeEvent(TypedDict):
    """A node joined or left (Ray clusters, SSH clusters)."""

    type: Literal["node"]
    node_id: str
    address: str
    state: NodeState
    reason: str
    resources: dict[str, float]
    time: float


class GpuSample(TypedDict):
    index: int
    name: str
    utilization: float  # percent
    memory_used: int
    memory_total: int


class WorkerSample(TypedDict):
    pid: int
    cpu_percent: float
    rss: int
    state: NotRequired[WorkerState]
    task_id: NotRequired[str]
    actor_id: NotRequired[str]


class MetricsEvent(TypedDict):
    """One node's sample, about once a second while someone subscribes."""

    type: Literal["metrics"]
    node_id: str
    time: float
    num_cpus: int
    cpu_percent: float  # the whole machine's
    cpu_percent_per_core: list[float]
    memory_total: int
    memory_used: int
    memory_available: int
    memory_percent: float
    gpus: list[GpuSample]
    workers: dict[str, WorkerSample]  # by worker id (the Ray engine: by pid)
    object_store_bytes: NotRequired[int]
    object_store_spilled_bytes: NotRequired[int]
    object_store_capacity_bytes: NotRequired[int]
    resources_total: NotRequired[dict[str, float]]
    resources_available: NotRequired[dict[str, float]]
    node_name: NotRequired[str]


class LogEvent(TypedDict):
    """A piece of a task's stdout/stderr (only while the server watches)."""

    type: Literal["log"]
    task_id: str
    stream: Literal["stdout", "stderr"]
    text: str
    truncated: bool
    pid: int
    time: float


class ClusterEvent(TypedDict):
    """The server extension's cluster changed state (started, stopped, failed)."""

    type: Literal["cluster"]
    state: ClusterState
    error: str
    time: float


class ClientEvent(TypedDict):
    """A kernel (or script) connected to the cluster, or left it (its work is cancelled)."""

    type: Literal["client"]
    conn_id: int
    pid: int
    role: str  # "client" | "owner"
    state: ClientState
    clients: int  # connections other than workers, after the change
    time: float


EngineName = Literal["local", "ray"]


class KernelClusterRecord(TypedDict):
    """A private cluster one of the server's kernels started (``GET nbray/api/clusters``
    lists these beside the server's own, with their ``nodes``)."""

    id: str
    engine: EngineName
    kernel_id: str  # the owner kernel's id ("" when the server does not know it)
    path: str  # its notebook, when the server's sessions name it
    pid: int  # the owner process
    address: str
    started_at: float
    state: ClusterState
    error: str
    owned: bool  # False: a Ray cluster the kernel connected to (not started)
    ray_dashboard: bool  # Ray's dashboard is proxied at nbray/ray-dashboard/<id>/


class ClustersEvent(TypedDict):
    """A kernel's private cluster appeared in the server's registry, or went with its
    owner (shut down, exited, killed): the whole list after the change."""

    type: Literal["clusters"]
    clusters: list[KernelClusterRecord]
    time: float


Event = (
    TaskEvent
    | ActorEvent
    | WorkerEvent
    | NodeEvent
    | MetricsEvent
    | LogEvent
    | ClusterEvent
    | ClientEvent
    | ClustersEvent
)


# --- records: what the fold makes of the stream (and the REST API returns) -------------


class TaskRecord(TypedDict):
    """What is known about one task: ``GET nbray/api/tasks`` and ``tasks/<id>``."""

    task_id: str
    name: str
    state: TaskState
    owner: int
    node_id: str
    actor_id: str
    parent: str
    deps: list[str]  # ids of the tasks whose results it takes (known ones only)
    returns: list[str]  # object ids (hex) of its results
    submitted: float
    started: float | None  # the latest attempt's start, None before it ran
    ended: float | None
    worker: str  # "node:worker id" of the latest attempt, "" before it ran
    worker_id: int | None
    pid: int | None
    attempts: int
    stage: int  # 0 without task dependencies, else 1 + the deepest dependency's stage
    error: str


class WorkerRecord(TypedDict):
    worker: str  # "node:worker id"
    node_id: str
    state: WorkerState
    pid: int | None
    exit_code: int | None
    cpu_percent: NotRequired[float]
    rss: NotRequired[int]
    task_id: NotRequired[str]
    actor_id: NotRequired[str]


class SegmentRecord(TypedDict):
    """One attempt of a task on one worker: a bar of the timeline."""

    worker: str
    task_id: str
    name: str
    start: float
    end: float
    state: TaskState


class GraphNodeRecord(TypedDict):
    """A task, or (grouped) the tasks of one function and stage."""

    key: str
    name: str
    stage: int
    count: int
    state: TaskState  # the state colouring the node
    states: dict[str, int]
    duration: float | None  # mean run time of those that ran
    workers: list[str]
    error: str
    task_ids: list[str]  # at most a few
    x: float  # layered layout: the column (stage, or a group of stages)
    y: float  # position within the column, in [-0.5, 0.5]


GraphEdge = tuple[int, int]  # indices into ``nodes``: dependency -> dependent


class GraphRecord(TypedDict):
    """``GET nbray/api/graph``: the task DAG, laid out in layers."""

    nodes: list[GraphNodeRecord]
    edges: list[GraphEdge]
    grouped: bool
    total_tasks: int


class SummaryRecord(TypedDict):
    """``GET nbray/api/summary``: tasks by state, finish rate, latest failures."""

    counts: dict[str, int]
    rate: float  # tasks ended per second over the last ten seconds
    failures: list[TaskRecord]


# --- checking a value against the contract (tests, debugging) ---------------------------

EVENT_CLASSES: dict[str, type] = {
    "task": TaskEvent,
    "actor": ActorEvent,
    "worker": WorkerEvent,
    "node": NodeEvent,
    "metrics": MetricsEvent,
    "log": LogEvent,
    "cluster": ClusterEvent,
    "client": ClientEvent,
    "clusters": ClustersEvent,
}


_PENDING_FIELDS = ("deps", "returns", "resources")
_RUNNING_FIELDS = ("pid", "gpu_ids")  # and worker_id, which the later states carry too


def separate_states(event: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The task events a coalesced one (``TaskEvent``) stands for, one per state, each with
    its own state's fields: its PENDING (at ``submitted``), its RUNNING (at ``started``),
    then its latest state; any other event as it is. For readers that want every state
    apart (tests, logs)."""
    if event.get("type") != "task" or ("submitted" not in event and "started" not in event):
        return [dict(event)]
    apart = ("submitted", "started", *_PENDING_FIELDS, *_RUNNING_FIELDS, "worker_id")
    common = {k: v for k, v in event.items() if k not in apart and k != "duration"}
    out = []
    if "submitted" in event:
        pending = {k: event[k] for k in _PENDING_FIELDS if k in event}
        out.append(dict(common, state="PENDING", time=event["submitted"], **pending))
    if "started" in event:
        running = {k: event[k] for k in (*_RUNNING_FIELDS, "worker_id") if k in event}
        out.append(dict(common, state="RUNNING", time=event["started"], **running))
    latest = {k: v for k, v in event.items() if k not in apart}
    if "worker_id" in event:
        latest["worker_id"] = event["worker_id"]
    if event.get("state") == "RUNNING":  # coalesced from its PENDING only
        latest.update({k: event[k] for k in _RUNNING_FIELDS if k in event})
    return [*out, latest]


def event_problems(event: Mapping[str, Any]) -> list[str]:
    """What in ``event`` breaks the contract: a missing or unknown key, a value of the
    wrong type, a state outside its vocabulary. Empty when the event keeps it.

    >>> event_problems({"type": "log", "task_id": "a1", "stream": "stdout", "text": "hi",
    ...                 "truncated": False, "pid": 7, "time": 1.0})
    []
    >>> event_problems({"type": "log", "task_id": "a1", "stream": "out", "text": "hi",
    ...                 "truncated": False, "pid": 7, "time": 1.0})
    ["log.stream: 'out' is not one of 'stdout', 'stderr'"]
    """
    kind = event.get("type")
    cls = EVENT_CLASSES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        return [f"unknown event type {kind!r}; the types are {', '.join(EVENT_TYPES)}"]
    return record_problems(cls, event, str(kind))


def record_problems(cls: type, value: Mapping[str, Any], where: str = "") -> list[str]:
    """What in ``value`` does not fit the TypedDict ``cls`` (see ``event_problems``)."""
    where = where or cls.__name__
    hints = get_type_hints(cls, include_extras=True)
    out: list[str] = []
    for key, tp in hints.items():
        optional = get_origin(tp) is NotRequired
        if optional:
            tp = get_args(tp)[0]
        if key not in value:
            if not optional:
                out.append(f"{where}: {key!r} is missing")
            continue
        problem = _mismatch(value[key], tp, f"{where}.{key}")
        if problem:
            out.append(problem)
    extra = sorted(set(value) - set(hints))
    if extra:
        out.append(f"{where}: {', '.join(map(repr, extra))} not in the contract")
    return out


def _mismatch(value: Any, tp: Any, where: str) -> str:
    origin = get_origin(tp)
    ok: bool
    if tp is Any:
        ok = True
    elif tp is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    elif tp is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif tp in (str, bool):
        ok = isinstance(value, tp)
    elif tp is type(None):
        ok = value is None
    elif origin is Literal:
        if value not in get_args(tp):
            return f"{where}: {value!r} is not one of {', '.join(map(repr, get_args(tp)))}"
        return ""
    elif origin in (Union, types.UnionType):
        ok = any(not _mismatch(value, arg, where) for arg in get_args(tp))
    elif origin is list:
        (item,) = get_args(tp)
        if not isinstance(value, list):
            ok = False
        else:
            return next((p for p in (_mismatch(v, item, f"{where}[]") for v in value) if p), "")
    elif origin is tuple:
        args = get_args(tp)
        ok = isinstance(value, list | tuple) and len(value) == len(args)
        ok = ok and all(not _mismatch(v, a, where) for v, a in zip(value, args, strict=False))
    elif origin is dict:
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            ok = False
        else:
            item = get_args(tp)[1]
            return next(
                (p for p in (_mismatch(v, item, f"{where}[{k!r}]") for k, v in value.items()) if p),
                "",
            )
    elif is_typeddict(tp):
        if not isinstance(value, dict):
            ok = False
        else:
            return "; ".join(record_problems(tp, value, where))
    else:
        raise TypeError(f"the contract has a type this check does not know: {tp!r}")
    return "" if ok else f"{where}: {value!r} is not {getattr(tp, '__name__', tp)}"
