"""Distributed tqdm: bars made inside tasks show once each where the work was submitted
(a text line in a terminal, a widget under the submitting cell in Jupyter), never as raw
state lines, and close when their task ends or its process dies."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from kernel_session import KernelSession
from nbray_testing import run_python

from nbray.experimental.tqdm_ray import RAY_TQDM_MAGIC

TASKS = """
import os, time
import nbray
from nbray.experimental.tqdm_ray import tqdm

@nbray.remote
def work(n, die=False):
    print(f"plain line from work{n}")
    for i in tqdm(range(n), desc=f"work{n}", flush_interval_s=0.05):
        time.sleep(0.01)
        if die and i == n // 2:
            os._exit(3)
    return n

@nbray.remote
def forgets_to_close(n):
    bar = tqdm(total=n, desc="unclosed", flush_interval_s=0)
    bar.update(n)
    return n   # the bar is dropped here, never closed

@nbray.remote
def outer():
    return nbray.get(work.remote(7))   # a bar two levels down
"""


def test_bars_from_tasks_in_a_terminal() -> None:
    result = run_python(
        TASKS
        + """
nbray.init(num_cpus=2)
assert nbray.get([work.remote(20), work.remote(30)]) == [20, 30]
assert nbray.get(forgets_to_close.remote(5)) == 5
assert nbray.get(outer.remote()) == 7
try:
    nbray.get(work.options(max_retries=0).remote(40, die=True))
except nbray.errors.WorkerCrashedError:
    pass
time.sleep(2)   # the watcher notices the dead process
nbray.shutdown()
""",
        timeout=90,
    )
    assert result.returncode == 0, result.stderr
    assert RAY_TQDM_MAGIC not in result.stdout + result.stderr
    assert "plain line from work20" in result.stdout  # other output is untouched
    lines = result.stderr.splitlines()
    for desc, total in (("work20", 20), ("work30", 30), ("unclosed", 5), ("work7", 7)):
        mine = [ln for ln in lines if f"{desc}:" in ln]
        # a line when it opened and one when it closed: no copies in between
        assert len(mine) == 2, (desc, mine)
        assert f"100% {total}/{total}" in mine[-1]
    died = [ln for ln in lines if "work40:" in ln]
    assert len(died) == 2 and died[-1].endswith("(died)"), died


@pytest.fixture
def kernel() -> Iterator[KernelSession]:
    k = KernelSession()
    yield k
    k.close()


def _widget_states(k: KernelSession) -> list[dict[str, Any]]:
    with k._cond:
        msgs = [m for ms in k._by_parent.values() for m in ms]
    return [
        m["content"]["data"].get("state", {})
        for m in msgs
        if m["msg_type"] in ("comm_open", "comm_msg")
    ]


def test_bars_from_tasks_show_as_widgets_under_the_submitting_cell(
    kernel: KernelSession,
) -> None:
    kernel.execute("%load_ext nbray\n" + TASKS + "\nnbray.init(num_cpus=2)").ok()
    submit = kernel.execute("refs = [work.remote(20), work.remote(30)]").ok()
    # a later cell runs while the tasks draw their bars
    later = kernel.execute("import time; print(nbray.get(refs)); time.sleep(1)").ok()
    assert "[20, 30]" in later.stream()
    views = [
        m
        for m in submit.messages
        if m["msg_type"] == "display_data"
        and "application/vnd.jupyter.widget-view+json" in m["content"]["data"]
    ]
    assert len(views) == 2  # one bar per task, in the cell that submitted them
    assert not [m for m in later.messages if m["msg_type"] == "display_data"]
    everything = json.dumps(_widget_states(kernel)) + submit.stream() + later.stream()
    assert RAY_TQDM_MAGIC not in everything
    labels = [
        s["value"] for s in _widget_states(kernel) if "value" in s and isinstance(s["value"], str)
    ]
    assert any("work20: 100% 20/20" in v for v in labels)
    assert any("work30: 100% 30/30" in v for v in labels)
    styles = [s.get("bar_style") for s in _widget_states(kernel) if "bar_style" in s]
    assert styles.count("success") == 2  # both closed when their tasks ended
    kernel.execute("nbray.shutdown()").ok()
