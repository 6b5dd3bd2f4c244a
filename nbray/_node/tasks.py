"""The head's task table: each task from Submit to its results, and the object messages.

    client Submit ──▶ TaskTable.on_submit ──▶ record + return objects ──▶ Scheduler.submit
    Scheduler Dispatch ──▶ do_dispatch ──RunTask (function once per worker, ready args)──▶ worker
    worker TaskDone / TaskFailed ──▶ results stored in the ObjectDirectory ──▶ ObjectReady
        to the connections waiting ──▶ Scheduler.task_finished / object_ready
    Scheduler FailTask / Retry / Interrupt / Unqueue ──▶ error stored / RETRYING / CancelTask
    worker Output ──▶ its owner's connection (whole) + a "log" event when someone watches
    Put / Fetch / AddHold / Release ──▶ the ObjectDirectory, holds kept per connection

Every change of a task's state goes to the EventBus (``task_event``). Actor calls are
tasks too (``spec.actor_id``): the actor table registers them here and is told when one
ends (``ActorCalls``).
"""

from __future__ import annotations

import contextlib
import pickle
import time
from collections.abc import Callable
from typing import Any, Protocol

from nbray._base.errors import RemoteError
from nbray._wire import protocol as P
from nbray._wire.gpus import visible_devices_env

from . import instructions as S
from .bus import EventBus, log_event
from .failures import error_text, failure_message
from .head_records import TaskRecord
from .leases import LeaseTable
from .objects import ObjectDirectory
from .peers import Connections, Peer
from .scheduler import Scheduler
from .supervisor import Supervisor

__all__ = ["SHORT_TASK", "ActorCalls", "TaskTable"]

SHORT_TASK = 0.001  # seconds: functions faster than this on average are pipelined
EARLY_WAIT = 60.0  # seconds a direct call's answer waits for its CallActor (take_early)


class ActorCalls(Protocol):
    """What the task table asks of the actor table (actors.ActorTable)."""

    def owner_of_worker(self, worker_id: int) -> int | None:
        """The owner of the actor the worker hosts (None: it hosts none)."""
        ...

    def call_ended(self, actor_id: int, call_id: int) -> None: ...

    def object_ready(self, oid: int) -> None:
        """An object exists now (or failed): actor calls held on it may go."""
        ...


