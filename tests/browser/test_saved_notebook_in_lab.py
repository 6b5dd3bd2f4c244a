"""A saved notebook reopened in JupyterLab, whose kernel holds none of its widgets (a fresh
kernel runs no cell), shows a picture of every nbray widget's last state and no widget
error (a real JupyterLab, Debian's Chromium). The notebook comes from nbclient, so
JupyterLab does not trust it, as with a notebook from someone else; signed, it is trusted, as
a notebook the user saved: ipywidgets' renderer gets the output then, and nbray's extension
shows the picture while that renderer has no live view (frontend/src/pictures.ts)."""

from __future__ import annotations

import copy
import os
import shutil
from pathlib import Path
from typing import Any

import nbformat
import pytest
from browser_support import artifact, lab_serving, notebook_cell, open_lab
from saved_notebook import CELL_OF, KINDS, execute_and_save

pytestmark = [pytest.mark.browser, pytest.mark.timeout(240)]


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> nbformat.NotebookNode:
    path = tmp_path_factory.mktemp("saved") / "executed.ipynb"
    execute_and_save(path)
    return nbformat.read(path, as_version=4)


@pytest.mark.parametrize("trusted", [False, True], ids=["untrusted", "trusted"])
def test_reopened_notebook_shows_every_widgets_picture(
    page: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    saved: nbformat.NotebookNode,
    trusted: bool,
) -> None:
    """Untrusted: JupyterLab shows the outputs' text/html. Trusted (a notebook the user
    saved): nbray's extension shows the same picture in place of ipywidgets' "Error
    displaying widget: model not found" (no kernel holds the widgets' models)."""
    # every cell in the DOM (JupyterLab otherwise draws only the cells in view)
    settings = tmp_path / "lab-settings"
    shutil.copytree(os.environ["JUPYTERLAB_SETTINGS_DIR"], settings)
    tracker = settings / "@jupyterlab" / "notebook-extension" / "tracker.jupyterlab-settings"
    tracker.parent.mkdir(parents=True, exist_ok=True)
    tracker.write_text('{"windowingMode": "none"}')
    monkeypatch.setenv("JUPYTERLAB_SETTINGS_DIR", str(settings))
    nb = saved
    if trusted:  # signed with the secret of the JupyterLab below (its data dir)
        from nbformat.sign import NotebookNotary

        nb = copy.deepcopy(saved)
        NotebookNotary(data_dir=os.environ["JUPYTER_DATA_DIR"]).sign(nb)
    console: list[str] = []
    page.on("console", lambda msg: console.append(f"{msg.type}: {msg.text}"))
    with lab_serving(nb, "shared.ipynb", tmp_path) as lab:
        open_lab(page, lab, "lab/tree/shared.ipynb")
        page.wait_for_selector(".jp-NotebookPanel .jp-Cell", timeout=60_000)
        page.wait_for_timeout(2000)
        for kind in KINDS:
            cell = notebook_cell(page, CELL_OF[kind])
            cell.scroll_into_view_if_needed()
            # %%compare's chart: plotly's renderer when it trusts the output, else the picture
            selector = f".nbray-picture-{kind}" + (", .main-svg" if kind == "comparison" else "")
            cell.locator(".jp-OutputArea-output").locator(selector).first.wait_for(timeout=30_000)
        if trusted:  # ipywidgets' renderers have given up (their text, out of sight)
            page.wait_for_function(
                """() => {
                  const views = [...document.querySelectorAll('.nbray-PictureRenderer-view')];
                  return views.length >= 4 &&
                    views.every(v => v.textContent.includes('model not found'));
                }""",
                timeout=30_000,
            )
        notebook_cell(page, 0).scroll_into_view_if_needed()
        page.wait_for_timeout(1000)
        outputs = page.locator(".jp-NotebookPanel .jp-OutputArea-output")
        text = " ".join(outputs.all_inner_texts())  # what shows (a hidden live view not)
        name = "trusted" if trusted else "untrusted"
        page.screenshot(path=str(artifact(f"saved-notebook-{name}.png")), full_page=True)
        assert "Error displaying widget" not in text
        assert "Loading widget" not in text
        # JupyterLab's sanitizer kept the picture's boxes and their places
        graph = page.locator(".nbray-picture-task-graph").first
        nodes = graph.locator(".nbray-mark-node")
        assert nodes.count() == 13
        boxes = [nodes.nth(i).bounding_box() for i in range(13)]
        assert all(b is not None and b["width"] >= 10 and b["height"] >= 10 for b in boxes)
        assert len({(round(b["x"]), round(b["y"])) for b in boxes if b}) == 13  # not stacked
        assert page.locator(".nbray-picture-timeline .nbray-mark-bar").count() >= 13
        cores = page.locator(".nbray-picture-monitor .nbray-mark-core")
        assert cores.count() >= 1
        assert "6/6 done" in page.locator(".nbray-picture-progress").first.text_content()
    errors = [line for line in console if "anywidget" in line or "Failed to initialize" in line]
    assert errors == []
