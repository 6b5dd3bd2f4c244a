"""Start, find and stop a local cluster (one head process and its workers).

    nbray.init() / `nbray start` ──start_local_cluster()──▶ session dir (0700) + secret (0600)
        + config.json ──▶ `python -m nbray._compose.head_process DIR`
        ──"NBRAY_READY addr"──▶ LocalCluster
    nbray.init(address=...) ──resolve_address()──▶ (address, secret) of a running cluster

An owned cluster (``owner_pid`` set) stops when its owner disconnects or dies; a headless one
(`nbray start`) runs until `nbray stop`, and is recorded in ``current.json`` so that
``address="auto"`` finds it.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nbray._wire import session_files as sf

if TYPE_CHECKING:
    from nbray._base.errors import NbrayConnectionError

START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0


class LocalCluster:
    """A head process started by this process. (A plain class: nothing before the head's
    ``Popen`` imports dataclasses or nbray's errors, so the head starts sooner.)"""

    def __init__(
        self, process: subprocess.Popen[bytes], session_dir: Path, address: str, secret: bytes
    ) -> None:
        self.process = process
        self.session_dir = session_dir
        self.address = address
        self.secret = secret

    def __repr__(self) -> str:
        return f"LocalCluster(pid={self.process.pid}, session_dir={str(self.session_dir)!r})"

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Wait for the head to exit (after a Shutdown message), then make sure it did."""
        proc = self.process
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=timeout)
        sf.remove_session_dir(self.session_dir)


def default_num_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


# Ray's defaults: 30% of the memory, and no more than /dev/shm holds
STORE_FRACTION = 0.3
SHM_FRACTION = 0.95
SMALL_SHM = 512 * 2**20
MAX_UNIX_PATH = 107  # sun_path holds 108 bytes with the terminating NUL


def object_store_size(requested: int | None) -> int:
    """Bytes of /dev/shm the object store may fill before it spills to disk. Warns when
    /dev/shm is too small for what the store should hold (Docker's 64 MB default)."""
    from nbray._wire import shm

    if requested is not None and requested <= 0:
        raise ValueError(f"object_store_memory must be a positive number of bytes, not {requested}")
    shm_free = shm.available_bytes()
    wanted = requested or int(
        STORE_FRACTION * os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    )
    if shm_free < min(wanted, SMALL_SHM):
        warnings.warn(
            f"/dev/shm has only {shm_free / 2**20:.0f} MB free (Docker's default is 64 MB): "
            "objects that do not fit there are kept on disk in the session directory, "
            "which is slower. Give the container more shared memory, e.g. "
            "`docker run --shm-size=4g`.",
            ResourceWarning,
            stacklevel=4,  # the user's nbray.init()
        )
    return max(1, min(wanted, int(SHM_FRACTION * shm_free)))


def start_local_cluster(
    *,
    num_cpus: float | None = None,
    num_gpus: int | None = None,
    resources: dict[str, float] | None = None,
    namespace: str = "default",
    owner_pid: int = 0,
    tcp_host: str = "",
    tcp_port: int = 0,
    object_store_memory: int | None = None,
    wait: bool = True,
) -> LocalCluster:
    """Start a head. Its listening sockets are bound here and handed to it, so clients may
    connect at once: the kernel queues them until the head serves. With ``wait``, return
    once the head said it is ready (or raise with its log); without, at once (``init``
    connects meanwhile, overlapping its own imports with the head's start-up)."""
    sf.sweep_stale_sessions()
    # None: the head finds the GPUs through NVML itself, while its fork server starts
    gpu_ids = None if num_gpus is None else list(range(int(num_gpus)))
    total: dict[str, float] = {"CPU": float(default_num_cpus() if num_cpus is None else num_cpus)}
    if gpu_ids:
        total["GPU"] = float(len(gpu_ids))  # (detected GPUs are added by the head)
    for key, value in (resources or {}).items():
        if key in ("CPU", "GPU"):
            raise ValueError(f"use num_cpus/num_gpus instead of resources={{{key!r}: ...}}")
        total[key] = float(value)
    store_bytes = object_store_size(object_store_memory)
    session_dir, token = sf.new_session_dir()
    secret = sf.write_secret(session_dir / "secret")
    listeners, address = _listen(session_dir, tcp_host, tcp_port)
    config: dict[str, Any] = {
        "session": token,
        "node_id": token,
        "resources": total,
        "gpu_ids": gpu_ids,
        "namespace": namespace,
        "owner_pid": owner_pid,
        "tcp_host": tcp_host,
        "tcp_port": tcp_port,
        "python": sys.executable,
        "listen_fds": [s.fileno() for s in listeners],
        "object_store_memory": store_bytes,
    }
    sf.write_json_private(session_dir / "config.json", config)
    log = open(session_dir / "head.log", "ab")
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "nbray._compose.head_process", str(session_dir)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if wait else subprocess.DEVNULL,
            stderr=log,
            # its own session: a signal to the owner's process group (a kernel manager
            # killing the kernel) must not kill the head before it can clean up
            start_new_session=True,
            pass_fds=[s.fileno() for s in listeners],
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    finally:
        log.close()
        for s in listeners:  # the head has its copies
            s.close()
    (session_dir / "head.pid").write_text(str(proc.pid))
    if wait:
        _await_ready(proc, session_dir)
    return LocalCluster(proc, session_dir, address, secret)


def _listen(session_dir: Path, tcp_host: str, tcp_port: int) -> tuple[list[socket.socket], str]:
    """The cluster's listening sockets: a 0600 Unix socket, and TCP when asked for."""
    path = session_dir / "sock"
    if len(os.fsencode(path)) > MAX_UNIX_PATH:
        sf.remove_session_dir(session_dir)
        raise ValueError(
            f"the cluster's socket path {path} is longer than the {MAX_UNIX_PATH} bytes a "
            "Unix socket allows: set NBRAY_TMPDIR to a shorter directory"
        )
    unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    unix.bind(str(path))
    os.chmod(path, 0o600)
    unix.listen(128)
    listeners = [unix]
    address = f"unix:{path}"
    if tcp_host or tcp_port:
        tcp = socket.create_server((tcp_host or "127.0.0.1", tcp_port), backlog=128)
        listeners.append(tcp)
        host, port = tcp.getsockname()[:2]
        address = f"{host}:{port}"
        (session_dir / "tcp_address").write_text(address)
    return listeners, address


def start_failed(cluster: LocalCluster, why: str) -> NbrayConnectionError:
    """The error for a head that could not be reached after it was started."""
    return _start_failed(cluster.process, cluster.session_dir, why)


def _await_ready(proc: subprocess.Popen[bytes], session_dir: Path) -> str:
    assert proc.stdout is not None
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + START_TIMEOUT
    line = b""
    try:
        while not line.endswith(b"\n"):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not sel.select(remaining):
                raise _start_failed(proc, session_dir, f"no answer in {START_TIMEOUT:.0f} s")
            chunk = os.read(proc.stdout.fileno(), 4096)
            if not chunk:
                raise _start_failed(proc, session_dir, "the head exited")
            line += chunk
    finally:
        sel.close()
        proc.stdout.close()
    text = line.decode().strip()
    if not text.startswith("NBRAY_READY "):
        raise _start_failed(proc, session_dir, f"unexpected output {text!r}")
    return text.split(" ", 1)[1]


def _start_failed(
    proc: subprocess.Popen[bytes], session_dir: Path, why: str
) -> NbrayConnectionError:
    with contextlib.suppress(ProcessLookupError):
        proc.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)
    try:
        log = (session_dir / "head.log").read_text()[-3000:]
    except FileNotFoundError:
        log = ""
    sf.remove_session_dir(session_dir)
    return sf.connection_error(
        f"the nbray head did not start ({why}). Its log:\n{log or '(empty)'}"
    )


def resolve_address(address: str) -> tuple[str, bytes]:
    """The socket address and secret of a running cluster named by ``address``.

    ``"auto"``: the cluster `nbray start` runs; a session directory or its socket path;
    ``host:port`` with the secret file in ``NBRAY_SECRET_FILE`` (or the headless cluster's
    own, when the address is its TCP address).
    """
    secret_file = os.environ.get("NBRAY_SECRET_FILE")
    if address == "auto":
        current = sf.read_current()
        if current is None or not Path(current["session_dir"]).exists():
            raise sf.connection_error(
                "address='auto' found no running cluster: start one with `nbray start`, or "
                "call nbray.init() without an address to start a private one"
            )
        return current["address"], sf.read_secret(secret_file or current["secret_file"])
    path = Path(address[5:] if address.startswith("unix:") else address)
    if "/" in address:
        if path.is_dir():
            path = path / "sock"
        return f"unix:{path}", sf.read_secret(secret_file or path.parent / "secret")
    if secret_file is None:
        current = sf.read_current()
        if current and current.get("tcp_address") == address:
            secret_file = current["secret_file"]
        else:
            raise sf.connection_error(
                f"to connect to {address} over TCP, set NBRAY_SECRET_FILE to a copy of that "
                "cluster's secret file (0600)"
            )
    return address, sf.read_secret(secret_file)
