"""Real sshd servers on loopback addresses, each a "host" in its own PID namespace.

    SshHosts.start(["127.0.0.2", "127.0.0.3"]) ──▶ per run: a client key, host keys,
        authorized_keys, known_hosts ──▶ `unshare --pid --fork --mount-proc sshd -D` per
        address, so a host's processes (Ray's included) live and die with its sshd.

Used by tests/cluster/ (needs root and Debian's openssh-server: `make system-deps`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

PORT = 2222
SSHD = "/usr/sbin/sshd"
NAMESPACE = ["unshare", "--pid", "--fork", "--kill-child", "--mount-proc"]


def available() -> str:
    """Why real sshd hosts cannot run here ("" when they can)."""
    if os.geteuid() != 0:
        return "needs root (sshd per loopback address, in its own PID namespace)"
    for tool in (SSHD, "/usr/bin/unshare", "/usr/bin/ssh", "/usr/bin/ssh-keygen"):
        if not Path(tool).exists():
            return f"{tool} is missing: run `make system-deps`"
    return ""


def keygen(path: Path) -> str:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)],
        check=True,
        timeout=30,
    )
    return (path.with_suffix(".pub")).read_text().strip()


@dataclass
class SshHosts:
    root: Path
    addresses: list[str]
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def client_key(self) -> Path:
        return self.root / "client_key"

    @property
    def known_hosts(self) -> Path:
        return self.root / "known_hosts"

    def start(self) -> SshHosts:
        self.root.mkdir(parents=True, exist_ok=True)
        Path("/run/sshd").mkdir(exist_ok=True)
        client_pub = keygen(self.client_key)
        (self.root / "authorized_keys").write_text(client_pub + "\n")
        lines = []
        for addr in self.addresses:
            hdir = self.root / addr
            hdir.mkdir(exist_ok=True)
            host_pub = keygen(hdir / "host_key")
            lines.append(f"[{addr}]:{PORT} {' '.join(host_pub.split()[:2])}")
            conf = hdir / "sshd_config"
            conf.write_text(
                f"ListenAddress {addr}:{PORT}\n"
                f"HostKey {hdir / 'host_key'}\n"
                f"PidFile {hdir / 'sshd.pid'}\n"
                f"AuthorizedKeysFile {self.root / 'authorized_keys'}\n"
                "UsePAM no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
                "PermitRootLogin prohibit-password\nPubkeyAuthentication yes\n"
                "StrictModes no\nLogLevel ERROR\n"
            )
            log = open(hdir / "sshd.log", "ab")
            self.procs[addr] = subprocess.Popen(
                [*NAMESPACE, SSHD, "-D", "-e", "-f", str(conf)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
            log.close()
        self.known_hosts.write_text("\n".join(lines) + "\n")
        for addr in self.addresses:
            self._wait_listening(addr)
        return self

    def _wait_listening(self, addr: str, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                socket.create_connection((addr, PORT), timeout=1).close()
                return
            except OSError:
                proc = self.procs[addr]
                if proc.poll() is not None or time.monotonic() > deadline:
                    log = (self.root / addr / "sshd.log").read_text()
                    self.stop()
                    raise RuntimeError(f"sshd on {addr}:{PORT} did not start:\n{log}") from None
                time.sleep(0.05)

    def stop(self) -> None:
        """Stop every sshd: its PID namespace, and every process in it, goes with it."""
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
        for proc in self.procs.values():
            proc.wait(timeout=30)
        self.procs.clear()
        shutil.rmtree(self.root, ignore_errors=True)


def node_processes(marker: str = "/.nbray/ray-") -> list[psutil.Process]:
    """Processes started from an nbray directory on a host: named in their command line or
    running in it (Ray Client's server names neither), and their children."""
    found: set[psutil.Process] = set()
    for p in psutil.process_iter(["cmdline", "cwd"]):
        if marker in " ".join(p.info["cmdline"] or []) or marker in (p.info["cwd"] or ""):
            found.add(p)
            try:
                found.update(p.children(recursive=True))
            except psutil.Error:
                pass
    return [p for p in found if _alive(p)]


def _alive(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def kill_all(processes: list[psutil.Process]) -> None:
    """SIGKILL each process; one that exits before its turn (a raylet's child once its
    parent died) is not an error."""
    for p in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()
