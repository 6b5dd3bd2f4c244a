"""A cluster's files on disk: its 0700 session directory, 0600 secret and config.

    /tmp/nbray-<uid>/                       0700, one per user
        current.json                        the headless cluster `nbray start` runs (0600)
        session-<time>-<pid>-<token>/       0700, one per cluster
            secret                          32 random bytes, 0600 (never in argv/env/logs)
            config.json                     settings the head reads at start
            sock                            the Unix socket clients connect to
            head.log                        the head's stderr

Secrets are refused when their file is readable by anyone but the owner.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nbray._base.errors import NbrayConnectionError


def connection_error(message: str) -> NbrayConnectionError:
    """``NbrayConnectionError(message)``, imported only when needed: ``init`` reads and
    writes these files before it starts the head, where every import delays it."""
    from nbray._base.errors import NbrayConnectionError

    return NbrayConnectionError(message)


def temp_dir() -> str:
    """``tempfile.gettempdir()``, without importing tempfile (and shutil, bz2, lzma: time
    before ``init`` starts the head) when its first choice, ``$TMPDIR`` (``$TEMP``,
    ``$TMP``) or else /tmp, is a directory this process may write to."""
    env = os.environ
    first = env.get("TMPDIR") or env.get("TEMP") or env.get("TMP") or "/tmp"
    if os.path.isdir(first) and os.access(first, os.W_OK | os.X_OK):
        return os.path.abspath(first)
    import tempfile

    return tempfile.gettempdir()


def user_root() -> Path:
    root = Path(os.environ.get("NBRAY_TMPDIR") or temp_dir()) / f"nbray-{os.getuid()}"
    root.mkdir(mode=0o700, exist_ok=True)
    st = root.stat()
    if st.st_uid != os.getuid() or stat.S_IMODE(st.st_mode) & 0o077:
        raise PermissionError(
            f"{root} must belong to you and be private (0700) to hold nbray's sockets and "
            "secrets; fix it with `chmod 700` or set NBRAY_TMPDIR to another directory"
        )
    return root


def new_session_dir() -> tuple[Path, str]:
    """A fresh private directory for a cluster, and its random session token."""
    token = os.urandom(8).hex()  # (what secrets.token_hex does, without its imports)
    path = user_root() / f"session-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{token}"
    path.mkdir(mode=0o700)
    return path, token


def write_secret(path: Path) -> bytes:
    secret = os.urandom(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(secret)
    return secret


def read_secret(path: str | Path) -> bytes:
    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise connection_error(
            f"the cluster's secret file {path} does not exist; is the cluster running? "
            "Set NBRAY_SECRET_FILE to the secret file of the cluster you connect to."
        ) from None
    if stat.S_IMODE(st.st_mode) & 0o077:
        raise PermissionError(
            f"refusing the secret file {path}: its mode is {stat.S_IMODE(st.st_mode):o}, "
            "readable by others. Run `chmod 600` on it."
        )
    data = path.read_bytes()
    if len(data) < 32:
        raise connection_error(f"the secret file {path} is too short (expected 32 bytes)")
    return data


def write_json_private(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f)
    os.replace(tmp, path)


def current_cluster_file() -> Path:
    return user_root() / "current.json"


def read_current() -> dict[str, Any] | None:
    path = current_cluster_file()
    try:
        return dict(json.loads(path.read_text()))
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def remove_session_dir(path: str | Path) -> None:
    import shutil  # (here: shutil and its compression modules cost every process start-up)

    shutil.rmtree(path, ignore_errors=True)


def sweep_stale_sessions() -> None:
    """Remove session directories whose head is no longer alive (after a hard crash)."""
    from . import shm

    with contextlib.suppress(FileNotFoundError, PermissionError):
        for d in user_root().glob("session-*"):
            pid_file = d / "head.pid"
            try:
                pid = int(pid_file.read_text())
            except (FileNotFoundError, ValueError):
                if time.time() - d.stat().st_mtime < 60:
                    continue  # being set up right now
                pid = 0
            if pid and pid_alive(pid):
                continue
            token = d.name.rsplit("-", 1)[-1]
            shm.sweep(token)
            remove_session_dir(d)


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie, exited but not yet reaped, does not)."""
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
