"""The side panel's event stream survives its source going away: the Jupyter server is
stopped (the WebSocket drops) and started again on the same address with a different
cluster; the panel shows it is offline, reconnects with backoff, and shows the new
cluster's live data without a page reload. The dashboard page does the same."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from browser_support import ARTIFACTS_DIR, Lab, artifact, open_lab, start_lab, stop_lab

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]


def status(lab: Lab) -> dict[str, Any]:
    return dict(json.loads(lab.api("nbray/api/cluster")))


def test_panel_reconnects_after_the_server_restarts(page: Any, tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    log = tmp_path / "jupyter-lab.log"
    lab = start_lab(root, log, ["--NbrayServer.num_cpus=2"])
    try:
        open_lab(page, lab, "lab?reset")
        page.locator('.jp-SideBar [data-id="nbray-panel"]').click()
        panel = page.locator("#nbray-panel")
        live = panel.locator(".nbray-live")
        live.filter(has_text="live").wait_for()
        name = panel.locator(".nbray-node-card .nbray-node-name")
        assert "2 CPU" in name.inner_text()
        first = status(lab)
        dashboard = page.context.new_page()  # the dashboard page reconnects the same way
        dashboard.goto(lab.url("nbray/dashboard"))
        dash_card = dashboard.locator(".nbray-dashboard .nbray-node-card")
        dash_card.filter(has_text="2 CPU").locator(".nbray-bar").first.wait_for()

        stop_lab(lab)  # the event source is gone: the WebSocket closes
        live.filter(has_text="offline").wait_for()
        port = urlsplit(lab.base).port
        assert port is not None
        lab = start_lab(root, log, ["--NbrayServer.num_cpus=1"], port=port, token=lab.token)

        # the panel retries on its own (backoff), and then shows the new cluster live
        live.filter(has_text="live").wait_for(timeout=60_000)
        name.filter(has_text="1 CPU").wait_for()
        panel.locator(".nbray-node-card .nbray-bar-row", has_text="CPU").wait_for()
        dash_card.filter(has_text="1 CPU").locator(".nbray-bar").first.wait_for(timeout=60_000)
        dashboard.locator(".nbray-dashboard .nbray-live", has_text="live").wait_for()
        assert dashboard.locator(".nbray-dashboard .nbray-error").is_hidden()  # reachable again
        second = status(lab)
        assert second["head_pid"] != first["head_pid"]
        assert second["watchers"] == 2  # the reconnected panel and dashboard watch
        page.screenshot(path=str(artifact("panel-reconnected.png")))
    finally:
        stop_lab(lab)
        ARTIFACTS_DIR.mkdir(parents=True, exist_ok=True)
        if log.exists():
            shutil.copy(log, ARTIFACTS_DIR / "jupyter-lab-reconnect.log")
