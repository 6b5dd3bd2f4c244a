"""Wire messages between clients, workers and the head: one small record per operation.

Every frame on a connection carries a list of these records (see ``transport``). The
receiver dispatches on ``type(msg)`` through a table of handlers, never a chain of ifs.

    client ──Submit/Put/Fetch/Release/AddHold/Cancel/...──▶ head
    head   ──ObjectReady/Output/Events/Reply──▶ client
    head   ──RunTask/CreateActor/RunActorCall/CancelTask──▶ worker
    head   ──CollectGarbage──▶ every client and worker (the object store is nearly full)
    head   ──ActorOutOfScope──▶ an actor's owner (no handle to it is left anywhere)
    worker ──TaskDone/TaskFailed/Yielded/Blocked/Unblocked/Output──▶ head
    head   ──StreamItem──▶ caller ──StreamAck──▶ head ──▶ worker (generator tasks)

Ids are ints: ``client_id << 32 | counter`` so any process can mint ids without a round
trip. Object payloads travel as :class:`Payload`: inline bytes, a shared-memory segment,
or a pickled :class:`nbray.errors.RemoteError`.
"""

# No ``from __future__ import annotations`` here: NamedTuple turns every string annotation
# into a ForwardRef, compiling it, which made this module's import several times slower (every
# process imports it at start-up). The annotations below are evaluated at once instead.

import pickle
from typing import Any, NamedTuple

from nbray._base.errors import RemoteError

# Payload kinds
INLINE = 0
SHM = 1
ERROR = 2


class Payload(NamedTuple):
    """Where an object's bytes are: ``data`` inline, or ``segment`` of ``size`` bytes."""

    kind: int
    data: bytes = b""
    segment: str = ""
    size: int = 0


def lost_payload(object_id: int) -> Payload:
    """The value of an object that was freed (read by a client or the head)."""
    err = RemoteError(
        kind="object_lost",
        message=(
            f"object {object_id:016x} was freed: every ObjectRef to it was released, or its "
            "owner disconnected. Keep a reference to an ObjectRef while you need its value."
        ),
    )
    return Payload(ERROR, pickle.dumps(err))


class Job(NamedTuple):
    """The working directory and import path of the client whose work a worker runs."""

    cwd: str
    sys_path: tuple[str, ...]


class TaskSpec(NamedTuple):
    """Everything needed to run one task or actor method call, once it is scheduled."""

    task_id: int
    name: str
    func_id: bytes  # digest of the pickled function (b"" for actor calls)
    args: bytes  # serialised (args, kwargs); top-level ObjectRefs are resolved by the worker
    deps: tuple[int, ...]  # top-level ObjectRef arguments, resolved before running
    contained: tuple[int, ...]  # refs nested in the arguments, pinned while the task lives
    return_ids: tuple[int, ...]
    resources: dict[str, float]
    max_retries: int
    retry_exceptions: bool | bytes  # bytes: pickled tuple of exception classes
    actor_id: int = 0
    method: str = ""
    max_task_retries: int = 0
    job_namespace: str = ""  # the submitter's namespace: named actors are looked up there
    concurrency_group: str = ""  # an actor call's group ("": the method's own, or default)
    max_calls: int = 0  # a task: the worker exits after running this many of its function
    job_id: int = 0  # the client id of the driver whose work this is (nested tasks keep it)
    runtime_env: str = ""  # resolved runtime_env (JSON): only workers started for it run it
    # (placement group id, bundle index or -1, capture child tasks): runs in that reservation
    placement: tuple[int, int, bool] | None = None
    # a generator: 0 no; -1 streaming (each yield sent as Yielded); -2 dynamic
    stream: int = 0
    backpressure: int = -1  # a streaming task pauses while this many yields are unconsumed


class ActorSpec(NamedTuple):
    """An actor to create: its class, constructor arguments and options."""

    actor_id: int
    class_name: str
    class_id: bytes
    args: bytes
    deps: tuple[int, ...]
    contained: tuple[int, ...]
    resources: dict[str, float]
    max_restarts: int
    max_task_retries: int
    max_concurrency: int
    name: str
    namespace: str
    detached: bool
    is_async: bool
    methods: tuple[tuple[str, int], ...] = ()
    job_namespace: str = ""  # the creator's namespace, which the actor's code runs in
    concurrency_groups: tuple[tuple[str, int], ...] = ()  # (name, threads or async tasks)
    job_id: int = 0  # the creator's job (see TaskSpec.job_id)
    runtime_env: str = ""  # resolved runtime_env (JSON) the actor's worker starts with
    placement: tuple[int, int, bool] | None = None  # as TaskSpec.placement


