"""Direct actor calls under faults: a driver's calls go straight to the actor's worker once
the head offers its address, and everything the head path guarantees still holds: order
across the switch, retries and ActorDiedError when the worker dies mid-call, a caller
killed while connected, output before the value, and no unauthenticated pickle loaded."""

from __future__ import annotations

import contextlib
import os
import pickle
import queue
import signal
import socket
import stat
import struct
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cloudpickle
import pytest
from chaos_support import BOUNDED, head_pid, kill
from nbray_testing import wait_until

import nbray
from nbray._model import session
from nbray._wire.transport import MAGIC, NONCE_SIZE, SERVER_HELLO_SIZE
from nbray.exceptions import ActorDiedError

cloudpickle.register_pickle_by_value(sys.modules[__name__])

pytestmark = pytest.mark.timeout(240)


class Log:
    """Notes the index of each call it runs, in the order it runs them."""

    def __init__(self, marker: str = "") -> None:
        self.seen: list[int] = []
        self.marker = marker
        self.napped = 0

    def pid(self) -> int:
        return os.getpid()

    def add(self, i: int, after: Any = None) -> int:
        self.seen.append(i)
        return i

    def calls(self) -> list[int]:
        return self.seen

    def size(self, data: bytes) -> int:
        return len(data)

    def deref(self, refs: list[Any]) -> Any:
        return nbray.get(refs[0])

    def hang_once(self) -> int:
        """Blocks (until killed) the first time, anywhere; returns the pid after that."""
        if not os.path.exists(self.marker):
            open(self.marker, "w").close()
            time.sleep(BOUNDED * 2)
        return os.getpid()

    def hang(self, marker: str) -> None:
        open(marker, "w").close()
        time.sleep(BOUNDED * 2)

    def nap(self, seconds: float) -> None:
        self.napped += 1
        time.sleep(seconds)

    def naps(self) -> int:
        return self.napped

    def leave(self) -> None:
        nbray.actor.exit_actor()

    def count(self, n: int) -> Any:
        yield from range(n)

    def crash(self, path: str) -> None:
        with open(path, "a") as f:
            f.write("x")
        os._exit(1)

    def say(self, text: str) -> str:
        print(text)
        return text


@nbray.remote
def echo(x: Any) -> Any:
    return x


