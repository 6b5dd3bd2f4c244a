"""A Jupyter server killed with SIGKILL cannot stop its cluster: the head notices its
owner died and stops by itself; the next server sweeps the dead server's address link."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
from browser_support import start_lab, stop_lab
from nbray_testing import wait_until
from server_support import left_behind

from nbray.server_ext.manager import sweep_stale_links

pytestmark = pytest.mark.timeout(90)


def test_sigkilled_server_leaves_nothing_behind(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    lab = start_lab(root, tmp_path / "lab.log", ["--NbrayServer.num_cpus=1"])
    try:
        status = json.loads(lab.api("nbray/api/cluster"))
        assert status["state"] == "running"
        # the head runs in its own session: killing the server's group spares it
        os.killpg(lab.process.pid, signal.SIGKILL)
        lab.process.wait(10)
        wait_until(lambda: left_behind(status) == [f"address {status['address']}"], 15)
        sweep_stale_links()  # what the next server's manager does first
        assert left_behind(status) == []
    finally:
        if lab.process.poll() is None:
            stop_lab(lab)
