"""The scheduler's records of each worker, task and actor (its state, nothing else).

    Scheduler ──creates and changes──▶ Worker / Task / Actor ──read by──▶ invariants.py

Plain classes with slots where they are made per task; no behaviour of their own.
"""

from __future__ import annotations

from collections import deque

from .resources import Shape
from .states import PENDING, STARTING, WAITING, ActorState, TaskState, WorkerState

__all__ = ["Actor", "Task", "Worker"]


class Worker:
    __slots__ = (
        "actor_id",
        "blocked",
        "env",
        "gpus",
        "killed",
        "lent_cpus",
        "queued",
        "state",
        "task_id",
        "worker_id",
    )

    def __init__(self, worker_id: int, actor_id: int = 0, env: str = "") -> None:
        self.worker_id = worker_id
        self.env = env  # the runtime_env it was started for: it runs nothing else
        # the GPU ids of its first task, () for a CPU task, None before any: CUDA fixes the
        # visible devices at first use, so a worker serves one GPU assignment, as in Ray
        self.gpus: tuple[int, ...] | None = None
        self.state: WorkerState = STARTING
        self.task_id = 0
        self.actor_id = actor_id
        self.lent_cpus = 0.0
        self.blocked = False  # its task waits in get/wait: queue nothing behind it
        self.killed = False
        self.queued: deque[int] = deque()  # pipelined behind task_id


class Task:
    __slots__ = (
        "attempts",
        "bundle",
        "cancelled",
        "deps",
        "env",
        "gpu_ids",
        "lease",
        "max_retries",
        "name",
        "owner",
        "parent",
        "placement",
        "resources",
        "shape",
        "short",
        "state",
        "task_id",
        "worker_id",
    )

    def __init__(
        self,
        task_id: int,
        name: str,
        resources: dict[str, float],
        max_retries: int,
        owner: int,
        parent: int,
        deps: set[int],
    ) -> None:
        self.task_id = task_id
        self.name = name
        self.resources = resources
        self.max_retries = max_retries
        self.owner = owner
        self.parent = parent
        self.deps = deps
        self.state: TaskState = WAITING
        self.worker_id = 0
        self.attempts = 0
        self.cancelled = False
        self.gpu_ids: tuple[int, ...] = ()
        self.shape: Shape = ()  # resources as a hashable key
        self.short = False  # its function is known to run in well under a millisecond
        self.env = ""  # its runtime_env: runs only on a worker started for it
        self.placement: tuple[int, int] | None = None  # (group, bundle index or -1)
        self.bundle = -1  # the bundle whose reservation it holds while it runs
        # a client's lease of a worker (its "run" lasts until the client returns it): no
        # task queues behind it on its worker
        self.lease = False


class Actor:
    def __init__(
        self,
        actor_id: int,
        name: str,
        resources: dict[str, float],
        max_restarts: int,
        max_task_retries: int,
        owner: int,
        detached: bool,
        env: str = "",
    ) -> None:
        self.actor_id = actor_id
        self.env = env  # its runtime_env: its worker starts with it
        self.placement: tuple[int, int] | None = None  # (group, bundle index or -1)
        self.bundle = -1
        self.name = name
        self.resources = resources
        self.max_restarts = max_restarts
        self.max_task_retries = max_task_retries
        self.owner = owner
        self.detached = detached
        self.state: ActorState = PENDING
        self.worker_id = 0
        self.restarts = 0
        self.no_restart = False
        self.death_reason = ""
        self.exit_when_idle = False  # its handles are gone: stop once its calls are done
        self.gpu_ids: tuple[int, ...] = ()
        self.queue: deque[int] = deque()
        self.inflight: dict[int, int] = {}  # call id -> attempts (ordered)
        self.call_attempts: dict[int, int] = {}
