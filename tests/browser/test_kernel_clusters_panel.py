"""A notebook's private cluster (``nbray.init(num_cpus=1)``) in the side panel's "Clusters
of kernels", named after the notebook, with its node card and a link to its own dashboard
view; it leaves the panel when the notebook shuts it down. Real JupyterLab and Chromium."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any

import pytest
from browser_support import Lab, artifact, lab_with_cells, open_lab
from playwright.sync_api import TimeoutError as PlaywrightTimeout

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]

CELLS = [
    "import nbray\n\nnbray.init(num_cpus=1)  # a cluster of this notebook's own",
    "@nbray.remote\ndef square(x):\n    return x * x\n\n\n"
    "print('squares', nbray.get([square.remote(i) for i in range(4)]))",
    "nbray.shutdown()\nprint('shut down')",
]


@pytest.fixture
def lab(tmp_path: Any) -> Iterator[Lab]:
    with lab_with_cells(tmp_path, "private.ipynb", CELLS, ["--NbrayServer.num_cpus=1"]) as lab:
        yield lab


def kernel_clusters(lab: Lab) -> list[dict[str, Any]]:
    listed = json.loads(lab.api("nbray/api/clusters"))["clusters"]
    return [c for c in listed if c["id"] != "server"]


def test_a_notebooks_cluster_shows_in_the_panel_and_its_dashboard_opens(
    page: Any, lab: Lab
) -> None:
    open_lab(page, lab, "lab/tree/private.ipynb?reset")
    page.locator('.jp-SideBar [data-id="nbray-panel"]').click()
    panel = page.locator("#nbray-panel")
    panel.wait_for(state="visible")
    panel.locator(".nbray-clusters .nbray-empty").wait_for()  # none yet
    page.locator(".jp-Notebook").wait_for()
    # a fresh workspace may ask which kernel to start: the notebook's own (Python 3)
    with contextlib.suppress(PlaywrightTimeout):
        page.locator(".jp-Dialog .jp-mod-accept").click(timeout=8_000)
    page.locator(".jp-Notebook .jp-Cell .jp-InputPrompt").first.click()  # command mode
    page.keyboard.press("Shift+Enter")
    page.keyboard.press("Shift+Enter")
    page.locator(".jp-OutputArea-output", has_text="squares [0, 1, 4, 9]").wait_for(timeout=60_000)

    # the panel lists it under the notebook's name, with its one-CPU node's live card
    block = panel.locator(".nbray-kernel-cluster", has_text="private.ipynb")
    block.wait_for(timeout=20_000)
    (listed,) = kernel_clusters(lab)
    assert block.get_attribute("data-cluster-id") == listed["id"]
    assert "local engine" in block.inner_text()
    card = block.locator(".nbray-node-card")
    assert "1 CPU" in card.locator(".nbray-node-name").inner_text()
    card.locator(".nbray-bar-row", has_text="CPU").wait_for(timeout=20_000)
    # the server's own cluster is still the panel's main one (its own node card)
    assert "1 CPU" in panel.locator(".nbray-nodes").first.inner_text()
    page.screenshot(path=str(artifact("panel-kernel-cluster.png")))

    # its "Open dashboard" link opens the dashboard page for that cluster, in a new tab
    link = block.locator(".nbray-kernel-cluster-dashboard")
    assert f"nbray/dashboard?cluster={listed['id']}" in (link.get_attribute("href") or "")
    with page.context.expect_page() as opened:
        link.click()
    dash_page = opened.value
    dash = dash_page.locator(".nbray-dashboard")
    dash.locator(".nbray-title", has_text=listed["id"]).wait_for(timeout=30_000)
    dash.locator(".nbray-state", has_text="running").wait_for()
    # its tasks, not the server's: the four squares, finished
    rows = dash.locator(".nbray-dash-tasks tr[data-task-id]", has_text="square")
    dash_page.wait_for_function(
        "() => document.querySelectorAll('.nbray-dash-tasks tr[data-task-id]').length >= 4",
        timeout=30_000,
    )
    assert rows.count() == 4
    assert "1 CPU" in dash.locator(".nbray-node-card").inner_text()
    assert dash.locator(".nbray-start").is_hidden()  # the kernel owns it: no controls
    dash_page.screenshot(path=str(artifact("dashboard-kernel-cluster.png")), full_page=True)

    # the notebook shuts it down: it leaves the panel, and its dashboard says it is gone
    page.bring_to_front()
    page.locator(".jp-Notebook .jp-Cell").nth(2).locator(".jp-InputPrompt").click()
    page.keyboard.press("Shift+Enter")
    page.locator(".jp-OutputArea-output", has_text="shut down").wait_for(timeout=30_000)
    block.wait_for(state="detached", timeout=20_000)
    panel.locator(".nbray-clusters .nbray-empty").wait_for()
    assert kernel_clusters(lab) == []
    dash.locator(".nbray-error", has_text="gone").wait_for(timeout=20_000)
    dash_page.close()
