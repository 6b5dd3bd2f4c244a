"""The scheduler's invariants: what must hold between any two events, as a list of problems.

    Scheduler.validate() ──▶ scheduler_problems(scheduler) ──▶ [] or what is broken
    tests/unit/test_scheduler.py ──after every event──▶ Scheduler.validate()
    tests/unit/test_scheduler_machine.py ──random events (hypothesis)──▶ Scheduler.validate()

As distributed's ``WorkerState.validate_state``: cheap enough for tests to run after every
event, never run by the head itself. Each problem names the worker, task or actor.

- resources: the pool's ledger adds up (``ResourcePool.check``): what is free is the total
  less what the running tasks and placed actors hold, plus the CPUs blocked tasks lent;
  never above the total, never below zero but for an overcommitted CPU;
- workers: IDLE ones are in the idle list (once), hold no task and host no actor; a BUSY
  one holds a running task unless it was killed; CPUs lent only by blocked workers;
- tasks: every RUNNING task is on exactly one worker (its current task or queued behind
  it), READY ones are in the ready queue once (and its shape counts match), WAITING ones
  wait on objects that list them back; cancelled tasks are only ever RUNNING;
- actors: an ALIVE actor's worker hosts it; a PENDING or RESTARTING one waits in the
  placement queue or has a worker starting, never both; at most one worker per actor.
"""

from __future__ import annotations

from collections import Counter, deque
from typing import Protocol

from .fair_queue import FairQueue
from .placement import Group
from .resources import ResourcePool, Shape
from .sched_records import Actor, Task, Worker
from .states import ACTOR, ALIVE, BUSY, DEAD, IDLE, READY, RUNNING, STARTING, WAITING

__all__ = ["SchedulerState", "scheduler_problems"]

TOLERANCE = 1e-6


class SchedulerState(Protocol):
    """The parts of ``scheduler.Scheduler`` the invariants read."""

    pool: ResourcePool
    workers: dict[int, Worker]
    tasks: dict[int, Task]
    actors: dict[int, Actor]
    ready: FairQueue
    ready_shapes: dict[tuple[str, Shape], int]
    idle: list[int]
    waiting_on: dict[int, set[int]]
    children: dict[int, set[int]]
    pending_actors: deque[int]
    groups: dict[int, Group]


def scheduler_problems(s: SchedulerState) -> list[str]:
    """Every broken invariant of ``s`` ([] when it is consistent)."""
    return [
        *_worker_problems(s),
        *_task_problems(s),
        *_actor_problems(s),
        *_resource_problems(s),
    ]


def _worker_problems(s: SchedulerState) -> list[str]:
    out: list[str] = []
    idle = set(s.idle)
    if len(idle) != len(s.idle):
        out.append(f"the idle list has duplicates: {s.idle}")
    for wid in idle - s.workers.keys():
        out.append(f"worker {wid} is idle but unknown")
    for wid, w in s.workers.items():
        name = f"worker {wid} ({w.state})"
        if w.worker_id != wid:
            out.append(f"{name} is filed under another id ({w.worker_id})")
        if (w.state == IDLE) != (wid in idle):
            out.append(f"{name}: IDLE state and the idle list disagree")
        if w.state == IDLE and (w.task_id or w.queued or w.actor_id or w.killed or w.blocked):
            out.append(f"{name} holds a task, hosts an actor, was killed or is blocked")
        if w.state in (STARTING, DEAD) and (w.task_id or w.queued):
            out.append(f"{name} holds a task")
        if w.actor_id and w.state not in (STARTING, ACTOR):
            out.append(f"{name} hosts actor {w.actor_id} but is not STARTING nor ACTOR")
        if w.state == ACTOR and not w.actor_id:
            out.append(f"{name} hosts no actor")
        if w.state == BUSY and not w.task_id and not w.killed:
            out.append(f"{name} holds no task and was not killed")
        if w.queued and not w.task_id and not w.killed:
            out.append(f"{name} has tasks queued behind no current task")
        if w.lent_cpus and not w.blocked:
            out.append(f"{name} lent {w.lent_cpus:g} CPU but is not blocked")
        if w.blocked and (w.state != BUSY or not w.task_id):
            out.append(f"{name} is blocked without a running task")
        if w.task_id in w.queued or len(set(w.queued)) != len(w.queued):
            out.append(f"{name} queues a task twice: {w.task_id} then {list(w.queued)}")
        for tid in (w.task_id, *w.queued) if w.task_id else w.queued:
            t = s.tasks.get(tid)
            if t is None or t.state != RUNNING or t.worker_id != wid:
                where = "unknown" if t is None else f"{t.state} on worker {t.worker_id}"
                out.append(f"{name} holds task {tid}, which is {where}")
            elif not w.actor_id and t.gpu_ids != (w.gpus or ()):
                out.append(f"{name} serves GPUs {w.gpus} but runs task {tid} on {t.gpu_ids}")
    return out


