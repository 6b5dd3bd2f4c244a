"""nbray in Jupyter Notebook 7, driven through Chromium: the same prebuilt extension as in
JupyterLab gives the side panel (in the left sidebar), the dashboard (its own page), and
the magics and widgets in the notebook."""

from __future__ import annotations

import contextlib
import json
import shutil
import urllib.error
from collections.abc import Iterator
from typing import Any

import pytest
from browser_support import (
    ARTIFACTS_DIR,
    Lab,
    artifact,
    require,
    start_lab,
    stop_lab,
    write_notebook,
)
from nbray_testing import wait_until
from playwright.sync_api import TimeoutError as PlaywrightTimeout

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]

CELLS = [
    "import os\nimport nbray\n\nnbray.init()  # the server's cluster\nkernel_pid = os.getpid()",
    "%%remote\nimport os\nwhere = os.getpid()\nprint('hello from a worker')\n6 * 7",
    "print('ran elsewhere:', where != kernel_pid)",
    "@nbray.remote\ndef square(x):\n    return x * x\n\n\n"
    "print(nbray.get([square.remote(i) for i in range(6)]))",
    "monitor = nbray.monitor()\nmonitor",
]


@pytest.fixture(scope="module")
def notebook_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    require("Jupyter Notebook 7", _notebook_7(), "`make test` installs it (the browser extra)")
    root = tmp_path_factory.mktemp("nb7") / "root"
    root.mkdir()
    write_notebook(root / "work.ipynb", CELLS)
    log = root.parent / "notebook.log"
    server = start_lab(root, log, ["--NbrayServer.num_cpus=2"], app="notebook")
    try:
        yield server
    finally:
        stop_lab(server)
        if log.exists():
            ARTIFACTS_DIR.mkdir(parents=True, exist_ok=True)
            shutil.copy(log, ARTIFACTS_DIR / "jupyter-notebook7.log")


def _notebook_7() -> bool:
    try:
        import notebook
    except ImportError:
        return False
    return int(notebook.__version__.split(".")[0]) >= 7


def kernel_connected(server: Lab) -> bool:
    try:
        kernels = json.loads(server.api("api/kernels"))
    except urllib.error.HTTPError as exc:
        # jupyter_server lists a starting kernel before it sets its last_activity, and
        # GET api/kernels then fails with 500 (TraitError): the kernel is not up yet
        if exc.code == 500:
            return False
        raise
    return any(k["connections"] >= 1 and k["execution_state"] == "idle" for k in kernels)


def run_all_cells(page: Any) -> None:
    """Run > Run All Cells, again when no cell started (a page whose kernel connection
    was still settling drops the requests; nothing ran, so nothing runs twice)."""
    started = (
        "() => /\\[(\\*|\\d+)\\]/.test("
        "document.querySelector('.jp-Notebook .jp-Cell .jp-InputPrompt')?.textContent || '')"
    )
    for _ in range(3):
        page.keyboard.press("Escape")
        page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
        page.locator(".lm-Menu-itemLabel").get_by_text("Run All Cells", exact=True).first.click()
        try:
            page.wait_for_function(started, timeout=15_000)
            return
        except PlaywrightTimeout:
            continue
    raise AssertionError("Run > Run All Cells started no cell, three times")


def status(server: Lab) -> dict[str, Any]:
    return dict(json.loads(server.api("nbray/api/cluster")))


def test_panel_dashboard_magics_and_widgets_in_notebook_7(page: Any, notebook_server: Lab) -> None:
    page.goto(notebook_server.url("notebooks/work.ipynb"))
    page.locator(".jp-Notebook .jp-Cell").first.wait_for(timeout=60_000)
    assert page.locator("#jp-main-dock-panel").count() == 0  # Notebook 7's shell, not Lab's
    # the kernel (the notebook's own, Python 3) is started, and this page connected to it
    wait_until(lambda: kernel_connected(notebook_server), 60)
    page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").wait_for(timeout=60_000)
    page.wait_for_timeout(1000)  # (the page's session settles on the kernel it connected)
    run_all_cells(page)
    outputs = page.locator(".jp-Notebook .jp-OutputArea-output")
    outputs.filter(has_text="[0, 1, 4, 9, 16, 25]").wait_for(timeout=60_000)
    # %%remote: the cell ran on a worker, its print and value shown under it
    remote = page.locator(".jp-Notebook .jp-Cell").nth(1)
    assert "hello from a worker" in remote.inner_text()
    assert "42" in remote.locator(".jp-OutputArea-output").last.inner_text()
    outputs.filter(has_text="ran elsewhere: True").wait_for()
    # the live monitor widget is drawn (ipywidgets + plotly in Notebook 7's renderer)
    monitor = page.locator(".jp-Notebook .jp-Cell").nth(4)
    monitor.locator(".js-plotly-plot").first.wait_for(timeout=60_000)
    assert "Error displaying widget" not in monitor.inner_text()

    # the side panel: View > Left Sidebar > Show nbray cluster
    page.locator(".lm-MenuBar-itemLabel", has_text="View").click()
    page.locator(".lm-Menu-itemLabel", has_text="Left Sidebar").hover()
    page.locator(".lm-Menu-itemLabel", has_text="Show nbray cluster").click()
    panel = page.locator("#nbray-panel")
    panel.wait_for(state="visible")
    panel.locator(".nbray-state", has_text="running").wait_for()
    panel.locator(".nbray-node-card .nbray-bar-row", has_text="CPU").wait_for()
    page.wait_for_function(
        "() => parseInt(document.querySelector("
        "'#nbray-panel .nbray-count-FINISHED b')?.textContent || '0') >= 7",
        timeout=20_000,
    )
    wait_until(lambda: status(notebook_server)["watchers"] >= 1, 10)
    page.screenshot(path=str(artifact("notebook7-panel.png")))

    # "Insert snippet" puts the example into this notebook
    before = page.locator(".jp-Notebook .jp-Cell").count()
    page.locator(".jp-Notebook .jp-Cell .jp-InputPrompt").first.click()
    panel.locator("button.nbray-insert-snippet").click()
    page.wait_for_function(
        f"() => document.querySelectorAll('.jp-Notebook .jp-Cell').length > {before}"
    )

    # "Open dashboard": Notebook 7's main area holds one document, so the dashboard opens
    # as its own page in a new browser tab, with the notebook's tasks in it
    with page.context.expect_page() as opened:
        panel.locator("button.nbray-open-dashboard").click()
    dash_page = opened.value
    try:
        assert dash_page.url.split("?")[0].endswith("/nbray/dashboard")
        dash = dash_page.locator(".nbray-dashboard")
        dash.locator(".nbray-state", has_text="running").wait_for(timeout=30_000)
        dash.locator(".nbray-dash-tasks tbody tr", has_text="square").first.wait_for(timeout=30_000)
        dash_page.screenshot(path=str(artifact("notebook7-dashboard.png")))
    finally:
        with contextlib.suppress(PlaywrightTimeout):
            dash_page.close()
