"""Worker supervision: the fork server, each worker's process, its job, and its end.

    Scheduler SpawnWorker / KillWorker ──▶ Supervisor.spawn / kill
        ──("spawn", worker) over the fork server's socket──▶ fork server ──fork──▶ worker
    fork server ──("spawned", worker, pid) / ("exited", worker, pid, code)──▶ Supervisor
        ──on_exit(worker, pid, code, why the head killed it)──▶ the head (Scheduler.worker_died)
    timer ──▶ Supervisor.watch ──▶ Watchdog.check(busy workers) ──▶ SIGKILL, cause kept
    a worker's connection closed but no exit came ──▶ reap_later ──▶ SIGKILL after 2 s
    dispatches ──▶ job_for: the owner's cwd and sys.path, when the worker last ran another's

Run by the head process on its reactor; ``head_process`` starts the fork server and hands
it over (``attach``), with the number of pool workers it forks unasked (ids 1..N): the
scheduler's first SpawnWorker of each of those ids sends nothing.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import signal
import socket
from collections.abc import Callable
from typing import Any, Protocol

from nbray._wire import protocol as P
from nbray._wire.transport import FrameDecoder, encode

from .instructions import BusyWorker, DeathCause
from .reactor import Reactor
from .watchdog import Watchdog, WatchdogSettings

__all__ = ["Supervisor"]

log = logging.getLogger("nbray.head")
REAP_AFTER = 2.0  # seconds a worker may live on after its connection closed


class ForkServerProcess(Protocol):
    """The fork server's process (what ``_compose.forkserver.ForkedProcess`` is)."""

    pid: int

    def wait(self, timeout: float) -> int | None: ...

    def kill(self) -> None: ...


class Supervisor:
    """Starts and stops worker processes through the fork server, and reports their exits.

    ``on_exit(worker_id, pid, exit_code, cause)``: a worker's process ended (``cause``: why
    the head killed it, if it did). ``on_lost()``: the fork server itself died."""

    def __init__(
        self,
        reactor: Reactor,
        on_exit: Callable[[int, int, int | None, DeathCause | None], None],
        on_lost: Callable[[], None],
    ) -> None:
        self.reactor = reactor
        self.on_exit = on_exit
        self.on_lost = on_lost
        self.pids: dict[int, int] = {}  # worker id -> pid, from "spawned" to "exited"
        self.kill_on_spawn: set[int] = set()
        self.watchdog = Watchdog(WatchdogSettings.from_env())
        self.kill_causes: dict[int, DeathCause] = {}  # workers the watchdog killed, and why
        self.last_dispatch: dict[int, int] = {}  # worker id -> when it was last given work
        self.job_owner: dict[int, int] = {}  # worker id -> whose job it was last given
        self._dispatches = itertools.count(1)
        self.forkserver: ForkServerProcess | None = None
        self.prespawned: set[int] = set()  # pool workers the fork server forks unasked
        self.fs_sock: socket.socket | None = None
        self.fs_decoder = FrameDecoder()
        self.stopping = False

    # --- the fork server -----------------------------------------------------------------

    def attach(self, proc: ForkServerProcess, sock: socket.socket, prespawned: int = 0) -> None:
        """Take over the fork server started by ``head_process``, which forks workers 1 to
        ``prespawned`` unasked."""
        self.forkserver = proc
        self.prespawned = set(range(1, prespawned + 1))
        sock.setblocking(False)
        self.fs_sock = sock
        self.reactor.add_reader(sock.fileno(), self._readable)

    def _send(self, msg: tuple[Any, ...]) -> None:
        if self.fs_sock is not None:
            with contextlib.suppress(OSError):
                self.fs_sock.sendall(encode([msg]))

    def _readable(self) -> None:
        assert self.fs_sock is not None
        try:
            data = self.fs_sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.reactor.unregister(self.fs_sock.fileno())
            if not self.stopping:
                log.error("the fork server died: shutting down")
                self.on_lost()
            return
        for msgs in self.fs_decoder.feed(data):
            for msg in msgs:
                self.on_forkserver(msg)

    def on_forkserver(self, msg: tuple[Any, ...]) -> None:
        what, wid, pid = msg[0], msg[1], msg[2]
        if what == "spawned":
            self.pids[wid] = pid
            if wid in self.kill_on_spawn:
                self.kill_on_spawn.discard(wid)
                _sigkill(pid)
        elif what == "exited":
            self.pids.pop(wid, None)
            self.last_dispatch.pop(wid, None)
            self.job_owner.pop(wid, None)
            cause = self.kill_causes.pop(wid, None)
            self.on_exit(wid, pid, msg[3], cause)

    def stop(self) -> None:
        """Tell the fork server to stop (it takes its workers with it)."""
        self.stopping = True
        self._send(("shutdown", 0))

    def wait_stopped(self) -> None:
        fs = self.forkserver
        if fs is None:
            return
        if fs.wait(timeout=5) is None:
            fs.kill()
            fs.wait(timeout=5)

    # --- workers -------------------------------------------------------------------------

    def spawn(self, worker_id: int, runtime_env: str = "") -> None:
        """Ask the fork server for a worker (one started for ``runtime_env``, if given),
        unless it forked this one unasked."""
        if worker_id in self.prespawned and not runtime_env:
            self.prespawned.discard(worker_id)
            return
        self._send(("spawn", worker_id, runtime_env) if runtime_env else ("spawn", worker_id))

    def kill(self, worker_id: int) -> None:
        pid = self.pids.get(worker_id)
        if pid is None:
            self.kill_on_spawn.add(worker_id)
            return
        _sigkill(pid)

    def reap_later(self, worker_id: int) -> None:
        """The worker's connection closed: its death comes with the fork server's exit
        report, but make sure the process does go."""
        pid = self.pids.get(worker_id)
        if pid and not self.stopping:
            self.reactor.call_later(REAP_AFTER, self._reap_silent, worker_id, pid)

    def _reap_silent(self, worker_id: int, pid: int) -> None:
        # the connection closed but no exit was reported: make sure the process is gone
        if self.pids.get(worker_id) == pid:
            _sigkill(pid)

    def dispatched(self, worker_id: int) -> None:
        """The worker was given work now (the watchdog kills the newest first)."""
        self.last_dispatch[worker_id] = next(self._dispatches)

    def job_for(self, worker_id: int, owner: int, job: P.Job | None) -> P.Job | None:
        """``job`` (the owner's cwd and sys.path), when this worker last ran someone else's
        work; None when it already runs in it (or the owner sent none)."""
        if self.job_owner.get(worker_id) == owner or job is None:
            return None
        self.job_owner[worker_id] = owner
        return job

    def watch(self, busy: list[BusyWorker]) -> None:
        """The watchdog's turn (see watchdog.py): kill workers that would take the node's
        memory, or that hang stopped."""
        for wid, cause in self.watchdog.check(busy, self.pids, self.last_dispatch):
            pid = self.pids.get(wid)
            if pid is not None:
                self.kill_causes[wid] = cause
                _sigkill(pid)


def _sigkill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
