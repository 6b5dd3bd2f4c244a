"""Segments for large objects: POSIX shm under /dev/shm, or files in the spill directory.

    producer (client put / worker result): create(name, size, spill_dir) ─▶ write (pwritev)
        ─▶ Payload(SHM, segment) — a bare name in /dev/shm, or an absolute path on disk
           when /dev/shm has no room (Docker's 64 MB default)
    head: owns the segment from then on; spill() moves it to disk when the store is over
          its capacity; unlink() when the last reference is gone (Unlinker: a large one on
          a thread of its own, off the head's loop)
    readers: open_readonly(segment, size, spill_dir) ─▶ read-only mmap ─▶ zero-copy views

A spilled object is read straight from its file (mmap through the page cache), so it
needs no restore step. Space is reserved with ``posix_fallocate`` before anything is
written: a full /dev/shm is an ``OSError`` (ENOSPC) here instead of a SIGBUS in the
middle of a copy.

Segments are created 0600 with O_EXCL under names that carry the cluster's random session
token (``nbray-<token>-<object id>``), so they are neither guessable nor shared across
clusters; ``sweep(token)`` removes whatever a crashed cluster left behind. We do not use
``multiprocessing.shared_memory``: its resource tracker would unlink segments that other
processes still own.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import queue
import threading
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

SHM_DIR = Path("/dev/shm")
PREFIX = "nbray-"
_IOV_MAX = 1024  # Linux's limit on the buffers of one pwritev


def segment_name(session: str, object_id: int) -> str:
    return f"{PREFIX}{session}-{object_id:016x}"


def path_of(segment: str) -> Path:
    """Where a segment lives: a bare name is in /dev/shm, a path is a file on disk."""
    return Path(segment) if segment.startswith("/") else SHM_DIR / segment


def is_spilled(segment: str) -> bool:
    return segment.startswith("/")


class NewSegment:
    """A segment being written: ``write`` its bytes, then close it (``with``). ``segment``
    is its name, or its path when it went to the spill directory."""

    def __init__(self, segment: str, fd: int) -> None:
        self.segment = segment
        self._fd = fd

    def write(self, chunks: Sequence[bytes | memoryview], offset: int = 0) -> None:
        """Write ``chunks`` one after another from ``offset``, with ``pwritev``: no mapping
        is made, so no page is faulted in one by one (twice as fast as a copy into a
        fresh mmap on tmpfs)."""
        views = [memoryview(c).cast("B") for c in chunks]
        while views:
            batch = views[:_IOV_MAX]
            written = os.pwritev(self._fd, batch, offset)
            if written == 0 and any(v.nbytes for v in batch):
                raise OSError(f"writing segment {self.segment} made no progress")
            offset += written
            # pwritev may stop short (at 2 GiB, or on a signal): drop what went out
            while views and written >= views[0].nbytes:
                written -= views[0].nbytes
                views.pop(0)
            if written:
                views[0] = views[0][written:]

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> NewSegment:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _create_at(path: Path, size: int) -> int:
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
    except FileExistsError:
        # left by an attempt of the same task whose worker died while writing it. (Names
        # carry the cluster's random token; /dev/shm is sticky, so another user's file
        # could not be unlinked here and the create fails.)
        os.unlink(path)
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
    try:
        os.posix_fallocate(fd, 0, max(size, 1))
    except OSError:
        os.close(fd)
        os.unlink(path)
        raise
    return fd


def create(name: str, size: int, spill_dir: str = "") -> NewSegment:
    """A new segment of ``size`` bytes, readable by this user only, its space reserved: in
    /dev/shm when it has room, else (with ``spill_dir``) a file there. Raises OSError when
    neither has room."""
    try:
        return NewSegment(name, _create_at(SHM_DIR / name, size))
    except OSError:
        if not spill_dir:
            raise
    path = Path(spill_dir) / name
    return NewSegment(str(path), _create_at(path, size))


class Mapped(NamedTuple):
    """What a reader's map of a segment maps (see ``mapped``)."""

    object_id: int
    size: int


#: every map ``open_readonly`` made in this process and still alive: values read zero-copy
#: keep their segment's memory mapped, also after the object was freed (``%nbray`` tells)
mapped: weakref.WeakKeyDictionary[mmap.mmap, Mapped] = weakref.WeakKeyDictionary()


