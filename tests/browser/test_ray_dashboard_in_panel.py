"""A notebook connected to a Ray cluster it did not start (Ray Client): the side panel lists
the cluster as connected, and its "Ray's dashboard" link opens Ray's own dashboard through
the Jupyter server's proxy (no port of the cluster opened to the browser). Real JupyterLab,
Chromium and a Ray head (tests/ray_head.py)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any

import pytest
from browser_support import Lab, artifact, lab_with_cells, open_lab
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from ray_head import RayHead, running_head

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def head() -> Iterator[RayHead]:
    yield from running_head()


@pytest.fixture
def lab(tmp_path: Any, head: RayHead) -> Iterator[Lab]:
    cells = [
        f"import os\nos.environ['NBRAY_RAY_TOKEN_FILE'] = {str(head.token_file)!r}\n"
        f"import nbray\nctx = nbray.init(address={head.client_address!r})\n"
        "print('connected', ctx.engine)",
    ]
    with lab_with_cells(tmp_path, "connected.ipynb", cells, ["--NbrayServer.num_cpus=1"]) as lab:
        yield lab


def test_the_panel_links_rays_dashboard_through_the_proxy(
    page: Any, lab: Lab, head: RayHead
) -> None:
    open_lab(page, lab, "lab/tree/connected.ipynb?reset")
    page.locator('.jp-SideBar [data-id="nbray-panel"]').click()
    panel = page.locator("#nbray-panel")
    panel.wait_for(state="visible")
    page.locator(".jp-Notebook").wait_for()
    with contextlib.suppress(PlaywrightTimeout):  # a fresh workspace may ask for a kernel
        page.locator(".jp-Dialog .jp-mod-accept").click(timeout=8_000)
    page.locator(".jp-Notebook .jp-Cell .jp-InputPrompt").first.click()
    page.keyboard.press("Shift+Enter")
    page.locator(".jp-OutputArea-output", has_text="connected ray").wait_for(timeout=120_000)

    block = panel.locator(".nbray-kernel-cluster", has_text="connected.ipynb")
    block.wait_for(timeout=30_000)
    assert f"connected to {head.client_address}" in block.inner_text()
    (listed,) = [
        c for c in json.loads(lab.api("nbray/api/clusters"))["clusters"] if c["id"] != "server"
    ]
    link = block.locator(".nbray-kernel-cluster-ray-dashboard")
    href = link.get_attribute("href") or ""
    assert href.endswith(f"nbray/ray-dashboard/{listed['id']}/")
    assert str(head.dashboard_port) not in href  # the proxy, not the cluster's own port
    with page.context.expect_page() as opened:
        link.click()
    ray_page = opened.value
    ray_page.wait_for_load_state()
    assert ray_page.title().endswith("Ray Dashboard")
    # Ray's app drew itself from its API, all through the proxy: its overview is up
    ray_page.wait_for_function("() => document.title.startsWith('Overview')", timeout=60_000)
    ray_page.get_by_text("Jobs").first.wait_for(timeout=60_000)
    assert f"/nbray/ray-dashboard/{listed['id']}/" in ray_page.url
    ray_page.screenshot(path=str(artifact("ray-dashboard-proxied.png")), full_page=True)
    ray_page.close()
