"""The nbray side panel and dashboard in a real JupyterLab, driven through Chromium.

One JupyterLab (with the nbray server extension, a two-CPU cluster) serves the module;
stopping it must take the cluster down with it and leave nothing behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from browser_support import (
    ARTIFACTS_DIR,
    REPO_ROOT,
    Lab,
    artifact,
    open_lab,
    start_lab,
    stop_lab,
    write_notebook,
)
from nbray_testing import session_segments, wait_until
from playwright.sync_api import TimeoutError as PlaywrightTimeout

pytestmark = [pytest.mark.browser, pytest.mark.timeout(150)]

DOCS_IMAGES = REPO_ROOT / "docs" / "images"

NOTEBOOK_CELLS = [
    "import time\nimport nbray\n\nnbray.init()  # no address: the server's cluster",
    "@nbray.remote\ndef square(x):\n    print(f'squaring {x}')\n    time.sleep(0.4)\n"
    "    return x * x\n\n\n"
    "@nbray.remote\ndef add(a, b):\n    return a + b\n\n\n"
    "refs = [square.remote(i) for i in range(8)]\n"
    "total = add.remote(add.remote(refs[0], refs[1]), add.remote(refs[2], refs[3]))\n"
    "print(nbray.get(refs), nbray.get(total))",
    "import sys\n\n\n@nbray.remote(max_retries=0)\ndef boom():\n"
    "    print('about to fail', file=sys.stderr)\n    raise ValueError('boom: bad input')\n\n\n"
    "try:\n    nbray.get(boom.remote())\nexcept ValueError:\n    print('failed as expected')",
    # three slow tasks on 2 CPUs: the panel shows this notebook's share while they run
    "slow = [nbray.remote(lambda: time.sleep(6)).remote() for _ in range(3)]",
]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    root = tmp_path_factory.mktemp("lab") / "root"
    root.mkdir()
    write_notebook(root / "tasks.ipynb", NOTEBOOK_CELLS)
    log = root.parent / "jupyter-lab.log"
    ARTIFACTS_DIR.mkdir(parents=True, exist_ok=True)
    lab = start_lab(root, log, ["--NbrayServer.num_cpus=2"])
    try:
        yield lab
        last = status(lab)  # the tests restart the cluster: check the latest one
    finally:
        stop_lab(lab)
        if log.exists():
            shutil.copy(log, ARTIFACTS_DIR / "jupyter-lab-nbray.log")
    # SIGTERM to the server took the cluster down: no head, session directory, segment
    wait_until(lambda: not _alive(last["head_pid"]), 10)
    assert not Path(last["session_dir"]).exists()
    assert not Path(last["address"]).exists()
    assert not session_segments(Path(last["session_dir"]).name.rsplit("-", 1)[-1])


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def update_docs_image(name: str) -> None:
    """Copy a screenshot to docs/images/ (the README's) when NBRAY_UPDATE_DOCS_IMAGES=1,
    so an ordinary run leaves the tracked files alone."""
    if os.environ.get("NBRAY_UPDATE_DOCS_IMAGES") == "1":
        DOCS_IMAGES.mkdir(parents=True, exist_ok=True)
        shutil.copy(artifact(name), DOCS_IMAGES / name)


def status(lab: Lab) -> dict[str, Any]:
    return dict(json.loads(lab.api("nbray/api/cluster")))


def open_panel(page: Any, lab: Lab, path: str = "lab") -> Any:
    open_lab(page, lab, path + "?reset")  # a fresh workspace: the side panel starts closed
    tab = page.locator('.jp-SideBar [data-id="nbray-panel"]')
    tab.click()
    panel = page.locator("#nbray-panel")
    panel.wait_for(state="visible")
    return panel


def test_panel_shows_running_cluster_and_its_node_and_pauses_when_hidden(
    page: Any, lab: Lab
) -> None:
    panel = open_panel(page, lab)
    state = panel.locator(".nbray-state")
    state.filter(has_text="running").wait_for()
    card = panel.locator(".nbray-node-card")
    assert card.count() == 1
    # live metrics arrive over the WebSocket: CPU and memory bars appear
    card.locator(".nbray-bar-row", has_text="CPU").wait_for()
    card.locator(".nbray-bar-row", has_text="Mem").wait_for()
    assert "2 CPU" in card.locator(".nbray-node-name").inner_text()
    panel.locator(".nbray-live", has_text="live").wait_for()

    # the event stream is closed while the panel is hidden, and opened again when shown
    wait_until(lambda: status(lab)["watchers"] == 1, 10)
    tab = page.locator('.jp-SideBar [data-id="nbray-panel"]')
    tab.click()
    panel.wait_for(state="hidden")
    wait_until(lambda: status(lab)["watchers"] == 0, 10)
    tab.click()
    panel.locator(".nbray-live", has_text="live").wait_for()
    wait_until(lambda: status(lab)["watchers"] == 1, 10)


def test_stop_and_start_from_the_panel(page: Any, lab: Lab) -> None:
    panel = open_panel(page, lab)
    panel.locator(".nbray-state", has_text="running").wait_for()
    before = status(lab)
    panel.locator("button.nbray-stop").click()
    panel.locator(".nbray-state", has_text="stopped").wait_for()
    assert status(lab)["state"] == "stopped"
    wait_until(lambda: not _alive(before["head_pid"]), 10)
    assert panel.locator(".nbray-node-card").count() == 0

    panel.locator("button.nbray-start").click()
    panel.locator(".nbray-state", has_text="running").wait_for()
    after = status(lab)
    assert after["state"] == "running"
    assert after["head_pid"] != before["head_pid"]
    panel.locator(".nbray-node-card").wait_for()


def test_notebook_tasks_appear_in_panel_and_dashboard(page: Any, lab: Lab) -> None:
    panel = open_panel(page, lab, "lab/tree/tasks.ipynb")
    page.locator(".jp-Notebook").wait_for()
    # a fresh workspace may ask which kernel to start: the notebook's own (Python 3)
    with contextlib.suppress(PlaywrightTimeout):
        page.locator(".jp-Dialog .jp-mod-accept").click(timeout=8_000)
    page.locator(".jp-Notebook .jp-Cell .jp-InputPrompt").first.click()  # command mode
    for _ in NOTEBOOK_CELLS:
        page.keyboard.press("Shift+Enter")  # run the cell, select the next one
    output = page.locator(".jp-OutputArea-output", has_text="failed as expected")
    output.wait_for(timeout=60_000)

    # the panel counts the notebook's tasks (8 squares + 3 adds + 1 failure)
    page.wait_for_function(
        "() => parseInt(document.querySelector("
        "'#nbray-panel .nbray-count-FINISHED b')?.textContent || '0') >= 11",
        timeout=20_000,
    )
    panel.locator(".nbray-count-FAILED").wait_for()
    panel.locator(".nbray-failure", has_text="boom").wait_for()
    assert "boom: bad input" in panel.locator(".nbray-failure").first.inner_text()
    # the notebook's share of the cluster, named after it, while its slow tasks run
    share = panel.locator(".nbray-kernel-share", has_text="tasks.ipynb")
    share.wait_for(timeout=20_000)
    assert re.search(r"\d+ running · \d+ queued", share.inner_text()), share.inner_text()
    # the slow cell's three tasks on 2 CPUs: shown within the trailing refresh, not stale
    share.filter(has_text="2 running · 1 queued").wait_for(timeout=10_000)
    page.screenshot(path=str(artifact("panel.png")))
    update_docs_image("panel.png")

    # "Insert snippet" puts a ready example into the active notebook
    cells_before = page.locator(".jp-Notebook .jp-Cell").count()
    page.locator(".jp-Notebook .jp-Cell .jp-InputPrompt").first.click()
    page.locator(".jp-Notebook .jp-Cell.jp-mod-active").first.wait_for()
    panel.locator("button.nbray-insert-snippet").click()
    page.wait_for_function(
        f"() => document.querySelectorAll('.jp-Notebook .jp-Cell').length > {cells_before}"
    )
    assert page.locator(".jp-Notebook .jp-Cell", has_text="nbray.init()").count() >= 2

    # "Open dashboard" opens it in a JupyterLab tab (the widget itself, no iframe), where
    # the tasks are listed
    panel.locator("button.nbray-open-dashboard").click()
    dash = page.locator("#nbray-dashboard .nbray-dashboard")
    dash.locator(".nbray-dash-tasks tbody tr", has_text="square").first.wait_for()
    dash.locator(".nbray-state", has_text="running").wait_for()
    assert page.locator("#nbray-dashboard iframe").count() == 0


def test_dashboard_page_on_its_own(page: Any, lab: Lab) -> None:
    """The dashboard works without JupyterLab: nodes, searchable tasks, timeline, graph,
    and a failed task's error and output."""
    page.goto(lab.url("nbray/dashboard"))
    dash = page.locator(".nbray-dashboard")
    dash.locator(".nbray-state", has_text="running").wait_for()
    dash.locator(".nbray-node-card .nbray-bar").first.wait_for()
    rows = dash.locator(".nbray-dash-tasks tbody tr")
    rows.filter(has_text="square").first.wait_for()
    dash.locator(".nbray-dash-search").fill("boom")
    page.wait_for_function(
        "() => [...document.querySelectorAll('.nbray-dash-tasks tbody tr')].every("
        "r => r.textContent.includes('boom')) && document.querySelector("
        "'.nbray-dash-tasks tbody tr[data-task-id]')"
    )
    rows.first.click()
    dash.locator(".nbray-dash-details", has_text="boom: bad input").wait_for()
    # the task's own output (kept while the panel watched the notebook run), stderr marked
    dash.locator(".nbray-dash-logs .nbray-dash-stderr", has_text="about to fail").wait_for()
    dash.locator(".nbray-dash-search").fill("square")
    dash.locator(".nbray-dash-filter").select_option("FINISHED")
    page.wait_for_function(
        "() => [...document.querySelectorAll('.nbray-dash-tasks tbody tr')].every("
        "r => r.textContent.includes('square') && r.textContent.includes('FINISHED'))"
        " && document.querySelector('.nbray-dash-tasks tbody tr[data-task-id]')"
    )
    rows.first.click()
    stdout = dash.locator(".nbray-dash-logs .nbray-dash-stdout", has_text=re.compile(r"squaring"))
    stdout.first.wait_for()
    task_id = rows.first.get_attribute("data-task-id")
    logs = json.loads(lab.api(f"nbray/api/tasks/{task_id}/logs"))
    assert (
        dash.locator(".nbray-dash-logs").inner_text().strip()
        == "".join(p["text"] for p in logs["lines"]).strip()
    )
    dash.locator(".nbray-dash-search").fill("")
    dash.locator(".nbray-dash-filter").select_option("")
    rows.filter(has_text="add").first.wait_for()
    # the graph (plotly): add depends on squares and on adds; the timeline has bars
    graph = dash.locator(".nbray-dash-graph")
    graph.locator(".scatterlayer .trace").first.wait_for()
    assert "dependencies" in dash.locator(".nbray-dash-graph-caption").inner_text()
    api_graph = json.loads(lab.api("nbray/api/graph"))
    assert len(api_graph["edges"]) >= 4
    dash.locator(".nbray-dash-timeline .barlayer .point").first.wait_for()
    assert dash.locator(".nbray-dash-timeline-empty").is_hidden()
    page.screenshot(path=str(artifact("dashboard.png")), full_page=True)
    update_docs_image("dashboard.png")


def test_ssh_cluster_form_reports_a_failed_host(page: Any, lab: Lab) -> None:
    """The panel's SSH cluster form posts its fields to nbray/api/ssh/up; the failing host
    shows with its step, and the error names it; Down clears it (a failed up has already
    stopped what it started)."""
    panel = open_panel(page, lab)
    panel.locator("input.nbray-ssh-head").fill("127.0.0.9")
    panel.locator("input.nbray-ssh-user").fill("nobody")
    panel.locator("input.nbray-ssh-identity_file").fill("/nonexistent/key")
    panel.locator("button.nbray-ssh-up").click()
    row = panel.locator(".nbray-ssh-host.nbray-ssh-failed")
    row.wait_for(timeout=60_000)
    assert row.inner_text().startswith("127.0.0.9: connect FAILED")
    panel.locator(".nbray-ssh-badge", has_text="failed").wait_for()
    assert "host 127.0.0.9, step 'connect'" in panel.locator(".nbray-ssh .nbray-error").inner_text()
    assert json.loads(lab.api("nbray/api/ssh/status"))["state"] == "failed"
    page.screenshot(path=str(artifact("panel-ssh-failed.png")))
    panel.locator("button.nbray-ssh-down").click()
    panel.locator(".nbray-ssh-badge", has_text="down").wait_for(timeout=60_000)
    assert panel.locator(".nbray-ssh-host").count() == 0


def test_ssh_form_fields_are_labelled_and_their_examples_fit(page: Any, lab: Lab) -> None:
    """Each field of the SSH form has a visible label, and its example (the placeholder)
    fits in the field at the panel's width (the long "worker hosts" one was cut off)."""
    panel = open_panel(page, lab)
    fields = panel.locator(".nbray-ssh-field")
    assert fields.count() == 5
    assert "worker hosts" in fields.nth(1).locator(".nbray-ssh-label").inner_text()
    overflowing = page.evaluate(
        """() => {
          const ctx = document.createElement('canvas').getContext('2d');
          return [...document.querySelectorAll('#nbray-panel .nbray-ssh-field input')]
            .filter(input => {
              const style = getComputedStyle(input);
              ctx.font = style.font;
              const room = input.clientWidth - parseFloat(style.paddingLeft)
                - parseFloat(style.paddingRight);
              return ctx.measureText(input.placeholder).width > room;
            })
            .map(input => input.placeholder);
        }"""
    )
    assert overflowing == []
    panel.locator(".nbray-ssh-form").screenshot(path=str(artifact("panel-ssh-form.png")))
