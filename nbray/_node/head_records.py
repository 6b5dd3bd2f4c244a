"""The head's records: its settings, and its view of each task.

cluster/local.py writes config.json ──▶ HeadConfig ──▶ Head
TaskTable.register ──▶ TaskRecord (live) ──ended, nobody watching──▶ EndedTask (bus)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import NamedTuple

from nbray._wire import protocol as P


class HeadConfig:
    """The cluster's settings, from ``SESSION_DIR/config.json`` (cluster/local.py writes it)."""

    def __init__(
        self,
        session_dir: str,
        session: str,
        node_id: str,
        resources: dict[str, float],
        gpu_ids: list[int] | None,
        namespace: str = "default",
        owner_pid: int = 0,
        tcp_host: str = "",
        tcp_port: int = 0,
        python: str = sys.executable,
        listen_fds: list[int] | None = None,
        object_store_memory: int = 0,
    ) -> None:
        self.session_dir = session_dir
        self.session = session
        self.node_id = node_id
        self.resources = resources
        self.gpu_ids = gpu_ids
        self.namespace = namespace
        self.owner_pid = owner_pid
        self.tcp_host = tcp_host
        self.tcp_port = tcp_port
        self.python = python  # the interpreter that started the cluster (informational)
        self.listen_fds = listen_fds or []
        # bytes of /dev/shm the object store may use before it spills (0: no limit)
        self.object_store_memory = object_store_memory
        self.spill_dir = str(Path(session_dir) / "spill")

    @classmethod
    def load(cls, session_dir: str) -> HeadConfig:
        data = json.loads((Path(session_dir) / "config.json").read_text())
        return cls(session_dir=session_dir, **data)


class TaskRecord:
    __slots__ = (
        "acked",
        "caller",
        "cancelled",
        "direct_to",
        "direct_worker",
        "lease",
        "owner",
        "parent",
        "pid",
        "published",
        "spec",
        "started",
        "state",
        "submitted",
        "worker_id",
        "yielded",
    )

    def __init__(self, spec: P.TaskSpec, owner: int, parent: int, submitted: float) -> None:
        self.spec = spec
        self.owner = owner  # the client (kernel) the work belongs to
        self.parent = parent
        self.state = "PENDING"
        self.worker_id = 0
        self.direct_worker = 0  # an actor call its caller sent to this worker itself
        self.direct_to = 0  # (the same, kept when the head sends the call on: a retry)
        self.lease = 0  # a task its client sent to the worker it leases (nbray._node.leases)
        self.cancelled = False  # (such a task: nbray.cancel was called on it)
        self.submitted = submitted
        self.started = 0.0  # when it was last dispatched
        self.pid = 0
        self.published = False  # its PENDING event went out to subscribers
        # a generator task: the connection its yields go to, how many arrived (a retry's
        # replay of those is dropped), how many the caller consumed (backpressure)
        self.caller = 0
        self.yielded = 0
        self.acked = 0


class EndedTask(NamedTuple):
    """What the head keeps of a task that ended while nobody subscribed to events: enough
    to replay its lifecycle to a later subscriber (bus.EventBus.replay), no arguments."""

    task_id: int
    name: str
    owner: int
    parent: int
    actor_id: int
    deps: tuple[int, ...]
    return_ids: tuple[int, ...]
    resources: dict[str, float]
    submitted: float
    started: float
    worker_id: int
    pid: int
    state: str
    ended: float
    error: str
    published: bool

    @classmethod
    def of(cls, rec: TaskRecord, state: str, ended: float, error: str) -> EndedTask:
        spec = rec.spec
        return cls(
            spec.task_id,
            spec.name,
            rec.owner,
            rec.parent,
            spec.actor_id,
            spec.deps,
            spec.return_ids,
            spec.resources,
            rec.submitted,
            rec.started,
            rec.worker_id,
            rec.pid,
            state,
            ended,
            error,
            rec.published,
        )
