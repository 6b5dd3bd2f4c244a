"""The scheduler driven by random events (hypothesis ``RuleBasedStateMachine``).

A small model of the head and its worker processes stands around a real ``Scheduler``:
it carries out every instruction the way the head and a worker do (a worker runs what it
was sent in order, answers Unqueue with the tasks it has not started, fails a task it is
told to cancel; killed processes exit and the fork server reports it; a worker's messages
reach the head in order, interleaved with everyone else's). Rules submit tasks (with
ObjectRef arguments, parents, owners, resources, runtime_envs, placement groups), finish or
fail them, block workers in ``get``, crash and kill workers, cancel, drop owners, create
and kill actors and call them, create and remove placement groups.

After every step: ``Scheduler.validate()`` holds, the scheduler's tasks are the model's
live ones, and liveness: on a copy of the world, once actors are killed and workers keep
starting and finishing whatever they hold, every task ends.
"""

from __future__ import annotations

import copy
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from nbray._node.instructions import GroupStateChanged
from nbray._node.scheduler import (
    ActorStateChanged,
    Dispatch,
    DispatchCall,
    FailCall,
    FailTask,
    Instruction,
    Interrupt,
    KillWorker,
    Retry,
    Scheduler,
    SpawnWorker,
    StartActor,
    Unqueue,
)

OWNERS = (1, 2, 3)
DRAIN_ROUNDS = 500


@dataclass
class Proc:
    """A worker process as the model runs it."""

    actor_id: int = 0
    hello: bool = False
    alive: bool = True
    running: int = 0
    inbox: deque[int] = field(default_factory=deque)  # tasks sent, not started
    calls: deque[int] = field(default_factory=deque)  # actor calls sent, not answered
    blocked: bool = False
    outbox: deque[tuple[Any, ...]] = field(default_factory=deque)  # to the head, in order

    def start_next(self) -> None:
        self.running = self.inbox.popleft() if self.inbox else 0


