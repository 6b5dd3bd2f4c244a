"""The scheduler's state names, typed: one vocabulary for the scheduler, the head and views.

    Scheduler (sets them) ──▶ Scheduler.validate (checks them) ──▶ head views ("status",
    the metrics sample's worker states) and ActorStateChanged ──▶ "actor" events

Each name is a ``Literal`` alias with ``Final`` constants, so mypy checks every comparison
and assignment while the hot path compares plain strings (no enum attribute lookups).
"""

from __future__ import annotations

from typing import Final, Literal

__all__ = [
    "ACTOR",
    "ALIVE",
    "BUSY",
    "DEAD",
    "IDLE",
    "PENDING",
    "READY",
    "RESTARTING",
    "RUNNING",
    "STARTING",
    "WAITING",
    "ActorState",
    "TaskState",
    "WorkerState",
]

TaskState = Literal["WAITING", "READY", "RUNNING"]
"""A task the scheduler holds: WAITING for ObjectRef arguments, READY for a worker and
resources, RUNNING on a worker (or pipelined behind its current task). Ended tasks leave."""

WorkerState = Literal["STARTING", "IDLE", "BUSY", "ACTOR", "DEAD"]
"""A worker process: STARTING until its Hello, IDLE in the pool, BUSY with a task, ACTOR
hosting one actor, DEAD once told to stop (trimmed) until its exit is reported."""

ActorState = Literal["PENDING", "ALIVE", "RESTARTING", "DEAD"]
"""An actor, as Ray names them: PENDING until its worker started, ALIVE, RESTARTING after
its worker died, DEAD for good."""

WAITING: Final = "WAITING"
READY: Final = "READY"
RUNNING: Final = "RUNNING"

STARTING: Final = "STARTING"
IDLE: Final = "IDLE"
BUSY: Final = "BUSY"
ACTOR: Final = "ACTOR"
DEAD: Final = "DEAD"  # a worker's and an actor's

PENDING: Final = "PENDING"
ALIVE: Final = "ALIVE"
RESTARTING: Final = "RESTARTING"
