"""demo_notebooks/ray_libraries.ipynb runs top to bottom in a real kernel, and each of
Ray's libraries in it gets the right answer (checked against values computed here)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

NOTEBOOK = Path(__file__).resolve().parents[2] / "demo_notebooks" / "ray_libraries.ipynb"
TAG = "NBRAY_RESULTS "
RESULTS_CELL = f"""\
import json as _nbray_test_json

print({TAG!r} + _nbray_test_json.dumps({{
    "same_best": same_best,
    "plain_time": plain_time,
    "cluster_time": cluster_time,
    "steps_27": steps[26],
    "longest": longest,
    "scores": scores,
    "queue_total": queue_total,
    "estimates": estimates,
    "trained": trained,
    "initialized_after_shutdown": ray.is_initialized(),
}}))
"""


def _collatz_steps(n: int) -> int:
    steps = 0
    while n != 1:
        n = n // 2 if n % 2 == 0 else 3 * n + 1
        steps += 1
    return steps


@pytest.mark.timeout(600)
def test_ray_libraries_notebook(run_notebook: Any) -> None:
    nb = run_notebook(NOTEBOOK, extra_cells=[RESULTS_CELL], cell_timeout=300)
    out = "".join(o.get("text", "") for o in nb.cells[-1].outputs if o.get("name") == "stdout")
    line = next(ln for ln in out.splitlines() if ln.startswith(TAG))
    r = json.loads(line[len(TAG) :])

    assert r["same_best"] is True
    assert r["plain_time"] > 0 and r["cluster_time"] > 0
    assert r["steps_27"] == _collatz_steps(27) == 111
    assert r["longest"] == max(range(1, 30_001), key=_collatz_steps)
    assert r["scores"] == [2 * x * x for x in range(10)]
    assert r["queue_total"] == sum(range(1_000))
    assert len(r["estimates"]) == 20
    assert abs(r["estimates"][-1] - 3.14159) < 0.05
    assert r["trained"] == [f"model {i}" for i in range(3)]
    assert r["initialized_after_shutdown"] is False

    widget_views = [
        o
        for cell in nb.cells
        for o in cell.get("outputs", [])
        if "application/vnd.jupyter.widget-view+json" in o.get("data", {})
    ]
    assert widget_views, "the live plot and the tqdm bars are widgets"