class World:
    """The head and the worker processes around one scheduler."""

    def __init__(self, s: Scheduler) -> None:
        self.s = s
        self.procs: dict[int, Proc] = {}
        self.live: set[int] = set()  # tasks the head holds (submitted, not ended)
        self.objects: dict[int, bool | None] = {}  # return object -> ok / failed / pending
        self.actors: set[int] = set()  # actors not DEAD
        self.calls: dict[int, int] = {}  # call id -> actor id, calls not ended
        self.gone: set[int] = set()  # owners that disconnected
        self.groups: dict[int, str] = {}  # placement group -> its state
        self.next_id = 1

    def new_id(self) -> int:
        self.next_id += 1
        return self.next_id

    # --- the head carrying out instructions ----------------------------------------------

    def run(self, instructions: list[Instruction]) -> None:
        todo = deque(instructions)
        while todo:
            ins = todo.popleft()
            if isinstance(ins, SpawnWorker):
                self.procs[ins.worker_id] = Proc(actor_id=ins.actor_id)
            elif isinstance(ins, KillWorker):
                proc = self.procs.get(ins.worker_id)
                if proc is not None:
                    proc.alive = False
            elif isinstance(ins, Dispatch):
                proc = self.procs[ins.worker_id]
                if proc.alive:
                    proc.inbox.append(ins.task_id)
                    if not proc.running:
                        proc.start_next()
            elif isinstance(ins, Interrupt):
                self._interrupt(self.procs[ins.worker_id], ins.task_id)
            elif isinstance(ins, Unqueue):
                proc = self.procs[ins.worker_id]
                if proc.alive:
                    taken = tuple(t for t in proc.inbox if t in ins.task_ids)
                    for t in taken:
                        proc.inbox.remove(t)
                    proc.outbox.append(("unqueued", taken))
            elif isinstance(ins, FailTask):
                todo.extend(self._task_ended(ins.task_id, ok=False))
            elif isinstance(ins, DispatchCall):
                proc = self.procs[ins.worker_id]
                if proc.alive:
                    proc.calls.append(ins.call_id)
            elif isinstance(ins, FailCall):
                self.calls.pop(ins.call_id, None)
            elif isinstance(ins, ActorStateChanged):
                if ins.state == "DEAD":
                    self.actors.discard(ins.actor_id)
            elif isinstance(ins, GroupStateChanged):
                if ins.state == "REMOVED":
                    self.groups.pop(ins.group_id, None)
                else:
                    self.groups[ins.group_id] = ins.state
            else:
                assert isinstance(ins, (Retry, StartActor)), ins

    def _interrupt(self, proc: Proc, task_id: int) -> None:
        if not proc.alive:
            return
        if proc.running == task_id:  # SIGINT: the task raises TaskCancelledError
            proc.blocked = False
            proc.outbox.append(("failed", task_id, False))
            proc.start_next()
        elif task_id in proc.inbox:  # never started: answered before the next one starts
            proc.inbox.remove(task_id)
            proc.outbox.append(("failed", task_id, False))

    def _task_ended(self, task_id: int, ok: bool) -> list[Instruction]:
        """The head stores the task's result (or error) and tells the scheduler."""
        if task_id not in self.live:
            return []
        self.live.discard(task_id)
        self.objects[task_id] = ok
        return self.s.object_ready(task_id, ok)

    # --- events --------------------------------------------------------------------------

    def submit(
        self,
        resources: dict[str, float],
        retries: int,
        owner: int,
        deps: list[int],
        parent: int,
        short: bool,
        env: str = "",
        placement: tuple[int, int] | None = None,
    ) -> None:
        tid = self.new_id()
        self.objects[tid] = None  # the task's return object is its id
        if any(self.objects.get(d) is False for d in deps):
            self.objects[tid] = False  # the head fails it with the argument's error
            return
        unready = {d for d in deps if self.objects.get(d) is None}
        self.live.add(tid)
        self.run(
            self.s.submit(
                tid, f"t{tid}", resources, retries, owner, unready, parent, short, env, placement
            )
        )

    def deliver(self, wid: int) -> None:
        """The head reads the worker's oldest message."""
        msg = self.procs[wid].outbox.popleft()
        if msg[0] == "done":
            _, tid, ok, retriable = msg
            if tid not in self.live:
                return
            if ok:
                out = self._task_ended(tid, True)  # results stored first, as the head does
                self.run(out + self.s.task_finished(tid, True))
                return
            out = self.s.task_finished(tid, False, retriable)
            if not any(isinstance(i, Retry) and i.task_id == tid for i in out):
                out = self._task_ended(tid, False) + out
            self.run(out)
        elif msg[0] == "failed":  # cancelled
            tid = msg[1]
            if tid in self.live:
                out = self.s.task_finished(tid, False, False)
                self.run(self._task_ended(tid, False) + out)
        elif msg[0] == "unqueued":
            self.run(self.s.unqueued(wid, msg[1]))
        elif msg[0] == "blocked":
            self.run(self.s.worker_blocked(wid))
        elif msg[0] == "unblocked":
            self.run(self.s.worker_unblocked(wid))
        elif msg[0] == "call_done":
            _, cid, aid = msg
            self.calls.pop(cid, None)
            self.run(self.s.call_finished(cid, aid))

    def finish(self, wid: int, ok: bool, retriable: bool) -> None:
        proc = self.procs[wid]
        proc.outbox.append(("done", proc.running, ok, retriable))
        proc.start_next()

    def exit(self, wid: int) -> None:
        """The fork server reports the exit; the head drops the worker's connection."""
        del self.procs[wid]
        self.run(self.s.worker_died(wid, -9))

    # --- liveness ------------------------------------------------------------------------

    def drain(self) -> None:
        """Kill every actor, then let workers start, wake and finish what they hold, and
        processes exit, until nothing moves: every task must have ended (and the
        invariants hold after each round)."""
        for aid in sorted(self.actors):
            self.run(self.s.kill_actor(aid))
        self._rounds()
        # tasks may wait forever for what placement groups reserve, as in Ray: once the
        # groups are removed too, every task ends
        for gid in sorted(self.groups):
            self.run(self.s.remove_placement_group(gid))
        self._rounds()
        tasks = {t: (v.state, v.worker_id, sorted(v.deps)) for t, v in self.s.tasks.items()}
        workers = {w: (v.state, v.task_id, list(v.queued)) for w, v in self.s.workers.items()}
        assert not self.live, (
            f"tasks {sorted(self.live)} never end: scheduler tasks {tasks}, "
            f"workers {workers}, available {self.s.available}"
        )

    def _rounds(self) -> None:
        for _ in range(DRAIN_ROUNDS):
            moved = False
            for wid in sorted(self.procs):
                proc = self.procs.get(wid)
                if proc is None:
                    continue
                while proc.outbox:
                    self.deliver(wid)
                    moved = True
                if not proc.alive:
                    self.exit(wid)
                elif not proc.hello:
                    proc.hello = True
                    self.run(self.s.worker_started(wid))
                elif proc.blocked:
                    proc.blocked = False
                    proc.outbox.append(("unblocked",))
                elif proc.running:
                    self.finish(wid, True, False)
                elif proc.calls:
                    proc.outbox.append(("call_done", proc.calls.popleft(), proc.actor_id))
                else:
                    continue
                moved = True
            self.s.validate()
            if not moved:
                break