def object_id_of(segment: str) -> int:
    """The object id a segment's name (or spilled path) ends with (0 for another name)."""
    try:
        return int(segment.rsplit("-", 1)[1], 16)
    except (IndexError, ValueError):
        return 0


def open_readonly(segment: str, size: int, spill_dir: str = "") -> mmap.mmap:
    """Map an existing segment read-only, also when the head spilled it to ``spill_dir``
    since the reader learnt its name; raises FileNotFoundError once it was freed."""
    try:
        fd = os.open(path_of(segment), os.O_RDONLY)
    except FileNotFoundError:
        if not spill_dir or is_spilled(segment):
            raise
        fd = os.open(Path(spill_dir) / segment, os.O_RDONLY)
    try:
        mm = mmap.mmap(fd, max(size, 1), prot=mmap.PROT_READ)
    finally:
        os.close(fd)
    mapped[mm] = Mapped(object_id_of(segment), size)
    return mm


def spill(segment: str, spill_dir: str) -> str:
    """Move a /dev/shm segment to ``spill_dir``; returns its new (path) name. The copy is
    complete under its final name before the original goes, so a reader always finds one
    of the two."""
    final = Path(spill_dir) / segment
    partial = final.with_name(final.name + ".partial")
    src = os.open(SHM_DIR / segment, os.O_RDONLY)
    try:
        dst = os.open(partial, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        try:
            size = os.fstat(src).st_size
            sent = 0
            while sent < size:
                n = os.sendfile(dst, src, sent, size - sent)
                if n == 0:
                    raise OSError(f"short copy spilling {segment}")
                sent += n
        except BaseException:
            os.close(dst)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(partial)
            raise
        os.close(dst)
    finally:
        os.close(src)
    os.rename(partial, final)
    unlink(segment)
    return str(final)


def unlink(segment: str) -> None:
    try:
        os.unlink(path_of(segment))
    except FileNotFoundError:
        pass


#: segments at least this large are unlinked by the Unlinker's thread: freeing the pages of
#: the last link costs the kernel ~0.2 ms per MB on tmpfs (19 ms for a 100 MB array)
BACKGROUND_UNLINK_BYTES = 1 << 20


class Unlinker:
    """Unlinks segments for their owner (the head), large ones on a thread of its own.

    Unlinking the last name of a tmpfs file frees its pages there and then; done in the
    head's loop, a 100 MB object freed at a task's end held back the task's result by
    19 ms. ``os.unlink`` releases the GIL, so on the thread the loop carries on. Names are
    never reused once freed (object ids are not), so a late unlink cannot remove a newer
    segment. ``close`` waits for those queued; call it before sweeping the session."""

    def __init__(self, threshold: int = BACKGROUND_UNLINK_BYTES) -> None:
        self.threshold = threshold
        self._queue: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def unlink(self, segment: str, size: int) -> None:
        if size < self.threshold:
            unlink(segment)
            return
        if self._thread is None:  # started at the first large segment: a fork before is safe
            self._thread = threading.Thread(target=self._run, name="nbray-unlink", daemon=True)
            self._thread.start()
        self._queue.put(segment)

    def _run(self) -> None:
        while (segment := self._queue.get()) is not None:
            try:
                unlink(segment)
            except OSError:  # (not FileNotFoundError, which unlink lets pass) e.g. EACCES
                pass  # left for the session's sweep, as a crashed process's segments are

    def close(self) -> None:
        """Unlink what is queued, then stop the thread (a later large segment starts it
        again)."""
        thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)
            thread.join()


def names_with_prefix(prefix: str, spill_dir: str = "") -> set[str]:
    """Names of the segments (in /dev/shm or ``spill_dir``) that start with ``prefix``."""
    names = {p.name for p in SHM_DIR.glob(f"{prefix}*")}
    if spill_dir:
        names |= {p.name for p in Path(spill_dir).glob(f"{prefix}*") if p.suffix != ".partial"}
    return names


def sweep(session: str) -> int:
    """Unlink every /dev/shm segment of cluster ``session``; returns how many there were.
    (Spilled files live in the session directory and go with it.)"""
    count = 0
    for path in SHM_DIR.glob(f"{PREFIX}{session}-*"):
        try:
            path.unlink()
            count += 1
        except FileNotFoundError:
            pass
    return count


def available_bytes(directory: str | Path = SHM_DIR) -> int:
    """Free space in /dev/shm (Docker's default is only 64 MB), or in ``directory``."""
    st = os.statvfs(directory)
    return st.f_bavail * st.f_frsize
