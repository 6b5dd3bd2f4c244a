"""Authenticated, framed message transport over Unix or TCP sockets.

    connect ─▶ server sends MAGIC+nonce_s ─▶ client sends MAGIC+nonce_c+HMAC(c|nonce_s|nonce_c)
            ─▶ server checks (compare_digest) and answers HMAC(s|nonce_c|nonce_s) ─▶ client checks
            ─▶ frames: u32 length + pickle(list of protocol records)

Nothing is unpickled before both sides proved they hold the cluster's 256-bit secret: the
server reads exactly ``CLIENT_HELLO_SIZE`` bytes from an unauthenticated peer and closes
the connection on any mismatch. A replayed client hello fails because each server nonce is
fresh. The client side (kernels, workers) is blocking and thread-safe for sends; the head's
side is non-blocking: the head's reactor (``nbray._node.reactor``) feeds each connection's
bytes to :class:`ServerAuth` until the peer is proven, then to :class:`FrameDecoder`.
"""

from __future__ import annotations

import hashlib
import hmac
import mmap
import os
import pickle
import socket
import struct
import threading
from typing import Any

from nbray._base.errors import NbrayConnectionError

MAGIC = b"NBRAY\x00\x01\x00"
NONCE_SIZE = 32
MAC_SIZE = 32
SERVER_HELLO_SIZE = len(MAGIC) + NONCE_SIZE
CLIENT_HELLO_SIZE = len(MAGIC) + NONCE_SIZE + MAC_SIZE
MAX_FRAME = 1 << 30
READ_SIZE = 1 << 20
_HEADER = struct.Struct("<I")


def _mac(secret: bytes, *parts: bytes) -> bytes:
    return hmac.new(secret, b"".join(parts), hashlib.sha256).digest()


def encode(msgs: list[Any]) -> bytes:
    """One frame holding ``msgs``."""
    body = pickle.dumps(msgs, protocol=5)
    return _HEADER.pack(len(body)) + body


