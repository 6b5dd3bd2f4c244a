"""The handshake and framing, over real socket pairs (no cluster)."""

from __future__ import annotations

import os
import socket
import threading

import pytest

from nbray._wire import protocol as P
from nbray._wire.transport import (
    CLIENT_HELLO_SIZE,
    MAGIC,
    FrameDecoder,
    ServerAuth,
    _mac,
    encode,
    parse_address,
)

SECRET = os.urandom(32)


def client_hello(secret: bytes, server_hello: bytes, nonce_c: bytes) -> bytes:
    nonce_s = server_hello[len(MAGIC) :]
    return MAGIC + nonce_c + _mac(secret, b"c", nonce_s, nonce_c)


def test_right_secret_is_accepted_and_server_proves_itself() -> None:
    auth = ServerAuth(SECRET)
    nonce_c = os.urandom(32)
    verdict, reply, rest = auth.feed(client_hello(SECRET, auth.hello(), nonce_c) + b"extra")
    assert verdict is True
    assert reply == _mac(SECRET, b"s", nonce_c, auth.nonce)
    assert rest == b"extra"


def test_wrong_secret_is_refused() -> None:
    auth = ServerAuth(SECRET)
    verdict, reply, _ = auth.feed(client_hello(os.urandom(32), auth.hello(), os.urandom(32)))
    assert verdict is False and reply == b""


def test_replayed_hello_is_refused() -> None:
    first = ServerAuth(SECRET)
    hello = client_hello(SECRET, first.hello(), os.urandom(32))
    assert first.feed(hello)[0] is True
    assert ServerAuth(SECRET).feed(hello)[0] is False  # a fresh server nonce


def test_non_nbray_bytes_are_refused_early() -> None:
    auth = ServerAuth(SECRET)
    assert auth.feed(b"GET / HTTP/1.1\r\n")[0] is False
    partial = ServerAuth(SECRET)
    assert partial.feed(MAGIC[:4])[0] is None  # still waiting, nothing parsed


def test_handshake_reads_a_bounded_number_of_bytes() -> None:
    auth = ServerAuth(SECRET)
    junk = MAGIC + os.urandom(CLIENT_HELLO_SIZE * 10)
    verdict, _, _ = auth.feed(junk)
    assert verdict is False


def test_frames_round_trip_across_arbitrary_splits() -> None:
    msgs = [[P.Fetch((1, 2, 3)), P.Release((4,))], [P.Put(5, P.Payload(P.INLINE, b"x"), ())]]
    data = b"".join(encode(m) for m in msgs)
    for cut in range(1, len(data)):
        dec = FrameDecoder()
        out = dec.feed(data[:cut]) + dec.feed(data[cut:])
        assert out == msgs


def test_oversized_frame_is_rejected() -> None:
    with pytest.raises(ValueError, match="exceeds"):
        FrameDecoder().feed((2**31).to_bytes(4, "little") + b"x")


def test_parse_address() -> None:
    assert parse_address("unix:/tmp/x/sock") == (socket.AF_UNIX, "/tmp/x/sock")
    assert parse_address("127.0.0.1:6379") == (socket.AF_INET, ("127.0.0.1", 6379))
    with pytest.raises(ValueError, match="cannot parse"):
        parse_address("nonsense")


def test_connection_against_a_real_server_socket(tmp_path: os.PathLike[str]) -> None:
    from nbray._wire.transport import Connection
    from nbray.exceptions import NbrayConnectionError

    path = os.path.join(tmp_path, "s")
    server = socket.socket(socket.AF_UNIX)
    server.bind(path)
    server.listen()
    got: list[object] = []

    def serve() -> None:
        for _ in range(2):
            conn, _ = server.accept()
            auth = ServerAuth(SECRET)
            conn.sendall(auth.hello())
            data = b""
            while len(data) < CLIENT_HELLO_SIZE:
                data += conn.recv(CLIENT_HELLO_SIZE - len(data))
            verdict, reply, _ = auth.feed(data)
            got.append(verdict)
            if verdict:
                conn.sendall(reply)
                dec = FrameDecoder()
                frames: list[object] = []
                while not frames:
                    frames = dec.feed(conn.recv(4096))
                got.append(frames[0])
            conn.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    c = Connection(f"unix:{path}", SECRET, timeout=5)
    c.send([P.Fetch((7,))])
    with pytest.raises(NbrayConnectionError, match="secret does not match"):
        Connection(f"unix:{path}", os.urandom(32), timeout=5)
    t.join(5)
    c.close()
    server.close()
    assert got == [True, [P.Fetch((7,))], False]
