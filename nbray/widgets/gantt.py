"""Timeline: each task attempt as a bar on its worker's row over time (a Gantt chart, idle
gaps visible), and its export as a Chrome trace file.

    task events ──▶ EventAggregator.timeline() ──▶ plotly horizontal bars, one trace per
                                                   function (the busiest 8, then "other")
               └──▶ EventAggregator.chrome_trace() ──▶ write_chrome_trace(path)
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

import ipywidgets
import plotly.graph_objects as go

from nbray._model.engine import Engine

from .base import LiveWidget
from .graph import Scope, _resolve_scope
from .hub import hub_for
from .pictures import timeline_picture
from .state import EventAggregator, Segment

__all__ = ["Timeline", "write_chrome_trace"]

_PALETTE = (
    "#3b82f6",
    "#22c55e",
    "#f59e0b",
    "#8b5cf6",
    "#14b8a6",
    "#ec4899",
    "#84cc16",
    "#0ea5e9",
)
_TOP = len(_PALETTE)


class Timeline(LiveWidget):
    """Live Gantt chart of task attempts per worker.

    Example::

        tl = nbray.timeline()           # the widget: the session's latest attempts
        tl.workers                       # rows, e.g. ['a1b2c3d4:1', 'a1b2c3d4:2']
        nbray.timeline(scope=[total])    # only the tasks making total, and their inputs
        nbray.timeline("trace.json")    # Chrome trace file (chrome://tracing, Perfetto)
    """

    def __init__(
        self,
        scope: Scope = "session",
        *,
        limit: int = 2000,
        engine: Engine | None = None,
        frontend: bool | None = None,
    ) -> None:
        self.scope = _resolve_scope(scope)
        self.limit = limit
        self.segments: list[Segment] = []
        super().__init__(engine, frontend=frontend)

    @property
    def workers(self) -> list[str]:
        """Workers that ran something, in the order of the rows."""
        return sorted({s.worker for s in self.segments}, key=_worker_order)

    def _build(self) -> list[ipywidgets.Widget]:
        traces = [
            go.Bar(
                x=[],
                y=[],
                base=[],
                orientation="h",
                name="",
                hovertext=[],
                hoverinfo="text",
                marker={"color": color},
                showlegend=True,
            )
            for color in (*_PALETTE, "#9ca3af")
        ]
        self._fig = go.FigureWidget(
            data=traces,
            layout=go.Layout(
                height=320,
                margin={"l": 90, "r": 10, "t": 35, "b": 40},
                title={"text": "Timeline (tasks per worker)", "font": {"size": 13}},
                xaxis={"title": "seconds"},
                yaxis={"type": "category", "title": "worker"},
                barmode="overlay",
                bargap=0.25,
                legend={"orientation": "h", "y": -0.25},
            ),
        )
        return [self._fig]

    def _segments(self, state: EventAggregator) -> list[Segment]:
        if self.scope == "session":
            return state.timeline(limit=self.limit)
        ids = set(state.task_ids(self.scope))
        return [
            s for s in state.timeline(limit=state.segments.maxlen or 20_000) if s.task_id in ids
        ][-self.limit :]

    def _refresh(self, state: EventAggregator, gone: str) -> None:
        self.segments = self._segments(state)
        super()._refresh(state, gone)

    def _draw(self, state: EventAggregator) -> None:
        segs = self.segments
        t0 = segs[0].start if segs else time.time()
        names = [n for n, _ in Counter(s.name for s in segs).most_common(_TOP)]
        groups: list[list[Segment]] = [[] for _ in range(_TOP + 1)]
        for s in segs:
            groups[names.index(s.name) if s.name in names else _TOP].append(s)
        with self._fig.batch_update():
            self._fig.layout.yaxis.categoryarray = self.workers
            self._fig.layout.yaxis.categoryorder = "array"
            for i, (trace, group) in enumerate(zip(self._fig.data, groups, strict=True)):
                trace.name = names[i] if i < len(names) else "other"
                trace.showlegend = bool(group)
                trace.y = [s.worker for s in group]
                trace.base = [s.start - t0 for s in group]
                trace.x = [max(s.end - s.start, 1e-3) for s in group]
                trace.hovertext = [
                    f"{s.name} ({s.state})<br>{s.end - s.start:.3f} s on worker {s.worker}"
                    for s in group
                ]

    def _picture(self, state: EventAggregator) -> str:
        return timeline_picture(self.segments, self.workers)

    def _text(self, state: EventAggregator) -> str:
        self.segments = self._segments(state)
        lines = [f"Timeline: {len(self.segments)} task attempts on {len(self.workers)} workers"]
        for w in self.workers[:32]:
            mine = [s for s in self.segments if s.worker == w]
            busy = sum(s.end - s.start for s in mine)
            span = max(s.end for s in mine) - min(s.start for s in mine)
            lines.append(f"  worker {w}: {len(mine)} tasks, busy {busy:.2f} s of {span:.2f} s")
        return "\n".join(lines)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the recorded attempts as a Chrome trace file; returns its path."""
        return write_chrome_trace(path, self.state)


def _worker_order(key: str) -> tuple[str, int, str]:
    node, _, wid = key.rpartition(":")
    return (node, int(wid), "") if wid.isdigit() else (node, -1, wid)


def write_chrome_trace(path: str | os.PathLike[str], state: EventAggregator | None = None) -> Path:
    """Write the task attempts recorded for the current session as a Chrome trace file
    (open it in ``chrome://tracing`` or https://ui.perfetto.dev), like ``ray.timeline``.

    Tasks are recorded while a widget (or this call) listens to the cluster, and the head
    keeps the latest 10,000 events of those periods.

    Example::

        nbray.timeline("trace.json")
    """
    out = Path(path)
    if state is None:
        hub = hub_for()
        detach = hub.attach(_ignore)
        try:
            hub.sync()
            events = hub.state.chrome_trace()
        finally:
            detach()
    else:
        events = state.chrome_trace()
    out.write_text(json.dumps(events))
    return out


def _ignore(*_: Any) -> None:
    return None
