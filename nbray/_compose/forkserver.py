"""The pre-warmed fork server: forks workers in ~1 ms and reports their exit codes.

    head ──("spawn", worker id[, runtime_env]) | ("shutdown", 0)──▶ fork server ──fork()──▶ worker
    fork server ──("spawned", id, pid) | ("exited", id, pid, exit code)──▶ head

Started once by the head with one end of a socket pair; it imports the worker's modules up
front so each fork starts warm. It is the parent of every worker, so it alone can reap them
and learn how they died (negative exit code: killed by that signal). If the head dies, the
kernel sends this process SIGTERM (PR_SET_PDEATHSIG): it kills its workers, unlinks the
cluster's shared-memory segments and removes the session directory, so nothing is left.
Workers get SIGKILL the same way if this process dies.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import selectors
import signal
import socket
import sys
from pathlib import Path
from typing import Any

from nbray._wire import shm
from nbray._wire.transport import FrameDecoder, encode

PR_SET_PDEATHSIG = 1


def set_parent_death_signal(sig: int) -> None:
    """Ask Linux to send ``sig`` to this process when its parent dies."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0)


class ForkServer:
    def __init__(self, session_dir: str, fd: int) -> None:
        self.session_dir = session_dir
        config = json.loads((Path(session_dir) / "config.json").read_text())
        self.session = config["session"]
        self.address = f"unix:{Path(session_dir) / 'sock'}"
        self.secret_path = str(Path(session_dir) / "secret")
        self.sock = socket.socket(fileno=fd)
        self.children: dict[int, int] = {}  # pid -> worker id
        self.decoder = FrameDecoder()
        self.running = True
        self.head_pid = os.getppid()

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
        while self.running:
            for key, _ in sel.select(timeout=1.0):
                if key.data == "sig":
                    with contextlib.suppress(BlockingIOError):
                        os.read(rfd, 4096)
                else:
                    self._commands(worker, secret)
            self._reap()
        self._kill_all()

    def _commands(self, worker: Any, secret: bytes) -> None:
        try:
            data = self.sock.recv(65536)
        except OSError:
            data = b""
        if not data:  # the head is gone: its parent-death SIGTERM may come too late
            self._terminate()
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
        shm.sweep(self.session)
        if os.getppid() != self.head_pid:  # the head died: clean up after it
            from nbray._wire.session_files import remove_session_dir

            remove_session_dir(self.session_dir)
        os._exit(0)

    def _kill_all(self) -> None:
        for pid in list(self.children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for pid in list(self.children):
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
        self.children.clear()


def main() -> None:
    set_parent_death_signal(signal.SIGTERM)
    session_dir, fd = sys.argv[1], int(sys.argv[2])
    if os.getppid() == 1:  # the head died before we could ask to be told
        sys.exit(1)
    ForkServer(session_dir, fd).serve()


if __name__ == "__main__":
    main()
