"""Where a Jupyter server finds the clusters its kernels start for themselves.

    Jupyter server (server_ext/kernel_clusters.py)
        creates <nbray user dir>/kernels-<server pid>/ (0700)
        exports NBRAY_KERNEL_REGISTRY=<that dir> ──inherited by──▶ its kernels
    kernel: nbray.init(num_cpus=1) or init(engine="ray") starts a private cluster
        ──register()──▶ <dir>/<id>.json (0600): engine, address, session dir, pid, kernel id
    kernel: nbray.shutdown() / exit ──unregister()──▶ the record is removed
    server: read_all() every second ──▶ lists them; drops records whose owner pid is gone
                                        (a kernel killed with SIGKILL)

A record names where the cluster's session files are; it holds no secret. The server reads
the cluster's 0600 secret from that session directory (the same user's), and proves it
in the handshake before anything is unpickled, as every client does.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import sys
import time
from pathlib import Path
from typing import Any

from . import session_files as sf

__all__ = ["ENV", "create", "kernel_id", "read_all", "register", "unregister"]

ENV = "NBRAY_KERNEL_REGISTRY"


def create(path: Path) -> Path:
    """Make the registry directory (0700, this user's) and return it."""
    path.mkdir(mode=0o700, exist_ok=True)
    _check_private(path)
    return path


def _check_private(path: Path) -> None:
    st = path.stat()
    if st.st_uid != os.getuid() or stat.S_IMODE(st.st_mode) & 0o077:
        raise PermissionError(f"{path} must belong to you and be private (0700)")


def kernel_id() -> str:
    """This kernel's id, from the connection file jupyter_server gave it
    (``kernel-<id>.json``); empty outside a kernel, or for a kernel started otherwise."""
    if "ipykernel" not in sys.modules:  # a script: no kernel, and no import for nothing
        return ""
    try:
        from ipykernel.connect import get_connection_file

        name = Path(get_connection_file()).name
    except Exception:  # no kernel app in this process (plain IPython, a worker)
        return ""
    if name.startswith("kernel-") and name.endswith(".json"):
        return name[len("kernel-") : -len(".json")]
    return ""


def register(engine: str, address: str, session_dir: str, **extra: Any) -> Path | None:
    """Record a cluster this process started, where ``NBRAY_KERNEL_REGISTRY`` asks for it;
    returns the record's path (for ``unregister``), or None when nobody asked."""
    directory = os.environ.get(ENV, "")
    if not directory:
        return None
    path = Path(directory)
    try:
        _check_private(path)
    except (OSError, PermissionError):
        return None  # a server that has gone, or a directory we must not trust
    cluster_id = os.urandom(6).hex()
    record = {
        "id": cluster_id,
        "engine": engine,
        "address": address,
        "session_dir": session_dir,
        "pid": os.getpid(),
        "kernel_id": kernel_id(),
        "started_at": time.time(),
        **extra,
    }
    target = path / f"{cluster_id}.json"
    try:
        sf.write_json_private(target, record)
    except OSError:
        return None
    return target


def unregister(path: Path | None) -> None:
    if path is not None:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def read_all(directory: Path) -> list[dict[str, Any]]:
    """The records in ``directory``, oldest first; a record whose owner process is gone is
    removed (its cluster stopped with its owner)."""
    out = []
    for path in directory.glob("*.json"):
        try:
            record = json.loads(path.read_text())
            pid = int(record["pid"])
            if not isinstance(record.get("id"), str) or path.stem != record["id"]:
                raise ValueError("id")
        except FileNotFoundError:
            continue
        except (ValueError, KeyError, TypeError):
            record, pid = None, 0
        if record is None or not sf.pid_alive(pid):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            continue
        out.append(record)
    out.sort(key=lambda r: float(r.get("started_at") or 0))
    return out
