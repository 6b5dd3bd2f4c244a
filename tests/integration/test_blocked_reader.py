"""No thread hand-off where the caller is blocked anyway (issue: performance II): a driver
blocked in ``get`` reads its result off the socket itself, and an idle worker reads its next
call itself, instead of being woken by their reader threads (``_engines/local/reading.py``).

On a real cluster. Which thread handled a message is recorded by wrapping the client's own
handler; a round trip can race the hand-over of the socket, so the tests ask that at least
one of twenty was read by the blocked thread, which never happens without it.
"""

from __future__ import annotations

import sys
import threading
from typing import Any

import cloudpickle
import pytest

import nbray
from nbray._model import session
from nbray._wire import protocol as P

cloudpickle.register_pickle_by_value(sys.modules[__name__])

ROUNDS = 20
pytestmark = pytest.mark.timeout(120)


@nbray.remote
def echo(x: Any) -> Any:
    return x


@nbray.remote
class Recorder:
    """Records which of its worker's threads handled each call that reached it."""

    def __init__(self) -> None:
        self.threads: list[str] = []
        client = session.current_engine().client  # type: ignore[attr-defined]
        handler = client.task_handler

        def record(msg: Any) -> None:
            if type(msg) is P.RunActorCall:
                self.threads.append(threading.current_thread().name)
            handler(msg)

        client.task_handler = record

    def ping(self) -> None:
        return None

    def seen(self) -> list[str]:
        return self.threads


def test_a_blocked_get_reads_its_result_itself(cluster: nbray.ClusterContext) -> None:
    client = session.current_engine().client  # type: ignore[attr-defined]
    original = client.handlers[P.ObjectReady]
    threads: list[str] = []

    def record(msg: P.ObjectReady) -> None:
        threads.append(threading.current_thread().name)
        original(msg)

    client.handlers[P.ObjectReady] = record
    try:
        assert [nbray.get(echo.remote(i)) for i in range(ROUNDS)] == list(range(ROUNDS))
    finally:
        client.handlers[P.ObjectReady] = original
    assert threading.current_thread().name in threads, threads
    # and the reader thread still reads what nobody waits for
    ref = echo.remote("later")
    nbray.wait([ref], timeout=60)
    assert nbray.get(ref) == "later"


def test_an_idle_worker_reads_its_next_call_itself(cluster: nbray.ClusterContext) -> None:
    recorder = Recorder.remote()  # type: ignore[attr-defined]
    for _ in range(ROUNDS):
        nbray.get(recorder.ping.remote())
    threads = nbray.get(recorder.seen.remote())
    assert "MainThread" in threads, threads