# --- handshake after authentication --------------------------------------------------


class Hello(NamedTuple):
    role: str  # "client" | "worker" | "owner"
    pid: int
    worker_id: int = 0
    cwd: str = ""  # a client's working directory and import path: its tasks run with them
    sys_path: tuple[str, ...] = ()


class Welcome(NamedTuple):
    client_id: int
    session: str  # prefix of this cluster's shared-memory segment names
    node_id: str
    namespace: str
    spill_dir: str  # where objects go that /dev/shm has no room for (shm.py)


# --- client → head ----------------------------------------------------------------------


class Submit(NamedTuple):
    """A task. ``lease``: the client sent it straight to the worker it leases under that
    id (``nbray._engines.local.leases``): the head only records it. ``parent``: the task
    that submits it, from a leased worker (whose running task the head may not know yet)."""

    spec: TaskSpec
    func: bytes  # pickled function when the head may not have it yet, else b""
    lease: int = 0
    parent: int = 0


class CreateActor(NamedTuple):
    spec: ActorSpec
    cls: bytes


class CallActor(NamedTuple):
    """An actor call. ``direct_worker``: the caller sent it straight to that worker of
    the actor too (``nbray._engines.local.direct``): the head records it, and sends it on
    itself only if the actor runs elsewhere by then (restarted) or the call is retried."""

    spec: TaskSpec
    direct_worker: int = 0


class Put(NamedTuple):
    object_id: int
    payload: Payload
    contained: tuple[int, ...]


class Fetch(NamedTuple):
    """Ask for each object's payload, sent as an ObjectReady once it exists.
    ``for_call``: the arguments of that direct actor call (an actor's worker asks): the
    head answers once it has the caller's record of the call, then says ``CallKnown``."""

    object_ids: tuple[int, ...]
    for_call: int = 0


class AddHold(NamedTuple):
    object_ids: tuple[int, ...]


class Release(NamedTuple):
    object_ids: tuple[int, ...]


class Cancel(NamedTuple):
    object_id: int
    force: bool
    recursive: bool


class KillActor(NamedTuple):
    actor_id: int
    no_restart: bool
    when_idle: bool = False  # the last handle was dropped: let submitted calls finish first
    reason: str = ""  # what the calls it fails report (the actor called exit_actor(), say)


class Request(NamedTuple):
    """A query with a reply: ``what`` names the handler, ``args`` its arguments."""

    req_id: int
    what: str
    args: tuple[Any, ...] = ()


class Subscribe(NamedTuple):
    replay: bool = True


class Unsubscribe(NamedTuple):
    pass


class Shutdown(NamedTuple):
    pass


# --- head → client -------------------------------------------------------------------


class ObjectReady(NamedTuple):
    object_id: int
    payload: Payload


class Reply(NamedTuple):
    req_id: int
    ok: bool
    value: Any


class Output(NamedTuple):
    task_id: int
    stream: str  # "stdout" | "stderr"
    text: str
    name: str = ""
    pid: int = 0


class Events(NamedTuple):
    """The event bus's batch (``nbray._node.bus``), in order: event dicts as typed in
    ``nbray._base.events``."""

    events: list[dict[str, Any]]


# --- head → worker -------------------------------------------------------------------


class RunTask(NamedTuple):
    spec: TaskSpec
    func: bytes  # the pickled function, or b"" when this worker already has it
    deps: dict[int, Payload]
    env: dict[str, str]
    job: Job | None = None  # set when the worker last ran work of another client


class StartActor(NamedTuple):
    spec: ActorSpec
    cls: bytes
    deps: dict[int, Payload]
    env: dict[str, str]
    job: Job | None = None


class RunActorCall(NamedTuple):
    spec: TaskSpec
    deps: dict[int, Payload]


class CancelTask(NamedTuple):
    task_id: int


class ActorOutOfScope(NamedTuple):
    """Head → the actor's owner: every handle to this actor is gone, in every process (its
    handle token was freed); the owner ends it gracefully, as Ray ends out-of-scope actors."""

    actor_id: int
    class_name: str


class CollectGarbage(NamedTuple):
    """Run ``gc.collect()`` (head → every client and worker): the object store is nearly
    full, and reference cycles may hold ObjectRefs (Ray's global GC)."""


class Unqueue(NamedTuple):
    """Give back these tasks if they have not started (the worker blocked in ``get``)."""

    task_ids: tuple[int, ...]


class Unqueued(NamedTuple):
    task_ids: tuple[int, ...]  # the ones given back, never started


