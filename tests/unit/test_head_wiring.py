"""The head's one routing table covers every instruction the scheduler can give.

Builds a real ``Head`` in-process (no listening socket, no fork server, no worker) and
reads its router's tables; the messages and requests are exercised end to end by the
integration tests (tests/integration/test_tasks.py, test_actors.py, test_cluster.py).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import get_args

import pytest

from nbray._node.head import Head
from nbray._node.head_records import HeadConfig
from nbray._node.instructions import Instruction
from nbray._wire import protocol as P


@pytest.fixture
def head(tmp_path: Path) -> Iterator[Head]:
    fd = os.open(tmp_path / "secret", os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, os.urandom(32))
    os.close(fd)
    h = Head(HeadConfig(str(tmp_path), "s" * 8, "node1", {"CPU": 2.0}, []))
    yield h
    h.reactor.sel.close()


def test_every_instruction_has_a_handler(head: Head) -> None:
    assert set(head.router.instructions) == set(get_args(Instruction))


def test_every_handled_message_is_a_protocol_record(head: Head) -> None:
    records = {v for v in vars(P).values() if isinstance(v, type)}
    assert set(head.router.messages) <= records
    assert {P.Hello, P.Submit, P.TaskDone, P.Request, P.Subscribe} <= set(head.router.messages)


def test_requests_the_clients_make_are_answered(head: Head) -> None:
    assert set(head.router.requests) == {
        "cluster_info",
        "get_actor",
        "create_actor",
        "status",
        "events",
        "object_info",
        "actor_info",
        "pg_create",
        "pg_remove",
        "pg_table",
        "pg_get",
    }
    # the views take the parts they read, not the head
    status = head.router.requests["status"](None)
    assert status["tasks"] == {
        "WAITING": 0,
        "READY": 0,
        "RUNNING": 0,
        "FINISHED": 0,
        "FAILED": 0,
        "CANCELLED": 0,
    }
    assert head.router.requests["cluster_info"](None)["total"] == {"CPU": 2.0}
    assert head.router.requests["actor_info"](None, 7) == {"state": "DEAD", "node_id": "node1"}
