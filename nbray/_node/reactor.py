"""A small single-threaded event loop for the head: sockets, timers, signals.

    listening sockets ──accept──▶ Stream (non-blocking socket + write buffer)
    readable fds ──▶ callbacks (Stream.on_data, the fork server's socket, signal pipe)
    call_soon / call_later ──▶ run between polls
    Stream.write ──▶ sent at once when the socket takes it, else buffered until writable

Why not asyncio: the head's hot path is "read a frame, decide, write a few frames"; going
straight to ``selectors`` and ``socket.send`` costs a fraction of asyncio's transports per
message, and importing it costs ~1 ms instead of ~40 ms of start-up.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import os
import selectors
import signal
import socket
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from nbray._wire.transport import ReadBuffer

log = logging.getLogger("nbray.head")


class Timer:
    __slots__ = ("args", "callback", "cancelled", "when")

    def __init__(self, when: float, callback: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.when = when
        self.callback = callback
        self.args = args
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class Stream:
    """A connected non-blocking socket; ``on_data(data)`` (``data`` is valid during the
    call only) and ``on_close()`` are set by the owner. Writes never block: what the kernel
    does not take is sent when writable."""

    def __init__(self, reactor: Reactor, sock: socket.socket) -> None:
        self.reactor = reactor
        self.sock = sock
        self.fd = sock.fileno()
        self.out = bytearray()
        self.closed = False
        self.on_data: Callable[[memoryview], None] = lambda data: None
        self.on_close: Callable[[], None] = lambda: None
        sock.setblocking(False)
        reactor.register(self.fd, selectors.EVENT_READ, self)

    def write(self, data: bytes) -> None:
        if self.closed:
            return
        if self.out:
            self.out += data
            return
        try:
            sent = self.sock.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self.abort()
            return
        if sent < len(data):
            self.out += memoryview(data)[sent:]
            self.reactor.modify(self.fd, selectors.EVENT_READ | selectors.EVENT_WRITE, self)

    def handle(self, events: int) -> None:
        if events & selectors.EVENT_WRITE:
            self._flush()
        if events & selectors.EVENT_READ and not self.closed:
            try:
                data = self.reactor.reads.recv(self.sock)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data = memoryview(b"")
            if not data:
                self.abort()
                return
            self.on_data(data)

    def _flush(self) -> None:
        try:
            sent = self.sock.send(self.out)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.abort()
            return
        del self.out[:sent]
        if not self.out:
            self.reactor.modify(self.fd, selectors.EVENT_READ, self)

    def abort(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.reactor.unregister(self.fd)
        with contextlib.suppress(OSError):
            self.sock.close()
        self.on_close()


class Reactor:
    def __init__(self) -> None:
        self.sel = selectors.DefaultSelector()
        self.reads = ReadBuffer()  # every stream reads into it (handlers copy what they keep)
        self.timers: list[tuple[float, int, Timer]] = []
        self.soon: deque[tuple[Callable[..., Any], tuple[Any, ...]]] = deque()
        self._seq = itertools.count()
        self.stopped = False
        self._signal_r = -1

    # --- registration ------------------------------------------------------------------

    def register(self, fd: int, events: int, target: Any) -> None:
        self.sel.register(fd, events, target)

    def modify(self, fd: int, events: int, target: Any) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self.sel.modify(fd, events, target)

    def unregister(self, fd: int) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self.sel.unregister(fd)

    def add_reader(self, fd: int, callback: Callable[[], None]) -> None:
        self.sel.register(fd, selectors.EVENT_READ, callback)

    def serve(self, sock: socket.socket, on_connect: Callable[[Stream], object]) -> None:
        """Accept connections on a listening socket; ``on_connect`` gets each Stream."""
        sock.setblocking(False)

        def accept() -> None:
            while True:
                try:
                    conn, _ = sock.accept()
                except (BlockingIOError, InterruptedError):
                    return
                except OSError:
                    return
                if conn.family != socket.AF_UNIX:
                    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                on_connect(Stream(self, conn))

        self.add_reader(sock.fileno(), accept)

    def on_signals(self, signals: tuple[int, ...], callback: Callable[[], None]) -> None:
        """Run ``callback`` in the loop when one of ``signals`` arrives."""
        r, w = os.pipe()
        os.set_blocking(r, False)
        os.set_blocking(w, False)
        signal.set_wakeup_fd(w)
        for sig in signals:
            signal.signal(sig, lambda *_: None)

        def woken() -> None:
            with contextlib.suppress(BlockingIOError):
                data = os.read(r, 64)
                if any(b in signals for b in data):
                    callback()

        self.add_reader(r, woken)

    # --- scheduling --------------------------------------------------------------------

    def call_soon(self, callback: Callable[..., Any], *args: Any) -> None:
        self.soon.append((callback, args))

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> Timer:
        timer = Timer(time.monotonic() + delay, callback, args)
        heapq.heappush(self.timers, (timer.when, next(self._seq), timer))
        return timer

    def stop(self) -> None:
        self.stopped = True

    def run(self) -> None:
        sel, soon, timers = self.sel, self.soon, self.timers
        while not self.stopped:
            timeout: float | None = None
            if soon:
                timeout = 0
            elif timers:
                timeout = max(0.0, timers[0][0] - time.monotonic())
            for key, events in sel.select(timeout):
                target = key.data
                try:
                    if isinstance(target, Stream):
                        target.handle(events)
                    else:
                        target()
                except Exception:  # one bad callback must not stop the loop
                    log.exception("nbray head: a callback failed")
            now = time.monotonic()
            while timers and timers[0][0] <= now:
                timer = heapq.heappop(timers)[2]
                if not timer.cancelled:
                    soon.append((timer.callback, timer.args))
            for _ in range(len(soon)):
                callback, args = soon.popleft()
                try:
                    callback(*args)
                except Exception:
                    log.exception("nbray head: a callback failed")
