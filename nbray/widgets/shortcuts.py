"""The short calls: ``nbray.monitor()``, ``nbray.task_graph()``, ``nbray.timeline()``."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from nbray._model.object_ref import ObjectRef

from .cluster_monitor import ClusterMonitor
from .gantt import Timeline, write_chrome_trace
from .graph import TaskGraph

__all__ = ["monitor", "task_graph", "timeline"]


def monitor() -> ClusterMonitor:
    """A live view of each node's CPU, memory, GPUs and object store, and of each worker.

    Example::

        nbray.monitor()
    """
    return ClusterMonitor()


def task_graph(
    scope: str | int | ObjectRef | Sequence[ObjectRef] = "cell", *, group_above: int = 150
) -> TaskGraph:
    """A live DAG of tasks: this cell's (default), a cell number's, the whole session's
    (``"session"``), or that of some refs and what they depend on.

    Example::

        total = add.remote(square.remote(2), square.remote(3))
        nbray.task_graph(total)
    """
    return TaskGraph(scope, group_above=group_above)


def timeline(
    filename: str | os.PathLike[str] | None = None,
    *,
    scope: str | int | ObjectRef | Sequence[ObjectRef] = "session",
) -> Timeline | Path:
    """A live Gantt chart of tasks per worker; with ``filename``, write the recorded tasks
    as a Chrome trace file instead and return its path (Ray's ``ray.timeline(filename)``;
    unlike Ray, no filename gives the widget rather than a list of events). ``scope``
    (nbray's): the session's latest tasks (default), a cell number's (``"cell"``: this
    cell's), or those making some refs and their inputs.

    Example::

        nbray.timeline()                 # the widget
        nbray.timeline(scope=[total])    # the tasks behind total only
        nbray.timeline("trace.json")     # open in chrome://tracing or ui.perfetto.dev
    """
    if filename is not None:
        return write_chrome_trace(filename)
    return Timeline(scope)
