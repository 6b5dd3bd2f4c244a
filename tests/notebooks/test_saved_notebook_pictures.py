"""A saved notebook keeps a static picture of each widget's last state: nbconvert's HTML
export (what nbviewer shows) draws every widget without a kernel."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest
from nbconvert import HTMLExporter
from saved_notebook import KINDS, execute_and_save

pytestmark = pytest.mark.timeout(240)

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("saved") / "widgets.ipynb"
    execute_and_save(path)
    return path


def pictures(nb: nbformat.NotebookNode) -> dict[str, str]:
    """kind -> the text/html of the output that shows it."""
    found: dict[str, str] = {}
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            html = out.get("data", {}).get("text/html", "")
            m = re.search(r'class="nbray-picture nbray-picture-([a-z-]+)"', html)
            if m:
                found[m.group(1)] = html
    return found


def test_every_widget_output_carries_its_last_picture(saved: Path) -> None:
    nb = nbformat.read(saved, as_version=4)
    pics = pictures(nb)
    assert set(pics) == set(KINDS)
    # the last state, not the first: brought up to date after the cells that ran later
    graph = pics["task-graph"]
    assert graph.count("nbray-mark-node") == 13  # 6 squares, their total, 6 of %%compare
    assert "13 tasks (13 finished)" in graph.lower()
    assert all("<script" not in p and "<svg" not in p for p in pics.values())
    assert pics["timeline"].count("nbray-mark-bar") >= 13
    assert "6/6 done" in pics["progress"]
    assert "CPU per core (whole machine)" in pics["monitor"]
    assert "six" in pics["comparison"] and "speedup" in pics["comparison"]
    # the live views are still there for a kernel to draw
    live = [o for c in nb.cells for o in c.get("outputs", []) if WIDGET_VIEW in o.get("data", {})]
    assert len(live) >= 4  # monitor, progress, graph, timeline


def test_nbconvert_html_export_shows_every_picture(saved: Path) -> None:
    nb = nbformat.read(saved, as_version=4)
    body, _ = HTMLExporter().from_notebook_node(nb)
    for kind in KINDS:
        assert f"nbray-picture-{kind}" in body, kind
    assert WIDGET_VIEW not in body  # no script that would need the kernel's widget models
    assert body.count("nbray-mark-node") == 13