class TaskTable:
    """The live tasks by id, which task produces each object, the functions' code and
    average run times; handles the task and object messages and instructions."""

    def __init__(
        self,
        gpus: bool,
        objects: ObjectDirectory,
        sched: Scheduler,
        run: Callable[[list[Any]], None],
        bus: EventBus,
        conns: Connections,
        supervisor: Supervisor,
    ) -> None:
        self.gpus = gpus  # the node has GPUs: set CUDA_VISIBLE_DEVICES per task
        self.objects = objects
        self.sched = sched
        self.run = run
        self.bus = bus
        self.conns = conns
        self.supervisor = supervisor
        self.actors: ActorCalls | None = None  # set once the actor table exists
        self.leases: LeaseTable | None = None  # and the lease table
        self.tasks: dict[int, TaskRecord] = {}
        self.producer: dict[int, int] = {}  # return object id -> task id
        self.functions: dict[bytes, bytes] = {}
        self.func_time: dict[bytes, float] = {}  # moving average of each function's run time
        self.finished_count: dict[str, int] = {"FINISHED": 0, "FAILED": 0, "CANCELLED": 0}
        # direct actor calls answered before their CallActor came: task id -> (when, ...)
        self.early: dict[int, tuple[float, Peer, P.TaskDone | P.TaskFailed]] = {}
        # and the fetches of their arguments made before it came (take_early_fetch)
        self.early_fetches: dict[int, tuple[float, Peer, P.Fetch]] = {}
        # and the items a direct generator call yielded before it came (the worker's
        # socket may be read first): task id -> [(when, worker, Yielded)]
        self.early_yields: dict[int, list[tuple[float, Peer, P.Yielded]]] = {}

    # --- registering ---------------------------------------------------------------------

    def owner_and_parent(self, peer: Peer, parent: int = 0) -> tuple[int, int]:
        """Whose work a submission from ``peer`` is: a worker's belongs to the owner of the
        task (the parent) or actor it runs, or of the lease it serves (``parent``: the task
        the worker says it runs, for a leased worker, whose tasks the head records late)."""
        if peer.role != "worker":
            return peer.conn_id, 0
        holder = self.leases.holder(peer.worker_id) if self.leases is not None else None
        if holder is not None:
            return holder, parent
        w = self.sched.workers.get(peer.worker_id)
        if w is not None and w.task_id and w.task_id in self.tasks:
            rec = self.tasks[w.task_id]
            return rec.owner, rec.spec.task_id
        owner = self.actors.owner_of_worker(peer.worker_id) if self.actors else None
        if owner is not None:
            return owner, 0
        return peer.conn_id, 0

    def register(self, peer: Peer, spec: P.TaskSpec, parent: int = 0) -> TaskRecord:
        owner, parent = self.owner_and_parent(peer, parent)
        rec = TaskRecord(spec, owner, parent, time.time())
        self.tasks[spec.task_id] = rec
        if spec.stream:
            rec.caller = peer.conn_id
        for oid in spec.return_ids:
            self.objects.create(oid, peer.conn_id)
            self.producer[oid] = spec.task_id
            peer.holds.add(oid)
        self.objects.pin(spec.deps)
        self.objects.pin(spec.contained)
        self.bus.task_event(rec, "PENDING")
        return rec

    def on_submit(self, peer: Peer, msg: P.Submit) -> None:
        spec = msg.spec
        if msg.func:
            self.functions[spec.func_id] = msg.func
        rec = self.register(peer, spec, msg.parent)
        if msg.lease and self.leases is not None:
            self.leases.on_task(rec, msg.lease)  # its client sent it to a worker it leases
        else:
            self.schedule(rec, spec.max_retries)

    def schedule(self, rec: TaskRecord, max_retries: int) -> None:
        """Give the scheduler a registered task, once its arguments exist."""
        spec = rec.spec
        unready = set()
        for dep in spec.deps:
            payload = self.objects.ready(dep)
            if payload is None:
                if not self.objects.known(dep):
                    self.store_error(rec, P.lost_payload(dep))
                    return
                unready.add(dep)
            elif payload.kind == P.ERROR:
                self.store_error(rec, payload)
                return
        self.run(
            self.sched.submit(
                spec.task_id,
                spec.name,
                spec.resources,
                max_retries,
                rec.owner,
                unready,
                rec.parent,
                short=self.func_time.get(spec.func_id, SHORT_TASK) < SHORT_TASK,
                runtime_env=spec.runtime_env,
                placement=spec.placement[:2] if spec.placement else None,
            )
        )
        if self.leases is not None and self.leases.by_worker and self.sched.ready:
            self.leases.work_waits()

    def dep_payloads(self, deps: tuple[int, ...]) -> dict[int, P.Payload]:
        out = {}
        for dep in deps:
            payload = self.objects.ready(dep)
            if payload is not None:
                out[dep] = payload
        return out

    def job_for(self, worker: Peer, owner: int) -> P.Job | None:
        owner_peer = self.conns.peers.get(owner)
        return self.supervisor.job_for(
            worker.worker_id, owner, owner_peer.job if owner_peer is not None else None
        )

    def gpu_env(self, gpu_ids: tuple[int, ...]) -> dict[str, str]:
        return visible_devices_env(list(gpu_ids)) if self.gpus else {}

    def do_dispatch(self, ins: S.Dispatch) -> None:
        rec = self.tasks.get(ins.task_id)
        if rec is None and self.leases is not None and self.leases.do_dispatch(ins):
            return  # (a lease)
        peer = self.conns.workers.get(ins.worker_id)
        if rec is None or peer is None:  # raced with a death; the scheduler will be told
            return
        spec = rec.spec
        func = b""
        if spec.func_id not in peer.known_funcs:
            func = self.functions[spec.func_id]
            peer.known_funcs.add(spec.func_id)
        env = self.gpu_env(ins.gpu_ids)
        rec.worker_id = ins.worker_id
        self.supervisor.dispatched(ins.worker_id)
        job = self.job_for(peer, rec.owner)
        peer.send(P.RunTask(spec, func, self.dep_payloads(spec.deps), env, job))
        if rec.acked:  # a retry: the caller consumed these before, no need to wait for them
            peer.send(P.StreamAck(spec.return_ids[0], rec.acked))
        self.bus.task_event(
            rec, "RUNNING", worker_id=ins.worker_id, pid=peer.pid, gpu_ids=list(ins.gpu_ids)
        )

    # --- endings -------------------------------------------------------------------------

    def on_task_done(self, peer: Peer, msg: P.TaskDone) -> None:
        rec = self.tasks.get(msg.task_id)
        if rec is None and msg.direct:
            self._stash_early(peer, msg)
            return
        if rec is None:
            for oid, payload, _contained in msg.results:
                self.objects.set(oid, payload, ())  # dropped: nobody waits any more
            return
        self._timed(rec.spec.func_id, msg.duration)
        for oid, payload, contained in msg.results:
            self.store(oid, payload, contained)
        self.end(rec, "FINISHED")
        if rec.lease and self.leases is not None:
            self.leases.task_ended(rec)
        elif rec.spec.actor_id:
            self.run(self.sched.call_finished(rec.spec.task_id, rec.spec.actor_id))
        else:
            self.run(self.sched.task_finished(rec.spec.task_id, True))

    def on_task_failed(self, peer: Peer, msg: P.TaskFailed) -> None:
        rec = self.tasks.get(msg.task_id)
        if rec is None and msg.direct:
            self._stash_early(peer, msg)
            return
        if rec is None:
            return
        if rec.spec.actor_id:
            self.run(self.sched.call_finished(rec.spec.task_id, rec.spec.actor_id))
            self.store_error(rec, P.Payload(P.ERROR, msg.error))
            return
        if rec.lease and self.leases is not None:
            self._lease_task_failed(rec, msg)
            return
        out = self.sched.task_finished(rec.spec.task_id, False, msg.retriable)
        retrying = any(isinstance(i, S.Retry) and i.task_id == rec.spec.task_id for i in out)
        if not retrying:
            self.store_error(rec, P.Payload(P.ERROR, msg.error))
        self.run(out)

    def _lease_task_failed(self, rec: TaskRecord, msg: P.TaskFailed) -> None:
        """A task sent on a lease raised: retried through the head if its exception is
        retriable (its worker answered its client ViaHead), else its error is stored."""
        assert self.leases is not None
        self.leases.task_ended(rec)
        retry = msg.retriable and not rec.cancelled and rec.spec.max_retries != 0
        if retry and rec.owner in self.conns.peers:  # (not for a client that went)
            self.retry_through_head(rec, "the task raised a retriable exception")
        else:
            self.store_error(rec, P.Payload(P.ERROR, msg.error))

    def retry_through_head(self, rec: TaskRecord, reason: str) -> None:
        """A task sent on a lease gets another try, from the scheduler (its first try
        spent one of its ``max_retries``)."""
        retries = rec.spec.max_retries
        self.objects.discard_partial(rec.spec.return_ids)
        self.bus.task_event(rec, "RETRYING", attempt=2, reason=reason)
        self.schedule(rec, retries - 1 if retries > 0 else -1)

    # --- direct actor calls: the worker's copy of the answer may come first ------------------

    def _stash_early(self, peer: Peer, msg: P.TaskDone | P.TaskFailed) -> None:
        """A direct call's answer came before its caller's CallActor (another socket):
        kept until that arrives (take_early), or for EARLY_WAIT at most."""
        self.early[msg.task_id] = (time.monotonic(), peer, msg._replace(direct=False))
        self.objects.pin(_contained(msg))  # the worker's releases of them come next

    def has_early(self, task_id: int) -> bool:
        return bool(self.early) and task_id in self.early

    def take_early(self, task_id: int) -> None:
        early = self.early.pop(task_id, None) if self.early else None
        if early is not None:
            _, peer, msg = early
            self.handle_answer(peer, msg)
            self.objects.unpin(_contained(msg))

    def handle_answer(self, peer: Peer, msg: P.TaskDone | P.TaskFailed) -> None:
        if isinstance(msg, P.TaskDone):
            self.on_task_done(peer, msg)
        else:
            self.on_task_failed(peer, msg)

    def drop_stale_early(self) -> None:
        """Answers whose call never came (its caller died before sending it): their
        objects are stored as results nobody waits for (and freed); fetches for such
        calls are answered as they stand."""
        horizon = time.monotonic() - EARLY_WAIT
        for task_id, items in list(self.early_yields.items()):
            if items[0][0] < horizon:  # (their record never came: freed by on_yielded)
                self.take_early_yields(task_id)
        for task_id, (when, peer, fetch) in list(self.early_fetches.items()):
            if when < horizon:
                del self.early_fetches[task_id]
                self.on_fetch(peer, fetch._replace(for_call=0))
                peer.send(P.CallKnown(task_id))
        if not self.early:
            return
        for task_id, (when, peer, msg) in list(self.early.items()):
            if when < horizon:
                del self.early[task_id]
                self.handle_answer(peer, msg)
                self.objects.unpin(_contained(msg))

    def _timed(self, func_id: bytes, duration: float) -> None:
        if func_id:
            old = self.func_time.get(func_id)
            self.func_time[func_id] = duration if old is None else 0.8 * old + 0.2 * duration

    def store(self, oid: int, payload: P.Payload, contained: tuple[int, ...]) -> None:
        """An object's value (or error) arrived: to whoever waits, then to the scheduler."""
        peers = self.conns.peers
        for cid in self.objects.set(oid, payload, contained):
            peer = peers.get(cid)
            if peer is not None:
                peer.send(P.ObjectReady(oid, payload))
        self.producer.pop(oid, None)
        if self.objects.known(oid):
            self.run(self.sched.object_ready(oid, payload.kind != P.ERROR))
            if self.actors is not None:
                self.actors.object_ready(oid)

    def store_error(self, rec: TaskRecord, payload: P.Payload) -> None:
        """The task failed (or was cancelled): its every return object holds the error."""
        self.objects.discard_partial(rec.spec.return_ids)
        for oid in rec.spec.return_ids:
            self.store(oid, payload, ())
        state = "FAILED"
        with contextlib.suppress(Exception):
            err = pickle.loads(payload.data)
            if err.kind == "cancelled":
                state = "CANCELLED"
        self.end(rec, state, error=error_text(payload))

    def end(self, rec: TaskRecord, state: str, **extra: Any) -> None:
        if self.tasks.pop(rec.spec.task_id, None) is None:
            return
        for oid in rec.spec.return_ids:
            self.producer.pop(oid, None)
        self.objects.unpin(rec.spec.deps)
        self.objects.unpin(rec.spec.contained)
        if rec.spec.actor_id and self.actors is not None:
            self.actors.call_ended(rec.spec.actor_id, rec.spec.task_id)
        self.finished_count[state] = self.finished_count.get(state, 0) + 1
        self.bus.task_ended(rec, state, **extra)

    def do_fail_task(self, ins: S.FailTask) -> None:
        rec = self.tasks.get(ins.task_id)
        if rec is None:
            if self.leases is not None:
                self.leases.do_fail(ins)  # (a lease's)
            return
        if ins.kind == "dependency":
            payload = self.objects.ready(ins.dependency) or P.lost_payload(ins.dependency)
            self.store_error(rec, payload)
            return
        message = failure_message(rec.spec.name, ins)
        err = RemoteError(
            kind=ins.kind,
            message=message,
            function_name=rec.spec.name,
            task_id=f"{rec.spec.task_id:016x}",
            exit_code=ins.exit_code,
        )
        self.store_error(rec, P.Payload(P.ERROR, pickle.dumps(err)))

    def do_retry(self, ins: S.Retry) -> None:
        rec = self.tasks.get(ins.task_id)
        if rec is not None:
            self.objects.discard_partial(rec.spec.return_ids)
            self.bus.task_event(rec, "RETRYING", attempt=ins.attempt, reason=ins.reason)

    # --- generator tasks ------------------------------------------------------------------

    def on_yielded(self, peer: Peer, msg: P.Yielded) -> None:
        """A generator task yielded: the object is its caller's, who is told at once. A
        retried task yields again from the start: the yields already reported are dropped."""
        rec = self.tasks.get(msg.task_id)
        if rec is None and msg.direct:  # a direct call's: its record is on its way
            self.early_yields.setdefault(msg.task_id, []).append((time.monotonic(), peer, msg))
            self.objects.pin(msg.contained)
            return
        caller = self.conns.peers.get(rec.caller) if rec is not None else None
        if rec is None or caller is None or msg.seq < rec.yielded:
            self.objects.set(msg.object_id, msg.payload, ())  # nobody wants it: freed
            return
        rec.yielded = msg.seq + 1
        self.objects.create(msg.object_id, caller.conn_id)
        caller.holds.add(msg.object_id)
        self.store(msg.object_id, msg.payload, msg.contained)
        caller.send(
            P.StreamItem(
                rec.spec.return_ids[0], msg.seq, msg.object_id, msg.payload.kind == P.ERROR
            )
        )

    def on_stream_ack(self, peer: Peer, msg: P.StreamAck) -> None:
        """The caller consumed yields: tell the worker running the generator (backpressure)."""
        rec = self.tasks.get(self.producer.get(msg.completed, 0))
        if rec is None or msg.consumed <= rec.acked:
            return
        rec.acked = msg.consumed
        worker = self.conns.workers.get(rec.worker_id) if rec.worker_id else None
        if worker is not None:
            worker.send(msg)

    # --- cancelling, blocking, pipelining ------------------------------------------------

    def on_cancel(self, peer: Peer, msg: P.Cancel) -> None:
        tid = self.producer.get(msg.object_id)
        if tid is None:
            return
        rec = self.tasks.get(tid)
        if rec is not None and rec.spec.actor_id:
            return  # actor calls are not cancelled (as in Ray, for running calls)
        if rec is not None and rec.lease and self.leases is not None:
            self.leases.cancel(rec, msg.force)  # (the scheduler has its children only)
        self.run(self.sched.cancel(tid, msg.force, msg.recursive))

    def do_interrupt(self, ins: S.Interrupt) -> None:
        peer = self.conns.workers.get(ins.worker_id)
        if peer is not None:
            peer.send(P.CancelTask(ins.task_id))

    def do_unqueue(self, ins: S.Unqueue) -> None:
        peer = self.conns.workers.get(ins.worker_id)
        if peer is not None:
            peer.send(P.Unqueue(ins.task_ids))

    def on_unqueued(self, peer: Peer, msg: P.Unqueued) -> None:
        self.run(self.sched.unqueued(peer.worker_id, msg.task_ids))

    def on_retire(self, peer: Peer, msg: P.Retire) -> None:
        self.run(self.sched.worker_retiring(peer.worker_id))

    def on_blocked(self, peer: Peer, msg: P.Blocked) -> None:
        self.run(self.sched.worker_blocked(peer.worker_id))

    def on_unblocked(self, peer: Peer, msg: P.Unblocked) -> None:
        self.run(self.sched.worker_unblocked(peer.worker_id))

    def on_forget_function(self, peer: Peer, msg: P.ForgetFunction) -> None:
        peer.known_funcs.discard(msg.func_id)

    def on_output(self, peer: Peer, msg: P.Output) -> None:
        rec = self.tasks.get(msg.task_id)
        if rec is not None:
            owner = rec.owner
        elif msg.task_id >> 32 in self.conns.peers:
            owner = msg.task_id >> 32  # a direct call whose record is still on its way
        else:
            found = self.actors.owner_of_worker(peer.worker_id) if self.actors else None
            if found is None:
                return
            owner = found
        target = self.conns.peers.get(owner)
        if target is not None:
            target.send(msg._replace(pid=peer.pid))
        if self.bus.subscribers:  # watchers (the dashboard) see logs; nobody listens: no cost
            self.bus.publish(log_event(msg, peer.pid), history=False)

    # --- objects -------------------------------------------------------------------------

    def on_put(self, peer: Peer, msg: P.Put) -> None:
        peer.holds.add(msg.object_id)
        self.objects.set(msg.object_id, msg.payload, msg.contained, holder=peer.conn_id)

    def on_fetch(self, peer: Peer, msg: P.Fetch) -> None:
        if msg.for_call and msg.for_call not in self.tasks:  # its record is not here yet
            self.early_fetches[msg.for_call] = (time.monotonic(), peer, msg)
            return
        for oid in msg.object_ids:
            payload = self.objects.wait(oid, peer.conn_id)
            if payload is not None:
                peer.send(P.ObjectReady(oid, payload))
        if msg.for_call:
            peer.send(P.CallKnown(msg.for_call))

    def take_early_yields(self, task_id: int) -> None:
        """A direct generator call's record came: the items it yielded before go on."""
        early = self.early_yields.pop(task_id, None) if self.early_yields else None
        for _, peer, msg in early or ():
            self.on_yielded(peer, msg._replace(direct=False))
            self.objects.unpin(msg.contained)

    def take_early_fetch(self, task_id: int) -> None:
        """A direct call's record came: its worker's fetch of the arguments goes on."""
        early = self.early_fetches.pop(task_id, None) if self.early_fetches else None
        if early is not None:
            self.on_fetch(early[1], early[2])

    def on_add_hold(self, peer: Peer, msg: P.AddHold) -> None:
        for oid in msg.object_ids:
            if self.objects.add_hold(oid, peer.conn_id):
                peer.holds.add(oid)

    def on_release(self, peer: Peer, msg: P.Release) -> None:
        for oid in msg.object_ids:
            peer.holds.discard(oid)
            self.objects.release(oid, peer.conn_id)


def _contained(msg: P.TaskDone | P.TaskFailed) -> tuple[int, ...]:
    """The refs inside an answer's values."""
    if isinstance(msg, P.TaskDone):
        return tuple(ref for _, _, contained in msg.results for ref in contained)
    return ()
