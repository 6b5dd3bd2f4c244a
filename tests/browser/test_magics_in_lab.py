"""The magics seen in JupyterLab in a real browser (Debian's Chromium): a task's output
lands under the cell that started it while a later cell is running, the %%compare chart is
drawn, and a remote error shows the user's cell. Screenshots go to test-artifacts/browser/.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nbformat
import pytest
from browser_support import Lab, artifact, lab_serving, notebook_cell, run_all_cells

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]

CELLS = [
    "import nbray\nnbray.init(num_cpus=2)",
    "@nbray.remote\n"
    "def later():\n"
    "    import time\n"
    "    time.sleep(2)\n"
    "    print('late line from the task', flush=True)\n"
    "\n"
    "ref = later.remote()  # the cell ends at once",
    "import os, time\n"
    "print('still running', flush=True)\n"
    "for _ in range(1200):\n"
    "    if os.path.exists('release'):\n"
    "        break\n"
    "    time.sleep(0.1)\n"
    "print('second cell done')",
    "%%compare -l tasks\n"
    "@nbray.remote\n"
    "def spin(n):\n"
    "    return sum(i * i for i in range(n))\n"
    "sum(nbray.get([spin.remote(100_000) for _ in range(4)]))",
    "@nbray.remote\ndef fail(x):\n    return 1 / x\n\nnbray.get(fail.remote(0))",
]


@pytest.fixture
def lab_with_notebook(tmp_path: Path) -> Any:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in CELLS])
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    with lab_serving(nb, "magics.ipynb", tmp_path) as lab:
        yield lab


def output_of(page: Any, index: int) -> Any:
    return notebook_cell(page, index).locator(".jp-Cell-outputArea")


def test_magics_in_jupyterlab(page: Any, lab_with_notebook: Lab) -> None:
    run_all_cells(page, lab_with_notebook, "magics.ipynb")

    # the second cell runs until the test releases it, after it saw the first cell's task
    # print under the first cell
    output_of(page, 1).get_by_text("late line from the task").wait_for(timeout=60_000)
    assert output_of(page, 2).text_content() == "still running\n"
    (lab_with_notebook.root_dir / "release").touch()
    output_of(page, 2).get_by_text("second cell done").wait_for(timeout=60_000)
    assert "late line" not in output_of(page, 2).text_content()

    chart = output_of(page, 3)
    chart.locator(".js-plotly-plot .main-svg").first.wait_for(timeout=60_000)
    assert chart.locator(".barlayer g.point").count() == 2  # kernel and cluster bars
    assert "results equal" in chart.text_content()

    error = output_of(page, 4)
    error.get_by_text("ZeroDivisionError").first.wait_for(timeout=60_000)
    text = error.text_content()
    assert "Cell In[5], line 3, in fail" in text, text
    assert "return 1 / x" in text

    news = page.get_by_role("button", name="No")  # the "Jupyter news?" toast
    if news.count():
        news.first.click()
    page.screenshot(path=str(artifact("magics-notebook.png")), full_page=True)
    chart.screenshot(path=str(artifact("magics-compare-chart.png")))
