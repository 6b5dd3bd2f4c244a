"""The pre-warmed fork server: forks workers in ~1 ms and reports their exit codes.

    head_process ──fork()──▶ fork server ──fork()──▶ the pool's workers, at once
    head ──("spawn", worker id[, runtime_env]) | ("shutdown", 0)──▶ fork server ──fork()──▶ worker
    fork server ──("spawned", id, pid) | ("exited", id, pid, exit code)──▶ head

Forked by ``head_process`` (``start``) before the head imports its own modules, with one end
of a socket pair: no second interpreter starts. It imports the worker's modules while the
head imports its own, so each fork starts warm, and forks the pool's first workers (ids 1 to
N, one per CPU) without waiting to be asked: they connect to the cluster's socket, which the
process that started the head bound, and their handshake is answered once the head serves
(the head's supervisor knows they are on their way). It is the parent of every worker, so it
alone can reap them and learn how they died (negative exit code: killed by that signal). If
the head dies, the kernel sends this process SIGTERM (PR_SET_PDEATHSIG): it kills its
workers, unlinks the cluster's shared-memory segments and removes the session directory, so
nothing is left. Workers get SIGKILL the same way if this process dies.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

from nbray._wire import shm
from nbray._wire.transport import FrameDecoder, encode

PR_SET_PDEATHSIG = 1


def set_parent_death_signal(sig: int) -> None:
    """Ask Linux to send ``sig`` to this process when its parent dies."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0)


class ForkServer:
    def __init__(self, session_dir: str, fd: int, head_pid: int, prespawn: int = 0) -> None:
        self.session_dir = session_dir
        config = json.loads((Path(session_dir) / "config.json").read_text())
        self.session = config["session"]
        self.address = f"unix:{Path(session_dir) / 'sock'}"
        self.secret_path = str(Path(session_dir) / "secret")
        self.sock = socket.socket(fileno=fd)
        self.children: dict[int, int] = {}  # pid -> worker id
        self.decoder = FrameDecoder()
        self.running = True
        self.head_lost = False
        self.head_pid = head_pid
        self.prespawn = prespawn  # pool workers (ids 1..prespawn) to fork before being asked

    def serve(self) -> None:
        from nbray._engines.local import worker  # pre-warm: every fork inherits these imports

        secret = Path(self.secret_path).read_bytes()
        rfd, wfd = os.pipe()
        os.set_blocking(wfd, False)
        signal.set_wakeup_fd(wfd)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.signal(signal.SIGTERM, self._terminate)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        sel = selectors.DefaultSelector()
        sel.register(self.sock, selectors.EVENT_READ, "cmd")
        sel.register(rfd, selectors.EVENT_READ, "sig")
        for wid in range(1, self.prespawn + 1):
            self._spawn(worker, secret, wid)
        while self.running:
            for key, _ in sel.select(timeout=1.0):
                if key.data == "sig":
                    with contextlib.suppress(BlockingIOError):
                        os.read(rfd, 4096)
                else:
                    self._commands(worker, secret)
            self._reap()
        self._kill_all()
        if self.head_lost:
            self._clean_up_after_head()

    def _commands(self, worker: Any, secret: bytes) -> None:
        try:
            data = self.sock.recv(65536)
        except OSError:
            data = b""
        if not data:  # the head is gone (it says "shutdown" before it exits on purpose)
            self.running = False
            self.head_lost = True
            return
        for msgs in self.decoder.feed(data):
            for what, wid, *rest in msgs:
                if what == "spawn":  # rest: the worker's runtime_env (JSON), if any
                    self._spawn(worker, secret, wid, rest[0] if rest else "")
                elif what == "shutdown":
                    self.running = False

    def _spawn(self, worker: Any, secret: bytes, wid: int, runtime_env: str = "") -> None:
        pid = os.fork()
        if pid == 0:  # the worker
            code = 1
            try:
                signal.set_wakeup_fd(-1)
                for sig in (signal.SIGCHLD, signal.SIGTERM):
                    signal.signal(sig, signal.SIG_DFL)
                self.sock.close()
                set_parent_death_signal(signal.SIGKILL)
                code = worker.main(self.address, secret, wid, self.session, runtime_env)
            finally:
                os._exit(code)
        self.children[pid] = wid
        self._send(("spawned", wid, pid))

    def _reap(self) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            wid = self.children.pop(pid, None)
            if wid is not None:
                self._send(("exited", wid, pid, os.waitstatus_to_exitcode(status)))

    def _send(self, msg: tuple[Any, ...]) -> None:
        with contextlib.suppress(OSError):
            self.sock.sendall(encode([msg]))

    def _terminate(self, *_: Any) -> None:
        # the head died (parent-death signal) or we are told to stop: leave nothing behind
        self._kill_all()
        if os.getppid() != self.head_pid:  # the head died: clean up after it
            self._clean_up_after_head()
        else:
            shm.sweep(self.session)
        os._exit(0)

    def _clean_up_after_head(self) -> None:
        """The head died (its socket closed first, or the parent-death signal came): what
        it would have removed on its way out, its segments and session directory, go."""
        from nbray._wire.session_files import remove_session_dir

        shm.sweep(self.session)
        remove_session_dir(self.session_dir)

    def _kill_all(self) -> None:
        for pid in list(self.children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for pid in list(self.children):
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
        self.children.clear()


class ForkedProcess:
    """The fork server as the head sees it: its pid, waited for and killed like a child."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def wait(self, timeout: float) -> int | None:
        """Its exit code, once it exited within ``timeout`` seconds; None if it still runs."""
        deadline = time.monotonic() + timeout
        while self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:  # reaped already
                self.returncode = 0
                break
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
            elif time.monotonic() >= deadline:
                return None
            else:
                time.sleep(0.01)
        return self.returncode

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)


def start(
    session_dir: str, prespawn: int, close_fds: list[int]
) -> tuple[ForkedProcess, socket.socket]:
    """Fork the fork server from the head process, which has no threads yet; return it and
    the head's end of their socket pair. ``close_fds``: the head's own descriptors (the
    cluster's listening sockets), closed in the fork server: no worker holds them."""
    head_pid = os.getpid()
    parent, child = socket.socketpair()
    pid = os.fork()
    if pid == 0:  # the fork server
        code = 1
        try:
            set_parent_death_signal(signal.SIGTERM)
            if os.getppid() != head_pid:  # the head died before we could ask to be told
                os._exit(1)
            parent.close()
            for fd in close_fds:
                with contextlib.suppress(OSError):
                    os.close(fd)
            ForkServer(session_dir, child.detach(), head_pid, prespawn).serve()
            code = 0
        except BaseException:
            sys.excepthook(*sys.exc_info())
        finally:
            os._exit(code)
    child.close()
    return ForkedProcess(pid), parent
