"""demo_notebooks/widgets.ipynb in a real kernel with a real cluster: every widget's model
reflects the real tasks.

The notebook runs through nbclient with ``store_widget_state=True``, so the progress bars
are checked as the frontend receives them (the widget state saved in the notebook), and a
cell appended after the notebook's own prints the widgets' kernel-side models as JSON.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import nbformat
import psutil
import pytest

NOTEBOOK = Path(__file__).resolve().parents[2] / "demo_notebooks" / "widgets.ipynb"
TAG = "NBRAY_WIDGETS "
RESULTS_CELL = f"""\
import json as _j
import psutil as _p
print({TAG!r} + _j.dumps({{
    "num_cpus": monitor.num_cpus,
    "cores": len(monitor.cores),
    "cpu_count": _p.cpu_count(),
    "workers_seen": {{w["worker"]: w.get("pid") for w in monitor.state.worker_rows()}},
    "graph_nodes": [(n.name, n.state, n.stage) for n in graph.nodes],
    "graph_edges": graph.edges,
    "timeline_workers": timeline.workers,
    "timeline_tasks": sorted({{s.name for s in timeline.segments}}),
    "task_pids": sorted({{pid for _, pid in cleaned_values}}),
    "big_grouped": big_graph.view.grouped,
    "big_nodes": [(n.name, n.stage, n.count, n.states) for n in big_graph.nodes],
    "big_edges": big_graph.edges,
    "big_error": [n.error for n in big_graph.nodes if n.name == "fragile"][0],
    "trace_names": sorted({{e["name"] for e in _j.load(open(trace_path))}}),
    "gone": monitor.gone,
    "banner": monitor._banner.value,
    "hub_views": monitor._hub.views,
    "draws": [monitor.draws, graph.draws, timeline.draws],
}}))
"""

pytestmark = pytest.mark.timeout(240)


def results(nb: nbformat.NotebookNode) -> dict[str, Any]:
    for out in nb.cells[-1].outputs:
        for line in out.get("text", "").splitlines():
            if line.startswith(TAG):
                return dict(json.loads(line[len(TAG) :]))
    raise AssertionError(f"no results line in {nb.cells[-1].outputs}")


def widget_models(nb: nbformat.NotebookNode, name: str) -> list[dict[str, Any]]:
    state = nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    return [m["state"] for m in state.values() if m["model_name"] == name]


@pytest.fixture(scope="module")
def executed(run_notebook: Any) -> nbformat.NotebookNode:
    return run_notebook(NOTEBOOK, extra_cells=[RESULTS_CELL], store_widget_state=True)


def test_monitor_shows_the_real_cpu_count(executed: nbformat.NotebookNode) -> None:
    r = results(executed)
    assert r["num_cpus"] == psutil.cpu_count() == r["cpu_count"]
    assert r["cores"] == psutil.cpu_count()
    # a bare init() (no server here): one worker per CPU, each reported its pid
    assert len(r["workers_seen"]) >= min(2, psutil.cpu_count())


def test_task_graph_has_the_pipelines_nodes_and_edges(executed: nbformat.NotebookNode) -> None:
    r = results(executed)
    names = [n[0] for n in r["graph_nodes"]]
    assert names == ["load"] * 8 + ["clean"] * 8 + ["combine"]
    assert {n[1] for n in r["graph_nodes"]} == {"FINISHED"}
    assert [n[2] for n in r["graph_nodes"]] == [0] * 8 + [1] * 8 + [2]
    expected = {(i, 8 + i) for i in range(8)} | {(8 + i, 16) for i in range(8)}
    assert {tuple(e) for e in r["graph_edges"]} == expected


def test_big_graph_is_grouped_and_shows_the_failure(executed: nbformat.NotebookNode) -> None:
    r = results(executed)
    assert r["big_grouped"]
    nodes = {(n[0], n[1]): n for n in r["big_nodes"]}
    assert set(nodes) == {("fragile", 0), ("step", 1)}
    assert nodes[("fragile", 0)][3] == {"FINISHED": 999, "FAILED": 1}
    assert nodes[("step", 1)][3] == {"FINISHED": 999, "FAILED": 1}  # its input failed
    assert [tuple(e) for e in r["big_edges"]] == [(0, 1)]
    assert "bad input 3" in r["big_error"]


def test_timeline_rows_are_the_workers_that_ran_the_tasks(
    executed: nbformat.NotebookNode,
) -> None:
    r = results(executed)
    workers = r["timeline_workers"]
    assert len(workers) == min(2, psutil.cpu_count())
    assert set(workers) <= set(r["workers_seen"])
    # the pids the tasks themselves reported are those of the timeline's workers
    assert set(r["task_pids"]) <= {r["workers_seen"][w] for w in workers}
    # scoped to the pipeline: the 2000 tasks of a later cell do not push it out
    assert r["timeline_tasks"] == ["clean", "combine", "load"]
    # the trace written after the pipeline holds its tasks
    assert r["trace_names"] == ["clean", "combine", "load"]


def test_progress_bars_reach_100_percent_in_the_frontend_state(
    executed: nbformat.NotebookNode,
) -> None:
    bars = widget_models(executed, "IntProgressModel")
    done = sorted((b["value"], b["max"], b.get("bar_style")) for b in bars)
    assert (8, 8, "success") in done  # nbray.get(cleaned, progress=True)
    assert (1000, 1000, "success") in done  # nbray.wait(many, ..., progress=True)
    labels = [m["value"] for m in widget_models(executed, "HTMLModel")]
    assert any("get: 8/8 done, 0 failed" in v for v in labels)
    assert any("wait: 1000/1000 ready" in v for v in labels)


def test_widgets_say_the_cluster_is_gone_and_let_go(executed: nbformat.NotebookNode) -> None:
    r = results(executed)
    assert "session ended" in r["gone"]
    assert "cluster gone" in r["banner"]
    assert r["hub_views"] == 0
    assert all(d >= 1 for d in r["draws"])
    shutdown_cell = executed.cells[-2]
    assert "session ended" in "".join(o.get("text", "") for o in shutdown_cell.outputs)


def test_time_comparison_charts_kernel_against_cluster(executed: nbformat.NotebookNode) -> None:
    compare = next(c for c in executed.cells if c.source.startswith("%%compare"))
    bundle = {k for out in compare.outputs for k in out.get("data", {})}
    assert "application/vnd.plotly.v1+json" in bundle
    text = "".join(str(out.get("data", {}).get("text/plain", "")) for out in compare.outputs)
    text += "".join(out.get("text", "") for out in compare.outputs)
    assert "8 busy tasks" in text and "speedup" in text and "results equal" in text