class Retire(NamedTuple):
    """The worker exits on its own (``max_calls`` reached) after reporting every task it
    ran: what the head still sees on it never started there."""


# --- worker → head -------------------------------------------------------------------


class TaskDone(NamedTuple):
    task_id: int
    results: tuple[tuple[int, Payload, tuple[int, ...]], ...]  # (object id, payload, contained)
    duration: float = 0.0  # seconds the function ran
    direct: bool = False  # the head's copy of a direct call's answer (see CallActor)


class TaskFailed(NamedTuple):
    task_id: int
    error: bytes  # pickled RemoteError
    retriable: bool  # the exception matches retry_exceptions
    duration: float = 0.0
    direct: bool = False  # as TaskDone.direct


class ActorStartFailed(NamedTuple):
    """The actor's constructor raised: the actor is dead, its calls fail with ``reason``."""

    actor_id: int
    reason: str


class ForgetFunction(NamedTuple):
    """The worker could not load this function: send its code again next time."""

    func_id: bytes


class Yielded(NamedTuple):
    """One value yielded by a streaming generator task (its ``seq``-th), stored as
    ``object_id``; an error payload is the exception the generator raised."""

    task_id: int
    seq: int  # 0 for the first yield
    object_id: int
    payload: Payload
    contained: tuple[int, ...]
    direct: bool = False  # the call came straight from its caller (its record may be late)


class Blocked(NamedTuple):
    pass


# --- generator streams: head → caller, caller → head → worker ------------------------------


class StreamItem(NamedTuple):
    """Yield ``seq`` of the generator task whose completion object is ``completed`` is
    ``object_id`` (held for the caller); ``error``: its value is the generator's exception."""

    completed: int
    seq: int
    object_id: int
    error: bool


class StreamAck(NamedTuple):
    """The caller has consumed ``consumed`` yields of that generator (for backpressure)."""

    completed: int
    consumed: int


class Unblocked(NamedTuple):
    pass


# --- direct actor calls (``nbray._engines.local.direct``) ------------------------------------


class Listening(NamedTuple):
    """Worker → head: the actor this worker hosts takes calls at ``address`` too."""

    actor_id: int
    address: str


class ActorAddress(NamedTuple):
    """Head → a caller: none of your calls to this actor is unfinished, the last one the
    head saw being ``last_call``; send the next ones straight to ``worker_id`` at
    ``address`` (the caller does so only if it sent no call since)."""

    actor_id: int
    worker_id: int
    address: str
    last_call: int


class CallerGone(NamedTuple):
    """Head → an actor's worker: this direct caller's connection to the head ended (the
    caller is gone). The worker reads what the caller sent it, then says which of its
    direct calls reached it (CallerCalls)."""

    caller: int  # the caller's client id


class CallerCalls(NamedTuple):
    """Worker → head: the direct calls from ``caller`` this worker has and has not
    answered. The caller's other unfinished direct calls, recorded by the head, never
    reached it (they were in the caller's outbox): the head sends them itself."""

    caller: int
    here: tuple[int, ...]


class CallKnown(NamedTuple):
    """Head → an actor's worker: the caller's record of this direct call is here, so every
    object the call refers to is known (and held) by the head: the call may run."""

    task_id: int


class ViaHead(NamedTuple):
    """Worker → a direct caller: this call's answer comes through the head (it printed
    output, which the head sends first, or it is a generator): fetch it there."""

    task_id: int


# --- worker leases (``nbray._engines.local.leases``, ``nbray._node.leases``) --------------------


class LeaseRequest(NamedTuple):
    """Client → head: lease a worker with these resources, to send it tasks directly."""

    lease_id: int
    resources: dict[str, float]


class Leased(NamedTuple):
    """Head → a worker: it is leased to a client, whose work runs in ``job``; it answers
    LeaseReady once it takes direct tasks (in that job)."""

    lease_id: int
    job: Job | None


class LeaseReady(NamedTuple):
    """Worker → head: the leased worker takes tasks at ``address``."""

    lease_id: int
    address: str


class LeaseGranted(NamedTuple):
    """Head → client: send tasks of the lease's resources to ``worker_id`` at ``address``,
    one at a time, until the lease is returned."""

    lease_id: int
    worker_id: int
    address: str


class LeaseReturn(NamedTuple):
    """Client → head: this client sends no more tasks on the lease (requested or granted):
    the worker is the scheduler's again once the tasks sent on it are done."""

    lease_id: int


class LeaseRevoke(NamedTuple):
    """Head → client: others wait for workers: return the lease once its task is done."""

    lease_id: int
