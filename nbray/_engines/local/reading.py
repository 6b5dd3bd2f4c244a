"""Who reads a client's connection: its reader thread, or a thread that waits anyway.

    reader thread ──holds the baton──▶ poll(socket, wake pipe) ──▶ frame ──▶ handle(msg)
    a blocked get / idle worker ──pump(done)──▶ sets "lent", wakes the reader (pipe)
        ──▶ reader gives up the baton and parks ──▶ the waiting thread reads and handles
        frames itself until done() ──▶ gives the baton back, the reader resumes

A message that a blocked thread is waiting for then wakes that very thread out of
``poll``, instead of waking the reader thread, which would wake the waiter in turn: one
thread hand-off less on every round trip (Ray's ``get`` and a worker waiting for its
next task are both blocked anyway). The hand-over itself happens while the request is in
flight, off the round trip's path.

Only one thread borrows at a time; another blocked thread waits on its event as before,
woken by whichever thread reads. On the main thread, SIGINT (a kernel's interrupt, or a
worker's cancel) is deferred while a frame is read and handled, then raised there: an
exception between ``recv`` and the decoder, or between two messages of a frame, would lose
bytes of the stream or another waiter's message. For that, the main thread's SIGINT
handler is wrapped (``_DeferringSigint``) for the length of a ``pump``, and restored after.
"""

from __future__ import annotations

import _signal  # signal.getsignal converts to enums: microseconds a call, on each get
import contextlib
import logging
import math
import os
import select
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

from nbray._wire.transport import Connection

__all__ = ["Reading"]

log = logging.getLogger("nbray._engines.local.client")

Frame = list[Any]
# A parked reader thread looks whether the baton came back after PARKED_POLL, then twice
# as long each time up to PARKED_POLL_MAX: messages nobody waits for (task output, events,
# a worker's cancel) are read at most that late after a quick wait ended. A wait longer
# than LONG_WAIT wakes the reader thread when it ends.
PARKED_POLL = 0.02
PARKED_POLL_MAX = 0.5
LONG_WAIT = 0.02


