"""Fixtures for browser tests: ``chromium`` (session), ``page`` (screenshot kept on
failure) and ``jupyter_lab`` (a JupyterLab on an empty root dir). See browser_support."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser_support import (
    ARTIFACTS_DIR,
    Lab,
    artifact,
    launch_chromium,
    start_lab,
    stop_lab,
)


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """A headless Chromium browser (playwright ``Browser``), shared by a module's tests (and
    gone after it, so other suites' leak checks do not see its processes, and later tests
    that run their own event loop, as pytest-jupyter's do, do not find playwright's)."""
    yield from launch_chromium()


@pytest.fixture
def page(chromium: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh page (own context); a screenshot named after the test is kept on failure."""
    context = chromium.new_context(viewport={"width": 1400, "height": 900})
    pg = context.new_page()
    pg.set_default_timeout(30_000)
    try:
        yield pg
    finally:
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            with contextlib.suppress(Exception):
                pg.screenshot(path=str(artifact(f"{request.node.name}-FAILED.png")))
        context.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.when == "call":
        item.rep_call = report  # type: ignore[attr-defined]
    return report


@pytest.fixture
def jupyter_lab(tmp_path: Path) -> Iterator[Lab]:
    """A JupyterLab serving an empty ``tmp_path / "root"``; copy notebooks into
    ``lab.root_dir`` before opening them."""
    root = tmp_path / "root"
    root.mkdir()
    ARTIFACTS_DIR.mkdir(parents=True, exist_ok=True)
    lab = start_lab(root, tmp_path / "jupyter-lab.log")
    try:
        yield lab
    finally:
        stop_lab(lab)
        log = tmp_path / "jupyter-lab.log"
        if log.exists():
            shutil.copy(log, ARTIFACTS_DIR / "jupyter-lab-last.log")
