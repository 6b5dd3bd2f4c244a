"""The Ray cluster that `nbray up` provisioned, recorded for this user on this machine.

nbray up FILE ──write()──▶ <nbray user dir>/ray_cluster.json (0600) + the token (0600)
nbray.init() in any kernel ──read()──▶ connects to that cluster with the Ray engine
nbray down FILE ──clear()──▶ both removed
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any

from nbray._wire import session_files as sf

__all__ = ["clear", "new_token", "read", "record_file", "user_token_file", "write", "write_token"]


def record_file() -> Path:
    return sf.user_root() / "ray_cluster.json"


def read() -> dict[str, Any] | None:
    try:
        data = json.loads(record_file().read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return dict(data) if isinstance(data, dict) else None


def write(data: dict[str, Any]) -> None:
    sf.write_json_private(record_file(), data)


def clear(name: str) -> None:
    current = read()
    if current is not None and current.get("name") == name:
        record_file().unlink(missing_ok=True)


def new_token() -> str:
    """64 hex characters, as Ray's token authentication wants."""
    return secrets.token_hex(32)


def write_token(path: Path, token: str | None = None) -> Path:
    """Write a token to a new 0600 file (replacing an old one)."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token or new_token())
    return path


def user_token_file(name: str) -> Path:
    """Where this machine keeps the token of the cluster called ``name`` (0600)."""
    return sf.user_root() / f"ray-{name}.token"
