"""Live widgets over the cluster's event stream (ipywidgets + plotly).

    engine.subscribe ──▶ hub.EventHub (one per engine, throttled redraws)
                           └─▶ state.EventAggregator (bounded, widget-free state model)
                                 ──▶ ClusterMonitor · TaskGraph · Timeline   (live views)
    nbray.get/wait(progress=True) ──▶ Progress
    %%compare ──▶ TimeComparison

Each widget is also one short call: ``nbray.monitor()``, ``nbray.task_graph()``,
``nbray.timeline()`` (``nbray.timeline("trace.json")`` writes a Chrome trace). Outside a
Jupyter kernel a widget's ``repr`` is a text summary.

Example::

    import nbray
    nbray.monitor()                  # CPU, memory, GPUs, workers, live
    refs = [f.remote(i) for i in range(100)]
    nbray.get(refs, progress=True)   # a progress bar while they run
    nbray.task_graph()               # the DAG of this cell's tasks
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

_EXPORTS = {
    "ClusterMonitor": "cluster_monitor",
    "EventAggregator": "state",
    "EventHub": "hub",
    "Progress": "progress",
    "TaskGraph": "graph",
    "Timeline": "gantt",
    "monitor": "shortcuts",
    "task_graph": "shortcuts",
    "timeline": "shortcuts",
    "write_chrome_trace": "gantt",
    # the chart %%compare shows (nbray.magics builds it)
    "TimeComparison": "comparison",
}

__all__ = [
    "ClusterMonitor",
    "EventAggregator",
    "EventHub",
    "Progress",
    "TaskGraph",
    "TimeComparison",
    "Timeline",
    "monitor",
    "task_graph",
    "timeline",
    "write_chrome_trace",
]


def __getattr__(name: str) -> object:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'nbray.widgets' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:
    from .cluster_monitor import ClusterMonitor
    from .comparison import TimeComparison
    from .gantt import Timeline, write_chrome_trace
    from .graph import TaskGraph
    from .hub import EventHub
    from .progress import Progress
    from .shortcuts import monitor, task_graph, timeline
    from .state import EventAggregator

del TYPE_CHECKING
