"""TaskGraph: the DAG of tasks and actor calls, edges from ObjectRef arguments, coloured by
state and updated live; tasks of one function and stage merge into one node once the graph
is large.

    task events ──▶ EventAggregator.graph(scope) ──▶ layered layout (stage = column)
                                                 ──▶ plotly: one edge trace, one trace per state
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

import ipywidgets
import plotly.graph_objects as go

from nbray._model.engine import Engine
from nbray._model.object_ref import ObjectRef

from .base import LiveWidget
from .hub import _current_cell
from .pictures import graph_picture
from .state import STATE_COLORS, STATES, EventAggregator, GraphNode, GraphView

__all__ = ["TaskGraph"]

Scope = str | int | ObjectRef | Sequence[ObjectRef]


class TaskGraph(LiveWidget):
    """Live DAG of tasks: a cell's (``scope="cell"``, the default: the cell that made the
    widget), a cell number's, some refs' (and what they depend on) or the whole session's.

    Example::

        refs = [square.remote(i) for i in range(4)]
        total = add_all.remote(*refs)
        graph = nbray.task_graph(total)     # five nodes, four edges
        graph.nodes, graph.edges
    """

    def __init__(
        self,
        scope: Scope = "cell",
        *,
        group_above: int = 150,
        engine: Engine | None = None,
        frontend: bool | None = None,
    ) -> None:
        self.scope = _resolve_scope(scope)
        self.group_above = group_above
        self.view = GraphView([], [], False, 0)
        super().__init__(engine, frontend=frontend)

    # --- model -----------------------------------------------------------------------------

    @property
    def nodes(self) -> list[GraphNode]:
        """Nodes as last computed (one per task, or per function and stage when grouped)."""
        return self.view.nodes

    @property
    def edges(self) -> list[tuple[int, int]]:
        """(dependency, dependent) pairs of indices into ``nodes``."""
        return self.view.edges

    # --- views -----------------------------------------------------------------------------

    def _build(self) -> list[ipywidgets.Widget]:
        traces: list[Any] = [
            go.Scatter(
                x=[],
                y=[],
                mode="lines",
                line={"color": "#9ca3af", "width": 1},
                hoverinfo="skip",
                showlegend=False,
            )
        ]
        for s in STATES:
            traces.append(
                go.Scatter(
                    x=[],
                    y=[],
                    mode="markers+text",
                    name=s,
                    hovertext=[],
                    hoverinfo="text",
                    text=[],
                    textposition="top center",
                    textfont={"size": 10},
                    marker={"color": STATE_COLORS[s], "size": [], "line": {"width": 1}},
                )
            )
        self._fig = go.FigureWidget(
            data=traces,
            layout=go.Layout(
                height=360,
                margin={"l": 10, "r": 10, "t": 35, "b": 10},
                title={"text": "Task graph", "font": {"size": 13}},
                xaxis={"visible": False},
                yaxis={"visible": False},
                legend={"orientation": "h", "y": -0.02},
                plot_bgcolor="white",
            ),
        )
        self._summary = ipywidgets.HTML()
        return [self._summary, self._fig]

    def _refresh(self, state: EventAggregator, gone: str) -> None:
        self.view = state.graph(self.scope, group_above=self.group_above)
        super()._refresh(state, gone)

    def _draw(self, state: EventAggregator) -> None:
        view = self.view
        pos = layout(view.nodes)
        ex: list[float | None] = []
        ey: list[float | None] = []
        for a, b in view.edges:
            ex += [pos[a][0], pos[b][0], None]
            ey += [pos[a][1], pos[b][1], None]
        biggest = max((n.count for n in view.nodes), default=1)
        last_stage = max((n.stage for n in view.nodes), default=0)
        with self._fig.batch_update():
            self._fig.layout.xaxis.range = [-0.6, last_stage + 0.6]  # room for the labels
            self._fig.data[0].x, self._fig.data[0].y = ex, ey
            for trace, s in zip(self._fig.data[1:], STATES, strict=True):
                idx = [i for i, n in enumerate(view.nodes) if n.state == s]
                trace.x = [pos[i][0] for i in idx]
                trace.y = [pos[i][1] for i in idx]
                trace.hovertext = [hover(view.nodes[i]) for i in idx]
                trace.marker.size = [
                    10 + 20 * (view.nodes[i].count / biggest) ** 0.5 if view.grouped else 12
                    for i in idx
                ]
                # failures inside a group show as a thick red outline
                trace.marker.line.color = [
                    STATE_COLORS["FAILED"] if view.nodes[i].states.get("FAILED") else "#374151"
                    for i in idx
                ]
                trace.marker.line.width = [
                    3 if view.nodes[i].states.get("FAILED") else 1 for i in idx
                ]
                trace.text = [label(view.nodes[i], view.grouped, len(view.nodes)) for i in idx]
        self._summary.value = f"<small>{self._headline(state)}</small>"

    def _picture(self, state: EventAggregator) -> str:
        v = self.view
        labels = [label(n, v.grouped, len(v.nodes)) for n in v.nodes]
        return graph_picture(v, layout(v.nodes), self._headline(state), labels)

    def _headline(self, state: EventAggregator) -> str:
        v = self.view
        counts: dict[str, int] = {}
        for n in v.nodes:
            for s, c in n.states.items():
                counts[s] = counts.get(s, 0) + c
        parts = ", ".join(f"{c} {s}" for s, c in counts.items() if c)
        grouped = f", grouped into {len(v.nodes)} nodes by function and stage" if v.grouped else ""
        hint = " (no tasks in this scope yet)" if not v.total_tasks else ""
        return (
            f"{v.total_tasks} tasks ({parts or 'none yet'}){grouped}; scope: "
            f"{self._scope_name()}{hint}"
        )

    def _scope_name(self) -> str:
        if isinstance(self.scope, int):
            return f"cell {self.scope}"
        if isinstance(self.scope, str):
            return self.scope
        return f"{len(self.scope)} refs"

    def _text(self, state: EventAggregator) -> str:
        v = state.graph(self.scope, group_above=self.group_above)
        self.view = v
        lines = [f"TaskGraph: {self._headline(state)}"]
        for n in v.nodes[:20]:
            label = f"{n.name} x{n.count}" if v.grouped else n.name
            lines.append(f"  [stage {n.stage}] {label}: {n.state}")
        if len(v.nodes) > 20:
            lines.append(f"  ... {len(v.nodes) - 20} more nodes")
        lines.append(f"  {len(v.edges)} edges")
        return "\n".join(lines)


def _resolve_scope(scope: Scope) -> str | int | list[str]:
    if isinstance(scope, ObjectRef):
        return [scope.hex()]
    if scope == "cell":
        cell = _current_cell()
        return cell if cell is not None else "session"
    if scope == "session" or isinstance(scope, int):
        return scope
    if isinstance(scope, str):
        raise ValueError(f"scope must be 'cell', 'session', a cell number or refs, got {scope!r}")
    refs = list(scope)
    bad = [r for r in refs if not isinstance(r, ObjectRef)]
    if bad:
        raise TypeError(f"scope takes ObjectRefs, got {type(bad[0]).__name__}: {bad[0]!r}")
    return [r.hex() for r in refs]


def layout(nodes: list[GraphNode]) -> list[tuple[float, float]]:
    """Columns by stage, nodes spread evenly (centred) within their column."""
    by_stage: dict[int, list[int]] = {}
    for i, n in enumerate(nodes):
        by_stage.setdefault(n.stage, []).append(i)
    pos: list[tuple[float, float]] = [(0.0, 0.0)] * len(nodes)
    for stage, idx in by_stage.items():
        k = len(idx)
        for j, i in enumerate(idx):
            pos[i] = (float(stage), (j - (k - 1) / 2) / max(k, 1))
    return pos


def label(n: GraphNode, grouped: bool, total: int) -> str:
    """Text next to a node: the function (and count) when the graph is small or grouped."""
    if grouped:
        failed = n.states.get("FAILED", 0)
        return f"{n.name} x{n.count}" + (f" ({failed} failed)" if failed else "")
    return n.name if total <= 40 else ""


def hover(n: GraphNode) -> str:
    dur = f"{n.duration:.3f} s" if n.duration is not None else "not started"
    lines = [f"<b>{html.escape(n.name)}</b> ({n.state})"]
    if n.count > 1:
        states = ", ".join(f"{c} {s}" for s, c in n.states.items())
        lines += [f"{n.count} tasks, stage {n.stage}: {states}", f"mean run time {dur}"]
    else:
        lines += [f"task {n.key}", f"run time {dur}"]
    if n.workers:
        lines.append("worker " + ", ".join(n.workers))
    if n.error:
        last = (n.error.strip().splitlines() or [""])[-1]
        lines.append("error: " + html.escape(last[:200]))
    return "<br>".join(lines)
