"""Property tests (hypothesis) of the wire's two parsers: the handshake, which sees bytes
from anyone, and the frame decoder, which sees bytes from authenticated peers.

- No input accepts a peer without the secret, and the verdict comes within a bounded
  number of bytes, however the input is split.
- Well-formed frames come back exactly, however the byte stream is split; a frame header
  announcing more than MAX_FRAME is refused before anything is buffered for it; arbitrary
  bytes end in frames or an ordinary exception (the head closes that peer), never more.
"""

from __future__ import annotations

import itertools
import os
import pickle

from hypothesis import given, settings
from hypothesis import strategies as st

from nbray._wire.transport import (
    CLIENT_HELLO_SIZE,
    MAGIC,
    MAX_FRAME,
    FrameDecoder,
    ServerAuth,
    encode,
)

SECRET = os.urandom(32)


def splits(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=4 * CLIENT_HELLO_SIZE), st.lists(st.integers(0, 10_000), max_size=8))
def test_handshake_never_accepts_without_the_secret(data: bytes, cuts: list[int]) -> None:
    auth = ServerAuth(SECRET)
    verdict = None
    fed = 0
    for chunk in splits(data, cuts):
        fed += len(chunk)
        verdict, reply, _ = auth.feed(chunk)
        assert verdict is not True
        if verdict is False:
            assert reply == b""
            break
    if fed >= CLIENT_HELLO_SIZE:
        assert verdict is False  # decided within one client hello's worth of bytes


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=CLIENT_HELLO_SIZE))
def test_handshake_with_the_magic_prefix_and_junk_is_refused(junk: bytes) -> None:
    auth = ServerAuth(SECRET)
    data = (MAGIC + junk + bytes(CLIENT_HELLO_SIZE))[:CLIENT_HELLO_SIZE]
    assert auth.feed(data)[0] is False


messages = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text()
    | st.binary(),
    lambda inner: st.lists(inner, max_size=4) | st.tuples(inner, inner),
    max_leaves=12,
)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.lists(messages, max_size=5), min_size=1, max_size=5),
    st.lists(st.integers(0, 100_000), max_size=10),
)
def test_frames_survive_any_split(frames: list[list[object]], cuts: list[int]) -> None:
    stream = b"".join(encode(f) for f in frames)
    decoder = FrameDecoder()
    out: list[list[object]] = []
    for chunk in splits(stream, cuts):
        out += decoder.feed(chunk)
    assert out == frames


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2048), st.lists(st.integers(0, 4096), max_size=6))
def test_arbitrary_bytes_give_frames_or_an_ordinary_error(data: bytes, cuts: list[int]) -> None:
    decoder = FrameDecoder()
    try:
        for chunk in splits(data, cuts):
            decoder.feed(chunk)
    except Exception:
        # an ordinary error: the head logs it and closes that peer (test_hostile_peers.py).
        # Anything else (a hang, a BaseException) fails this test.
        return
    # no error: whatever was not parsed is at most one incomplete frame, kept in full
    assert len(decoder._buf) <= len(data)
    if decoder._buf:
        size = int.from_bytes(bytes(decoder._buf[:4]).ljust(4, b"\0"), "little")
        assert len(decoder._buf) < 4 or size > len(decoder._buf) - 4


@given(st.integers(MAX_FRAME + 1, 2**32 - 1))
def test_an_oversized_header_is_refused_before_buffering(size: int) -> None:
    decoder = FrameDecoder()
    header = size.to_bytes(4, "little")
    try:
        decoder.feed(header + b"x")
    except ValueError as exc:
        assert "exceeds" in str(exc)
    else:
        raise AssertionError("an oversized frame was accepted")


def test_a_pickle_frame_is_only_parsed_whole() -> None:
    body = pickle.dumps([("a", 1)])
    decoder = FrameDecoder()
    frame = len(body).to_bytes(4, "little") + body
    assert decoder.feed(frame[:-1]) == []
    assert decoder.feed(frame[-1:]) == [[("a", 1)]]
