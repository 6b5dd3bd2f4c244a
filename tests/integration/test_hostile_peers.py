"""Malformed input from authenticated peers closes that connection, never the cluster."""

from __future__ import annotations

import pickle
import random
import struct
from pathlib import Path

import psutil
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nbray
from nbray._wire import protocol as P
from nbray._wire.transport import Connection, encode


def _connect(ctx: nbray.ClusterContext) -> Connection:
    secret = (Path(ctx.session_dir) / "secret").read_bytes()
    return Connection(f"unix:{Path(ctx.session_dir) / 'sock'}", secret, timeout=5)


def _closed_by_head(conn: Connection, timeout: float = 10.0) -> bool:
    conn.sock.settimeout(timeout)
    try:
        while True:
            data = conn.sock.recv(65536)
            if not data:
                return True
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    finally:
        conn.close()


def _frame(body: bytes) -> bytes:
    return struct.pack("<I", len(body)) + body


def _still_serves() -> None:
    @nbray.remote
    def add(a: int, b: int) -> int:
        return a + b

    assert nbray.get(add.remote(2, 3), timeout=30) == 5


MALFORMED = {
    "not a pickle": _frame(b"\x00garbage that is not a pickle"),
    "not a list": _frame(pickle.dumps({"op": "submit"})),
    "unknown record": _frame(pickle.dumps([("no", "such", "message")])),
    "record before hello": encode([P.Fetch((1, 2, 3))]),
    "hello then wrong fields": encode([P.Hello("client", 1), P.Fetch(None)]),  # type: ignore[arg-type]
    "oversized frame": struct.pack("<I", 2**31) + b"x" * 16,
    "truncated then closed": _frame(pickle.dumps([P.Hello("client", 1)]))[:7],
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_input_drops_only_that_peer(cluster: nbray.ClusterContext, case: str) -> None:
    conn = _connect(cluster)
    conn.sock.sendall(MALFORMED[case])
    if case == "truncated then closed":
        conn.close()
    elif case == "unknown record":
        # an unknown record is logged and ignored: the peer stays connected and usable
        conn.send([P.Hello("client", 1), P.Request(7, "status")])
        conn.sock.settimeout(10)
        replies: list[P.Reply] = []
        while not replies:
            frame = conn.recv()
            assert frame is not None, "the head closed a peer that sent an unknown record"
            replies = [m for m in frame if isinstance(m, P.Reply)]
        assert replies[0].req_id == 7 and replies[0].ok
        conn.close()
    else:
        assert _closed_by_head(conn), case
    _still_serves()


def test_random_bytes_after_authentication(cluster: nbray.ClusterContext) -> None:
    rng = random.Random(20261126)
    for _ in range(30):
        conn = _connect(cluster)
        payload = bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 4096)))
        conn.sock.sendall(_frame(payload) if rng.random() < 0.5 else payload)
        conn.close()
    _still_serves()


# --- fuzzing the messages of an authenticated client (hypothesis) --------------------------

# What a client may send. Shutdown is left out: stopping the cluster is a client's right.
CLIENT_MESSAGES = [
    P.Submit,
    P.CreateActor,
    P.CallActor,
    P.Put,
    P.Fetch,
    P.AddHold,
    P.Release,
    P.Cancel,
    P.KillActor,
    P.Request,
    P.Subscribe,
    P.Unsubscribe,
]
_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.text(max_size=20)
    | st.binary(max_size=64),
    lambda inner: (
        st.tuples(inner, inner)
        | st.lists(inner, max_size=3)
        | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)


def _specs(cls: type) -> st.SearchStrategy[object]:
    """Instances of a protocol NamedTuple, every field an arbitrary value."""
    fields = cls._fields  # type: ignore[attr-defined]
    return st.tuples(*[_values for _ in fields]).map(lambda vals: cls(*vals))


_nested = {
    P.Submit: st.builds(P.Submit, _specs(P.TaskSpec), st.binary(max_size=32)),
    P.CallActor: st.builds(P.CallActor, _specs(P.TaskSpec)),
    P.CreateActor: st.builds(P.CreateActor, _specs(P.ActorSpec), st.binary(max_size=32)),
    P.Put: st.builds(P.Put, _values, _specs(P.Payload), _values),
}
fuzzed_message = st.one_of(
    *[_nested.get(cls, _specs(cls)) for cls in CLIENT_MESSAGES]  # type: ignore[arg-type]
)


@pytest.mark.timeout(300)
def test_fuzzed_client_messages_never_take_the_head_down(cluster: nbray.ClusterContext) -> None:
    head = psutil.Process(int((Path(cluster.session_dir) / "head.pid").read_text()))

    @settings(
        max_examples=150,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @given(st.lists(fuzzed_message, min_size=1, max_size=4))
    def one_peer(msgs: list[object]) -> None:
        conn = _connect(cluster)
        try:
            conn.send([P.Hello("client", 1), *msgs])
        finally:
            conn.close()
        assert head.is_running() and head.status() != psutil.STATUS_ZOMBIE

    one_peer()
    _still_serves()
    log = (Path(cluster.session_dir) / "head.log").read_text()
    assert "closing connection" in log  # malformed records were logged with a reason