class FrameDecoder:
    """Accumulates bytes and yields the message lists of complete frames."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes | memoryview) -> list[list[Any]]:
        buf = self._buf
        buf += data
        out = []
        pos = 0
        n = len(buf)
        while n - pos >= 4:
            (size,) = _HEADER.unpack_from(buf, pos)
            if size > MAX_FRAME:
                raise ValueError(f"frame of {size} bytes exceeds the {MAX_FRAME} limit")
            if n - pos - 4 < size:
                break
            out.append(pickle.loads(memoryview(buf)[pos + 4 : pos + 4 + size]))
            pos += 4 + size
        if pos:
            del buf[:pos]
        return out


class ReadBuffer:
    """One buffer that reads land in, again and again. ``sock.recv(READ_SIZE)`` allocates
    a new megabyte on every read, which glibc maps, shrinks and unmaps (three syscalls,
    and the unmap interrupts every CPU running one of the process's threads); this buffer
    is mapped once, and its pages are touched only as far as reads reach."""

    __slots__ = ("_view",)

    def __init__(self, size: int = READ_SIZE) -> None:
        self._view = memoryview(mmap.mmap(-1, size))

    def recv(self, sock: socket.socket, flags: int = 0) -> memoryview:
        """What one ``recv`` read (empty: the peer closed); valid until the next read."""
        n = sock.recv_into(self._view, 0, flags)
        return self._view[:n]


class ServerAuth:
    """The server's half of the handshake, fed raw bytes before anything is parsed."""

    def __init__(self, secret: bytes) -> None:
        self._secret = secret
        self.nonce = os.urandom(NONCE_SIZE)
        self._buf = b""

    def hello(self) -> bytes:
        return MAGIC + self.nonce

    def feed(self, data: bytes | memoryview) -> tuple[bool | None, bytes, bytes]:
        """Returns (verdict, reply, leftover): None while incomplete, False to close."""
        self._buf += data
        if len(self._buf) < CLIENT_HELLO_SIZE:
            if not MAGIC.startswith(self._buf[: len(MAGIC)]):
                return False, b"", b""
            return None, b"", b""
        msg, rest = self._buf[:CLIENT_HELLO_SIZE], self._buf[CLIENT_HELLO_SIZE:]
        magic = msg[: len(MAGIC)]
        nonce_c = msg[len(MAGIC) : len(MAGIC) + NONCE_SIZE]
        mac = msg[len(MAGIC) + NONCE_SIZE :]
        expected = _mac(self._secret, b"c", self.nonce, nonce_c)
        if magic != MAGIC or not hmac.compare_digest(mac, expected):
            return False, b"", b""
        return True, _mac(self._secret, b"s", nonce_c, self.nonce), rest


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    chunks = []
    while n:
        chunk = sock.recv(n)
        if not chunk:
            raise NbrayConnectionError("the cluster closed the connection during authentication")
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def parse_address(address: str) -> tuple[int, Any]:
    """``unix:/path``, a path, or ``host:port`` → (socket family, sockaddr)."""
    if address.startswith("unix:"):
        return socket.AF_UNIX, address[5:]
    if address.startswith("tcp://"):
        address = address[6:]
    if "/" in address:
        return socket.AF_UNIX, address
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(
            f"cannot parse cluster address {address!r}: expected 'unix:/path/to/sock', "
            "'host:port' or 'auto'"
        )
    return socket.AF_INET, (host.strip("[]"), int(port))


class Connection:
    """A blocking, authenticated connection: thread-safe ``send``, single-reader ``recv``."""

    sock: socket.socket
    address: str
    closed: bool
    _pending: list[list[Any]]

    def __init__(self, address: str, secret: bytes, timeout: float = 10.0) -> None:
        family, sockaddr = parse_address(address)
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(sockaddr)
            if family == socket.AF_INET:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            hello = _recv_exact(sock, SERVER_HELLO_SIZE)
            if hello[: len(MAGIC)] != MAGIC:
                raise NbrayConnectionError(
                    f"{address} is not an nbray cluster (unexpected greeting)"
                )
            nonce_s = hello[len(MAGIC) :]
            nonce_c = os.urandom(NONCE_SIZE)
            sock.sendall(MAGIC + nonce_c + _mac(secret, b"c", nonce_s, nonce_c))
            proof = sock.recv(MAC_SIZE, socket.MSG_WAITALL)
            if len(proof) != MAC_SIZE or not hmac.compare_digest(
                proof, _mac(secret, b"s", nonce_c, nonce_s)
            ):
                raise NbrayConnectionError(
                    f"authentication with the cluster at {address} failed: the secret does "
                    "not match. Use the secret file of that cluster (NBRAY_SECRET_FILE)."
                )
        except (OSError, NbrayConnectionError) as exc:
            sock.close()
            if isinstance(exc, NbrayConnectionError):
                raise
            raise NbrayConnectionError(
                f"cannot connect to the nbray cluster at {address}: {exc}. Is it running "
                "(`nbray status`)?"
            ) from exc
        sock.settimeout(None)
        self._adopt(sock, address)

    @classmethod
    def handshake(cls, sock: socket.socket, secret: bytes, timeout: float = 10.0) -> Connection:
        """Authenticate an accepted ``sock`` as the server (``ServerAuth``: nothing is
        unpickled before the peer proved the secret); closes it and raises OSError when
        the peer fails or goes silent for ``timeout``."""
        try:
            sock.settimeout(timeout)
            auth = ServerAuth(secret)
            sock.sendall(auth.hello())
            verdict: bool | None = None
            rest = b""
            while verdict is None:
                data = sock.recv(CLIENT_HELLO_SIZE)
                if not data:
                    raise OSError("the peer closed the connection during authentication")
                verdict, reply, rest = auth.feed(data)
            if not verdict or rest:
                raise OSError("a peer failed authentication")
            sock.sendall(reply)
            sock.settimeout(None)
        except OSError:
            sock.close()
            raise
        conn = cls.__new__(cls)
        conn._adopt(sock, "")
        return conn

    def _adopt(self, sock: socket.socket, address: str) -> None:
        self.sock = sock
        self.address = address
        self._send_lock = threading.Lock()
        self._decoder = FrameDecoder()
        self._reads = ReadBuffer()
        self._pending = []
        self.closed = False

    def send(self, msgs: list[Any]) -> None:
        data = encode(msgs)
        with self._send_lock:
            try:
                self.sock.sendall(data)
            except OSError as exc:
                self.closed = True
                raise NbrayConnectionError(f"lost the connection to the cluster: {exc}") from exc

    @property
    def pending(self) -> bool:
        """Frames already read and decoded, so ``recv`` returns without reading."""
        return bool(self._pending)

    def recv(self) -> list[Any] | None:
        """The next frame's messages, or None when the peer closed the connection."""
        while not self._pending:
            try:
                data = self._reads.recv(self.sock)
            except OSError:
                data = memoryview(b"")
            if not data:
                self.closed = True
                return None
            self._pending.extend(self._decoder.feed(data))
        return self._pending.pop(0)

    def recv_ready(self) -> list[list[Any]] | None:
        """The frames complete with what the socket holds now, without blocking (a frame
        sent in part waits for its rest); None when the peer closed the connection."""
        try:
            data = self._reads.recv(self.sock, socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            data = None
        except OSError:
            data = memoryview(b"")
        if data is not None:
            if not data:
                self.closed = True
                return None
            self._pending.extend(self._decoder.feed(data))
        frames, self._pending = self._pending, []
        return frames

    def close(self) -> None:
        self.closed = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
