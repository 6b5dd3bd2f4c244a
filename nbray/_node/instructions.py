"""The scheduler's instructions: what the head must do, as small typed records.

    Scheduler (decides) ──▶ list of these ──▶ Head.run ──▶ Head.do_<instruction> (does)

They are NamedTuples (cheap to create on the hot path) that compare equal only to records
of the same type, so ``Dispatch(1, 2)`` never equals another instruction's ``(1, 2)``.
"""

# No ``from __future__ import annotations`` here: NamedTuple turns every string annotation
# into a ForwardRef, compiling it, which made this module's import several times slower (every
# process imports it at start-up). The annotations below are evaluated at once instead.

from typing import NamedTuple

from .states import ActorState


class SpawnWorker(NamedTuple):
    worker_id: int
    actor_id: int = 0
    runtime_env: str = ""  # the env the worker is started for ("" the default pool)


class GroupStateChanged(NamedTuple):
    """A placement group was reserved (CREATED) or removed (REMOVED)."""

    group_id: int
    state: str
    reason: str = ""


class KillWorker(NamedTuple):
    worker_id: int


class Dispatch(NamedTuple):
    worker_id: int
    task_id: int
    gpu_ids: tuple[int, ...] = ()


class Unqueue(NamedTuple):
    """Take back tasks queued behind a worker's current one (it blocked in ``get``)."""

    worker_id: int
    task_ids: tuple[int, ...]


class Interrupt(NamedTuple):
    worker_id: int
    task_id: int


class FailTask(NamedTuple):
    task_id: int
    kind: str  # "cancelled" | "worker_crashed" | "dependency" | "unschedulable" | ...
    message: str = ""
    exit_code: int | None = None
    dependency: int = 0  # the failed ObjectRef argument, for kind == "dependency"
    cause: str = ""  # why the head killed the worker, when it did (see DeathCause)


class Retry(NamedTuple):
    task_id: int
    attempt: int
    reason: str


class StartActor(NamedTuple):
    worker_id: int
    actor_id: int
    gpu_ids: tuple[int, ...] = ()


class DispatchCall(NamedTuple):
    worker_id: int
    actor_id: int
    call_id: int


class FailCall(NamedTuple):
    call_id: int
    actor_id: int
    kind: str
    message: str


class ActorStateChanged(NamedTuple):
    actor_id: int
    state: ActorState
    reason: str = ""


Instruction = (
    SpawnWorker
    | KillWorker
    | Dispatch
    | Interrupt
    | Unqueue
    | FailTask
    | Retry
    | StartActor
    | DispatchCall
    | FailCall
    | ActorStateChanged
    | GroupStateChanged
)


def _typed_eq(self: tuple[object, ...], other: object) -> bool:
    return type(self) is type(other) and tuple.__eq__(self, other)


def _typed_ne(self: tuple[object, ...], other: object) -> bool:
    return not _typed_eq(self, other)


def _typed_hash(self: tuple[object, ...]) -> int:
    return hash((type(self).__name__, tuple(self)))


# instructions are records, not tuples: Dispatch(1, 2) never equals another record's (1, 2)
for _cls in (
    SpawnWorker,
    KillWorker,
    Dispatch,
    Unqueue,
    Interrupt,
    FailTask,
    Retry,
    StartActor,
    DispatchCall,
    FailCall,
    ActorStateChanged,
    GroupStateChanged,
):
    _cls.__eq__ = _typed_eq  # type: ignore[method-assign]
    _cls.__ne__ = _typed_ne  # type: ignore[assignment,method-assign]
    _cls.__hash__ = _typed_hash  # type: ignore[method-assign]


# --- values the scheduler takes or gives besides instructions ---------------------------


class DeathCause(NamedTuple):
    """Why the head killed a worker on purpose: ``kind`` is the error kind its task fails
    with ("oom" → OutOfMemoryError, "worker_crashed"), ``text`` says what happened."""

    kind: str
    text: str


class BusyWorker(NamedTuple):
    """A worker running a task (``task_id``) or hosting an actor (``actor_id``);
    ``retriable``: killing it would retry the task or restart the actor."""

    worker_id: int
    task_id: int
    actor_id: int
    retriable: bool
