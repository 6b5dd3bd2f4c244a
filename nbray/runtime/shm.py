"""Shared-memory segments for large objects (POSIX shm under /dev/shm, Linux).

    producer (client put / worker result): create(name, size) ─▶ write ─▶ Payload(SHM, name)
    head: owns the name from then on; unlink(name) when the last reference is gone
    readers: open_readonly(name) ─▶ read-only mmap ─▶ zero-copy views (serialization.unpack)

Segments are created 0600 with O_EXCL under names that carry the cluster's random session
token (``nbray-<token>-<object id>``), so they are neither guessable nor shared across
clusters; ``sweep(token)`` removes whatever a crashed cluster left behind. We do not use
``multiprocessing.shared_memory``: its resource tracker would unlink segments that other
processes still own.
"""

from __future__ import annotations

import mmap
import os
from pathlib import Path

SHM_DIR = Path("/dev/shm")
PREFIX = "nbray-"


def segment_name(session: str, object_id: int) -> str:
    return f"{PREFIX}{session}-{object_id:016x}"


def create(name: str, size: int) -> mmap.mmap:
    """A new writable segment of ``size`` bytes, readable by this user only."""
    fd = os.open(SHM_DIR / name, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
    try:
        os.ftruncate(fd, max(size, 1))
        return mmap.mmap(fd, max(size, 1))
    finally:
        os.close(fd)


def open_readonly(name: str, size: int) -> mmap.mmap:
    """Map an existing segment read-only; raises FileNotFoundError once it was freed."""
    fd = os.open(SHM_DIR / name, os.O_RDONLY)
    try:
        return mmap.mmap(fd, max(size, 1), prot=mmap.PROT_READ)
    finally:
        os.close(fd)


def unlink(name: str) -> None:
    try:
        os.unlink(SHM_DIR / name)
    except FileNotFoundError:
        pass


def sweep(session: str) -> int:
    """Unlink every segment of cluster ``session``; returns how many there were."""
    count = 0
    for path in SHM_DIR.glob(f"{PREFIX}{session}-*"):
        try:
            path.unlink()
            count += 1
        except FileNotFoundError:
            pass
    return count


def available_bytes() -> int:
    """Free space in /dev/shm (Docker's default is only 64 MB)."""
    st = os.statvfs(SHM_DIR)
    return st.f_bavail * st.f_frsize
