"""The head's actor table: live actors by id and by name, which worker hosts which, and
why recent ones died.

    client CreateActor / Request("create_actor") ──▶ ActorTable ──▶ Scheduler.create_actor
    Scheduler StartActor ──▶ do_start_actor ──StartActor (class, args, job)──▶ its worker
    client CallActor ──▶ a task in the TaskTable ──▶ Scheduler.actor_call
        (a call whose ObjectRef arguments do not exist yet is held, with the same caller's
        later calls to that actor behind it, until they do: calls keep their order per
        caller, and one caller's unready argument holds back no other caller, as in Ray)
    Scheduler DispatchCall ──▶ RunActorCall ──▶ the actor's worker (unless the caller sent
        it there itself: a direct call, see ``actor_callers``; the head records it all)
    worker Listening ──▶ the actor's address ──▶ ActorAddress to callers that may go direct
    Scheduler ActorStateChanged ──▶ "actor" event on the bus; DEAD: its pending calls fail,
        its name is freed, and why it died is kept for calls that arrive later
    Request("get_actor") ──▶ the live actor by (namespace, name)
"""

from __future__ import annotations

import contextlib
import os
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from nbray._base.errors import ActorAlreadyExistsError, ActorNotFoundError
from nbray._wire import protocol as P

from . import instructions as S
from .actor_callers import ActorCallers
from .bus import EventBus
from .failures import actor_died_payload
from .objects import ObjectDirectory
from .peers import Connections, Peer
from .scheduler import Scheduler
from .states import ALIVE, DEAD, ActorState
from .supervisor import Supervisor
from .tasks import TaskTable

__all__ = ["DEAD_ACTOR_HISTORY", "ActorRecord", "ActorTable"]

DEAD_ACTOR_HISTORY = 1000


class ActorRecord:
    def __init__(self, spec: P.ActorSpec, cls: bytes, owner: int) -> None:
        self.spec = spec
        self.cls = cls
        self.owner = owner
        self.state: ActorState = "PENDING"
        self.calls = ActorCallers()
        self.address = ""  # where its worker takes direct calls ("": not now)
        self.address_worker = 0


