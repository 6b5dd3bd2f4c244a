"""The live widgets render in JupyterLab in a real browser (Debian's Chromium).

JupyterLab runs the widgets demo notebook (without its final shutdown cell) in a real
kernel with a real cluster; the test waits until the monitor, the progress bars, the task
graphs and the timeline are drawn by the frontend (ipywidgets, anywidget + plotly), checks
what is drawn, and keeps a screenshot of the page and one of each widget in
test-artifacts/browser/.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nbformat
import pytest
from browser_support import Lab, artifact, lab_serving, notebook_cell, run_all_cells

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]

NOTEBOOK = Path(__file__).resolve().parents[2] / "demo_notebooks" / "widgets.ipynb"
# cell index in the demo notebook -> screenshot name
SHOTS = {
    3: "widget-monitor",
    5: "widget-progress",
    7: "widget-task-graph",
    9: "widget-timeline",
    12: "widget-task-graph-grouped",
    15: "widget-time-comparison",
}


@pytest.fixture
def lab_with_app(tmp_path: Path) -> Any:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert "nbray.shutdown()" in nb.cells[-1].source
    nb.cells = nb.cells[:-2]  # keep the widgets live for the pictures
    with lab_serving(nb, "widgets.ipynb", tmp_path) as lab:
        yield lab


cell = notebook_cell


def test_widgets_render_in_jupyterlab(page: Any, lab_with_app: Lab) -> None:
    run_all_cells(page, lab_with_app, "widgets.ipynb")
    for index in (12, 15):  # the grouped graph, then %%compare's chart
        cell(page, index).locator(".js-plotly-plot .main-svg").first.wait_for(timeout=120_000)
    page.wait_for_timeout(2500)  # a few live redraws

    monitor = cell(page, 3)
    assert monitor.locator(".js-plotly-plot").count() == 2  # per-core bars, history
    assert "CPUs" in monitor.text_content()
    # one bar per core is drawn
    assert monitor.locator(".js-plotly-plot").first.locator(".barlayer g.point").count() >= 1
    progress = cell(page, 5)
    assert "8/8 done" in progress.text_content()
    graph = cell(page, 7)
    assert "17 tasks (17 FINISHED)" in graph.text_content()
    assert graph.locator(".scatterlayer path.point").count() == 17
    timeline = cell(page, 9)
    assert timeline.locator(".barlayer g.point").count() >= 17
    grouped = cell(page, 12)
    assert "grouped into" in grouped.text_content()
    assert "failed" in grouped.text_content().lower()
    comparison = cell(page, 15)
    assert "speedup" in comparison.text_content()
    # the extension's renderer holds each nbray widget's view: live views, no picture
    assert page.locator(".nbray-PictureRenderer").count() >= 6
    assert page.locator(".nbray-PictureRenderer.nbray-mod-picture").count() == 0

    news = page.get_by_role("button", name="No")  # the "Jupyter news?" toast
    if news.count():
        news.first.click()
    page.screenshot(path=str(artifact("widgets-notebook.png")), full_page=True)
    for index, name in SHOTS.items():
        out = cell(page, index).locator(".jp-Cell-outputArea")
        out.scroll_into_view_if_needed()
        out.screenshot(path=str(artifact(f"{name}.png")))


RELOAD_CELLS = [
    "import ipywidgets\nslider = ipywidgets.IntSlider(value=7)\nslider",
    "import nbray\nnbray.init(num_cpus=1)\nmonitor = nbray.monitor()\nmonitor",
]
LIVE_STATE = """() => [...document.querySelectorAll('.nbray-PictureRenderer')].map(r => ({
  picture: r.classList.contains('nbray-mod-picture'),
  slider: r.querySelector('.widget-slider') !== null,
  plots: r.querySelectorAll('.js-plotly-plot').length,
}))"""


def test_widgets_live_again_after_a_page_reload(page: Any, tmp_path: Path) -> None:
    """The page reloaded while the kernel runs: JupyterLab draws the outputs before the
    kernel is ready, with ipywidgets' renderers that have no widget manager yet, in nbray's
    renderer (frontend/src/pictures.ts), which replaces them once ipywidgets has one. The
    monitor is live again (its picture meanwhile), and so is another library's widget."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    nb.cells = [nbformat.v4.new_code_cell(source) for source in RELOAD_CELLS]
    with lab_serving(nb, "reload.ipynb", tmp_path) as lab:
        run_all_cells(page, lab, "reload.ipynb")
        cell(page, 1).locator(".js-plotly-plot").first.wait_for(timeout=90_000)
        page.evaluate("() => window.jupyterapp.commands.execute('docmanager:save')")
        page.wait_for_function("() => !document.querySelector('.jp-mod-dirty')", timeout=30_000)
        page.reload()
        page.wait_for_selector(".jp-NotebookPanel .jp-Cell", timeout=60_000)
        page.wait_for_function(
            f"""() => {{
              const state = ({LIVE_STATE})();
              return state.length === 2 && state[0].slider && state[1].plots === 2 &&
                !state.some(r => r.picture);
            }}""",
            timeout=60_000,
        )
        text = " ".join(page.locator(".jp-NotebookPanel .jp-OutputArea-output").all_inner_texts())
        assert "Loading widget" not in text
        assert "Error displaying widget" not in text
        page.screenshot(path=str(artifact("widgets-after-reload.png")), full_page=True)
