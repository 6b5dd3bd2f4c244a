"""The browser harness itself: JupyterLab opens in Debian's Chromium and is screenshotted."""

from __future__ import annotations

from typing import Any

import pytest
from browser_support import Lab, artifact, open_lab

pytestmark = [pytest.mark.browser, pytest.mark.timeout(120)]


def test_jupyterlab_opens_in_chromium(page: Any, jupyter_lab: Lab) -> None:
    open_lab(page, jupyter_lab)
    page.screenshot(path=str(artifact("jupyterlab.png")))
    assert page.title()
