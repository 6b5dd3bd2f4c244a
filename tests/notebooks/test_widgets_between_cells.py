"""Widgets across cells, in a real kernel with a real cluster.

A widget's picture (its ``text/html`` and ``text/plain`` output) after its cell ended: it
is drawn again once the tasks the cell left unfinished have all ended (not at every step:
a frontend draws the live view anew at each update of its output), then stays put until
the next cell. This is also what keeps a kernel on Ray Client right: the Ray engine learns
of a task's end from a callback that can come after ``get`` returned and the cell ended.

A task graph's cell scope: the tasks submitted from its cell, also when it is opened after
earlier cells' tasks (which its subscription replays), and not another client's that ran
on the same cluster meanwhile.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator

import pytest
from kernel_session import Execution, KernelSession

from nbray.widgets.base import SETTLE

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def kernel() -> Iterator[KernelSession]:
    """A kernel of its own for each test: no other test's tasks or widgets in it."""
    k = KernelSession()
    try:
        k.execute("import nbray, time\nnbray.init(num_cpus=2)", timeout=60).ok()
        yield k
    finally:
        k.close()


def updates(cell: Execution) -> int:
    return sum(1 for m in cell.messages if m["msg_type"] == "update_display_data")


def graph_texts(cell: Execution, *, until_idle: bool = False) -> list[str]:
    """The graph's text/plain lines the cell's outputs showed, in order; ``until_idle``:
    only those sent before the cell ended (the kernel went idle)."""
    texts = []
    for m in cell.messages:
        if until_idle and m["msg_type"] == "status":
            if m["content"]["execution_state"] == "idle":
                break
        elif m["msg_type"] in ("display_data", "update_display_data"):
            text = m["content"]["data"].get("text/plain", "")
            if text.startswith("TaskGraph"):
                texts.append(text)
    return texts


def graph_text(cell: Execution) -> str:
    return graph_texts(cell)[-1]


def number(cell: Execution) -> int:
    """The cell's In[N] number, as its frontend shows it."""
    return int(cell.reply["content"]["execution_count"])


def test_a_picture_follows_the_tasks_its_cell_left_running(kernel: KernelSession) -> None:
    shown = kernel.execute(
        "@nbray.remote\ndef nap():\n    time.sleep(1.5)\n"
        "graph = nbray.task_graph()\nmonitor = nbray.monitor()\ndisplay(graph, monitor)\n"
        "refs = [nap.remote() for _ in range(2)]"
    ).ok()
    at_the_end = graph_texts(shown, until_idle=True)
    assert "FINISHED" not in at_the_end[-1]  # the cell ended before its tasks
    kernel.wait_for(lambda: "TaskGraph: 2 tasks (2 FINISHED)" in graph_text(shown), timeout=30)
    after = graph_texts(shown)[len(at_the_end) :]
    assert all("TaskGraph: 2 tasks (2 FINISHED)" in d for d in after), after
    pictures = [h for h in shown.data("text/html") if "nbray-picture-task-graph" in h]
    assert "2 tasks (2 finished)" in pictures[-1].lower()  # a saved notebook's picture too
    # once they ended, the pictures stay put between cells (the monitor's metrics go on
    # changing every second, its picture only at the end of the next cell)
    time.sleep(2 * SETTLE)
    settled = updates(shown)
    time.sleep(3)
    assert updates(shown) == settled


def test_a_cell_that_waits_for_its_tasks_leaves_a_picture_of_their_end(
    kernel: KernelSession,
) -> None:
    # the events of its last tasks may come just after the cell's end (the head sends them
    # in batches), yet no other cell is needed to show them
    shown = kernel.execute(
        "@nbray.remote\ndef one():\n    return 1\n"
        "graph = nbray.task_graph()\ndisplay(graph)\nnbray.get([one.remote() for _ in range(3)])"
    ).ok()
    kernel.wait_for(lambda: "TaskGraph: 3 tasks (3 FINISHED)" in graph_text(shown), timeout=30)


