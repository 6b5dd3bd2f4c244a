"""The head process: connections, object directory, scheduler, event bus, worker supervision.

    clients/workers ──authenticated frames──▶ Peer.data_received ──▶ Head.on_<Message>
        ──▶ ObjectDirectory (objects) + Scheduler (decisions) ──▶ Head.do_<Instruction>
        ──▶ frames to workers / clients, commands to the fork server
    fork server ──("spawned"|"exited", worker, pid, code)──▶ Head (worker start and death)
    timer (1 s) ──▶ metrics + owner liveness ──▶ event bus ──▶ subscribed connections
    worker output ──▶ its owner (whole) + "log" events (cut, not in the replayed history;
        only while someone subscribes) ──▶ event bus

Run as ``python -m nbray._compose.head_process SESSION_DIR``; the cluster's settings are in
``SESSION_DIR/config.json`` and its secret in ``SESSION_DIR/secret`` (0600). It prints
``NBRAY_READY <address>`` once it accepts connections, and exits when told to shut down,
when its owner (the process that started it with ``nbray.init()``) goes away, or on
SIGTERM/SIGINT — taking its fork server, workers and shared-memory segments with it.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import pickle
import signal
import socket
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nbray._base.errors import RemoteError
from nbray._wire import protocol as P
from nbray._wire import shm
from nbray._wire.gpus import visible_devices_env
from nbray._wire.session_files import pid_alive, read_secret, remove_session_dir
from nbray._wire.transport import FrameDecoder, encode

from . import head_views as views
from . import scheduler as S
from .failures import actor_died_payload, error_text, failure_message
from .head_records import ActorRecord, EndedTask, HeadConfig, Peer, TaskRecord
from .objects import ObjectDirectory
from .reactor import Reactor
from .watchdog import Watchdog, WatchdogSettings

log = logging.getLogger("nbray.head")
EVENT_HISTORY = 10_000
UNWATCHED_HISTORY = 5_000
DEAD_ACTOR_HISTORY = 1000
PIPELINE_DEPTH = 64  # tasks a worker may hold when they are short (see Scheduler)
SHORT_TASK = 0.001  # seconds: functions faster than this on average are pipelined


class Head:
    def __init__(self, config: HeadConfig) -> None:
        self.config = config
        self.secret = read_secret(Path(config.session_dir) / "secret")
        Path(config.spill_dir).mkdir(mode=0o700, exist_ok=True)
        self.objects = ObjectDirectory(config.object_store_memory, config.spill_dir, config.session)
        self.sched = S.Scheduler(config.resources, config.gpu_ids, pipeline_depth=PIPELINE_DEPTH)
        self.func_time: dict[bytes, float] = {}  # moving average of each function's run time
        self.peers: dict[int, Peer] = {}
        self.worker_peers: dict[int, Peer] = {}
        self.worker_pids: dict[int, int] = {}
        self.worker_actor: dict[int, int] = {}
        self.kill_on_spawn: set[int] = set()
        self.watchdog = Watchdog(WatchdogSettings.from_env())
        self.kill_causes: dict[int, S.DeathCause] = {}  # workers the watchdog killed, and why
        self.last_dispatch: dict[int, int] = {}  # worker id -> when it was last given work
        self._dispatches = itertools.count(1)
        self.tasks: dict[int, TaskRecord] = {}
        self.producer: dict[int, int] = {}  # return object id -> task id
        self.functions: dict[bytes, bytes] = {}
        self.actors: dict[int, ActorRecord] = {}
        self.actor_names: dict[tuple[str, str], int] = {}
        self.dead_actors: dict[int, str] = {}  # why recent actors died, for late calls
        self.events: deque[dict[str, Any]] = deque(maxlen=EVENT_HISTORY)
        # tasks that ended while nobody subscribed, replayed as events to the next one
        self.unwatched: deque[EndedTask] = deque(maxlen=UNWATCHED_HISTORY)
        self.subscribers: set[int] = set()
        self.finished_count: dict[str, int] = {"FINISHED": 0, "FAILED": 0, "CANCELLED": 0}
        self._next_conn = 1
        self._dirty: list[Peer] = []
        self._stopping = False
        self.reactor = Reactor()
        self.forkserver: subprocess.Popen[bytes] | None = None
        self.fs_sock: socket.socket | None = None
        self.fs_decoder = FrameDecoder()
        self.sampler: Any = None
        self.handlers: dict[type, Callable[[Peer, Any], None]] = {
            P.Hello: self.on_hello,
            P.Submit: self.on_submit,
            P.CallActor: self.on_call_actor,
            P.CreateActor: self.on_create_actor,
            P.Put: self.on_put,
            P.Fetch: self.on_fetch,
            P.AddHold: self.on_add_hold,
            P.Release: self.on_release,
            P.Cancel: self.on_cancel,
            P.KillActor: self.on_kill_actor,
            P.Request: self.on_request,
            P.Subscribe: self.on_subscribe,
            P.Unsubscribe: self.on_unsubscribe,
            P.Shutdown: self.on_shutdown,
            P.TaskDone: self.on_task_done,
            P.TaskFailed: self.on_task_failed,
            P.Blocked: self.on_blocked,
            P.Unqueued: self.on_unqueued,
            P.ForgetFunction: self.on_forget_function,
            P.ActorStartFailed: self.on_actor_start_failed,
            P.Unblocked: self.on_unblocked,
            P.Output: self.on_output,
        }
        self.instructions: dict[type, Callable[[Any], None]] = {
            S.SpawnWorker: self.do_spawn,
            S.KillWorker: self.do_kill,
            S.Dispatch: self.do_dispatch,
            S.Interrupt: self.do_interrupt,
            S.Unqueue: self.do_unqueue,
            S.FailTask: self.do_fail_task,
            S.Retry: self.do_retry,
            S.StartActor: self.do_start_actor,
            S.DispatchCall: self.do_dispatch_call,
            S.FailCall: self.do_fail_call,
            S.ActorStateChanged: self.do_actor_state,
        }
        self.requests: dict[str, Callable[..., Any]] = {
            "cluster_info": lambda peer: views.cluster_info(self),
            "get_actor": self.req_get_actor,
            "create_actor": self.req_create_actor,
            "status": lambda peer: views.status(self),
            "events": self.req_events,
            "object_info": lambda peer, ids: views.object_info(self, ids),
            "actor_info": lambda peer, actor_id: views.actor_info(self, actor_id),
        }

    # --- plumbing ------------------------------------------------------------------------

    def flush_soon(self, peer: Peer) -> None:
        if not self._dirty:
            self.reactor.call_soon(self._flush)
        self._dirty.append(peer)

    def _flush(self) -> None:
        dirty, self._dirty = self._dirty, []
        for peer in dirty:
            peer.flush()

    def dispatch(self, peer: Peer, msg: Any) -> None:
        handler = self.handlers.get(type(msg))
        if handler is None:
            log.warning("connection %s sent an unknown message %s", peer.conn_id, type(msg))
            return
        if not peer.conn_id and type(msg) is not P.Hello:
            log.warning("a connection sent %s before Hello: closed", type(msg).__name__)
            peer.abort()
            return
        handler(peer, msg)

    def run(self, instructions: list[Any]) -> None:
        for ins in instructions:
            self.instructions[type(ins)](ins)

    def publish(self, data: dict[str, Any], history: bool = True) -> None:
        if history:
            self.events.append(data)
        if self.subscribers:
            ev = P.Event(data)
            for cid in self.subscribers:
                peer = self.peers.get(cid)
                if peer is not None:
                    peer.send(ev)

    def task_event(self, rec: TaskRecord, state: str, **extra: Any) -> None:
        rec.state = state
        if state == "RUNNING":
            rec.started = time.time()
            rec.pid = extra.get("pid", 0)
        if not self.subscribers:  # nobody listens: keep the hot path free of event dicts
            return
        spec = rec.spec
        data = views.task_data(
            self.config.node_id, spec, rec.owner, rec.parent, state, time.time(), extra
        )
        if state == "SUBMITTED":
            rec.published = True
        self.publish(data)

    # --- connections ---------------------------------------------------------------------

    def on_hello(self, peer: Peer, msg: P.Hello) -> None:
        if peer.conn_id:
            return
        peer.conn_id = self._next_conn
        self._next_conn += 1
        peer.role = msg.role
        peer.pid = msg.pid
        if msg.cwd:
            peer.job = P.Job(msg.cwd, msg.sys_path)
        self.peers[peer.conn_id] = peer
        if msg.role == "worker":
            peer.worker_id = msg.worker_id
            self.worker_peers[msg.worker_id] = peer
        peer.send(
            P.Welcome(
                peer.conn_id,
                self.config.session,
                self.config.node_id,
                self.config.namespace,
                self.config.spill_dir,
            )
        )
        if msg.role == "worker":
            self.run(self.sched.worker_started(msg.worker_id))

    def peer_lost(self, peer: Peer) -> None:
        self.peers.pop(peer.conn_id, None)
        self.subscribers.discard(peer.conn_id)
        for oid in peer.holds:
            self.objects.release(oid, peer.conn_id)
        peer.holds.clear()
        if not self._stopping and self.objects.sweep_creator(peer.conn_id):
            log.info("removed segments connection %s wrote but never stored", peer.conn_id)
        if peer.role == "worker":
            if self.worker_peers.get(peer.worker_id) is peer:
                del self.worker_peers[peer.worker_id]
            # its death is handled when the fork server reports the exit code
            pid = self.worker_pids.get(peer.worker_id)
            if pid and not self._stopping:
                self.reactor.call_later(2.0, self._reap_silent_worker, peer.worker_id, pid)
            return
        if self._stopping:
            return
        self.run(self.sched.owner_gone(peer.conn_id))
        if peer.role == "owner":
            log.info("the owner of this cluster disconnected: shutting down")
            self.shutdown()

    def _reap_silent_worker(self, worker_id: int, pid: int) -> None:
        # the connection closed but no exit was reported: make sure the process is gone
        if self.worker_pids.get(worker_id) == pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    # --- tasks ---------------------------------------------------------------------------

    def _owner_and_parent(self, peer: Peer) -> tuple[int, int]:
        if peer.role != "worker":
            return peer.conn_id, 0
        w = self.sched.workers.get(peer.worker_id)
        if w is not None and w.task_id and w.task_id in self.tasks:
            rec = self.tasks[w.task_id]
            return rec.owner, rec.spec.task_id
        aid = self.worker_actor.get(peer.worker_id)
        if aid and aid in self.actors:
            return self.actors[aid].owner, 0
        return peer.conn_id, 0

    def _register_task(self, peer: Peer, spec: P.TaskSpec) -> TaskRecord:
        owner, parent = self._owner_and_parent(peer)
        rec = TaskRecord(spec, owner, parent, time.time())
        self.tasks[spec.task_id] = rec
        for oid in spec.return_ids:
            self.objects.create(oid, peer.conn_id)
            self.producer[oid] = spec.task_id
            peer.holds.add(oid)
        self.objects.pin(spec.deps)
        self.objects.pin(spec.contained)
        self.task_event(rec, "SUBMITTED")
        return rec

    def on_submit(self, peer: Peer, msg: P.Submit) -> None:
        spec = msg.spec
        if msg.func:
            self.functions[spec.func_id] = msg.func
        rec = self._register_task(peer, spec)
        unready = set()
        for dep in spec.deps:
            payload = self.objects.ready(dep)
            if payload is None:
                if not self.objects.known(dep):
                    self._store_error(rec, P.lost_payload(dep))
                    return
                unready.add(dep)
            elif payload.kind == P.ERROR:
                self._store_error(rec, payload)
                return
        self.run(
            self.sched.submit(
                spec.task_id,
                spec.name,
                spec.resources,
                spec.max_retries,
                rec.owner,
                unready,
                rec.parent,
                short=self.func_time.get(spec.func_id, SHORT_TASK) < SHORT_TASK,
            )
        )

    def _dep_payloads(self, deps: tuple[int, ...]) -> dict[int, P.Payload]:
        out = {}
        for dep in deps:
            payload = self.objects.ready(dep)
            if payload is not None:
                out[dep] = payload
        return out

    def do_dispatch(self, ins: S.Dispatch) -> None:
        rec = self.tasks.get(ins.task_id)
        peer = self.worker_peers.get(ins.worker_id)
        if rec is None or peer is None:  # raced with a death; the scheduler will be told
            return
        spec = rec.spec
        func = b""
        if spec.func_id not in peer.known_funcs:
            func = self.functions[spec.func_id]
            peer.known_funcs.add(spec.func_id)
        env = visible_devices_env(list(ins.gpu_ids)) if self.config.gpu_ids else {}
        rec.worker_id = ins.worker_id
        self.last_dispatch[ins.worker_id] = next(self._dispatches)
        job = self._job_for(peer, rec.owner)
        peer.send(P.RunTask(spec, func, self._dep_payloads(spec.deps), env, job))
        self.task_event(
            rec, "RUNNING", worker_id=ins.worker_id, pid=peer.pid, gpu_ids=list(ins.gpu_ids)
        )

    def _job_for(self, worker: Peer, owner: int) -> P.Job | None:
        """The owner's cwd and sys.path, when this worker last ran someone else's work."""
        if worker.job_owner == owner:
            return None
        owner_peer = self.peers.get(owner)
        if owner_peer is None or owner_peer.job is None:
            return None
        worker.job_owner = owner
        return owner_peer.job

    def on_task_done(self, peer: Peer, msg: P.TaskDone) -> None:
        rec = self.tasks.get(msg.task_id)
        if rec is None:
            for oid, payload, _contained in msg.results:
                self.objects.set(oid, payload, ())  # dropped: nobody waits any more
            return
        self._timed(rec.spec.func_id, msg.duration)
        for oid, payload, contained in msg.results:
            self._store(oid, payload, contained)
        self._end_task(rec, "FINISHED")
        if rec.spec.actor_id:
            self.run(self.sched.call_finished(rec.spec.task_id, rec.spec.actor_id))
        else:
            self.run(self.sched.task_finished(rec.spec.task_id, True))

    def on_task_failed(self, peer: Peer, msg: P.TaskFailed) -> None:
        rec = self.tasks.get(msg.task_id)
        if rec is None:
            return
        if rec.spec.actor_id:
            self.run(self.sched.call_finished(rec.spec.task_id, rec.spec.actor_id))
            self._store_error(rec, P.Payload(P.ERROR, msg.error))
            return
        out = self.sched.task_finished(rec.spec.task_id, False, msg.retriable)
        retrying = any(isinstance(i, S.Retry) and i.task_id == rec.spec.task_id for i in out)
        if not retrying:
            self._store_error(rec, P.Payload(P.ERROR, msg.error))
        self.run(out)

    def _store(self, oid: int, payload: P.Payload, contained: tuple[int, ...]) -> None:
        for cid in self.objects.set(oid, payload, contained):
            peer = self.peers.get(cid)
            if peer is not None:
                peer.send(P.ObjectReady(oid, payload))
        self.producer.pop(oid, None)
        if self.objects.known(oid):
            self.run(self.sched.object_ready(oid, payload.kind != P.ERROR))

    def _store_error(self, rec: TaskRecord, payload: P.Payload) -> None:
        self.objects.discard_partial(rec.spec.return_ids)
        for oid in rec.spec.return_ids:
            self._store(oid, payload, ())
        state = "FAILED"
        with contextlib.suppress(Exception):
            err = pickle.loads(payload.data)
            if err.kind == "cancelled":
                state = "CANCELLED"
        self._end_task(rec, state, error=error_text(payload))

    def _end_task(self, rec: TaskRecord, state: str, **extra: Any) -> None:
        if self.tasks.pop(rec.spec.task_id, None) is None:
            return
        for oid in rec.spec.return_ids:
            self.producer.pop(oid, None)
        self.objects.unpin(rec.spec.deps)
        self.objects.unpin(rec.spec.contained)
        if rec.spec.actor_id:
            actor = self.actors.get(rec.spec.actor_id)
            if actor is not None:
                actor.calls.discard(rec.spec.task_id)
        self.finished_count[state] = self.finished_count.get(state, 0) + 1
        if not self.subscribers:  # kept compactly, replayed to a later subscriber
            self.unwatched.append(EndedTask.of(rec, state, time.time(), extra.get("error", "")))
        self.task_event(
            rec, state, worker_id=rec.worker_id, duration=time.time() - rec.submitted, **extra
        )

    def do_fail_task(self, ins: S.FailTask) -> None:
        rec = self.tasks.get(ins.task_id)
        if rec is None:
            return
        if ins.kind == "dependency":
            payload = self.objects.ready(ins.dependency) or P.lost_payload(ins.dependency)
            self._store_error(rec, payload)
            return
        message = failure_message(rec.spec.name, ins)
        err = RemoteError(
            kind=ins.kind,
            message=message,
            function_name=rec.spec.name,
            task_id=f"{rec.spec.task_id:016x}",
            exit_code=ins.exit_code,
        )
        self._store_error(rec, P.Payload(P.ERROR, pickle.dumps(err)))

    def do_retry(self, ins: S.Retry) -> None:
        rec = self.tasks.get(ins.task_id)
        if rec is not None:
            self.objects.discard_partial(rec.spec.return_ids)
            self.task_event(rec, "RETRYING", attempt=ins.attempt, reason=ins.reason)

    def do_interrupt(self, ins: S.Interrupt) -> None:
        peer = self.worker_peers.get(ins.worker_id)
        if peer is not None:
            peer.send(P.CancelTask(ins.task_id))

    def on_cancel(self, peer: Peer, msg: P.Cancel) -> None:
        tid = self.producer.get(msg.object_id)
        if tid is None:
            return
        rec = self.tasks.get(tid)
        if rec is not None and rec.spec.actor_id:
            return  # actor calls are not cancelled (as in Ray, for running calls)
        self.run(self.sched.cancel(tid, msg.force, msg.recursive))

    def on_forget_function(self, peer: Peer, msg: P.ForgetFunction) -> None:
        peer.known_funcs.discard(msg.func_id)

    def do_unqueue(self, ins: S.Unqueue) -> None:
        peer = self.worker_peers.get(ins.worker_id)
        if peer is not None:
            peer.send(P.Unqueue(ins.task_ids))

    def on_unqueued(self, peer: Peer, msg: P.Unqueued) -> None:
        self.run(self.sched.unqueued(peer.worker_id, msg.task_ids))

    def _timed(self, func_id: bytes, duration: float) -> None:
        if func_id:
            old = self.func_time.get(func_id)
            self.func_time[func_id] = duration if old is None else 0.8 * old + 0.2 * duration

    def on_blocked(self, peer: Peer, msg: P.Blocked) -> None:
        self.run(self.sched.worker_blocked(peer.worker_id))

    def on_unblocked(self, peer: Peer, msg: P.Unblocked) -> None:
        self.run(self.sched.worker_unblocked(peer.worker_id))

    def on_output(self, peer: Peer, msg: P.Output) -> None:
        rec = self.tasks.get(msg.task_id)
        if rec is not None:
            owner = rec.owner
        else:
            aid = self.worker_actor.get(peer.worker_id)
            actor = self.actors.get(aid) if aid else None
            if actor is None:
                return
            owner = actor.owner
        target = self.peers.get(owner)
        if target is not None:
            target.send(msg._replace(pid=peer.pid))
        if self.subscribers:  # watchers (the dashboard) see logs; nobody listens: no cost
            self.publish(views.log_event(msg, peer.pid), history=False)

    # --- objects -------------------------------------------------------------------------

    def on_put(self, peer: Peer, msg: P.Put) -> None:
        peer.holds.add(msg.object_id)
        self.objects.set(msg.object_id, msg.payload, msg.contained, holder=peer.conn_id)

    def on_fetch(self, peer: Peer, msg: P.Fetch) -> None:
        for oid in msg.object_ids:
            payload = self.objects.wait(oid, peer.conn_id)
            if payload is not None:
                peer.send(P.ObjectReady(oid, payload))

    def on_add_hold(self, peer: Peer, msg: P.AddHold) -> None:
        for oid in msg.object_ids:
            if self.objects.add_hold(oid, peer.conn_id):
                peer.holds.add(oid)

    def on_release(self, peer: Peer, msg: P.Release) -> None:
        for oid in msg.object_ids:
            peer.holds.discard(oid)
            self.objects.release(oid, peer.conn_id)

    # --- actors --------------------------------------------------------------------------

    def on_create_actor(self, peer: Peer, msg: P.CreateActor) -> None:
        self._create_actor(peer, msg.spec, msg.cls)

    def _create_actor(self, peer: Peer, spec: P.ActorSpec, cls: bytes) -> None:
        owner, _ = self._owner_and_parent(peer)
        rec = ActorRecord(spec, cls, owner)
        self.actors[spec.actor_id] = rec
        if spec.name:
            self.actor_names[(spec.namespace, spec.name)] = spec.actor_id
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
            )
        )

    def req_create_actor(self, peer: Peer, spec: P.ActorSpec, cls: bytes) -> None:
        key = (spec.namespace, spec.name)
        existing = self.actor_names.get(key)
        if existing is not None and existing in self.actors:
            raise ValueError(
                f"an actor named {spec.name!r} already exists in namespace "
                f"{spec.namespace!r}; pick another name or use nbray.get_actor({spec.name!r})"
            )
        self._create_actor(peer, spec, cls)

    def on_call_actor(self, peer: Peer, msg: P.CallActor) -> None:
        spec = msg.spec
        rec = self._register_task(peer, spec)
        actor = self.actors.get(spec.actor_id)
        if actor is None:
            cause = self.dead_actors.get(spec.actor_id, "the actor is dead")
            self._store_error(rec, actor_died_payload(spec, cause))
            return
        actor.calls.add(spec.task_id)
        self.run(self.sched.actor_call(spec.task_id, spec.actor_id))

    def do_start_actor(self, ins: S.StartActor) -> None:
        actor = self.actors.get(ins.actor_id)
        peer = self.worker_peers.get(ins.worker_id)
        if actor is None or peer is None:
            return
        self.worker_actor[ins.worker_id] = ins.actor_id
        self.last_dispatch[ins.worker_id] = next(self._dispatches)
        env = visible_devices_env(list(ins.gpu_ids)) if self.config.gpu_ids else {}
        job = self._job_for(peer, actor.owner)
        peer.send(
            P.StartActor(actor.spec, actor.cls, self._dep_payloads(actor.spec.deps), env, job)
        )

    def do_dispatch_call(self, ins: S.DispatchCall) -> None:
        rec = self.tasks.get(ins.call_id)
        peer = self.worker_peers.get(ins.worker_id)
        if rec is None or peer is None:
            return
        rec.worker_id = ins.worker_id
        self.last_dispatch[ins.worker_id] = next(self._dispatches)
        peer.send(P.RunActorCall(rec.spec, self._dep_payloads(rec.spec.deps)))
        self.task_event(rec, "RUNNING", worker_id=ins.worker_id, pid=peer.pid)

    def do_fail_call(self, ins: S.FailCall) -> None:
        rec = self.tasks.get(ins.call_id)
        if rec is not None:
            self._store_error(rec, actor_died_payload(rec.spec, ins.message))

    def do_actor_state(self, ins: S.ActorStateChanged) -> None:
        actor = self.actors.get(ins.actor_id)
        if actor is None:
            return
        actor.state = ins.state
        self.publish(
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
        if ins.state == "DEAD":
            self.dead_actors[ins.actor_id] = ins.reason or "the actor is dead"
            while len(self.dead_actors) > DEAD_ACTOR_HISTORY:
                self.dead_actors.pop(next(iter(self.dead_actors)))
            for cid in list(actor.calls):
                rec = self.tasks.get(cid)
                if rec is not None:
                    self._store_error(rec, actor_died_payload(rec.spec, ins.reason))
            self.actors.pop(ins.actor_id, None)
            key = (actor.spec.namespace, actor.spec.name)
            if self.actor_names.get(key) == ins.actor_id:
                del self.actor_names[key]
            self.objects.unpin(actor.spec.deps)
            self.objects.unpin(actor.spec.contained)

    def on_actor_start_failed(self, peer: Peer, msg: P.ActorStartFailed) -> None:
        self.run(self.sched.kill_actor(msg.actor_id, no_restart=True, reason=msg.reason))

    def on_kill_actor(self, peer: Peer, msg: P.KillActor) -> None:
        self.run(self.sched.kill_actor(msg.actor_id, msg.no_restart, msg.when_idle))

    def req_get_actor(self, peer: Peer, name: str, namespace: str) -> tuple[Any, ...]:
        aid = self.actor_names.get((namespace, name))
        actor = self.actors.get(aid) if aid else None
        if actor is None:
            from nbray._base.errors import ActorNotFoundError

            raise ActorNotFoundError(f"no live actor named {name!r} in namespace {namespace!r}")
        return (
            actor.spec.actor_id,
            actor.spec.class_name,
            actor.spec.methods,
            actor.spec.is_async,
            actor.spec.max_task_retries,
        )

    # --- workers -------------------------------------------------------------------------

    def do_spawn(self, ins: S.SpawnWorker) -> None:
        self._fs_send(("spawn", ins.worker_id))

    def do_kill(self, ins: S.KillWorker) -> None:
        pid = self.worker_pids.get(ins.worker_id)
        if pid is None:
            self.kill_on_spawn.add(ins.worker_id)
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)

    def on_forkserver(self, msg: tuple[Any, ...]) -> None:
        what, wid, pid = msg[0], msg[1], msg[2]
        if what == "spawned":
            self.worker_pids[wid] = pid
            if wid in self.kill_on_spawn:
                self.kill_on_spawn.discard(wid)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        elif what == "exited":
            code = msg[3]
            self.worker_pids.pop(wid, None)
            self.worker_actor.pop(wid, None)
            self.last_dispatch.pop(wid, None)
            cause = self.kill_causes.pop(wid, None)
            peer = self.worker_peers.pop(wid, None)
            if peer is not None:
                peer.abort()
            if not self._stopping:
                self.publish(
                    {
                        "type": "worker",
                        "worker_id": wid,
                        "pid": pid,
                        "state": "DEAD",
                        "exit_code": code,
                        "time": time.time(),
                    }
                )
                self.run(self.sched.worker_died(wid, code, cause))

    def _fs_send(self, msg: tuple[Any, ...]) -> None:
        if self.fs_sock is not None:
            with contextlib.suppress(OSError):
                self.fs_sock.sendall(encode([msg]))

    def _fs_readable(self) -> None:
        assert self.fs_sock is not None
        try:
            data = self.fs_sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.reactor.unregister(self.fs_sock.fileno())
            if not self._stopping:
                log.error("the fork server died: shutting down")
                self.shutdown()
            return
        for msgs in self.fs_decoder.feed(data):
            for msg in msgs:
                self.on_forkserver(msg)

    def attach_forkserver(self, proc: subprocess.Popen[bytes], sock: socket.socket) -> None:
        """Take over the fork server started by ``head_process`` (see start_forkserver)."""
        self.forkserver = proc
        sock.setblocking(False)
        self.fs_sock = sock
        self.reactor.add_reader(sock.fileno(), self._fs_readable)

    # --- requests, events, lifecycle -----------------------------------------------------

    def on_request(self, peer: Peer, msg: P.Request) -> None:
        handler = self.requests.get(msg.what)
        try:
            if handler is None:
                raise ValueError(f"unknown request {msg.what!r}")
            peer.send(P.Reply(msg.req_id, True, handler(peer, *msg.args)))
        except Exception as exc:
            peer.send(P.Reply(msg.req_id, False, exc))

    def req_events(self, peer: Peer, limit: int = 1000) -> list[dict[str, Any]]:
        return list(self.events)[-limit:]

    def on_subscribe(self, peer: Peer, msg: P.Subscribe) -> None:
        if msg.replay:
            for data in views.replay(self):
                peer.send(P.Event(data))
        self.subscribers.add(peer.conn_id)

    def on_unsubscribe(self, peer: Peer, msg: P.Unsubscribe) -> None:
        self.subscribers.discard(peer.conn_id)

    def on_shutdown(self, peer: Peer, msg: P.Shutdown) -> None:
        self.shutdown()

    def tick(self) -> None:
        if self._stopping:
            return
        owner = self.config.owner_pid
        if owner and not pid_alive(owner):
            log.info("the owner process %s is gone: shutting down", owner)
            self.shutdown()
            return
        self.run(self.sched.trim())
        if self.subscribers:
            self.publish(views.metrics(self))
        self.reactor.call_later(1.0, self.tick)

    def watch(self) -> None:
        """The watchdog's turn (see watchdog.py): kill workers that would take the node's
        memory, or that hang stopped."""
        if self._stopping:
            return
        kills = self.watchdog.check(self.sched.busy_workers(), self.worker_pids, self.last_dispatch)
        for wid, cause in kills:
            pid = self.worker_pids.get(wid)
            if pid is not None:
                self.kill_causes[wid] = cause
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        self.reactor.call_later(self.watchdog.interval, self.watch)

    def shutdown(self) -> None:
        if self._stopping:
            return
        self._stopping = True
        self._fs_send(("shutdown", 0))
        for peer in list(self.peers.values()):
            peer.flush()
        self.reactor.stop()

    def serve(self) -> None:
        """Listen, spawn the initial workers, print the ready line, run until shut down."""
        cfg = self.config
        # bound by the process that started us (cluster/local.py), so clients could
        # connect before we got here
        listeners = [socket.socket(fileno=fd) for fd in cfg.listen_fds]
        address = f"unix:{Path(cfg.session_dir) / 'sock'}"
        tcp_file = Path(cfg.session_dir) / "tcp_address"
        if tcp_file.exists():
            address = tcp_file.read_text()
        for listener in listeners:
            self.reactor.serve(listener, lambda stream: Peer(self, stream))
        self.run(self.sched.start())
        self.reactor.on_signals((signal.SIGTERM, signal.SIGINT), self.shutdown)
        sys.stdout.write(f"NBRAY_READY {address}\n")
        sys.stdout.flush()
        self.reactor.call_later(1.0, self.tick)
        self.reactor.call_later(self.watchdog.interval, self.watch)
        self.reactor.run()
        for listener in listeners:
            listener.close()
        self._flush()
        self._stop_forkserver()
        self.objects.free_all()
        shm.sweep(cfg.session)
        if self.sampler is not None:
            self.sampler.close()
        remove_session_dir(cfg.session_dir)

    def _stop_forkserver(self) -> None:
        fs = self.forkserver
        if fs is None:
            return
        try:
            fs.wait(timeout=5)
        except subprocess.TimeoutExpired:
            fs.kill()
            fs.wait(timeout=5)


def run_head(session_dir: str, forkserver: subprocess.Popen[bytes], fs_sock: socket.socket) -> None:
    """Run the head of the cluster in ``session_dir`` (called by ``head_process``)."""
    logging.basicConfig(
        level=os.environ.get("NBRAY_LOG_LEVEL", "WARNING"),
        format="%(asctime)s nbray.head %(levelname)s %(message)s",
    )
    config = HeadConfig.load(session_dir)
    if config.gpu_ids is None:  # detect here, while the fork server starts
        from nbray._wire.gpus import detect_gpus

        config.gpu_ids = [g.index for g in detect_gpus()]
        if config.gpu_ids:
            config.resources["GPU"] = float(len(config.gpu_ids))
    head = Head(config)
    head.attach_forkserver(forkserver, fs_sock)
    head.serve()
