"""The scheduler: a pure state machine that decides, and never does I/O.

    head ──event method call (submit, object_ready, worker_started, worker_died, ...)──▶
    Scheduler ──list of instructions (SpawnWorker, Dispatch, FailTask, ...)──▶ head executes

It owns task states, the worker pool and actor placement/restarts; the amounts (CPU, GPU
ids, custom resources, CPUs lent by blocked tasks) live in its ``ResourcePool``
(resources.py). It knows nothing of sockets, payloads or processes, so its tests feed
events and compare instructions without starting anything.

Rules, following Ray:

- a task waits until every ObjectRef argument exists, then until its resources fit and a
  pool worker is idle; pool workers are spawned on demand, resources bound their number;
- a worker that dies mid-task: the task is retried while ``attempts <= max_retries``
  (``-1``: forever), else it fails with ``worker_crashed``; cancelled tasks never retry;
- a worker blocked in ``get`` lends its CPUs back, so nested tasks cannot deadlock; tasks
  submitted by tasks go to the front of the queue (depth-first), so deep fan-out finishes
  started work instead of blocking a new worker per level and branch;
- an actor owns a dedicated worker; it is restarted up to ``max_restarts`` times, and
  calls in flight when it died are retried up to ``max_task_retries`` times, in order.
"""

from __future__ import annotations

import contextlib
from collections import deque

from .fair_queue import FairQueue
from .instructions import (
    ActorStateChanged,
    BusyWorker,
    DeathCause,
    Dispatch,
    DispatchCall,
    FailCall,
    FailTask,
    GroupStateChanged,
    Instruction,
    Interrupt,
    KillWorker,
    Retry,
    SpawnWorker,
    StartActor,
    Unqueue,
)
from .invariants import scheduler_problems
from .placement import Group
from .placement import problem as placement_problem
from .resources import ResourcePool, Shape, normalize, pool_size, shape_of
from .sched_records import Actor as _Actor
from .sched_records import Task as _Task
from .sched_records import Worker as _Worker
from .states import (
    ACTOR,
    ALIVE,
    BUSY,
    DEAD,
    IDLE,
    PENDING,
    READY,
    RESTARTING,
    RUNNING,
    STARTING,
    WAITING,
    WorkerState,
)

__all__ = [
    "ActorStateChanged",
    "BusyWorker",
    "DeathCause",
    "Dispatch",
    "DispatchCall",
    "FailCall",
    "FailTask",
    "Instruction",
    "Interrupt",
    "KillWorker",
    "Retry",
    "Scheduler",
    "SpawnWorker",
    "StartActor",
    "Unqueue",
]

# --- state ------------------------------------------------------------------------------

MAX_STARTUP_FAILURES = 5
ENV_IDLE_TRIMS = 10  # a runtime_env worker idle this many trims (~1 s each) is stopped
SCAN_LIMIT = 64  # tasks looked past per pass when the head of the queue does not fit