class ActorTable:
    """Live actors and their names; handles the actor messages and instructions.
    Implements ``tasks.ActorCalls`` for the task table."""

    def __init__(
        self,
        objects: ObjectDirectory,
        sched: Scheduler,
        run: Callable[[list[Any]], None],
        bus: EventBus,
        conns: Connections,
        supervisor: Supervisor,
        tasks: TaskTable,
    ) -> None:
        self.objects = objects
        self.sched = sched
        self.run = run
        self.bus = bus
        self.conns = conns
        self.supervisor = supervisor
        self.tasks = tasks
        self.actors: dict[int, ActorRecord] = {}
        self.names: dict[tuple[str, str], int] = {}  # (namespace, name) -> actor id
        self.dead: dict[int, str] = {}  # why recent actors died, for late calls
        self.worker_actor: dict[int, int] = {}  # worker id -> the actor it hosts
        # calls held until their arguments exist, in order, by (actor id, caller conn id)
        self.held: dict[tuple[int, int], deque[int]] = {}
        self.held_on: dict[int, set[tuple[int, int]]] = {}  # object id -> queues it holds
        objects.on_token_freed = self.out_of_scope

    # --- ActorCalls ----------------------------------------------------------------------

    def owner_of_worker(self, worker_id: int) -> int | None:
        aid = self.worker_actor.get(worker_id)
        actor = self.actors.get(aid) if aid else None
        return actor.owner if actor is not None else None

    def call_ended(self, actor_id: int, call_id: int) -> None:
        actor = self.actors.get(actor_id)
        if actor is not None:
            caller = actor.calls.remove(call_id)
            if caller is not None:
                self._offer(actor, caller)

    def worker_exited(self, worker_id: int) -> None:
        actor = self.actors.get(self.worker_actor.pop(worker_id, 0))
        if actor is not None and actor.address_worker == worker_id:
            with contextlib.suppress(OSError):
                os.unlink(actor.address.removeprefix("unix:"))
            actor.address, actor.address_worker = "", 0

    # --- creating ------------------------------------------------------------------------

    def on_create_actor(self, peer: Peer, msg: P.CreateActor) -> None:
        self.create(peer, msg.spec, msg.cls)

    def create(self, peer: Peer, spec: P.ActorSpec, cls: bytes) -> None:
        owner, _ = self.tasks.owner_and_parent(peer)
        rec = ActorRecord(spec, cls, owner)
        self.actors[spec.actor_id] = rec
        if spec.name:
            self.names[(spec.namespace, spec.name)] = spec.actor_id
        elif not spec.detached:  # counted by its handles, wherever they go, as in Ray
            self.objects.create_token(spec.actor_id, peer.conn_id)
            peer.holds.add(spec.actor_id)
        self.objects.pin(spec.deps)
        self.objects.pin(spec.contained)
        self.run(
            self.sched.create_actor(
                spec.actor_id,
                spec.class_name,
                spec.resources,
                spec.max_restarts,
                spec.max_task_retries,
                owner,
                spec.detached,
                spec.runtime_env,
                spec.placement[:2] if spec.placement else None,
            )
        )

    def out_of_scope(self, actor_id: int) -> None:
        """The last handle to the actor went (its token was freed): its owner ends it, after
        the calls already submitted, running its ``__ray_shutdown__``."""
        rec = self.actors.get(actor_id)
        owner = self.conns.peers.get(rec.owner) if rec is not None else None
        if owner is not None and rec is not None:  # an owner that left took its actors along
            owner.send(P.ActorOutOfScope(actor_id, rec.spec.class_name))

    def req_create_actor(self, peer: Peer, spec: P.ActorSpec, cls: bytes) -> None:
        key = (spec.namespace, spec.name)
        existing = self.names.get(key)
        if existing is not None and existing in self.actors:
            raise ActorAlreadyExistsError(
                f"an actor named {spec.name!r} already exists in namespace "
                f"{spec.namespace!r}; pick another name or use nbray.get_actor({spec.name!r})"
            )
        self.create(peer, spec, cls)

    def req_get_actor(self, peer: Peer, name: str, namespace: str) -> tuple[Any, ...]:
        aid = self.names.get((namespace, name))
        actor = self.actors.get(aid) if aid else None
        if actor is None:
            raise ActorNotFoundError(f"no live actor named {name!r} in namespace {namespace!r}")
        return (
            actor.spec.actor_id,
            actor.spec.class_name,
            actor.spec.methods,
            actor.spec.is_async,
            actor.spec.max_task_retries,
        )

    def do_start_actor(self, ins: S.StartActor) -> None:
        actor = self.actors.get(ins.actor_id)
        peer = self.conns.workers.get(ins.worker_id)
        if actor is None or peer is None:
            return
        self.worker_actor[ins.worker_id] = ins.actor_id
        self.supervisor.dispatched(ins.worker_id)
        env = self.tasks.gpu_env(ins.gpu_ids)
        job = self.tasks.job_for(peer, actor.owner)
        peer.send(
            P.StartActor(actor.spec, actor.cls, self.tasks.dep_payloads(actor.spec.deps), env, job)
        )

    # --- calls ---------------------------------------------------------------------------

    def on_call_actor(self, peer: Peer, msg: P.CallActor) -> None:
        spec = msg.spec
        rec = self.tasks.register(peer, spec)
        actor = self.actors.get(spec.actor_id)
        if actor is None:
            if msg.direct_worker and self.tasks.has_early(spec.task_id):
                self.tasks.take_early(spec.task_id)  # answered before the actor ended
                return
            cause = self.dead.get(spec.actor_id, "the actor is dead")
            self.tasks.store_error(rec, actor_died_payload(spec, cause))
            return
        actor.calls.add(spec.task_id, peer.conn_id)
        rec.direct_worker = rec.direct_to = msg.direct_worker
        if msg.direct_worker:
            self.tasks.take_early_fetch(spec.task_id)
            self.tasks.take_early_yields(spec.task_id)
        if msg.direct_worker and self.tasks.has_early(spec.task_id):
            self.tasks.take_early(spec.task_id)  # answered already: nothing to schedule
            return
        if msg.direct_worker and self.worker_actor.get(msg.direct_worker) != spec.actor_id:
            # its worker died before this record came (the death was read first): the
            # call was in flight there, so it is retried or fails as those calls did
            rec.direct_worker = 0
            if not self.sched.count_lost_try(spec.task_id, spec.actor_id):
                cause = "its worker died while the call was on it"
                self.tasks.store_error(rec, actor_died_payload(spec, cause))
                return
        key = (spec.actor_id, peer.conn_id)
        queue = self.held.get(key)
        if queue is None and not self._unready(spec.deps):
            self.run(self.sched.actor_call(spec.task_id, spec.actor_id))
        else:
            if queue is None:
                queue = self.held[key] = deque()
            queue.append(spec.task_id)
            if len(queue) == 1:
                self._release(key)

    def _unready(self, deps: tuple[int, ...]) -> list[int]:
        """The arguments that do not exist yet (an unknown one is left to the worker,
        which fails the call with ObjectLostError)."""
        objects = self.objects
        return [d for d in deps if objects.ready(d) is None and objects.known(d)]

    def _release(self, key: tuple[int, int]) -> None:
        """Send on the held calls of one caller to one actor, in order, up to the first
        whose arguments do not all exist yet."""
        queue = self.held[key]
        while queue:
            rec = self.tasks.tasks.get(queue[0])
            if rec is None:  # ended while held (its actor died, its caller went)
                queue.popleft()
                continue
            unready = self._unready(rec.spec.deps)
            if unready:
                for oid in unready:
                    self.held_on.setdefault(oid, set()).add(key)
                return
            queue.popleft()
            self.run(self.sched.actor_call(rec.spec.task_id, rec.spec.actor_id))
        del self.held[key]

    def object_ready(self, oid: int) -> None:
        """An object exists now (or failed): the calls held on it may go."""
        for key in self.held_on.pop(oid, ()):
            if key in self.held:
                self._release(key)

    def do_dispatch_call(self, ins: S.DispatchCall) -> None:
        rec = self.tasks.tasks.get(ins.call_id)
        peer = self.conns.workers.get(ins.worker_id)
        if rec is None or peer is None:
            return
        rec.worker_id = ins.worker_id
        self.supervisor.dispatched(ins.worker_id)
        if rec.direct_worker != ins.worker_id:  # not there already (a direct call's first try)
            peer.send(P.RunActorCall(rec.spec, self.tasks.dep_payloads(rec.spec.deps)))
            actor = self.actors.get(rec.spec.actor_id)
            if actor is not None:  # drivers may send their next calls direct (not workers)
                caller = self.conns.peers.get(actor.calls.calls.get(rec.spec.task_id, 0))
                if caller is not None and caller.role != "worker":
                    actor.calls.want(rec.spec.task_id)
        rec.direct_worker = 0  # a retry goes through the head
        self.bus.task_event(rec, "RUNNING", worker_id=ins.worker_id, pid=peer.pid)

    # --- direct calls --------------------------------------------------------------------

    def caller_gone(self, caller: int) -> None:
        """A client's connection ended: the workers it called directly say which of its
        unfinished calls reached them (on_caller_calls). The rest, recorded here, were
        still in its outbox when it went: without this they would wait here forever."""
        workers = set()
        for actor in self.actors.values():
            for call_id, conn in actor.calls.calls.items():
                rec = self.tasks.tasks.get(call_id) if conn == caller else None
                if rec is not None and rec.direct_to:
                    workers.add(rec.direct_to)
        for worker_id in workers:
            worker = self.conns.workers.get(worker_id)
            if worker is not None:
                worker.send(P.CallerGone(caller))

    def on_caller_calls(self, peer: Peer, msg: P.CallerCalls) -> None:
        """The gone caller's unfinished direct calls that are not on ``peer`` never
        reached it: the head sends them (now if they were due already, else when they
        are). (Answers the worker gave came before this message, on its socket.)"""
        actor = self.actors.get(self.worker_actor.get(peer.worker_id, 0))
        if actor is None:
            return
        here = set(msg.here)
        lost = sorted(
            call_id
            for call_id, conn in actor.calls.calls.items()
            if conn == msg.caller and call_id not in here
        )
        for call_id in lost:
            rec = self.tasks.tasks.get(call_id)
            if rec is None or rec.direct_to != peer.worker_id:
                continue
            if rec.direct_worker:  # not due yet: the head sends it when it is
                rec.direct_worker = 0
            elif rec.worker_id == peer.worker_id:
                peer.send(P.RunActorCall(rec.spec, self.tasks.dep_payloads(rec.spec.deps)))

    def on_listening(self, peer: Peer, msg: P.Listening) -> None:
        actor = self.actors.get(msg.actor_id)
        if actor is None or self.worker_actor.get(peer.worker_id) != msg.actor_id:
            return
        actor.address, actor.address_worker = msg.address, peer.worker_id
        for caller in actor.calls.idle_wanting():
            self._offer(actor, caller)

    def _offer(self, actor: ActorRecord, caller: int) -> None:
        """Tell a caller with no unfinished call where the actor takes direct calls."""
        if not actor.address or actor.state != ALIVE:
            return
        peer = self.conns.peers.get(caller)
        if peer is not None:
            last = actor.calls.offered(caller)
            peer.send(
                P.ActorAddress(actor.spec.actor_id, actor.address_worker, actor.address, last)
            )

    def do_fail_call(self, ins: S.FailCall) -> None:
        rec = self.tasks.tasks.get(ins.call_id)
        if rec is not None:
            self.tasks.store_error(rec, actor_died_payload(rec.spec, ins.message))

    # --- ending --------------------------------------------------------------------------

    def do_actor_state(self, ins: S.ActorStateChanged) -> None:
        actor = self.actors.get(ins.actor_id)
        if actor is None:
            return
        actor.state = ins.state
        self.bus.publish(
            {
                "type": "actor",
                "actor_id": f"{ins.actor_id:016x}",
                "class_name": actor.spec.class_name,
                "name": actor.spec.name,
                "state": ins.state,
                "reason": ins.reason,
                "time": time.time(),
            }
        )
        if ins.state == DEAD:
            self._dead(actor, ins.reason)

    def _dead(self, actor: ActorRecord, reason: str) -> None:
        actor_id = actor.spec.actor_id
        if actor.address:  # (its worker may outlive the record a moment)
            with contextlib.suppress(OSError):
                os.unlink(actor.address.removeprefix("unix:"))
        self.dead[actor_id] = reason or "the actor is dead"
        while len(self.dead) > DEAD_ACTOR_HISTORY:
            self.dead.pop(next(iter(self.dead)))
        for cid in list(actor.calls):
            rec = self.tasks.tasks.get(cid)
            if rec is not None:
                self.tasks.store_error(rec, actor_died_payload(rec.spec, reason))
        self.actors.pop(actor_id, None)
        key = (actor.spec.namespace, actor.spec.name)
        if self.names.get(key) == actor_id:
            del self.names[key]
        self.objects.unpin(actor.spec.deps)
        self.objects.unpin(actor.spec.contained)

    def on_actor_start_failed(self, peer: Peer, msg: P.ActorStartFailed) -> None:
        self.run(self.sched.kill_actor(msg.actor_id, no_restart=True, reason=msg.reason))

    def on_kill_actor(self, peer: Peer, msg: P.KillActor) -> None:
        self.run(self.sched.kill_actor(msg.actor_id, msg.no_restart, msg.when_idle, msg.reason))

    # --- views ---------------------------------------------------------------------------

    def info(self, actor_id: int, node_id: str) -> dict[str, Any]:
        """State, name, resources and process of an actor (for notebook reprs)."""
        actor = self.actors.get(actor_id)
        if actor is None:
            return {"state": DEAD, "node_id": node_id}
        wid = next((w for w, a in self.worker_actor.items() if a == actor_id), 0)
        return {
            "state": actor.state,
            "name": actor.spec.name,
            "namespace": actor.spec.namespace,
            "owner": actor.owner,
            "resources": dict(actor.spec.resources),
            "pending_calls": len(actor.calls),
            "restarts": self.sched.actors[actor_id].restarts
            if actor_id in self.sched.actors
            else 0,
            "pid": self.supervisor.pids.get(wid, 0),
            "node_id": node_id,
        }