class Reading:
    """The baton for reading ``conn``: ``run`` is the reader thread's loop, ``pump`` a
    blocked thread's; both pass every message to ``handle`` in the order it came."""

    def __init__(
        self, conn: Connection, handle: Callable[[Any], None], closed: Callable[[str], None]
    ) -> None:
        self.conn = conn
        self.handle = handle
        self.closed = closed  # called once, by whoever reads the end of the stream
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._poll = select.poll()
        self._head_fd = conn.sock.fileno()  # (fileno() is -1 once the socket is closed)
        self._poll.register(self._head_fd, select.POLLIN)
        self._poll.register(self._wake_r, select.POLLIN)
        self._baton = threading.Lock()
        self._cv = threading.Condition(threading.Lock())
        self._lent = False  # a blocked thread reads (or is about to)
        self._ended = False  # the stream ended (or its reader failed)
        # more connections read by whoever holds the baton (direct actor calls), by fd:
        # (connection, handler, called once at its end); replaced whole, never mutated
        self._extra: dict[int, tuple[Connection, Callable[[Any], None], Callable[[], None]]] = {}
        self._extra_lock = threading.Lock()

    # --- reading ---------------------------------------------------------------------------

    def _next_frame(self, timeout: float | None) -> Frame | None:
        """The next frame; ``[]`` when woken or timed out first; None at the end."""
        conn = self.conn
        if not conn.pending:
            ms = None if timeout is None else max(math.ceil(timeout * 1000), 0)
            readable = False
            head = self._head_fd
            for fd, _ in self._poll.poll(ms):
                if fd == self._wake_r:
                    with contextlib.suppress(BlockingIOError):
                        os.read(self._wake_r, 4096)
                elif fd == head:
                    readable = True
                else:
                    self._read_extra(fd)
            if not readable:
                return []
        return conn.recv()

    # --- more connections ------------------------------------------------------------------

    def attach(
        self, conn: Connection, handle: Callable[[Any], None], closed: Callable[[], None]
    ) -> None:
        """Read ``conn`` too, handing its messages to ``handle``; ``closed()`` at its end."""
        fd = conn.sock.fileno()
        with self._extra_lock:
            self._extra = {**self._extra, fd: (conn, handle, closed)}
            self._poll.register(fd, select.POLLIN)
        self.wake()  # whoever polls now polls it too

    def _detach(self, fd: int) -> None:
        with self._extra_lock:
            entry = self._extra.get(fd)
            if entry is None:
                return
            self._extra = {k: v for k, v in self._extra.items() if k != fd}
            with contextlib.suppress(KeyError, ValueError):
                self._poll.unregister(fd)
        entry[0].close()
        entry[2]()

    def _read_extra(self, fd: int) -> None:
        entry = self._extra.get(fd)
        if entry is None:
            return
        conn, handle = entry[0], entry[1]
        try:
            frames = conn.recv_ready()  # never blocks: a half-sent frame waits for its rest
            if frames is None:
                self._detach(fd)
                return
            for msgs in frames:
                for msg in msgs:
                    handle(msg)
        except Exception:  # a bad frame or message ends that connection, not this one
            log.exception("closing a direct connection")
            self._detach(fd)

    def read_extras(self) -> None:
        """Read every attached connection until it holds nothing more, without blocking
        (by the baton's holder: the thread handling a message read here)."""
        for fd in list(self._extra):
            while fd in self._extra and select.select([fd], [], [], 0)[0]:
                self._read_extra(fd)

    def detach_all(self) -> None:
        for fd in list(self._extra):
            self._detach(fd)

    def _read_one(self, timeout: float | None) -> bool:
        """Read and handle one frame; False once the stream ended."""
        msgs = self._next_frame(timeout)
        if msgs is None:
            self._end("the cluster closed the connection")
            return False
        try:
            for msg in msgs:
                self.handle(msg)
        except Exception as exc:  # a handler failed: end as the reader thread always did
            log.exception("the nbray reader failed")
            self._end(f"reader failed: {exc}")
            return False
        return True

    def _end(self, reason: str) -> None:
        with self._cv:
            if self._ended:
                return
            self._ended = True
            self._cv.notify_all()
        self.closed(reason)

    def wake(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self._wake_w, b"\0")

    # --- the reader thread -----------------------------------------------------------------

    def run(self) -> None:
        """The reader thread: read until the stream ends, parked while a waiter reads."""
        try:
            while not self._ended:
                with self._baton:
                    while not self._lent and not self._ended:
                        if not self._read_one(None):
                            return
                wait = PARKED_POLL
                with self._cv:
                    while self._lent and not self._ended:
                        self._cv.wait(wait)
                        wait = min(wait * 2, PARKED_POLL_MAX)
        except Exception as exc:  # never die silently: record why
            log.exception("the nbray reader thread failed")
            self._end(f"reader failed: {exc}")

    # --- a blocked thread ------------------------------------------------------------------

    def pump(self, done: Callable[[], bool], timeout: float | None) -> bool | None:
        """Read and handle frames in this thread until ``done()`` (True), the timeout or
        the end of the stream (False). None: another thread reads for now; wait as usual."""
        with self._cv:
            if self._lent or self._ended:
                return None
            self._lent = True
        started = time.monotonic()
        deadline = None if timeout is None else started + timeout
        try:
            if not self._baton.acquire(blocking=False):
                self.wake()  # the reader thread gives up the baton at its next poll
                while not self._baton.acquire(timeout=0.05):
                    if done() or self._ended or _past(deadline):
                        return done()
            sigint = _DeferringSigint.install(self)
            try:
                while not done():
                    if self._ended:
                        return False
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        return False
                    if not self._read_one(remaining):
                        return done()
                    if sigint is not None and sigint.pending is not None:
                        sigint.deliver()
                return True
            finally:
                self._baton.release()
                if sigint is not None:
                    sigint.uninstall()
        finally:
            self._lent = False
            # after a quick round trip the reader thread is not woken: it looks again
            # within its PARKED_POLL (waking it now would take the GIL from this thread
            # just as it returns to its caller); after a long wait, one wake costs nothing
            if time.monotonic() - started > LONG_WAIT:
                with self._cv:
                    self._cv.notify_all()

    def stop(self) -> None:
        """The client closes its socket next: wake whoever polls, so it reads the end."""
        with self._cv:
            self._cv.notify_all()
        self.wake()

    def close_pipe(self) -> None:
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)


class _DeferringSigint:
    """The main thread's SIGINT handler during a ``pump``: the process's own handler runs
    after the frame being read is handled, not in the middle of it."""

    def __init__(self, reading: Reading, inner: Callable[[int, Any], Any]) -> None:
        self.reading = reading
        self.inner = inner
        self.pending: tuple[int, Any] | None = None

    def __call__(self, signum: int, frame: Any) -> None:
        self.pending = (signum, frame)
        self.reading.wake()

    @classmethod
    def install(cls, reading: Reading) -> _DeferringSigint | None:
        """On the main thread, wrap its SIGINT handler; None elsewhere, or where SIGINT is
        ignored or left to the system (nothing raises in Python then)."""
        if threading.current_thread() is not threading.main_thread():
            return None
        inner = _signal.getsignal(signal.SIGINT)
        if not callable(inner):
            return None
        wrapper = cls(reading, inner)
        _signal.signal(signal.SIGINT, wrapper)
        return wrapper

    def deliver(self) -> None:
        """Run the deferred signal's handler now (it may raise, ending the pump)."""
        pending, self.pending = self.pending, None
        if pending is not None:
            self.inner(*pending)

    def uninstall(self) -> None:
        _signal.signal(signal.SIGINT, self.inner)
        self.deliver()


def _past(deadline: float | None) -> bool:
    return deadline is not None and time.monotonic() >= deadline