class Scheduler:
    """Decides what runs where. Every public method returns the instructions to carry out."""

    def __init__(
        self,
        resources: dict[str, float],
        gpu_ids: list[int] | None = None,
        max_workers: int = 256,
        pipeline_depth: int = 1,
    ) -> None:
        self.pool = ResourcePool(resources, gpu_ids)
        self.pool_size = pool_size(self.pool.total)
        self.max_workers = max_workers
        # short tasks may queue on a busy worker (behind one of the same resource shape),
        # up to this many per worker, so the worker never waits for the head between them
        self.pipeline_depth = pipeline_depth
        self.workers: dict[int, _Worker] = {}
        self.tasks: dict[int, _Task] = {}
        self.actors: dict[int, _Actor] = {}
        # ready tasks, one queue per owner, served fairly (fair_queue.py)
        self.ready = FairQueue(self.running_by_owner)
        # (runtime_env, resource shape) -> how many ready tasks have it
        self.ready_shapes: dict[tuple[str, Shape], int] = {}
        self.idle: list[int] = []
        self.waiting_on: dict[int, set[int]] = {}  # object id -> tasks waiting for it
        self.children: dict[int, set[int]] = {}
        self.pending_actors: deque[int] = deque()
        self._next_worker = 1
        self._startup_failures = 0
        self._idle_env: dict[int, int] = {}  # runtime_env worker -> trims it was idle at
        self.groups: dict[int, Group] = {}  # placement groups, pending or reserved
        self.pending_groups: deque[int] = deque()

    @property
    def total(self) -> dict[str, float]:
        return self.pool.total

    @property
    def available(self) -> dict[str, float]:
        return self.pool.available

    @property
    def gpu_free(self) -> dict[int, float]:
        return self.pool.gpu_free

    # --- pool --------------------------------------------------------------------------

    def start(self) -> list[Instruction]:
        """Pre-warm one pool worker per CPU."""
        return [self._spawn() for _ in range(self.pool_size)]

    def _spawn(self, actor_id: int = 0, env: str = "") -> SpawnWorker:
        wid = self._next_worker
        self._next_worker += 1
        self.workers[wid] = _Worker(wid, actor_id=actor_id, env=env)
        return SpawnWorker(wid, actor_id, env)

    def worker_started(self, worker_id: int) -> list[Instruction]:
        w = self.workers.get(worker_id)
        if w is None or w.state != STARTING:
            return []
        self._startup_failures = 0
        out: list[Instruction] = []
        if w.actor_id:
            actor = self.actors.get(w.actor_id)
            if actor is None or actor.state == DEAD:
                w.killed = True
                return [KillWorker(worker_id)]
            w.state = ACTOR
            actor.worker_id = worker_id
            actor.state = ALIVE
            out.append(StartActor(worker_id, actor.actor_id, actor.gpu_ids))
            out.append(ActorStateChanged(actor.actor_id, ALIVE))
            while actor.queue:
                out.append(self._dispatch_call(actor, actor.queue.popleft()))
            return out
        w.state = IDLE
        self.idle.append(worker_id)
        self._schedule(out)
        return out

    def trim(self) -> list[Instruction]:
        """Stop idle pool workers beyond one per CPU and one per GPU (a worker serves one
        GPU assignment), and runtime_env workers idle at the last ``ENV_IDLE_TRIMS`` calls
        (call every second or so)."""
        out: list[Instruction] = []
        keep = self.pool_size + len(self.pool.gpu_free)
        alive = sum(
            1 for w in self.workers.values() if not w.actor_id and w.state != DEAD and not w.env
        )
        still_idle: dict[int, int] = {}
        for wid in list(self.idle):
            w = self.workers[wid]
            if w.env and self._idle_env.get(wid, 0) < ENV_IDLE_TRIMS:
                still_idle[wid] = self._idle_env.get(wid, 0) + 1
                continue
            if not w.env:
                if alive <= keep:
                    continue
                alive -= 1
            self.idle.remove(wid)
            w.killed = True
            w.state = DEAD
            out.append(KillWorker(wid))
        self._idle_env = still_idle
        return out

    def worker_died(
        self, worker_id: int, exit_code: int | None, cause: DeathCause | None = None
    ) -> list[Instruction]:
        """Worker ``worker_id`` exited. ``cause`` is set when the head killed it on purpose
        (its memory monitor, or a hung worker), so the error says why."""
        w = self.workers.pop(worker_id, None)
        if w is None:
            return []
        out: list[Instruction] = []
        if worker_id in self.idle:
            self.idle.remove(worker_id)
        if w.state == STARTING and not w.killed:
            self._startup_failures += 1
        if w.actor_id:
            self._actor_worker_died(w, exit_code, out, cause)
        elif w.task_id or w.queued:
            # queued tasks stay even when the current one ended first (a killed worker
            # takes no more work, so none took over)
            self._requeue(w, list(w.queued), out)
            t = self.tasks.get(w.task_id)
            if t is not None and t.state == RUNNING:
                self._release(t)
                self._give_back_lent(w)
                self._task_lost(t, exit_code, out, cause)
        if self._startup_failures >= MAX_STARTUP_FAILURES:
            self._fail_ready(out, f"{MAX_STARTUP_FAILURES} workers in a row died at start-up")
        else:
            self._refill_pool(out)
        self._schedule(out)
        return out

    def _requeue(self, w: _Worker, task_ids: list[int], out: list[Instruction]) -> None:
        """Tasks pipelined on ``w`` that never started go back to the front of the queue."""
        for tid in reversed(task_ids):
            with contextlib.suppress(ValueError):
                w.queued.remove(tid)
            t = self.tasks.get(tid)
            if t is None or t.state != RUNNING or t.worker_id != w.worker_id:
                continue
            t.attempts -= 1
            t.worker_id = 0
            if t.cancelled:
                self._finish(t)
                out.append(FailTask(tid, "cancelled", "the task was cancelled before it ran"))
                continue
            t.state = READY
            self._ready_push(t, left=True)

    def unqueued(self, worker_id: int, task_ids: tuple[int, ...]) -> list[Instruction]:
        """The worker gave back these pipelined tasks (after an Unqueue): run them elsewhere.
        None of them started, not even one that already took over as the current task here
        (the result of the task before it can arrive before this answer)."""
        w = self.workers.get(worker_id)
        out: list[Instruction] = []
        if w is None:
            return out
        current = self.tasks.get(w.task_id)
        if current is not None and w.task_id in task_ids:
            w.queued.appendleft(w.task_id)  # it was only queued: the worker is past it
            self._requeue(w, [t for t in task_ids if t in w.queued], out)
            self._current_ended(w, current)
        else:
            self._requeue(w, [t for t in task_ids if t in w.queued], out)
        for tid in task_ids:
            t = self.tasks.get(tid)
            if t is not None and t.state == READY:
                # not pipelined again: behind another task that blocks it would be given back
                # again, and again (a livelock); it waits for a worker of its own
                t.short = False
        self._schedule(out)
        return out

    def worker_retiring(self, worker_id: int) -> list[Instruction]:
        """The worker exits on its own (``max_calls``), after reporting every task it ran:
        its current and pipelined tasks never started there; they run elsewhere, and it
        takes no more work (its exit is then an ordinary death with nothing lost)."""
        w = self.workers.get(worker_id)
        out: list[Instruction] = []
        if w is None or w.actor_id or w.state == DEAD:
            return out
        w.killed = True
        current = self.tasks.get(w.task_id)
        if current is not None:
            w.queued.appendleft(w.task_id)
            self._requeue(w, list(w.queued), out)
            self._current_ended(w, current)
        else:
            self._requeue(w, list(w.queued), out)
        if worker_id in self.idle:
            self.idle.remove(worker_id)
        w.state = DEAD
        self._refill_pool(out)
        self._schedule(out)
        return out

    def _current_ended(self, w: _Worker, t: _Task) -> None:
        """``t``, the current task of ``w``, is over: the next pipelined task takes over its
        resources, or they are released and the worker is idle."""
        self._give_back_lent(w)
        if w.queued and not w.killed:
            w.task_id = w.queued.popleft()
            return
        self._release(t)
        w.task_id = 0
        if w.state == BUSY and not w.killed:  # a killed worker takes no more work
            w.state = IDLE
            self.idle.append(w.worker_id)

    def _refill_pool(self, out: list[Instruction]) -> None:
        alive = sum(
            1 for w in self.workers.values() if not w.actor_id and w.state != DEAD and not w.env
        )
        for _ in range(self.pool_size - alive):
            out.append(self._spawn())

    def _give_back_lent(self, w: _Worker) -> None:
        """The worker's task no longer waits (it woke up, ended or died)."""
        w.blocked = False
        if w.lent_cpus:
            self.pool.reclaim(w.lent_cpus)
            w.lent_cpus = 0.0

    def _task_lost(
        self, t: _Task, exit_code: int | None, out: list[Instruction], cause: DeathCause | None
    ) -> None:
        if t.cancelled:
            self._finish(t)
            out.append(FailTask(t.task_id, "cancelled", "the task was cancelled"))
        elif t.max_retries < 0 or t.attempts <= t.max_retries:
            t.state = READY
            t.worker_id = 0
            self._ready_push(t, left=True)
            reason = cause.text if cause else f"worker died (exit code {exit_code})"
            out.append(Retry(t.task_id, t.attempts + 1, reason))
        else:
            self._finish(t)
            out.append(
                FailTask(
                    t.task_id,
                    cause.kind if cause else "worker_crashed",
                    f"after {t.attempts} attempt(s)",
                    exit_code=exit_code,
                    cause=cause.text if cause else "",
                )
            )

    def _fail_ready(self, out: list[Instruction], why: str) -> None:
        while self.ready:
            t = self._ready_pop()
            self._finish(t)
            out.append(FailTask(t.task_id, "worker_crashed", why))

    # --- tasks -------------------------------------------------------------------------

    def submit(
        self,
        task_id: int,
        name: str,
        resources: dict[str, float],
        max_retries: int,
        owner: int,
        unready_deps: set[int],
        parent: int = 0,
        short: bool = False,
        runtime_env: str = "",
        placement: tuple[int, int] | None = None,
        lease: bool = False,
    ) -> list[Instruction]:
        """A new task; ``unready_deps`` are its ObjectRef arguments that do not exist yet.
        A task with a ``runtime_env`` runs only on a worker started for that env; one with a
        ``placement`` (group, bundle index or -1) only inside that bundle's reservation. A
        ``lease`` is scheduled as a task, and holds its worker until it finishes (the
        client returns it): nothing is pipelined behind it."""
        resources = normalize(resources)
        if placement is not None:
            kind, problem = self._placement_problem(placement, resources)
            if problem:
                return [FailTask(task_id, kind, f"task {name} {problem}")]
        else:
            problem = self.pool.infeasible(resources)
            if problem:
                return [FailTask(task_id, "unschedulable", f"task {name} {problem}")]
        t = _Task(task_id, name, resources, max_retries, owner, parent, set(unready_deps))
        # a task in a bundle is not pipelined, and counts as fitting when a worker is due
        t.shape = shape_of(resources) if placement is None else ()
        t.short = short and "GPU" not in resources and placement is None
        t.env = runtime_env
        t.placement = placement
        t.lease = lease
        self.tasks[task_id] = t
        if parent:
            self.children.setdefault(parent, set()).add(task_id)
        out: list[Instruction] = []
        if t.deps:
            for dep in t.deps:
                self.waiting_on.setdefault(dep, set()).add(task_id)
        else:
            t.state = READY
            # a task's children go first (depth-first), so nested fan-out finishes the work
            # already started instead of blocking ever more workers breadth-first
            self._ready_push(t, left=bool(parent))
            if self.idle or self.pool.fits_now(t.shape):
                self._schedule(out)
            else:  # nothing changed for the tasks already waiting: only this one is new
                self._pipeline(out)
        return out

    def object_ready(self, object_id: int, ok: bool = True) -> list[Instruction]:
        """An object now exists (``ok``) or failed; tasks waiting on it move on."""
        waiting = self.waiting_on.pop(object_id, None)
        if not waiting:
            return []
        out: list[Instruction] = []
        for tid in sorted(waiting):
            t = self.tasks.get(tid)
            if t is None or t.state != WAITING:
                continue
            if not ok:
                self._finish(t)
                out.append(FailTask(tid, "dependency", dependency=object_id))
                continue
            t.deps.discard(object_id)
            if not t.deps:
                t.state = READY
                self._ready_push(t)
        self._schedule(out)
        return out

    def task_finished(self, task_id: int, ok: bool, retriable: bool = False) -> list[Instruction]:
        """The task's worker reported success or an exception (``retriable`` if it matches
        ``retry_exceptions``)."""
        t = self.tasks.get(task_id)
        if t is None or t.state != RUNNING:
            return []
        out: list[Instruction] = []
        w = self.workers.get(t.worker_id)
        if w is not None and task_id in w.queued:  # dropped before it started (cancelled)
            w.queued.remove(task_id)
        elif w is not None:
            self._current_ended(w, t)
        else:
            self._release(t)
        if (
            not ok
            and retriable
            and not t.cancelled
            and (t.max_retries < 0 or t.attempts <= t.max_retries)
        ):
            t.state = READY
            t.worker_id = 0
            self._ready_push(t, left=True)
            out.append(Retry(task_id, t.attempts + 1, "the task raised a retriable exception"))
        else:
            self._finish(t)
        self._schedule(out)
        return out

    def worker_blocked(self, worker_id: int) -> list[Instruction]:
        """A worker waits in ``get``/``wait``: lend its CPUs to other tasks."""
        w = self.workers.get(worker_id)
        out: list[Instruction] = []
        if w is None or w.blocked or w.state != BUSY:
            return out
        w.blocked = True
        t = self.tasks.get(w.task_id)
        cpus = t.resources.get("CPU", 0.0) if t else 0.0
        if cpus:
            w.lent_cpus = cpus
            self.pool.lend(cpus)
        if w.queued:  # they could wait forever behind the blocked task: take them back
            out.append(Unqueue(worker_id, tuple(w.queued)))
        self._schedule(out)
        return out

    def worker_unblocked(self, worker_id: int) -> list[Instruction]:
        w = self.workers.get(worker_id)
        if w is not None:
            self._give_back_lent(w)
        return []

    def cancel(self, task_id: int, force: bool, recursive: bool = True) -> list[Instruction]:
        out: list[Instruction] = []
        self._cancel(task_id, force, recursive, out)
        self._schedule(out)
        return out

    def _cancel(self, task_id: int, force: bool, recursive: bool, out: list[Instruction]) -> None:
        t = self.tasks.get(task_id)
        if recursive:
            for child in sorted(self.children.get(task_id, ())):
                self._cancel(child, force, recursive, out)
        if t is None or t.cancelled:
            return
        t.cancelled = True
        w = self.workers.get(t.worker_id) if t.state == RUNNING else None
        if w is not None and task_id in w.queued:  # not started: the worker drops it
            out.append(Interrupt(t.worker_id, task_id))
            return
        if t.state == RUNNING:
            if force:
                w = self.workers.get(t.worker_id)
                if w is not None:
                    w.killed = True
                out.append(KillWorker(t.worker_id))
            else:
                out.append(Interrupt(t.worker_id, task_id))
            return
        if t.state == READY:
            self.ready.remove(t.owner, task_id)
            self._shape_count((t.env, t.shape), -1)
        self._finish(t)
        out.append(FailTask(task_id, "cancelled", "the task was cancelled before it ran"))

    def owner_gone(self, owner: int) -> list[Instruction]:
        """A client disconnected: cancel its tasks and kill its non-detached actors."""
        out: list[Instruction] = []
        for tid in [tid for tid, t in self.tasks.items() if t.owner == owner]:
            self._cancel(tid, True, True, out)
        for actor in list(self.actors.values()):
            if actor.owner == owner and not actor.detached:
                out.extend(self.kill_actor(actor.actor_id, no_restart=True))
        for group in list(self.groups.values()):
            if group.owner == owner and not group.detached:
                out.extend(self.remove_placement_group(group.group_id))
        self._schedule(out)
        return out

    def _finish(self, t: _Task) -> None:
        self.tasks.pop(t.task_id, None)
        for dep in t.deps:
            waiting = self.waiting_on.get(dep)
            if waiting is not None:
                waiting.discard(t.task_id)
                if not waiting:
                    del self.waiting_on[dep]
        self.children.pop(t.task_id, None)
        if t.parent:
            siblings = self.children.get(t.parent)
            if siblings is not None:
                siblings.discard(t.task_id)
                if not siblings:  # (a parent the scheduler never had: a task on a lease)
                    del self.children[t.parent]

    def _ready_push(self, t: _Task, left: bool = False) -> None:
        self.ready.push(t.owner, t.task_id, left)
        self._shape_count((t.env, t.shape), +1)

    def _ready_pop(self) -> _Task:
        t = self.tasks[self.ready.pop()]
        self._shape_count((t.env, t.shape), -1)
        return t

    def _unskip(self, skipped: list[int]) -> None:
        """Tasks ``_schedule`` looked past go back ahead of their owners' queues."""
        if skipped:
            self.ready.push_back_front([(self.tasks[tid].owner, tid) for tid in skipped])

    def running_by_owner(self) -> dict[int, int]:
        """How many tasks each owner runs now (the fair queue asks only while several
        owners wait; the status view for each kernel's share)."""
        running: dict[int, int] = {}
        tasks = self.tasks
        for w in self.workers.values():
            if w.state == BUSY and w.task_id:
                for tid in (w.task_id, *w.queued):
                    t = tasks.get(tid)
                    if t is not None:
                        running[t.owner] = running.get(t.owner, 0) + 1
        return running

    def ready_fits_with(self, resources: dict[str, float]) -> bool:
        """Whether a ready task (or lease) would fit if ``resources`` were free too: a
        lease holding them is asked back then."""
        avail = self.pool.available
        for _, shape in self.ready_shapes:
            if all(avail.get(k, 0.0) + resources.get(k, 0.0) + 1e-9 >= v for k, v in shape):
                return True
        return False

    def _shape_count(self, shape: tuple[str, Shape], delta: int) -> None:
        n = self.ready_shapes.get(shape, 0) + delta
        if n:
            self.ready_shapes[shape] = n
        else:
            self.ready_shapes.pop(shape, None)

    def _schedule(self, out: list[Instruction]) -> None:
        if self.pending_groups:
            self._place_pending_groups(out)
        self._place_pending_actors(out)
        if not self.ready:
            return
        if not self.idle:
            self._pipeline(out)
            self._maybe_spawn(out)
            return
        if not self.groups and not self.pool.any_fits(shape for _, shape in self.ready_shapes):
            return  # nothing ready fits in the free resources: no need to look at each task
        skipped: list[int] = []
        no_worker = False  # a task fits but no idle worker has its runtime_env
        while self.ready:
            if not self.idle:  # the last idle worker was taken: queue behind busy ones
                self._unskip(skipped)
                skipped = []
                self._pipeline(out)
                self._maybe_spawn(out)
                break
            tid = self.ready.peek()
            t = self.tasks[tid]
            if not self._fits(t):
                skipped.append(self.ready.pop())
                if len(skipped) >= SCAN_LIMIT:
                    break
                continue
            t.gpu_ids = self._acquire(t)
            wid = self._take_idle(t.env, t.gpu_ids)
            if not wid:
                self._release(t)
                t.gpu_ids = ()
                no_worker = True
                skipped.append(self.ready.pop())
                if len(skipped) >= SCAN_LIMIT:
                    break
                continue
            self._ready_pop()
            w = self.workers[wid]
            w.state = BUSY
            w.task_id = tid
            w.gpus = t.gpu_ids
            t.state = RUNNING
            t.worker_id = wid
            t.attempts += 1
            out.append(Dispatch(wid, tid, t.gpu_ids))
        self._unskip(skipped)
        if no_worker:
            self._maybe_spawn(out)

    def _take_idle(self, env: str, gpu_ids: tuple[int, ...]) -> int:
        """An idle worker started for ``env`` that served these GPU ids (``()``: CPU tasks)
        before, the most recently idle; else one that has run nothing yet. Taken; 0 if
        none."""
        idle = self.idle
        fresh = -1
        for i in range(len(idle) - 1, -1, -1):
            w = self.workers[idle[i]]
            if w.env == env:
                if w.gpus == gpu_ids:
                    fresh = i
                    break
                if w.gpus is None and fresh < 0:
                    fresh = i
        if fresh < 0:
            return 0
        wid = idle.pop(fresh)
        self._idle_env.pop(wid, None)
        return wid

    def _pipeline(self, out: list[Instruction]) -> None:
        """Queue short ready tasks on busy workers running a task of the same shape (not a
        lease: its worker runs only its client's tasks)."""
        if self.pipeline_depth <= 1:
            return
        while self.ready:
            t = self.tasks[self.ready.peek()]
            if not t.short:
                return
            best: _Worker | None = None
            for w in self.workers.values():
                if (
                    w.state == BUSY
                    and not w.killed
                    and not w.blocked
                    and len(w.queued) < self.pipeline_depth - 1
                    and (best is None or len(w.queued) < len(best.queued))
                ):
                    current = self.tasks.get(w.task_id)
                    if (
                        current is not None
                        and not current.lease
                        and current.shape == t.shape
                        and current.env == t.env
                        and not current.gpu_ids
                    ):
                        best = w
            if best is None:
                return
            self._ready_pop()
            best.queued.append(t.task_id)
            t.state = RUNNING
            t.worker_id = best.worker_id
            t.attempts += 1
            out.append(Dispatch(best.worker_id, t.task_id, ()))

    def _maybe_spawn(self, out: list[Instruction]) -> None:
        """No idle worker (of a ready task's runtime_env): start one if ready tasks fit in
        the free resources."""
        if not self.pool.any_fits(shape for _, shape in self.ready_shapes):
            return  # the usual case under load: every CPU is taken
        for env in sorted({env for env, _ in self.ready_shapes}):
            shapes = {sh: n for (e, sh), n in self.ready_shapes.items() if e == env}
            starting = sum(
                1
                for w in self.workers.values()
                if w.state == STARTING and not w.actor_id and w.env == env
            )
            if starting < self.pool.count_fitting(shapes, starting + 1):
                alive = sum(1 for w in self.workers.values() if w.state != DEAD)
                # as Ray's worker pool, idle workers that cannot serve the task make room
                # (more than one when the pool was refilled over the cap meanwhile)
                while alive >= self.max_workers and self._stop_idle_for(env, out):
                    alive -= 1
                if alive < self.max_workers:
                    out.append(self._spawn(env=env))

    def _stop_idle_for(self, env: str, out: list[Instruction]) -> bool:
        """At the worker cap, stop one idle worker to make room for a worker of ``env``,
        the longest idle first among: one of another runtime_env; else one of ``env``
        itself, idle beside its ready tasks only because its GPU assignment fits none of
        them; else a pool worker (the pool starts another later). A pool worker last: the
        pool's refill would take the room again, and with idle workers of ``env`` that
        cannot serve its task, the two would take turns forever."""
        best: _Worker | None = None
        best_rank = 3
        for wid in self.idle:
            w = self.workers[wid]
            if w.env != env and w.env:
                rank = 0
            elif w.env == env and w.gpus is not None:
                rank = 1
            elif w.env != env:
                rank = 2
            else:
                continue
            if rank < best_rank:
                best, best_rank = w, rank
        if best is None:
            return False
        self.idle.remove(best.worker_id)
        self._idle_env.pop(best.worker_id, None)
        best.killed = True
        best.state = DEAD
        out.append(KillWorker(best.worker_id))
        return True

    # --- where a task or actor takes its resources from -----------------------------------

    def _fits(self, item: _Task | _Actor) -> bool:
        if item.placement is None:
            return self.pool.fits(item.resources)
        group = self.groups.get(item.placement[0])
        return group is not None and group.bundle_for(item.placement[1], item.resources) >= 0

    def _acquire(self, item: _Task | _Actor) -> tuple[int, ...]:
        """Take ``item``'s resources (``_fits`` said yes): from its bundle, else the node."""
        if item.placement is None:
            return self.pool.acquire(item.resources)
        group = self.groups[item.placement[0]]
        item.bundle = group.bundle_for(item.placement[1], item.resources)
        return group.pools[item.bundle].acquire(item.resources)

    def _release(self, item: _Task | _Actor) -> None:
        if item.placement is None:
            self.pool.release(item.resources, item.gpu_ids)
            return
        group = self.groups.get(item.placement[0])
        if group is not None and group.state == "CREATED" and item.bundle >= 0:
            group.pools[item.bundle].release(item.resources, item.gpu_ids)
        # else the group was removed: the whole reservation went back to the node already
        item.bundle = -1

    # --- placement groups ----------------------------------------------------------------

    def placement_group_problem(self, bundles: list[dict[str, float]], strategy: str) -> str:
        """Why this group could never be placed on this node ("" when it can)."""
        return placement_problem(bundles, strategy, self.pool)

    def create_placement_group(
        self,
        group_id: int,
        name: str,
        bundles: list[dict[str, float]],
        strategy: str,
        owner: int,
        detached: bool = False,
    ) -> list[Instruction]:
        """Reserve the bundles as soon as they all fit (call ``placement_group_problem``
        first: a group that can never be placed is refused there)."""
        self.groups[group_id] = Group(group_id, name, bundles, strategy, owner, detached)
        self.pending_groups.append(group_id)
        out: list[Instruction] = []
        self._schedule(out)
        return out

    def _place_pending_groups(self, out: list[Instruction]) -> None:
        while self.pending_groups:  # in creation order, as Ray places them
            group = self.groups.get(self.pending_groups[0])
            if group is not None and not group.reserve(self.pool):
                return
            self.pending_groups.popleft()
            if group is not None:
                out.append(GroupStateChanged(group.group_id, "CREATED"))

    def _placement_problem(
        self, placement: tuple[int, int], resources: dict[str, float]
    ) -> tuple[str, str]:
        group = self.groups.get(placement[0])
        if group is None:
            return "pg_removed", "was scheduled in a placement group that was removed"
        return "unschedulable", group.request_problem(placement[1], resources)

    def remove_placement_group(self, group_id: int, reason: str = "") -> list[Instruction]:
        """Free the group's reservation; its tasks fail (running ones are killed) and its
        actors die, as in Ray."""
        group = self.groups.pop(group_id, None)
        if group is None:
            return []
        why = reason or "its placement group was removed"
        out: list[Instruction] = []
        for t in [t for t in self.tasks.values() if t.placement and t.placement[0] == group_id]:
            if t.state == RUNNING:
                w = self.workers.get(t.worker_id)
                if w is not None and w.task_id == t.task_id:
                    # the worker no longer holds it, also when a cancel is killing it already
                    # (its owner left): the task ends here, with its group
                    self._give_back_lent(w)
                    w.task_id = 0
                    if not w.killed:
                        w.killed = True
                        out.append(KillWorker(w.worker_id))
            elif t.state == READY:
                with contextlib.suppress(ValueError):
                    self.ready.remove(t.owner, t.task_id)
                    self._shape_count((t.env, t.shape), -1)
            self._finish(t)
            out.append(FailTask(t.task_id, "pg_removed", f"task {t.name}: {why}"))
        in_group = [a for a in self.actors.values() if a.placement and a.placement[0] == group_id]
        for actor in in_group:
            for w in self.workers.values():
                if w.actor_id == actor.actor_id and w.state != STARTING and not w.killed:
                    w.killed = True
                    out.append(KillWorker(w.worker_id))
            actor.no_restart = True
            self._actor_dead(actor, f"actor {actor.name} died: {why}", out)
        group.unreserve(self.pool)
        with contextlib.suppress(ValueError):
            self.pending_groups.remove(group_id)
        out.append(GroupStateChanged(group_id, "REMOVED", why))
        self._schedule(out)
        return out

    # --- actors ------------------------------------------------------------------------

    def create_actor(
        self,
        actor_id: int,
        name: str,
        resources: dict[str, float],
        max_restarts: int,
        max_task_retries: int,
        owner: int,
        detached: bool = False,
        runtime_env: str = "",
        placement: tuple[int, int] | None = None,
    ) -> list[Instruction]:
        resources = normalize(resources)
        if placement is not None:
            _, problem = self._placement_problem(placement, resources)
        else:
            problem = self.pool.infeasible(resources)
        if problem:
            return [ActorStateChanged(actor_id, DEAD, f"actor {name} {problem}")]
        actor = _Actor(
            actor_id, name, resources, max_restarts, max_task_retries, owner, detached, runtime_env
        )
        actor.placement = placement
        self.actors[actor_id] = actor
        self.pending_actors.append(actor_id)
        out: list[Instruction] = [ActorStateChanged(actor_id, PENDING)]
        self._schedule(out)
        return out

    def _place_pending_actors(self, out: list[Instruction]) -> None:
        for _ in range(len(self.pending_actors)):
            aid = self.pending_actors.popleft()
            actor = self.actors.get(aid)
            if actor is None or actor.state == DEAD:
                continue
            if not self._fits(actor):
                self.pending_actors.append(aid)
                continue
            actor.gpu_ids = self._acquire(actor)
            out.append(self._spawn(actor_id=aid, env=actor.env))

    def actor_call(self, call_id: int, actor_id: int) -> list[Instruction]:
        actor = self.actors.get(actor_id)
        if actor is None or actor.state == DEAD:
            return [FailCall(call_id, actor_id, "actor_died", "the actor is dead")]
        if actor.state == ALIVE:
            return [self._dispatch_call(actor, call_id)]
        actor.queue.append(call_id)
        return []

    def count_lost_try(self, call_id: int, actor_id: int) -> bool:
        """A direct call's first try was on a worker that died before the head heard of
        the call: count it; False when the call has no retry left."""
        actor = self.actors.get(actor_id)
        if actor is None:
            return True  # (actor_call fails it)
        if 0 <= actor.max_task_retries < 1:
            return False
        actor.call_attempts[call_id] = 1
        return True

    def _dispatch_call(self, actor: _Actor, call_id: int) -> DispatchCall:
        attempts = actor.call_attempts.get(call_id, 0) + 1
        actor.call_attempts[call_id] = attempts
        actor.inflight[call_id] = attempts
        return DispatchCall(actor.worker_id, actor.actor_id, call_id)

    def call_finished(self, call_id: int, actor_id: int) -> list[Instruction]:
        actor = self.actors.get(actor_id)
        if actor is None:
            return []
        actor.inflight.pop(call_id, None)
        actor.call_attempts.pop(call_id, None)
        if actor.exit_when_idle and not actor.inflight and not actor.queue:
            return self.kill_actor(actor_id)
        return []

    def kill_actor(
        self, actor_id: int, no_restart: bool = True, when_idle: bool = False, reason: str = ""
    ) -> list[Instruction]:
        """Kill an actor now; with ``when_idle`` (its last handle was dropped, Ray's
        out-of-scope termination) only once the calls submitted so far have finished.
        ``reason`` (e.g. its constructor raised) is what failed calls report."""
        actor = self.actors.get(actor_id)
        if actor is None or actor.state == DEAD:
            return []
        if reason:
            actor.death_reason = reason
        if when_idle and (actor.inflight or actor.queue):
            actor.exit_when_idle = True
            return []
        actor.no_restart = actor.no_restart or no_restart
        if actor.worker_id and actor.worker_id in self.workers:
            self.workers[actor.worker_id].killed = True
            return [KillWorker(actor.worker_id)]
        out: list[Instruction] = []
        if not actor.no_restart:  # a kill that lets it restart, before it started
            starting = [w for w in self.workers.values() if w.actor_id == actor_id]
            if starting and not starting[0].killed:  # its death restarts it, or ends it
                starting[0].killed = True
                return [KillWorker(starting[0].worker_id)]
            if actor.max_restarts < 0 or actor.restarts < actor.max_restarts:
                actor.restarts += 1  # not placed yet: the kill uses up a restart, as in Ray
                return out
            actor.no_restart = True
        if actor.no_restart:
            if any(w.actor_id == actor_id for w in self.workers.values()):
                # placed, its worker not started yet: it holds resources, give them back
                # (worker_started then stops that worker)
                self._release(actor)
                actor.gpu_ids = ()
            self._actor_dead(actor, actor.death_reason or "the actor was killed", out)
            self._schedule(out)
        return out

    def _actor_worker_died(
        self, w: _Worker, exit_code: int | None, out: list[Instruction], cause: DeathCause | None
    ) -> None:
        actor = self.actors.get(w.actor_id)
        if actor is None or actor.worker_id not in (w.worker_id, 0):
            return
        actor.worker_id = 0
        self._release(actor)
        actor.gpu_ids = ()
        if actor.state == DEAD:
            return
        why = actor.death_reason or (
            cause.text
            if cause
            else "it was killed"
            if w.killed
            else f"its process exited with code {exit_code}"
        )
        can_restart = not actor.no_restart and (
            actor.max_restarts < 0 or actor.restarts < actor.max_restarts
        )
        if actor.exit_when_idle and not actor.queue:
            # its handles are gone: bring it back only for calls that will be retried
            retries = actor.max_task_retries
            can_restart = can_restart and any(
                retries < 0 or attempts <= retries for attempts in actor.inflight.values()
            )
        if not can_restart:
            self._actor_dead(actor, why, out)
            return
        actor.restarts += 1
        actor.state = RESTARTING
        out.append(ActorStateChanged(actor.actor_id, RESTARTING, why))
        retry: list[int] = []
        for call_id, attempts in actor.inflight.items():
            if actor.max_task_retries < 0 or attempts <= actor.max_task_retries:
                retry.append(call_id)
            else:
                actor.call_attempts.pop(call_id, None)
                out.append(FailCall(call_id, actor.actor_id, "actor_died", why))
        actor.inflight.clear()
        actor.queue.extendleft(reversed(retry))
        self.pending_actors.appendleft(actor.actor_id)

    def _actor_dead(self, actor: _Actor, cause: str, out: list[Instruction]) -> None:
        actor.state = DEAD
        out.append(ActorStateChanged(actor.actor_id, DEAD, cause))
        for call_id in [*actor.inflight, *actor.queue]:
            out.append(FailCall(call_id, actor.actor_id, "actor_died", cause))
        actor.inflight.clear()
        actor.queue.clear()
        actor.call_attempts.clear()
        self.actors.pop(actor.actor_id, None)

    # --- invariants --------------------------------------------------------------------

    def validate(self) -> None:
        """Raise ``AssertionError`` naming every broken invariant (see invariants.py).
        For tests, after each event; the head never calls it (it walks the whole state).

        >>> s = Scheduler({"CPU": 1})
        >>> _ = s.start()
        >>> s.validate()
        """
        problems = scheduler_problems(self)
        if problems:
            raise AssertionError("scheduler invariants broken:\n- " + "\n- ".join(problems))

    # --- views -------------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        """Tasks by state, for status displays (leases are not tasks there)."""
        out: dict[str, int] = {WAITING: 0, READY: 0, RUNNING: 0}
        for t in self.tasks.values():
            if not t.lease:
                out[t.state] += 1
        return out

    def busy_workers(self) -> list[BusyWorker]:
        """Workers running a task or hosting an actor, for the head's watchdog."""
        out: list[BusyWorker] = []
        for wid, w in self.workers.items():
            if w.actor_id:
                actor = self.actors.get(w.actor_id)
                retriable = actor is not None and (
                    actor.max_restarts < 0 or actor.restarts < actor.max_restarts
                )
                out.append(BusyWorker(wid, 0, w.actor_id, retriable))
            elif w.task_id:
                t = self.tasks.get(w.task_id)
                if t is not None and t.state == RUNNING:
                    retriable = t.max_retries < 0 or t.attempts <= t.max_retries
                    out.append(BusyWorker(wid, t.task_id, 0, retriable))
        return out

    def worker_states(self) -> dict[int, WorkerState]:
        return {wid: w.state for wid, w in self.workers.items()}
