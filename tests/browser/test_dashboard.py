"""The dashboard (one TypeScript widget) in JupyterLab's main area and as a page of its
own, driven through Chromium: an empty cluster says so in words; the task graph stays
readable at 17 tasks (layers, labels, inside the plot) and at 2,000 (grouped by function
and stage). Screenshots are kept in test-artifacts/browser/."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from browser_support import ARTIFACTS_DIR, Lab, artifact, open_lab, start_lab, stop_lab
from nbray_testing import wait_until
from playwright.sync_api import TimeoutError as PlaywrightTimeout

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]

# 8 loads -> 4 pairs -> 2 merges -> 1 total -> 1 report, and one task on its own: 17
SEVENTEEN = """
import nbray

nbray.init()

@nbray.remote
def load(i):
    return i

@nbray.remote
def pair(a, b):
    return a + b

@nbray.remote
def report(x):
    return f"total {x}"

@nbray.remote
def side():
    return 0

loads = [load.remote(i) for i in range(8)]
pairs = [pair.remote(loads[i], loads[i + 1]) for i in range(0, 8, 2)]
merges = [pair.options(name="merge").remote(pairs[i], pairs[i + 1]) for i in (0, 2)]
total = pair.options(name="total").remote(*merges)
print(nbray.get([report.remote(total), side.remote()]))
"""

# 1,000 steps a -> 999 steps b (one a each) -> 1 reduce over all b: 2,000 tasks
TWO_THOUSAND = """
import nbray

nbray.init()

@nbray.remote
def step_a(i):
    return i

@nbray.remote
def step_b(x):
    return x * 2

@nbray.remote
def reduce_all(*xs):
    return sum(xs)

a = [step_a.remote(i) for i in range(1000)]
b = [step_b.remote(x) for x in a[:999]]
print(nbray.get(reduce_all.remote(*b)))
"""


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    root = tmp_path_factory.mktemp("dash") / "root"
    root.mkdir()
    log = root.parent / "jupyter-lab.log"
    ARTIFACTS_DIR.mkdir(parents=True, exist_ok=True)
    lab = start_lab(root, log, ["--NbrayServer.num_cpus=2"])
    try:
        yield lab
    finally:
        stop_lab(lab)
        if log.exists():
            shutil.copy(log, ARTIFACTS_DIR / "jupyter-lab-dashboard.log")


def run_client(lab: Lab, code: str, timeout: float = 120) -> str:
    """Run ``code`` as a driver of the lab's cluster (its address from the API)."""
    address = json.loads(lab.api("nbray/api/cluster"))["address"]
    env = {**os.environ, "NBRAY_ADDRESS": address}
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=timeout
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def graph_of(lab: Lab, total: int) -> dict[str, Any]:
    """The server's graph once it holds ``total`` tasks: the head sends task events in
    batches (every 0.1 s), so a driver can get its last result before the server folds
    the last tasks' events."""

    def graph() -> dict[str, Any] | None:
        data: dict[str, Any] = json.loads(lab.api("nbray/api/graph"))
        return data if data["total_tasks"] >= total else None

    result: dict[str, Any] = wait_until(graph, timeout=10)
    return result


def points_outside(page: Any, plot: str) -> list[str]:
    """Markers and labels of the plot ``plot`` (a selector) that stick out of it."""
    return list(
        page.evaluate(
            """(sel) => {
              const box = document.querySelector(sel).getBoundingClientRect();
              return [...document.querySelectorAll(sel + ' .scatterlayer .point, '
                                                   + sel + ' .scatterlayer .textpoint text')]
                .filter(el => {
                  const r = el.getBoundingClientRect();
                  return r.left < box.left || r.right > box.right
                    || r.top < box.top || r.bottom > box.bottom;
                })
                .map(el => el.textContent || el.tagName);
            }""",
            plot,
        )
    )


def test_an_empty_cluster_says_so_in_words(page: Any, lab: Lab) -> None:
    page.goto(lab.url("nbray/dashboard"))
    dash = page.locator(".nbray-dashboard")
    dash.locator(".nbray-state", has_text="running").wait_for()
    empty = dash.locator(".nbray-dash-timeline-empty")
    empty.wait_for()
    assert "No task has run yet" in empty.inner_text()
    assert dash.locator(".nbray-dash-timeline").is_hidden()
    caption = dash.locator(".nbray-dash-graph-caption", has_text="No tasks yet")
    caption.wait_for()
    assert dash.locator(".nbray-dash-tasks", has_text="No tasks match").count() == 1
    page.screenshot(path=str(artifact("dashboard-empty.png")), full_page=True)


