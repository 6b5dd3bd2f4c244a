"""The head's worker leases: a client sends its tasks straight to a worker it leases, and
the head keeps the decisions, the records and the failures (Ray's direct task submission).

    client LeaseRequest ──▶ Scheduler.submit(lease=True): scheduled as a task, fairly
        among owners; Dispatch ──Leased(job)──▶ the worker (it listens, in the client's
        job) ──LeaseReady(address)──▶ LeaseGranted ──▶ the client
    client ──RunTask──▶ the worker ──TaskDone/TaskFailed──▶ the client; the head gets the
        client's record (Submit.lease, with its next message) and the worker's copy of
        the answer, in either order (TaskTable stashes an early answer)
    client LeaseReturn ──▶ once the tasks recorded on it are done: Scheduler.task_finished
        (the worker is the scheduler's again)
    work waits for a worker ──LeaseRevoke──▶ the holder returns the lease after its task
    the worker dies (or is killed: its client went, a task on it was force-cancelled)
        ──FailTask(lease)──▶ each task on it is retried through the head (max_retries) or
        fails as a task on a dead worker does; a record that comes later, the same

A lease holds its worker's resources while it lasts, so the scheduler's accounting,
fairness between owners, blocked workers lending their CPUs and the memory watchdog
treat it as the task it is in the scheduler. The client returns a lease it does not use.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from nbray._wire import protocol as P

from . import instructions as S
from .head_records import TaskRecord
from .peers import Connections, Peer
from .scheduler import Scheduler
from .supervisor import Supervisor

if TYPE_CHECKING:
    from .tasks import TaskTable

__all__ = ["Lease", "LeaseTable"]

ENDED_HISTORY = 1000  # how many ended leases keep why they ended (for late records)


class Lease:
    __slots__ = ("lease_id", "owner", "resources", "returning", "revoked", "tasks", "worker_id")

    def __init__(self, lease_id: int, owner: int, resources: dict[str, float]) -> None:
        self.lease_id = lease_id
        self.owner = owner  # the client's connection id
        self.resources = resources
        self.worker_id = 0  # the worker it holds, once dispatched
        self.tasks: set[int] = set()  # tasks recorded on it and not ended
        self.returning = False  # the client gave it back: ends once its tasks are done
        self.revoked = False  # the client was asked to give it back


class LeaseTable:
    """Live leases by id; handles the lease messages, and the tasks sent on leases."""

    def __init__(
        self,
        sched: Scheduler,
        run: Callable[[list[Any]], None],
        conns: Connections,
        supervisor: Supervisor,
        tasks: TaskTable,
    ) -> None:
        self.sched = sched
        self.run = run
        self.conns = conns
        self.supervisor = supervisor
        self.tasks = tasks
        self.leases: dict[int, Lease] = {}
        self.by_worker: dict[int, Lease] = {}  # leased workers (dispatched leases)
        # leases whose worker died: why, for the records of tasks on them that come later
        self.ended: dict[int, S.FailTask] = {}

    # --- the lease's life ----------------------------------------------------------------

    def on_request(self, peer: Peer, msg: P.LeaseRequest) -> None:
        if peer.role == "worker" or msg.lease_id in self.leases:
            return  # (only drivers lease: a worker's nested tasks go through the head)
        resources = dict(msg.resources)
        self.leases[msg.lease_id] = Lease(msg.lease_id, peer.conn_id, resources)
        self.run(
            self.sched.submit(msg.lease_id, "lease", resources, 0, peer.conn_id, set(), lease=True)
        )
        if msg.lease_id in self.leases and self.sched.ready:
            self.work_waits()

    def do_dispatch(self, ins: S.Dispatch) -> bool:
        """The scheduler gave a lease its worker (False: ``ins`` is not a lease's)."""
        lease = self.leases.get(ins.task_id)
        if lease is None:
            return False
        worker = self.conns.workers.get(ins.worker_id)
        if worker is None:  # raced with its death: the scheduler will be told
            return True
        lease.worker_id = ins.worker_id
        self.by_worker[ins.worker_id] = lease
        self.supervisor.dispatched(ins.worker_id)
        worker.send(P.Leased(lease.lease_id, self.tasks.job_for(worker, lease.owner)))
        return True

    def on_ready(self, peer: Peer, msg: P.LeaseReady) -> None:
        """The worker listens, in the client's job: the client may send it tasks."""
        lease = self.leases.get(msg.lease_id)
        if lease is None or lease.worker_id != peer.worker_id:
            return
        if lease.returning:
            self._end_if_done(lease)
            return
        owner = self.conns.peers.get(lease.owner)
        if owner is not None:  # (no address: the worker could not listen; the client returns it)
            owner.send(P.LeaseGranted(lease.lease_id, peer.worker_id, msg.address))

    def on_return(self, peer: Peer, msg: P.LeaseReturn) -> None:
        lease = self.leases.get(msg.lease_id)
        if lease is None or lease.owner != peer.conn_id:
            return
        lease.returning = True
        if lease.worker_id:
            self._end_if_done(lease)
        else:  # still waiting for a worker: it never gets one
            self.run(self.sched.cancel(lease.lease_id, False, False))

    def _end_if_done(self, lease: Lease) -> None:
        if lease.returning and not lease.tasks and lease.worker_id:
            self._drop(lease)
            self.run(self.sched.task_finished(lease.lease_id, True))

    def _drop(self, lease: Lease) -> None:
        self.leases.pop(lease.lease_id, None)
        if self.by_worker.get(lease.worker_id) is lease:
            del self.by_worker[lease.worker_id]

    def do_fail(self, ins: S.FailTask) -> bool:
        """The lease ended without being returned: it could not be scheduled, it was
        cancelled before it had a worker, or its worker died (False: not a lease's)."""
        lease = self.leases.get(ins.task_id)
        if lease is None:
            return False
        self._drop(lease)
        if lease.worker_id:
            self.ended[lease.lease_id] = ins
            while len(self.ended) > ENDED_HISTORY:
                self.ended.pop(next(iter(self.ended)))
        for task_id in sorted(lease.tasks):
            self.task_lost(task_id, ins)
        owner = self.conns.peers.get(lease.owner)
        if owner is not None and not lease.returning:
            owner.send(P.LeaseRevoke(lease.lease_id))  # (it forgets the lease)
        return True

    def work_waits(self) -> None:
        """Work waits for a worker (another owner's, or the lease holder's own run of
        tasks through the head): the leases whose resources would let it run go back once
        their task is done. (Checked after each submit and lease request, and at the
        head's tick for work that became ready otherwise.)"""
        for lease in self.by_worker.values():
            if (
                not lease.revoked
                and not lease.returning
                and self.sched.ready_fits_with(lease.resources)
            ):
                lease.revoked = True
                peer = self.conns.peers.get(lease.owner)
                if peer is not None:
                    peer.send(P.LeaseRevoke(lease.lease_id))

    def holder(self, worker_id: int) -> int | None:
        """The client that leases this worker (None: none does)."""
        lease = self.by_worker.get(worker_id) if self.by_worker else None
        return lease.owner if lease is not None else None

    # --- the tasks sent on leases --------------------------------------------------------

    def on_task(self, rec: TaskRecord, lease_id: int) -> None:
        """A task's record: its client sent it on this lease (its answer may be here)."""
        task_id = rec.spec.task_id
        lease = self.leases.get(lease_id)
        tasks = self.tasks
        if lease is not None and lease.worker_id:
            rec.lease = lease_id
            rec.worker_id = lease.worker_id
            lease.tasks.add(task_id)
            worker = self.conns.workers.get(lease.worker_id)
            tasks.bus.task_event(
                rec, "RUNNING", worker_id=lease.worker_id, pid=worker.pid if worker else 0
            )
            tasks.take_early(task_id)
            return
        if tasks.has_early(task_id):  # answered before its worker died: (a retriable
            rec.lease = lease_id  # failure is retried as on a live lease)
            tasks.take_early(task_id)
            return
        why = self.ended.get(lease_id) or S.FailTask(
            lease_id, "worker_crashed", "its leased worker was gone"
        )
        self.task_lost(task_id, why)

    def task_ended(self, rec: TaskRecord) -> None:
        """A task sent on a lease ended (answered, or failed for good)."""
        lease = self.leases.get(rec.lease)
        rec.lease = 0
        if lease is not None:
            lease.tasks.discard(rec.spec.task_id)
            self._end_if_done(lease)

    def task_lost(self, task_id: int, why: S.FailTask) -> None:
        """The task's worker died with the task on it: retried through the head while
        ``max_retries`` allow, else it fails as a task on a dead worker does."""
        tasks = self.tasks
        rec = tasks.tasks.get(task_id)
        if rec is None:
            return
        rec.lease = 0
        spec = rec.spec
        if rec.cancelled or rec.owner not in self.conns.peers:
            tasks.do_fail_task(S.FailTask(task_id, "cancelled", "the task was cancelled"))
        elif spec.max_retries != 0:
            tasks.retry_through_head(rec, "its leased worker died")
        else:
            kind = "worker_crashed" if why.kind == "cancelled" else why.kind
            tasks.do_fail_task(why._replace(task_id=task_id, kind=kind))

    def cancel(self, rec: TaskRecord, force: bool) -> None:
        """``nbray.cancel`` of a task on a lease: interrupted on its worker, or (``force``)
        the worker is killed (its lease ends, the task fails as cancelled)."""
        rec.cancelled = True
        if force:
            self.run(self.sched.cancel(rec.lease, True, False))
            return
        worker = self.conns.workers.get(rec.worker_id)
        if worker is not None:
            worker.send(P.CancelTask(rec.spec.task_id))
