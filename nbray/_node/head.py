"""The head process: a thin composition of its jobs, wired through one routing table.

    clients/workers ──authenticated frames──▶ peers.Peer ──▶ routing.Router (one table)
        ├──▶ tasks.TaskTable (tasks, objects) ──┐
        ├──▶ actors.ActorTable (actors)  ───────┼──▶ Scheduler (decides, no I/O)
        ├──▶ leases.LeaseTable (leases) ────────┤
        └──▶ bus.EventBus (Subscribe)           │        │ instructions
                                                │        ▼
        frames to workers/clients ◀── jobs' do_<instruction> ◀── Router.run
    fork server ──spawned / exited──▶ supervisor.Supervisor ──▶ Head.worker_exited
        ──▶ Scheduler.worker_died
    timer (1 s) ──▶ owner liveness, pool trim, cyclic GC (collector.py), metrics ──▶ bus
                    ──▶ subscribed connections
    timer ──▶ Supervisor.watch (watchdog kills) ; worker output ──▶ its owner + "log" events

The parts: ``peers.Connections`` (each connection), ``supervisor.Supervisor`` (worker
processes), ``tasks.TaskTable`` (tasks and objects), ``actors.ActorTable``,
``leases.LeaseTable`` (workers leased to clients, which send them tasks directly),
``bus.EventBus`` (events, history, replay), ``routing.Router``; below them the pure
``scheduler.Scheduler`` (with ``resources.ResourcePool``) and ``objects.ObjectDirectory``.
The head owns the lifecycle: connections said Hello or closed, a worker exited, the
timers, shutdown.

Run as ``python -m nbray._compose.head_process SESSION_DIR``; the cluster's settings are in
``SESSION_DIR/config.json`` and its secret in ``SESSION_DIR/secret`` (0600). It prints
``NBRAY_READY <address>`` once it accepts connections, and exits when told to shut down,
when its owner (the process that started it with ``nbray.init()``) goes away, or on
SIGTERM/SIGINT — taking its fork server, workers and shared-memory segments with it.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nbray._wire import protocol as P
from nbray._wire import shm
from nbray._wire.session_files import pid_alive, read_secret, remove_session_dir

from . import head_views as views
from . import instructions as S
from .actors import ActorTable
from .bus import EventBus, client_event
from .collector import GrowthCollector
from .head_groups import GroupTable
from .head_records import HeadConfig
from .leases import LeaseTable
from .objects import GlobalGC, ObjectDirectory
from .peers import Connections, Peer
from .reactor import Reactor
from .routing import Router
from .scheduler import Scheduler
from .states import DEAD
from .supervisor import ForkServerProcess, Supervisor
from .tasks import TaskTable

if TYPE_CHECKING:
    from nbray._wire.metrics import MetricsSampler

log = logging.getLogger("nbray.head")
PIPELINE_DEPTH = 64  # tasks a worker may hold when they are short (see Scheduler)
# a worker's exit waits at most this long for its connection to close (see worker_exited)
EXIT_WAITS_FOR_CONNECTION = 2.0


class Head:
    def __init__(self, config: HeadConfig) -> None:
        self.config = config
        Path(config.spill_dir).mkdir(mode=0o700, exist_ok=True)
        self.reactor = Reactor()
        self.router = Router()
        run = self.router.run
        self.objects = ObjectDirectory(config.object_store_memory, config.spill_dir, config.session)
        self.global_gc = GlobalGC()
        self.collector = GrowthCollector()
        self.sched = Scheduler(config.resources, config.gpu_ids, pipeline_depth=PIPELINE_DEPTH)
        self.bus = EventBus(config.node_id, self.reactor.call_later)
        self.router.before_request = self.bus.flush
        secret = read_secret(Path(config.session_dir) / "secret")
        self.conns = Connections(secret, self.reactor, self.router.route, self.peer_lost)
        self.supervisor = Supervisor(self.reactor, self.worker_exited, self.shutdown)
        self.tasks = TaskTable(
            bool(config.gpu_ids), self.objects, self.sched, run, self.bus, self.conns,
            self.supervisor,
        )  # fmt: skip
        self.actors = ActorTable(
            self.objects, self.sched, run, self.bus, self.conns, self.supervisor, self.tasks
        )
        self.tasks.actors = self.actors
        self.leases = LeaseTable(self.sched, run, self.conns, self.supervisor, self.tasks)
        self.tasks.leases = self.leases
        self.groups = GroupTable(
            self.sched, run, self.bus, self.tasks.owner_and_parent, config.node_id
        )
        self.sampler: MetricsSampler | None = None
        self._stopping = False
        # workers whose exit the fork server reported while their connection was still open
        self._exits: dict[int, tuple[int, int | None, S.DeathCause | None]] = {}
        tasks, actors = self.tasks, self.actors
        # the one table: every message, request and instruction, and the job handling it
        self.router.messages.update(
            {
                P.Hello: self.on_hello,
                P.Submit: tasks.on_submit,
                P.CallActor: actors.on_call_actor,
                P.CreateActor: actors.on_create_actor,
                P.Put: tasks.on_put,
                P.Fetch: tasks.on_fetch,
                P.AddHold: tasks.on_add_hold,
                P.Release: tasks.on_release,
                P.Cancel: tasks.on_cancel,
                P.KillActor: actors.on_kill_actor,
                P.Subscribe: self.on_subscribe,
                P.Unsubscribe: self.on_unsubscribe,
                P.Shutdown: self.on_shutdown,
                P.TaskDone: tasks.on_task_done,
                P.TaskFailed: tasks.on_task_failed,
                P.Blocked: tasks.on_blocked,
                P.Yielded: tasks.on_yielded,
                P.StreamAck: tasks.on_stream_ack,
                P.Unqueued: tasks.on_unqueued,
                P.Retire: tasks.on_retire,
                P.ForgetFunction: tasks.on_forget_function,
                P.ActorStartFailed: actors.on_actor_start_failed,
                P.Listening: actors.on_listening,
                P.CallerCalls: actors.on_caller_calls,
                P.Unblocked: tasks.on_unblocked,
                P.Output: tasks.on_output,
                P.LeaseRequest: self.leases.on_request,
                P.LeaseReady: self.leases.on_ready,
                P.LeaseReturn: self.leases.on_return,
            }
        )
        self.router.requests.update(
            {
                "cluster_info": lambda peer: views.cluster_info(config, self.sched, self.objects),
                "get_actor": actors.req_get_actor,
                "create_actor": actors.req_create_actor,
                "status": lambda peer: views.status(
                    self.sched,
                    tasks.finished_count,
                    self.supervisor.pids,
                    len(actors.actors),
                    self.conns.clients(),
                    self.objects,
                ),
                "events": lambda peer, limit=1000: self.bus.history(limit),
                "object_info": lambda peer, ids: views.object_info(
                    config.node_id, self.objects, tasks.producer, tasks.tasks, ids
                ),
                "actor_info": lambda peer, actor_id: actors.info(actor_id, config.node_id),
                **self.groups.requests(),
            }
        )
        self.router.instructions.update(
            {
                S.SpawnWorker: lambda ins: self.supervisor.spawn(ins.worker_id, ins.runtime_env),
                S.KillWorker: lambda ins: self.supervisor.kill(ins.worker_id),
                S.Dispatch: tasks.do_dispatch,
                S.Interrupt: tasks.do_interrupt,
                S.Unqueue: tasks.do_unqueue,
                S.FailTask: tasks.do_fail_task,
                S.Retry: tasks.do_retry,
                S.StartActor: actors.do_start_actor,
                S.DispatchCall: actors.do_dispatch_call,
                S.FailCall: actors.do_fail_call,
                S.ActorStateChanged: actors.do_actor_state,
                S.GroupStateChanged: self.groups.on_state,
            }
        )

    def run(self, instructions: list[Any]) -> None:
        self.router.run(instructions)

    # --- connections ---------------------------------------------------------------------

    def on_hello(self, peer: Peer, msg: P.Hello) -> None:
        if not self.conns.hello(peer, msg):
            return
        cfg = self.config
        peer.send(P.Welcome(peer.conn_id, cfg.session, cfg.node_id, cfg.namespace, cfg.spill_dir))
        if msg.role == "worker":
            self.run(self.sched.worker_started(msg.worker_id))
        else:
            self._client_changed(peer, "CONNECTED")

    def _client_changed(self, peer: Peer, state: str) -> None:
        event = client_event(peer.conn_id, peer.pid, peer.role, state, len(self.conns.clients()))
        self.bus.publish(event, history=False)

    def peer_lost(self, peer: Peer) -> None:
        """A registered connection closed (it already left ``conns``)."""
        self.bus.unsubscribe(peer.conn_id)
        for oid in peer.holds:
            self.objects.release(oid, peer.conn_id)
        peer.holds.clear()
        if not self._stopping and self.objects.sweep_creator(peer.conn_id):
            log.info("removed segments connection %s wrote but never stored", peer.conn_id)
        if peer.role == "worker":
            if peer.worker_id in self._exits:  # the exit came first: everything is read now
                self._exit_pending(peer.worker_id)
            else:  # its death is handled when the fork server reports the exit code
                self.supervisor.reap_later(peer.worker_id)
            return
        if self._stopping:
            return
        self.actors.caller_gone(peer.conn_id)
        self.run(self.sched.owner_gone(peer.conn_id))
        self._client_changed(peer, "DISCONNECTED")  # the kernel count follows at once
        if peer.role == "owner":
            log.info("the owner of this cluster disconnected: shutting down")
            self.shutdown()

    def on_subscribe(self, peer: Peer, msg: P.Subscribe) -> None:
        self.bus.subscribe(peer.conn_id, peer, self.tasks.tasks.values(), msg.replay)

    def on_unsubscribe(self, peer: Peer, msg: P.Unsubscribe) -> None:
        self.bus.unsubscribe(peer.conn_id)

    # --- workers -------------------------------------------------------------------------

    def worker_exited(
        self, worker_id: int, pid: int, code: int | None, cause: S.DeathCause | None
    ) -> None:
        """The fork server reports the exit. The worker's connection may still hold what it
        sent last (its results, ``Retire``): the two arrive on different sockets, in either
        order. While that connection is open, the exit waits for it to close (at once, as
        the process is gone), so that a worker retiring after ``max_calls`` is not taken
        for a crash of the task sent to it meanwhile."""
        if worker_id in self.conns.workers and not self._stopping:
            self._exits[worker_id] = (pid, code, cause)
            self.reactor.call_later(EXIT_WAITS_FOR_CONNECTION, self._exit_pending, worker_id)
            return
        self._worker_gone(worker_id, pid, code, cause)

    def _exit_pending(self, worker_id: int) -> None:
        exit_ = self._exits.pop(worker_id, None)
        if exit_ is not None:
            self._worker_gone(worker_id, *exit_)

    def _worker_gone(
        self, worker_id: int, pid: int, code: int | None, cause: S.DeathCause | None
    ) -> None:
        self.actors.worker_exited(worker_id)
        self.conns.drop_worker(worker_id)
        if self._stopping:
            return
        self.bus.publish(
            {
                "type": "worker",
                "worker_id": worker_id,
                "pid": pid,
                "state": DEAD,
                "exit_code": code,
                "time": time.time(),
            }
        )
        self.run(self.sched.worker_died(worker_id, code, cause))

    def attach_forkserver(
        self, proc: ForkServerProcess, sock: socket.socket, prespawned: int = 0
    ) -> None:
        """Take over the fork server started by ``head_process`` (``forkserver.start``),
        which forks the pool's first ``prespawned`` workers unasked."""
        self.supervisor.attach(proc, sock, prespawned)

    # --- timers and lifecycle ------------------------------------------------------------

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
        self.tasks.drop_stale_early()
        if self.leases.by_worker and self.sched.ready:  # (work that became ready otherwise)
            self.leases.work_waits()
        self.collector.tick(busy=bool(self.tasks.tasks))
        if self.bus.subscribers:
            if self.sampler is None:
                from nbray._wire.metrics import MetricsSampler

                self.sampler = MetricsSampler(self.config.node_id)
            self.bus.publish(
                views.metrics(self.sampler, self.sched, self.supervisor.pids, self.objects)
            )
        self.reactor.call_later(1.0, self.tick)

    def watch(self) -> None:
        """The watchdog's turn (see watchdog.py and Supervisor.watch)."""
        if self._stopping:
            return
        self.supervisor.watch(self.sched.busy_workers())
        objects = self.objects
        if self.global_gc.due(objects.shm_bytes, objects.capacity, time.monotonic()):
            for peer in list(self.conns.peers.values()):
                peer.send(P.CollectGarbage())
        self.reactor.call_later(self.supervisor.watchdog.interval, self.watch)

    def shutdown(self) -> None:
        if self._stopping:
            return
        self._stopping = True
        self.bus.flush()
        self.supervisor.stop()
        self.conns.flush_all()
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
            self.reactor.serve(listener, self.conns.accept)
        self.run(self.sched.start())
        self.reactor.on_signals((signal.SIGTERM, signal.SIGINT), self.shutdown)
        sys.stdout.write(f"NBRAY_READY {address}\n")
        sys.stdout.flush()
        self.reactor.call_later(1.0, self.tick)
        self.reactor.call_later(self.supervisor.watchdog.interval, self.watch)
        self.collector.start()
        self.reactor.run()
        self.collector.stop()
        for listener in listeners:
            listener.close()
        self.conns.flush()
        self.supervisor.wait_stopped()
        self.objects.free_all()
        shm.sweep(cfg.session)
        if self.sampler is not None:
            self.sampler.close()
        remove_session_dir(cfg.session_dir)


def run_head(
    session_dir: str, forkserver: ForkServerProcess, fs_sock: socket.socket, prespawned: int = 0
) -> None:
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
    head.attach_forkserver(forkserver, fs_sock, prespawned)
    head.serve()
