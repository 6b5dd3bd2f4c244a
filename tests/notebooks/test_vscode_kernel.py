"""The kernel side of VS Code's notebooks: requests shaped as VS Code's Jupyter extension
sends them, and what the kernel answers, as VS Code reads it.

VS Code starts the kernel with ``VSCODE_PID`` set, runs a silent probe for ipywidgets,
then sends each cell as an execute_request whose metadata carries the cell's ``cellId``.
It files every iopub message under the cell whose request is the message's parent, so
task output printed while a later cell runs must carry the submitting cell's request as
parent. It draws ``application/vnd.jupyter.widget-view+json`` with its own ipywidgets 8
manager where that works; otherwise it shows the richest other type in the bundle: the
widgets' and the progress bar's ``text/html`` pictures, then ``text/plain``, never a blank
output. VS Code itself does not run here: these are the messages it would get.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kernel_session import Execution, KernelSession

pytestmark = pytest.mark.timeout(120)

# what VS Code's Jupyter extension runs, silently, before the first cell
VSCODE_WIDGETS_PROBE = (
    "try:\n    import ipywidgets as _VSCODE_ipywidgets\n"
    "    print('e976ee50-99ed-4aba-9b6b-9dcd5634d07d:IPyWidgets:'\n"
    "          + _VSCODE_ipywidgets.__version__)\n"
    "except Exception:\n    pass"
)


@pytest.fixture(scope="module")
def kernel() -> Iterator[KernelSession]:
    k = KernelSession(env={"VSCODE_PID": "4242", "VSCODE_CWD": "/tmp"})
    try:
        probe = k.finish(k.submit(VSCODE_WIDGETS_PROBE, silent=True)).ok()
        assert ":IPyWidgets:8." in probe.stream()
        yield k
    finally:
        k.close()


def cell(kernel: KernelSession, code: str, timeout: float = 60) -> Execution:
    """Run ``code`` as VS Code runs a notebook cell."""
    metadata = {"cellId": f"vscode-notebook-cell:/work/demo.ipynb#{uuid.uuid4().hex[:12]}"}
    return kernel.finish(kernel.submit(code, metadata=metadata), timeout).ok()


def bundles(r: Execution) -> list[dict[str, Any]]:
    return [
        m["content"]
        for m in r.messages
        if m["msg_type"] in ("display_data", "execute_result", "update_display_data")
    ]


def test_task_output_goes_to_the_cell_that_submitted_it(kernel: KernelSession) -> None:
    first = cell(
        kernel,
        "import time\nimport nbray\nnbray.init(num_cpus=1)\n\n"
        "@nbray.remote\ndef late():\n    time.sleep(1.0)\n    print('late line')\n\n"
        "ref = late.remote()",
    )
    second = cell(kernel, "time.sleep(2.5)\nprint('second cell')")
    assert "late line" not in second.stream()  # not under the cell running by then
    kernel.wait_for(lambda: "late line" in first.stream(), timeout=10)
    assert "second cell" in second.stream()


def test_widgets_carry_a_picture_and_text_besides_the_widget_view(
    kernel: KernelSession,
) -> None:
    r = cell(kernel, "import nbray\nnbray.init(ignore_reinit_error=True)\nnbray.monitor()")
    opened = [m for m in r.messages if m["msg_type"] == "comm_open"]
    assert opened and {m["content"]["target_name"] for m in opened} == {"jupyter.widget"}
    (shown,) = [b for b in bundles(r) if "application/vnd.jupyter.widget-view+json" in b["data"]]
    data = shown["data"]
    assert data["application/vnd.jupyter.widget-view+json"]["version_major"] == 2
    assert "nbray-picture" in data["text/html"]  # what a frontend without widgets shows
    assert data["text/plain"].startswith("ClusterMonitor")


def test_a_progress_bar_ends_as_a_picture_under_its_display_id(kernel: KernelSession) -> None:
    r = cell(
        kernel,
        "@nbray.remote\ndef nap(i):\n    time.sleep(0.3)\n    return i\n\n"
        "print(sum(nbray.get([nap.remote(i) for i in range(6)], progress=True)))",
    )
    assert "15" in r.stream()
    shown = bundles(r)
    first = shown[0]
    assert "application/vnd.jupyter.widget-view+json" in first["data"]
    display_id = first["transient"]["display_id"]
    final = [b for b in shown if b.get("transient", {}).get("display_id") == display_id][-1]
    assert "6/6 done" in final["data"]["text/plain"]
    assert "6/6 done" in final["data"]["text/html"]  # the picture, brought up to date