def _task_problems(s: SchedulerState) -> list[str]:
    out: list[str] = [f"ready queue: {p}" for p in s.ready.problems()]
    for owner, tid in s.ready.items():
        t = s.tasks.get(tid)
        if t is not None and t.owner != owner:
            out.append(f"task {tid} of owner {t.owner} is queued under owner {owner}")
    ready = Counter(s.ready)
    for tid, n in ready.items():
        if n > 1:
            out.append(f"task {tid} is in the ready queue {n} times")
    for tid, t in s.tasks.items():
        name = f"task {tid} ({t.state})"
        if t.task_id != tid:
            out.append(f"{name} is filed under another id ({t.task_id})")
        if (t.state == READY) != (tid in ready):
            out.append(f"{name}: READY state and the ready queue disagree")
        if t.state != RUNNING and (t.worker_id or t.cancelled):
            out.append(f"{name} is on worker {t.worker_id} or cancelled, yet not running")
        if (t.state == WAITING) != bool(t.deps):
            out.append(f"{name} waits on {sorted(t.deps)}")
        for dep in t.deps:
            if tid not in s.waiting_on.get(dep, ()):
                out.append(f"{name} waits on object {dep}, which does not list it")
        if t.state == RUNNING:
            w = s.workers.get(t.worker_id)
            on = 0 if w is None else (w.task_id == tid) + w.queued.count(tid)
            if on != 1:
                out.append(f"{name} is on worker {t.worker_id} {on} times (not once)")
            if t.attempts < 1:
                out.append(f"{name} runs, counted as attempt {t.attempts}")
    for tid in ready.keys() - s.tasks.keys():
        out.append(f"task {tid} is in the ready queue but unknown")
    shapes = Counter((s.tasks[tid].env, s.tasks[tid].shape) for tid in s.ready if tid in s.tasks)
    if dict(shapes) != s.ready_shapes:
        out.append(f"ready shapes {s.ready_shapes} are not the ready queue's {dict(shapes)}")
    for dep, waiting in s.waiting_on.items():
        if not waiting:
            out.append(f"object {dep} is waited on by nobody but still listed")
        for tid in waiting:
            waiter = s.tasks.get(tid)
            if waiter is None or dep not in waiter.deps:
                out.append(f"object {dep} lists task {tid}, which does not wait on it")
    for parent, kids in s.children.items():
        for kid in kids:
            child = s.tasks.get(kid)
            if child is None or child.parent != parent:
                out.append(f"task {parent} lists child {kid}, which is gone or not its child")
    return out


def _actor_problems(s: SchedulerState) -> list[str]:
    out: list[str] = []
    hosts: dict[int, list[Worker]] = {}
    for w in s.workers.values():
        if w.actor_id:
            hosts.setdefault(w.actor_id, []).append(w)
    pending = Counter(s.pending_actors)
    for aid, n in pending.items():
        if n > 1:
            out.append(f"actor {aid} is in the placement queue {n} times")
        if aid not in s.actors:
            out.append(f"actor {aid} is in the placement queue but unknown (or dead)")
    for aid, a in s.actors.items():
        name = f"actor {aid} ({a.state})"
        workers = hosts.get(aid, [])
        if a.actor_id != aid or a.state == DEAD:
            out.append(f"{name} is filed under id {a.actor_id}, or dead but still listed")
        if len(workers) > 1:
            out.append(f"{name} has {len(workers)} workers")
        if a.state == ALIVE:
            host = s.workers.get(a.worker_id)
            if host is None or host.actor_id != aid or host.state != ACTOR:
                out.append(f"{name}: its worker {a.worker_id} does not host it")
            if a.queue or aid in pending:
                out.append(f"{name} still has calls queued or waits for placement")
        else:
            if a.worker_id or a.inflight:
                out.append(f"{name} has worker {a.worker_id} or calls in flight")
            starting = any(w.state == STARTING for w in workers)
            if (aid in pending) == starting:
                out.append(f"{name}: waits for placement and has a worker starting, or neither")
        for call_id in a.inflight:
            if call_id not in a.call_attempts:
                out.append(f"{name}: call {call_id} in flight with no attempt counted")
    return out


def _resource_problems(s: SchedulerState) -> list[str]:
    """The node's ledger, with each reserved bundle one holding of it, and each bundle's
    own ledger with the tasks and actors placed in it."""
    held: list[tuple[dict[str, float], tuple[int, ...]]] = []
    in_bundle: dict[tuple[int, int], list[tuple[dict[str, float], tuple[int, ...]]]] = {}
    out: list[str] = []

    def hold(item: Task | Actor, what: str) -> None:
        if item.placement is None:
            held.append((item.resources, item.gpu_ids))
        elif item.placement[0] in s.groups:
            in_bundle.setdefault((item.placement[0], item.bundle), []).append(
                (item.resources, item.gpu_ids)
            )
            if item.bundle < 0:
                out.append(f"{what} runs in placement group {item.placement[0]} in no bundle")

    lent = 0.0
    for w in s.workers.values():
        lent += w.lent_cpus
        if w.task_id and not w.actor_id:
            t = s.tasks.get(w.task_id)
            if t is not None:
                hold(t, f"task {t.task_id}")
    placed = {w.actor_id for w in s.workers.values() if w.actor_id}
    for aid, a in s.actors.items():
        if aid in placed:
            hold(a, f"actor {aid}")
    for gid, group in s.groups.items():
        if group.state != "CREATED":
            continue
        held.extend(zip(group.bundles, group.gpu_ids, strict=True))
        for i, pool in enumerate(group.pools):
            for problem in pool.check(in_bundle.get((gid, i), [])):
                out.append(f"placement group {gid} bundle {i}: {problem}")
    out.extend(s.pool.check(held))
    if abs(lent - s.pool.lent) > TOLERANCE:
        out.append(f"workers lent {lent:g} CPU but the pool counts {s.pool.lent:g}")
    return out