def test_dashboard_opens_in_jupyterlabs_main_area(page: Any, lab: Lab) -> None:
    """From the command palette: a main-area tab with the widget itself (no iframe),
    sharing the side panel's model: one event stream for both."""
    open_lab(page, lab, "lab?reset")
    page.locator(".jp-Launcher").wait_for()  # the plugins, the palette's included, are up
    palette = page.locator(".lm-CommandPalette-input")
    for _ in range(3):  # the shortcut can be lost while the shell still takes focus
        page.locator(".jp-Launcher").click()
        page.keyboard.press("Control+Shift+C")
        with contextlib.suppress(PlaywrightTimeout):
            palette.wait_for(timeout=5000)
            break
    palette.fill("nbray dashboard")
    page.locator(".lm-CommandPalette-item", has_text="Open nbray Dashboard").click()
    tab = page.locator("#nbray-dashboard")
    tab.wait_for()
    dash = tab.locator(".nbray-dashboard")
    dash.locator(".nbray-state", has_text="running").wait_for()
    dash.locator(".nbray-node-card .nbray-bar-row", has_text="CPU").wait_for()
    assert tab.locator("iframe").count() == 0
    page.locator('.lm-TabBar-tab[data-id="nbray-dashboard"]').wait_for()
    # the panel opened beside it shares the stream: still one watcher
    page.locator('.jp-SideBar [data-id="nbray-panel"]').click()
    page.locator("#nbray-panel .nbray-live", has_text="live").wait_for()
    assert json.loads(lab.api("nbray/api/cluster"))["watchers"] == 1
    page.screenshot(path=str(artifact("dashboard-in-lab.png")))


def test_graph_of_17_tasks_is_layered_labelled_and_inside(page: Any, lab: Lab) -> None:
    run_client(lab, SEVENTEEN)
    graph = graph_of(lab, 17)
    assert graph["total_tasks"] == 17 and not graph["grouped"]
    columns: dict[float, list[str]] = {}
    for node in graph["nodes"]:
        columns.setdefault(node["x"], []).append(node["name"])
    # layers by stage: loads and the lone task first, then pairs, merges, total, report
    assert sorted(columns) == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert sorted(columns[0.0]) == ["load"] * 8 + ["side"]
    assert columns[4.0] == ["report"]

    page.goto(lab.url("nbray/dashboard"))
    dash = page.locator(".nbray-dashboard")
    plot = dash.locator(".nbray-dash-graph")
    page.wait_for_function(
        "() => document.querySelectorAll('.nbray-dash-graph .scatterlayer .point').length >= 17"
    )
    labels = plot.locator(".scatterlayer .textpoint text").all_text_contents()
    assert sorted(set(labels)) == ["load", "merge", "pair", "report", "side", "total"]
    assert points_outside(page, ".nbray-dash-graph") == []
    assert "17 tasks" in dash.locator(".nbray-dash-graph-caption").inner_text()
    dash.locator(".nbray-dash-timeline .barlayer .point").first.wait_for()
    plot.screenshot(path=str(artifact("dashboard-graph-17.png")))


def test_graph_of_2000_tasks_is_grouped_by_function_and_stage(page: Any, lab: Lab) -> None:
    run_client(lab, TWO_THOUSAND, timeout=160)
    graph = graph_of(lab, 2000)
    assert graph["total_tasks"] == 2000 and graph["grouped"]
    counts = {(n["name"], n["x"]): n["count"] for n in graph["nodes"]}
    assert counts == {("step_a", 0.0): 1000, ("step_b", 1.0): 999, ("reduce_all", 2.0): 1}

    page.goto(lab.url("nbray/dashboard"))
    dash = page.locator(".nbray-dashboard")
    page.wait_for_function(
        "() => document.querySelector('.nbray-dash-graph')?.dataset.grouped === 'true'"
        " && document.querySelectorAll('.nbray-dash-graph .scatterlayer .point').length === 3"
    )
    labels = dash.locator(".nbray-dash-graph .scatterlayer .textpoint text").all_text_contents()
    times = "\N{MULTIPLICATION SIGN}"
    assert sorted(labels) == [f"reduce_all {times}1", f"step_a {times}1000", f"step_b {times}999"]
    assert points_outside(page, ".nbray-dash-graph") == []
    caption = dash.locator(".nbray-dash-graph-caption").inner_text()
    assert "2000 tasks, grouped into 3 nodes by function and stage" in caption
    page.screenshot(path=str(artifact("dashboard-2000.png")), full_page=True)
