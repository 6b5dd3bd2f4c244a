"""Who reads a client's connection (``nbray._engines.local.reading``): the reader thread, or a
thread blocked anyway (``pump``). Over a real authenticated Unix socket, no cluster: the peer
is a test server that sends frames. Nothing here asserts how fast anything is."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from nbray_testing import wait_until

from nbray._engines.local.reading import Reading
from nbray._wire.transport import Connection, ServerAuth, encode

SECRET = os.urandom(32)
TIMEOUT = 10.0  # bounds a hang only


class Peer:
    """The server's end: accepts one client, proves itself, then sends frames."""

    def __init__(self, path: Path) -> None:
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(str(path))
        self.listener.listen(1)
        self.sock: socket.socket | None = None
        self._accepted = threading.Thread(target=self._accept, daemon=True)
        self._accepted.start()

    def _accept(self) -> None:
        sock, _ = self.listener.accept()
        auth = ServerAuth(SECRET)
        sock.sendall(auth.hello())
        verdict = None
        while verdict is None:
            verdict, reply, _ = auth.feed(sock.recv(4096))
        assert verdict
        sock.sendall(reply)
        self.sock = sock

    def send(self, *msgs: Any) -> None:
        self._accepted.join(TIMEOUT)
        assert self.sock is not None
        self.sock.sendall(encode(list(msgs)))

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
        self.listener.close()


class Reader:
    """A Reading over a real Connection, its reader thread running; records who handled what."""

    def __init__(self, conn: Connection) -> None:
        self.handled: list[tuple[Any, str]] = []
        self.ends: list[str] = []
        self.on_message: Any = None  # an extra action per message (the test's)
        self.reading = Reading(conn, self._handle, self.ends.append)
        self.thread = threading.Thread(target=self.reading.run, name="reader", daemon=True)
        self.thread.start()

    def _handle(self, msg: Any) -> None:
        self.handled.append((msg, threading.current_thread().name))
        if self.on_message is not None:
            self.on_message(msg)

    def messages(self) -> list[Any]:
        return [m for m, _ in self.handled]


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[Peer, Connection, Reader]]:
    peer = Peer(tmp_path / "sock")
    conn = Connection(f"unix:{tmp_path / 'sock'}", SECRET)
    reader = Reader(conn)
    yield peer, conn, reader
    reader.reading.stop()
    conn.close()
    reader.thread.join(TIMEOUT)
    reader.reading.close_pipe()
    peer.close()


def test_the_reader_thread_reads_when_nobody_waits(pair: tuple[Peer, Connection, Reader]) -> None:
    peer, _, reader = pair
    peer.send("a", "b")
    peer.send("c")
    wait_until(lambda: reader.messages() == ["a", "b", "c"], TIMEOUT)
    assert {name for _, name in reader.handled} == {"reader"}


def test_a_blocked_thread_reads_its_answer_itself_then_hands_back(
    pair: tuple[Peer, Connection, Reader],
) -> None:
    peer, _, reader = pair
    threading.Timer(0.2, peer.send, ("x", "answer")).start()
    assert reader.reading.pump(lambda: "answer" in reader.messages(), TIMEOUT) is True
    assert reader.handled == [("x", "MainThread"), ("answer", "MainThread")]
    # the reader thread takes over again: messages nobody waits for still arrive
    peer.send("later")
    wait_until(lambda: reader.messages()[-1:] == ["later"], TIMEOUT)
    assert reader.handled[-1] == ("later", "reader")


def test_pump_times_out_and_a_second_borrower_is_told_to_wait(
    pair: tuple[Peer, Connection, Reader],
) -> None:
    peer, _, reader = pair
    assert reader.reading.pump(lambda: False, 0.1) is False
    results: list[bool | None] = []
    borrowing = threading.Event()

    def first() -> None:
        borrowing.set()
        results.append(reader.reading.pump(lambda: "go" in reader.messages(), TIMEOUT))

    t = threading.Thread(target=first)
    t.start()
    borrowing.wait(TIMEOUT)
    wait_until(lambda: reader.reading._lent, TIMEOUT)
    assert reader.reading.pump(lambda: False, TIMEOUT) is None  # one borrower at a time
    peer.send("go")
    t.join(TIMEOUT)
    assert results == [True]


def test_the_end_of_the_stream_is_reported_once_to_whoever_reads(
    pair: tuple[Peer, Connection, Reader],
) -> None:
    peer, _, reader = pair
    threading.Timer(0.2, peer.sock.close if peer.sock else None).start()
    peer.send("last")
    assert reader.reading.pump(lambda: False, TIMEOUT) is False
    reader.thread.join(TIMEOUT)
    assert not reader.thread.is_alive()
    assert reader.messages() == ["last"]
    assert reader.ends == ["the cluster closed the connection"]


def test_sigint_while_blocked_raises_and_the_stream_goes_on(
    pair: tuple[Peer, Connection, Reader],
) -> None:
    peer, _, reader = pair
    threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGINT)).start()
    with pytest.raises(KeyboardInterrupt):
        reader.reading.pump(lambda: False, TIMEOUT)
    peer.send("after")
    assert reader.reading.pump(lambda: "after" in reader.messages(), TIMEOUT) is True
    # outside a pump the process's own handler runs at once, as before
    with pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(TIMEOUT)


def test_sigint_during_a_frame_waits_until_the_whole_frame_is_handled(
    pair: tuple[Peer, Connection, Reader],
) -> None:
    """An interrupt between two messages of a frame would drop the rest of the frame (say
    another thread's answer): it is raised only once every message is handled."""
    peer, _, reader = pair

    def interrupt_at_first(msg: Any) -> None:
        if msg == 1:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)  # the signal is delivered meanwhile, between two messages

    reader.on_message = interrupt_at_first
    threading.Timer(0.1, peer.send, tuple(range(1, 6))).start()
    with pytest.raises(KeyboardInterrupt):
        reader.reading.pump(lambda: False, TIMEOUT)
    assert reader.messages() == [1, 2, 3, 4, 5]
    reader.on_message = None
    peer.send("next")
    assert reader.reading.pump(lambda: "next" in reader.messages(), TIMEOUT) is True


def test_after_quick_waits_the_reader_thread_resumes_unwoken(
    pair: tuple[Peer, Connection, Reader],
) -> None:
    """A quick wait does not wake the reader thread when it ends (that would take the GIL
    from the caller): the reader looks again by itself, so nothing is left unread."""
    peer, _, reader = pair
    for i in range(5):
        peer.send(i)
        assert reader.reading.pump(lambda i=i: i in reader.messages(), TIMEOUT) is True
    peer.send("later")
    wait_until(lambda: reader.messages()[-1:] == ["later"], TIMEOUT)
    assert reader.handled[-1] == ("later", "reader")