resources = st.sampled_from(
    [{"CPU": 1.0}, {"CPU": 0.5}, {}, {"CPU": 2.0}, {"CPU": 1.0, "GPU": 0.5}, {"GPU": 1.0},
     {"x": 1.0}, {"CPU": 3.0}]
)  # fmt: skip


class SchedulerMachine(RuleBasedStateMachine):
    world: World

    @initialize(pipeline=st.sampled_from([1, 3]), max_workers=st.sampled_from([3, 8]))
    def boot(self, pipeline: int, max_workers: int) -> None:
        s = Scheduler({"CPU": 2, "GPU": 1, "x": 1}, None, max_workers, pipeline)
        self.world = World(s)
        self.world.run(s.start())

    def _procs(self, **want: bool) -> list[int]:
        out = []
        for wid, p in sorted(self.world.procs.items()):
            state = {
                "alive": p.alive,
                "hello": p.hello,
                "running": bool(p.running),
                "blocked": p.blocked,
                "outbox": bool(p.outbox),
                "calls": bool(p.calls),
            }
            if all(state[k] == v for k, v in want.items()):
                out.append(wid)
        return out

    # --- the head's side -----------------------------------------------------------------

    @rule(
        res=resources,
        retries=st.sampled_from([0, 1, 3, -1]),
        owner=st.sampled_from(OWNERS),
        n_deps=st.integers(0, 2),
        data=st.data(),
        nested=st.booleans(),
        short=st.booleans(),
        env=st.sampled_from(["", "", "A", "B"]),
        in_group=st.booleans(),
    )
    def submit(
        self,
        res: dict[str, float],
        retries: int,
        owner: int,
        n_deps: int,
        data: st.DataObject,
        nested: bool,
        short: bool,
        env: str,
        in_group: bool,
    ) -> None:
        w = self.world
        if owner in w.gone:
            return
        objects = sorted(w.objects)
        deps = [data.draw(st.sampled_from(objects)) for _ in range(n_deps)] if objects else []
        parent = 0
        running = [p.running for p in w.procs.values() if p.running and p.running in w.live]
        if nested and running:
            parent = data.draw(st.sampled_from(running))  # submitted by a running task
        placement = None
        if in_group and w.groups:
            gid = data.draw(st.sampled_from(sorted(w.groups)))
            placement = (gid, data.draw(st.sampled_from([-1, 0])))
        w.submit(res, retries, owner, deps, parent, short, env, placement)

    @precondition(lambda self: self.world.live)
    @rule(data=st.data(), force=st.booleans(), recursive=st.booleans())
    def cancel(self, data: st.DataObject, force: bool, recursive: bool) -> None:
        tid = data.draw(st.sampled_from(sorted(self.world.live)))
        self.world.run(self.world.s.cancel(tid, force, recursive))

    @rule(owner=st.sampled_from(OWNERS))
    def owner_gone(self, owner: int) -> None:
        self.world.gone.add(owner)
        self.world.run(self.world.s.owner_gone(owner))

    @rule(
        bundles=st.sampled_from(
            [[{"CPU": 1.0}], [{"CPU": 1.0}, {"CPU": 0.5}], [{"GPU": 1.0}], [{"x": 1.0}],
             [{"CPU": 2.0}], [{"CPU": 3.0}]]
        ),
        owner=st.sampled_from(OWNERS),
        detached=st.booleans(),
    )  # fmt: skip
    def create_group(self, bundles: list[dict[str, float]], owner: int, detached: bool) -> None:
        w = self.world
        if owner in w.gone or w.s.placement_group_problem(bundles, "PACK"):
            return
        gid = w.new_id()
        w.groups[gid] = "PENDING"
        w.run(w.s.create_placement_group(gid, "", bundles, "PACK", owner, detached))

    @precondition(lambda self: self.world.groups)
    @rule(data=st.data())
    def remove_group(self, data: st.DataObject) -> None:
        gid = data.draw(st.sampled_from(sorted(self.world.groups)))
        self.world.run(self.world.s.remove_placement_group(gid))

    @rule()
    def trim(self) -> None:
        self.world.run(self.world.s.trim())

    @rule(
        res=st.sampled_from([{}, {"CPU": 1.0}, {"GPU": 1.0}, {"x": 1.0}]),
        restarts=st.sampled_from([0, 1, -1]),
        task_retries=st.sampled_from([0, 1]),
        owner=st.sampled_from(OWNERS),
        detached=st.booleans(),
    )
    def create_actor(
        self, res: dict[str, float], restarts: int, task_retries: int, owner: int, detached: bool
    ) -> None:
        w = self.world
        if owner in w.gone:
            return
        aid = w.new_id()
        w.actors.add(aid)
        w.run(w.s.create_actor(aid, f"A{aid}", res, restarts, task_retries, owner, detached))

    @precondition(lambda self: self.world.actors)
    @rule(data=st.data())
    def call_actor(self, data: st.DataObject) -> None:
        w = self.world
        aid = data.draw(st.sampled_from(sorted(w.actors)))
        cid = w.new_id()
        w.calls[cid] = aid
        w.run(w.s.actor_call(cid, aid))

    @precondition(lambda self: self.world.actors)
    @rule(data=st.data(), no_restart=st.booleans(), when_idle=st.booleans())
    def kill_actor(self, data: st.DataObject, no_restart: bool, when_idle: bool) -> None:
        w = self.world
        aid = data.draw(st.sampled_from(sorted(w.actors)))
        w.run(w.s.kill_actor(aid, no_restart, when_idle))

    # --- the workers' side ---------------------------------------------------------------

    @rule(data=st.data())
    def hello(self, data: st.DataObject) -> None:
        wids = self._procs(alive=True, hello=False)
        if wids:
            wid = data.draw(st.sampled_from(wids))
            self.world.procs[wid].hello = True
            self.world.run(self.world.s.worker_started(wid))

    @rule(data=st.data(), ok=st.booleans(), retriable=st.booleans())
    def finish(self, data: st.DataObject, ok: bool, retriable: bool) -> None:
        wids = self._procs(alive=True, running=True, blocked=False)
        if wids:
            self.world.finish(data.draw(st.sampled_from(wids)), ok, retriable)

    @rule(data=st.data())
    def answer_call(self, data: st.DataObject) -> None:
        wids = self._procs(alive=True, calls=True)
        if wids:
            p = self.world.procs[data.draw(st.sampled_from(wids))]
            p.outbox.append(("call_done", p.calls.popleft(), p.actor_id))

    @rule(data=st.data())
    def block(self, data: st.DataObject) -> None:
        wids = self._procs(alive=True, running=True, blocked=False)
        if wids:
            p = self.world.procs[data.draw(st.sampled_from(wids))]
            p.blocked = True
            p.outbox.append(("blocked",))

    @rule(data=st.data())
    def unblock(self, data: st.DataObject) -> None:
        wids = self._procs(alive=True, blocked=True)
        if wids:
            p = self.world.procs[data.draw(st.sampled_from(wids))]
            p.blocked = False
            p.outbox.append(("unblocked",))

    @rule(data=st.data())
    def crash(self, data: st.DataObject) -> None:
        wids = self._procs(alive=True)
        if wids:
            self.world.procs[data.draw(st.sampled_from(wids))].alive = False

    @rule(data=st.data())
    def deliver(self, data: st.DataObject) -> None:
        wids = self._procs(outbox=True)
        if wids:
            self.world.deliver(data.draw(st.sampled_from(wids)))

    @rule(data=st.data())
    def exit(self, data: st.DataObject) -> None:
        wids = self._procs(alive=False)
        if wids:
            self.world.exit(data.draw(st.sampled_from(wids)))

    # --- after every step ----------------------------------------------------------------

    @invariant()
    def valid(self) -> None:
        self.world.s.validate()

    @invariant()
    def scheduler_holds_the_live_tasks(self) -> None:
        assert set(self.world.s.tasks) == self.world.live

    @invariant()
    def every_task_ends_when_workers_keep_finishing(self) -> None:
        copy.deepcopy(self.world).drain()


SchedulerMachine.TestCase.settings = settings(
    max_examples=200,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
test_scheduler_machine = pytest.mark.timeout(300)(SchedulerMachine.TestCase)
