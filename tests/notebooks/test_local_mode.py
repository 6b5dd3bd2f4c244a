"""``nbray.init(local_mode=True)`` in a real IPython kernel: tasks and actors run in the
kernel itself, so ``%debug`` and ``pdb`` open in the failing task's frame.

One kernel serves the module; it starts no cluster (local mode), so no process is left.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator

import pytest
from kernel_session import KernelSession

pytestmark = pytest.mark.timeout(90)

ANSI = re.compile(r"\x1b\[[0-9;]*m")

SETUP = """
import os, nbray
ctx = nbray.init(local_mode=True)

@nbray.remote
def divide(x):
    scaled = x * 2
    return scaled / 0

@nbray.remote
def outer(x):
    return nbray.get(divide.remote(x))

@nbray.remote
class Keeper:
    def __init__(self):
        self.items = []
    def add(self, item):
        self.items.append(item)
        return len(self.items)
    def pid(self):
        return os.getpid()

print("ENGINE", ctx.engine, os.getpid())
"""


@pytest.fixture(scope="module")
def kernel() -> Iterator[KernelSession]:
    k = KernelSession()
    try:
        out = k.execute(SETUP).ok().stream()
        assert "ENGINE inline" in out, out
        k.pid = int(out.split("ENGINE inline ", 1)[1].split()[0])  # type: ignore[attr-defined]
        yield k
    finally:
        k.close()


def test_tasks_and_actors_run_in_the_kernel(kernel: KernelSession) -> None:
    out = kernel.execute(
        "k = Keeper.remote()\n"
        "nbray.get(k.add.remote('a'))\n"
        "print('RESULT', nbray.get(k.add.remote('b')), nbray.get(k.pid.remote()) == os.getpid())\n"
        "print('KIDS', len(__import__('psutil').Process().children()))"
    ).ok()
    text = out.stream()
    assert "RESULT 2 True" in text
    assert "KIDS 0" in text  # no head, no worker: nothing was started
    assert kernel.pid != os.getpid()  # type: ignore[attr-defined]


def test_pdb_post_mortem_opens_in_the_task_frame(kernel: KernelSession) -> None:
    out = kernel.execute(
        "import io, pdb, sys\n"
        "try:\n"
        "    nbray.get(outer.remote(21))\n"
        "except ZeroDivisionError as exc:\n"
        "    err = exc\n"
        "print('CLASSES', isinstance(err, nbray.exceptions.RayTaskError))\n"
        "debugger = pdb.Pdb(stdin=io.StringIO('p scaled\\nq\\n'), stdout=sys.stdout)\n"
        "debugger.reset()\n"
        "debugger.interaction(None, err.__traceback__)\n"
    ).ok()
    text = ANSI.sub("", out.stream())
    assert "CLASSES True" in text
    assert "divide()" in text  # the frame pdb stops in
    assert "ipdb> 42\n" in text  # a local of the failing task


def test_percent_debug_after_a_failed_cell(kernel: KernelSession) -> None:
    failed = kernel.execute("nbray.get(outer.remote(5))")
    assert failed.status == "error"
    assert failed.error()["ename"] == "TaskError(ZeroDivisionError)"
    msg_id = kernel.submit("%debug", allow_stdin=True)
    for answer in ("p scaled", "p x", "q"):
        request = kernel.client.get_stdin_msg(timeout=30)
        assert request["msg_type"] == "input_request"
        kernel.client.input(answer)
    text = ANSI.sub("", kernel.finish(msg_id).stream())
    assert "divide()" in text
    # the answers to ``p scaled`` and ``p x`` (the prompts go to stdin requests)
    assert "\n10\n5\n" in text
