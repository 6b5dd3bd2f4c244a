"""What the processes of a cluster import before the first task runs: a guard for the cold
start (benchmarks' ``cold_start``), which measures it. No timings here: each process's
module set is checked in a fresh interpreter, so a module made lazy stays lazy.

    head process: head_process ──fork──▶ fork server (worker's modules) ──fork──▶ workers
                  └──▶ the head's modules
    driver: init ──▶ cluster/local.py starts the head ──▶ client, engine
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any

import pytest
from nbray_testing import run_python

from nbray._node.supervisor import Supervisor
from nbray._wire import protocol as P
from nbray._wire.transport import FrameDecoder

pytestmark = pytest.mark.timeout(120)

REPO_ROOT = Path(__file__).resolve().parents[2]

# imported where they are used, never on the way to the first result
NEVER_AT_START = {"asyncio", "psutil", "pynvml", "subprocess", "shutil", "tempfile"}
# everything the head imports before its fork server is forked is paid by both
BEFORE_FORK_NOT = NEVER_AT_START | {"logging", "dataclasses", "inspect", "cloudpickle"}


def _modules_after(code: str) -> set[str]:
    """The names in ``sys.modules`` after ``code`` ran in a fresh interpreter."""
    path = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
    out = run_python(
        f"{code}\nimport sys, json\nprint(json.dumps(sorted(sys.modules)))",
        env={"PYTHONPATH": path},
        cwd=str(REPO_ROOT),
    )
    assert out.returncode == 0, out.stderr
    return set(json.loads(out.stdout.splitlines()[-1]))


def test_the_head_process_before_it_forks_its_fork_server() -> None:
    loaded = _modules_after("import nbray._compose.head_process")
    assert not loaded & BEFORE_FORK_NOT
    assert not {m for m in loaded if m.startswith(("nbray._node.", "nbray._engines"))} - {
        "nbray._node.resources"
    }


def test_the_head_imports_neither_psutil_nor_dataclasses() -> None:
    loaded = _modules_after(
        "import nbray._compose.head_process, nbray._node.head\n"
        "from nbray._wire.gpus import detect_gpus\n"
        "detect_gpus()"  # (pynvml only where an NVIDIA driver is: none on CI)
    )
    missing_driver = not any(os.path.exists(d) for d in ("/dev/nvidiactl", "/dev/dxg"))
    never = NEVER_AT_START - ({"pynvml"} if not missing_driver else set())
    assert not loaded & (never | {"dataclasses", "inspect", "cloudpickle"})


def test_the_worker_imports_no_runtime_env_machinery() -> None:
    loaded = _modules_after("import nbray._compose.head_process, nbray._engines.local.worker")
    assert not loaded & (
        NEVER_AT_START | {"concurrent.futures", "nbray._engines.local.runtime_env"}
    )


def test_the_driver_starts_the_head_before_heavy_imports() -> None:
    # what init() imports before it starts the head process (cluster/local.py)
    loaded = _modules_after(
        "import nbray._compose.lifecycle, nbray._compose.cluster.local\n"
        "from nbray._wire import session_files\n"
        "session_files.user_root()"
    )
    assert not loaded & {"cloudpickle", "psutil", "shutil", "tempfile", "nbray._engines"}


def test_protocol_records_are_built_from_evaluated_annotations() -> None:
    # a string annotation (``from __future__ import annotations``) makes NamedTuple compile
    # a ForwardRef for each field, which multiplied this module's import time
    assert P.TaskSpec.__annotations__["task_id"] is int
    from nbray._node import instructions

    assert instructions.SpawnWorker.__annotations__["worker_id"] is int


class _Reactor:
    def add_reader(self, fd: int, callback: Any) -> None:
        pass


def test_workers_the_fork_server_forked_unasked_are_not_asked_for_again() -> None:
    head_end, fs_end = socket.socketpair()
    sup = Supervisor(_Reactor(), on_exit=lambda *a: None, on_lost=lambda: None)  # type: ignore[arg-type]
    sup.attach(_Process(), head_end, prespawned=2)
    for wid in (1, 2, 3):
        sup.spawn(wid)
    sup.spawn(1)  # a later worker 1 (say, after a restart) is asked for
    head_end.setblocking(True)
    fs_end.settimeout(10)
    received: list[Any] = []
    decoder = FrameDecoder()
    while len(received) < 2:
        for msgs in decoder.feed(fs_end.recv(65536)):
            received.extend(msgs)
    assert received == [("spawn", 3), ("spawn", 1)]
    head_end.close()
    fs_end.close()


class _Process:
    pid = 0

    def wait(self, timeout: float) -> int | None:
        return 0

    def kill(self) -> None:
        pass
