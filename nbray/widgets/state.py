"""The widgets' state model: the one fold of the event stream, ``nbray._base.event_fold``.

    engine.subscribe ──Event──▶ EventAggregator (= EventFold).apply ──▶ graph, timeline, ...

Kept under its old name for the widgets; the server extension's task table folds the same
stream with the same class. The event shapes and the state vocabulary are in
``nbray._base.events``.
"""

from __future__ import annotations

from .._base.event_fold import (
    STATE_COLORS,
    STATES,
    EventFold,
    GraphNode,
    GraphView,
    Segment,
    TaskInfo,
    worker_key,
)

__all__ = [
    "STATES",
    "STATE_COLORS",
    "EventAggregator",
    "EventFold",
    "GraphNode",
    "GraphView",
    "Segment",
    "TaskInfo",
    "worker_key",
]

EventAggregator = EventFold
