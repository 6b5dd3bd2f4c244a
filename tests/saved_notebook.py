"""A notebook that shows every nbray widget, executed in a real kernel and saved: what a
user shares (nbconvert's HTML, nbviewer, GitHub) or reopens without a kernel.

    execute_and_save(path) ─▶ nbclient (real kernel, real cluster, no widget state stored,
                              as JupyterLab saves by default) ─▶ path
"""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
from nbclient import NotebookClient

# picture kind (data-nbray-picture) of each widget the notebook shows
KINDS = ("monitor", "progress", "task-graph", "timeline", "comparison")
CELL_OF = {"monitor": 1, "progress": 2, "task-graph": 3, "timeline": 4, "comparison": 5}

CELLS = [
    "import time\nimport nbray\nnbray.init(num_cpus=2)",
    "monitor = nbray.monitor()\nmonitor",
    "@nbray.remote\ndef square(x):\n    time.sleep(0.05)\n    return x * x\n\n"
    "@nbray.remote\ndef total(*xs):\n    return sum(xs)\n\n"
    "parts = [square.remote(i) for i in range(6)]\n"
    "values = nbray.get(parts, progress=True)\n"
    "result = nbray.get(total.remote(*parts))",
    "graph = nbray.task_graph('session')\ngraph",
    "timeline = nbray.timeline()\ntimeline",
    "%%compare -l six\nsum(nbray.get([square.remote(i) for i in range(6)]))",
    "time.sleep(1.5)  # a few metrics samples for the monitor's picture\nresult",
]


def execute_and_save(path: Path, timeout: int = 120) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.cells = [nbformat.v4.new_code_cell(src) for src in CELLS]
    client = NotebookClient(
        nb,
        timeout=timeout,
        startup_timeout=60,
        kernel_name="python3",
        store_widget_state=False,
        resources={"metadata": {"path": str(path.parent)}},
    )
    env = {k: v for k, v in os.environ.items() if k != "NBRAY_ADDRESS"}
    client.execute(env=env)
    nbformat.write(nb, path)
    return nb