def test_a_cells_graph_shows_only_that_cells_tasks_after_earlier_cells(
    kernel: KernelSession,
) -> None:
    """Opening a graph subscribes to the cluster's events, which replays the earlier cells'
    tasks: they belong to the cells that submitted them, not to the one opening it."""
    unwatched = kernel.execute(
        "@nbray.remote\ndef first():\n    return 1\n"
        "@nbray.remote\ndef second():\n    return 2\n"
        "@nbray.remote\ndef third():\n    return 3\n"
        "nbray.get([first.remote() for _ in range(3)])"  # nobody watches yet
    ).ok()
    watched = kernel.execute(
        "graph = nbray.task_graph()\ndisplay(graph)\nnbray.get([second.remote() for _ in range(2)])"
    ).ok()
    # the graph names its cell as the frontend numbers it: In[N]
    assert f"scope: cell {number(watched)}" in graph_text(watched)
    kernel.wait_for(lambda: "TaskGraph: 2 tasks (2 FINISHED)" in graph_text(watched), timeout=30)
    kernel.execute("graph.close()").ok()  # the last widget: the hub lets its events go
    reopened = kernel.execute(
        "graph = nbray.task_graph()\ndisplay(graph)\nnbray.get(third.remote())"
    ).ok()
    kernel.wait_for(lambda: "TaskGraph: 1 tasks (1 FINISHED)" in graph_text(reopened), timeout=30)
    time.sleep(2 * SETTLE)  # nothing from the replay comes later
    assert "TaskGraph: 1 tasks (1 FINISHED)" in graph_text(reopened)
    # the replayed tasks are still in their own cells' scopes
    cells = (number(unwatched), number(watched))
    scopes = kernel.execute(
        f"print([nbray.task_graph(scope=c).view.total_tasks for c in {cells}])"
    ).ok()
    assert scopes.stream("stdout").strip() == "[3, 2]"


OTHER_DRIVER = """
import nbray
nbray.init(address=ADDRESS)
@nbray.remote
def elsewhere():
    return 0
nbray.get([elsewhere.remote() for _ in range(4)])
"""


def test_a_cells_graph_leaves_out_another_clients_tasks(kernel: KernelSession) -> None:
    """Another driver on the same cluster (as another kernel on the server's) runs tasks
    while the cell runs: they are the session's, not the cell's."""
    shown = kernel.execute(
        "import os, subprocess, sys\n"
        "ctx = nbray.init(ignore_reinit_error=True)\n"
        "env = {**os.environ, 'NBRAY_SECRET_FILE': os.path.join(ctx.session_dir, 'secret'),"
        " 'NBRAY_ADDRESS': ''}\n"
        "@nbray.remote\ndef mine():\n    return 1\n"
        "graph = nbray.task_graph()\ndisplay(graph)\n"
        f"other = {OTHER_DRIVER!r}.replace('ADDRESS', repr(ctx.address))\n"
        "subprocess.run([sys.executable, '-c', other], env=env, check=True, timeout=60)\n"
        "nbray.get([mine.remote() for _ in range(2)])",
        timeout=90,
    ).ok()
    kernel.wait_for(lambda: "TaskGraph: 2 tasks (2 FINISHED)" in graph_text(shown), timeout=30)
    names = kernel.execute(
        "print(sorted({n.name for n in nbray.task_graph(scope='session').nodes}))"
    ).ok()
    assert names.stream("stdout").strip() == "['elsewhere', 'mine']"  # seen, not the cell's


def test_tasks_taken_in_after_their_cell_ended_stay_in_that_cell(kernel: KernelSession) -> None:
    """A cell's tasks reach the head after the next cell has started (here the head is
    stopped while the cell submits; in a notebook run top to bottom, a flood of tasks still
    queued in the kernel): they stay in the cell that submitted them."""
    submitted = kernel.execute(
        "import os, signal\n"
        "ctx = nbray.init(ignore_reinit_error=True)\n"
        "head = int(open(os.path.join(ctx.session_dir, 'head.pid')).read())\n"
        "@nbray.remote\ndef late():\n    return 1\n"
        "graph = nbray.task_graph()\ndisplay(graph)\n"
        "print(head)\n"
        "os.kill(head, signal.SIGSTOP)\n"
        "refs = [late.remote() for _ in range(3)]"
    ).ok()
    head = int(submitted.stream("stdout").split()[0])
    try:
        resumed = kernel.execute("os.kill(head, signal.SIGCONT)\nnbray.get(refs)").ok()
    finally:
        os.kill(head, signal.SIGCONT)  # whatever happened, the head must not stay stopped
    # (the graph's picture is updated from now on under the latest cell's messages)
    kernel.wait_for(
        lambda: any("TaskGraph: 3 tasks (3 FINISHED)" in t for t in graph_texts(resumed)),
        timeout=30,
    )
    cells = (number(submitted), number(resumed))
    scopes = kernel.execute(
        f"print([nbray.task_graph(scope=c).view.total_tasks for c in {cells}])"
    ).ok()
    assert scopes.stream("stdout").strip() == "[3, 0]"