@nbray.remote
def pause(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def client() -> Any:
    return session.current_engine().client  # type: ignore[attr-defined]


def go_direct(actor: Any) -> int:
    """Call the actor until this process calls it directly; returns its worker's pid."""

    def called_directly() -> int:
        pid = nbray.get(actor.pid.remote(), timeout=BOUNDED)
        return pid if client().direct.connected(actor._actor_id) else 0

    return int(wait_until(called_directly, BOUNDED))


def test_direct_calls_are_answered_while_the_head_is_stopped(
    cluster: nbray.ClusterContext,
) -> None:
    actor = nbray.remote(Log).remote()
    go_direct(actor)
    head = head_pid(cluster.session_dir)
    os.kill(head, signal.SIGSTOP)
    try:
        # the head is off the calls' way: sync and pipelined calls are answered without it
        assert [nbray.get(actor.add.remote(i), timeout=BOUNDED) for i in range(20)] == list(
            range(20)
        )
        refs = [actor.add.remote(i) for i in range(20, 220)]
        assert nbray.get(refs, timeout=BOUNDED) == list(range(20, 220))
    finally:
        os.kill(head, signal.SIGCONT)
    # the head recorded every call once it ran again: none pending, and a direct call's
    # value can be passed on to a task
    wait_until(
        lambda: session.current_engine().actor_info(actor._actor_id)["pending_calls"] == 0,  # type: ignore[attr-defined]
        BOUNDED,
    )
    assert nbray.get(echo.remote(refs[-1]), timeout=BOUNDED) == 219
    assert nbray.get(actor.calls.remote(), timeout=BOUNDED) == list(range(220))


def test_calls_keep_their_order_across_the_switch_to_direct(
    cluster: nbray.ClusterContext,
) -> None:
    actor = nbray.remote(Log).remote()
    # sent before the actor is alive: through the head
    refs = [actor.add.remote(i) for i in range(100)]
    n = 100
    for _ in range(5):
        nbray.get(actor.add.remote(n), timeout=BOUNDED)  # drained: the head offers the address
        n += 1
        # an argument not ready yet holds back the calls behind it, direct or not
        slow = pause.remote(0.05)
        refs.append(actor.add.remote(n, slow))
        n += 1
        refs += [actor.add.remote(i) for i in range(n, n + 30)]
        n += 30
    assert client().direct.connected(actor._actor_id)
    nbray.get(refs, timeout=BOUNDED)
    assert nbray.get(actor.calls.remote(), timeout=BOUNDED) == list(range(n))


@nbray.remote
def ask(actor: Any) -> int:
    """A task that calls the actor itself (through the head)."""
    return int(nbray.get(actor.add.remote(-7)))


def test_a_direct_call_waiting_for_its_argument_leaves_the_actor_free(
    cluster: nbray.ClusterContext,
) -> None:
    actor = nbray.remote(Log).remote()
    go_direct(actor)
    # the argument comes from a task that needs this actor to run its own call first:
    # the direct call is held until the argument exists, not run on the actor's thread
    waiting = actor.add.remote(5, ask.remote(actor))
    assert nbray.get(waiting, timeout=BOUNDED) == 5
    assert nbray.get(actor.calls.remote(), timeout=BOUNDED)[-2:] == [-7, 5]


class SlowHeadLink:
    """This process's frames to the head arrive ``delay`` s late, in order (a slow link):
    whatever the actor's worker asks the head about a direct call reaches the head before
    the caller's own messages sent just before the call."""

    def __init__(self, conn: Any, delay: float) -> None:
        self.conn = conn
        self.delay = delay
        self.frames: queue.Queue[tuple[float, list[Any]] | None] = queue.Queue()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> SlowHeadLink:
        self.send = self.conn.send
        self.conn.send = lambda msgs: self.frames.put((time.monotonic() + self.delay, msgs))
        self.thread.start()
        return self

    def _run(self) -> None:
        while (item := self.frames.get()) is not None:
            when, msgs = item
            time.sleep(max(0.0, when - time.monotonic()))
            self.send(msgs)

    def __exit__(self, *exc: object) -> None:
        del self.conn.send  # the class's method again
        self.frames.put(None)
        self.thread.join(BOUNDED)


def test_a_direct_call_gets_arguments_the_head_hears_of_after_the_worker_asks(
    cluster: nbray.ClusterContext,
) -> None:
    actor = nbray.remote(Log).remote()
    go_direct(actor)
    with SlowHeadLink(client().conn, delay=0.3):
        # each put reaches the head 0.3 s after the call reached the worker, which asks
        # the head for the argument at once: the head answers once it has the caller's
        # record of the call (and so the put), not "lost"
        assert nbray.get(actor.add.remote(1, nbray.put(1)), timeout=BOUNDED) == 1
        assert nbray.get(actor.deref.remote([nbray.put(-1)]), timeout=BOUNDED) == -1
        # a large argument is put by .remote() itself, just before the call (joblib's are)
        big = bytes(300_000)
        assert (
            nbray.get([actor.size.remote(big) for _ in range(3)], timeout=BOUNDED) == [300_000] * 3
        )
    assert nbray.get(actor.calls.remote(), timeout=BOUNDED)[-1] == 1


def test_worker_killed_mid_direct_call_retries_it_then_fails_when_restarts_run_out(
    cluster: nbray.ClusterContext, tmp_path: Path, figures: dict[str, Any]
) -> None:
    marker = tmp_path / "hung-once"
    actor = nbray.remote(Log).options(max_restarts=1, max_task_retries=1).remote(str(marker))
    first = go_direct(actor)
    ref = actor.hang_once.remote()
    wait_until(marker.exists, BOUNDED)
    assert kill(first)
    # retried on the restarted actor, and answered through the head
    second = nbray.get(ref, timeout=BOUNDED)
    assert second != first
    # the restarted actor is offered again; with no restart left, a death fails the call
    assert go_direct(actor) == second
    started = tmp_path / "started"
    ref = actor.hang.remote(str(started))
    wait_until(started.exists, BOUNDED)
    assert kill(second)
    with pytest.raises(ActorDiedError):
        nbray.get(ref, timeout=BOUNDED)
    figures.update(direct_kills=2)


def test_direct_call_without_retries_fails_with_actor_died_and_the_actor_restarts(
    cluster: nbray.ClusterContext, tmp_path: Path
) -> None:
    actor = nbray.remote(Log).options(max_restarts=1).remote()
    first = go_direct(actor)
    started = tmp_path / "started"
    ref = actor.hang.remote(str(started))
    wait_until(started.exists, BOUNDED)
    assert kill(first)
    with pytest.raises(ActorDiedError):
        nbray.get(ref, timeout=BOUNDED)
    assert go_direct(actor) != first
    # the dead worker's socket is gone from the session directory
    assert not (Path(cluster.session_dir) / f"a{first}").exists()


def test_a_direct_calls_value_outlives_its_actor_when_the_head_hears_of_the_call_late(
    cluster: nbray.ClusterContext,
) -> None:
    actor = nbray.remote(Log).remote()
    go_direct(actor)
    with SlowHeadLink(client().conn, delay=0.5):
        # the worker answers at once and tells the head; the caller's record of the call
        # reaches the head after the actor has ended
        ref = actor.add.remote(5)
        assert nbray.get(ref, timeout=BOUNDED) == 5
        actor.leave.remote()
        time.sleep(0.25)
    # the head keeps the answer it had, not an ActorDiedError, for the ref passed on
    assert nbray.get(echo.remote(ref), timeout=BOUNDED) == 5


def test_a_lone_generator_call_keeps_every_item(cluster: nbray.ClusterContext) -> None:
    actor = nbray.remote(Log).remote()
    go_direct(actor)
    for _ in range(5):
        # the items reach the head from the worker while the caller waits: the head knows
        # the call by then, or it would drop them
        items = actor.count.remote(5)
        time.sleep(0.02)
        assert [nbray.get(r, timeout=BOUNDED) for r in items] == list(range(5))


def test_a_direct_generator_calls_items_wait_for_its_late_record(
    cluster: nbray.ClusterContext,
) -> None:
    actor = nbray.remote(Log).remote()
    go_direct(actor)
    with SlowHeadLink(client().conn, delay=0.3):
        # the worker's items reach the head before the caller's record of the call (the
        # head may read the worker's socket first): it keeps them until the record comes
        items = actor.count.remote(5)
        assert [nbray.get(r, timeout=BOUNDED) for r in items] == list(range(5))


def test_a_direct_call_its_worker_died_on_before_the_head_heard_of_it_is_not_run_again(
    cluster: nbray.ClusterContext, tmp_path: Path
) -> None:
    actor = nbray.remote(Log).options(max_restarts=2, max_task_retries=0).remote()
    go_direct(actor)
    ran = tmp_path / "ran"
    with SlowHeadLink(client().conn, delay=0.5):
        # the worker dies at once; the head handles its death, and restarts the actor,
        # before the caller's record of the call arrives: it was in flight on that worker,
        # so with no retries it fails, and it does not run on the new worker
        ref = actor.crash.remote(str(ran))
        with pytest.raises(ActorDiedError):
            nbray.get(ref, timeout=BOUNDED)
    assert nbray.get(actor.add.remote(1), timeout=BOUNDED) == 1
    assert ran.read_text() == "x"


DIRECT_CALLER = """
import sys, time, nbray
nbray.init(address=sys.argv[1], namespace="direct")
actor = nbray.get_actor("log")
client = nbray._model.session.current_engine().client
while not client.direct.connected(actor._actor_id):  # until it takes the head's offer
    nbray.get(actor.pid.remote())
"""


@contextlib.contextmanager
def caller(ctx: nbray.ClusterContext, tmp_path: Path, body: str, says: str) -> Iterator[list[str]]:
    """Another driver, calling the actor named "log" directly, then running ``body``;
    yields the lines it printed before ``says`` once it printed that, and is SIGKILLed
    after."""
    script = tmp_path / "caller.py"
    script.write_text(DIRECT_CALLER + textwrap.dedent(body))
    proc = subprocess.Popen(
        [sys.executable, str(script), ctx.session_dir], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:
            if line.strip() == says:
                break
            lines.append(line)
        else:
            raise AssertionError(f"the caller ended without printing {says!r}: {lines}")
        yield lines
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(BOUNDED)


def test_a_caller_killed_while_calling_directly_leaves_the_actor_serving(
    cluster_factory: Callable[..., nbray.ClusterContext], tmp_path: Path
) -> None:
    ctx = cluster_factory(num_cpus=2, namespace="direct")
    actor = nbray.remote(Log).options(name="log", lifetime="detached").remote()
    pid = go_direct(actor)
    flood = """
        refs = [actor.nap.remote(0.01) for _ in range(300)]  # a flood, left unanswered
        print("calling", flush=True)
        nbray.get(refs)
    """
    with caller(ctx, tmp_path, flood, "calling"):
        wait_until(lambda: nbray.get(actor.naps.remote(), timeout=BOUNDED) > 0, BOUNDED)
    # the worker outlived its caller (answers to a closed connection are dropped), this
    # process still calls it directly, and the head's record of the calls empties
    assert nbray.get(actor.pid.remote(), timeout=BOUNDED) == pid
    assert client().direct.connected(actor._actor_id)
    wait_until(
        lambda: session.current_engine().actor_info(actor._actor_id)["pending_calls"] == 0,  # type: ignore[attr-defined]
        BOUNDED,
    )
    nbray.kill(actor)


def test_direct_calls_a_dead_caller_never_sent_are_sent_by_the_head(
    cluster_factory: Callable[..., nbray.ClusterContext], tmp_path: Path
) -> None:
    ctx = cluster_factory(num_cpus=2, namespace="direct")
    actor = nbray.remote(Log).options(name="log").remote()
    go_direct(actor)
    unsent = f"""
        # this process dies with its direct calls unsent: only the head's records of them
        client.direct.outbox.flush = lambda before=None: before is not None and before()
        refs = [actor.nap.remote(0) for _ in range(20)]
        client.send()  # the records (deferred until the next send)
        client.barrier()
        print("recorded", flush=True)
        time.sleep({BOUNDED})
    """
    with caller(ctx, tmp_path, unsent, "recorded"):
        pass
    # the head recorded 20 calls the worker never got: once the caller is gone, the
    # worker says so, and the head sends them on itself (none waits forever)
    wait_until(lambda: nbray.get(actor.naps.remote(), timeout=BOUNDED) == 20, BOUNDED)
    wait_until(
        lambda: session.current_engine().actor_info(actor._actor_id)["pending_calls"] == 0,  # type: ignore[attr-defined]
        BOUNDED,
    )


def test_output_of_a_direct_call_goes_to_its_caller_not_the_actors_owner(
    cluster_factory: Callable[..., nbray.ClusterContext], tmp_path: Path
) -> None:
    ctx = cluster_factory(num_cpus=2, namespace="direct")
    actor = nbray.remote(Log).options(name="log").remote()
    nbray.get(actor.pid.remote(), timeout=BOUNDED)
    # the worker's output reaches the head before the other driver's record of the call
    # (it goes with that driver's next message): it still goes to that driver
    body = """
        for i in range(3):
            nbray.get(actor.say.remote(f"said-{i}"))
        print("done", flush=True)
    """
    with caller(ctx, tmp_path, body, "done") as lines:
        assert [i for i in range(3) if any(f"said-{i}" in line for line in lines)] == [0, 1, 2]


def test_output_of_a_direct_call_comes_before_its_value(
    cluster: nbray.ClusterContext, capfd: pytest.CaptureFixture[str]
) -> None:
    actor = nbray.remote(Log).remote()
    go_direct(actor)
    capfd.readouterr()
    for i in range(5):
        assert nbray.get(actor.say.remote(f"line-{i}"), timeout=BOUNDED) == f"line-{i}"
        print(f"after-{i}", flush=True)
    out = capfd.readouterr().out
    order = [
        w for line in out.splitlines() for w in line.split() if w.startswith(("line-", "after-"))
    ]
    assert order == [x for i in range(5) for x in (f"line-{i}", f"after-{i}")]


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.marker), "w"))


def test_an_actors_socket_is_private_and_loads_no_unauthenticated_pickle(
    cluster: nbray.ClusterContext, tmp_path: Path
) -> None:
    actor = nbray.remote(Log).remote()
    pid = go_direct(actor)
    path = Path(cluster.session_dir) / f"a{pid}"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    markers = [tmp_path / "raw", tmp_path / "forged"]
    for marker in markers:
        body = pickle.dumps([_Evil(marker)])
        frame = struct.pack("<I", len(body)) + body
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(BOUNDED)
            sock.connect(str(path))
            if marker.name == "forged":  # a well-formed handshake with a made-up MAC
                assert sock.recv(SERVER_HELLO_SIZE, socket.MSG_WAITALL).startswith(MAGIC)
                sock.sendall(MAGIC + os.urandom(NONCE_SIZE) + os.urandom(32))
            try:
                sock.sendall(frame)
                while sock.recv(4096):  # until the worker closes it (a hang fails)
                    pass
            except (ConnectionResetError, BrokenPipeError):
                pass
    assert nbray.get(actor.add.remote(1), timeout=BOUNDED) == 1
    assert [m for m in markers if m.exists()] == []
