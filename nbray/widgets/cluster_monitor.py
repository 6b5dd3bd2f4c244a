"""ClusterMonitor: per node CPU (total and per core), memory, GPUs, object store; per
worker state and task; a rolling history of the last minutes.

    metrics / worker / task events ──▶ EventAggregator ──▶ ClusterMonitor._draw
        node table (HTML) · per-core bars (plotly) · history lines (plotly) · workers (HTML)
"""

from __future__ import annotations

import time
from typing import Any

import ipywidgets
import plotly.graph_objects as go

from .base import LiveWidget, Markup, bar, html_table, human_bytes
from .pictures import monitor_html
from .state import EventAggregator

__all__ = ["ClusterMonitor"]

_WORKER_COLORS = {"BUSY": "#3b82f6", "IDLE": "#22c55e", "DEAD": "#ef4444", "ACTOR": "#8b5cf6"}


class ClusterMonitor(LiveWidget):
    """Live per-node and per-worker resource use of the cluster.

    Example::

        monitor = nbray.widgets.ClusterMonitor()   # or nbray.monitor()
        monitor                                     # shows it in the notebook
        monitor.num_cpus                            # CPUs of the nodes, from their samples
    """

    # --- model -----------------------------------------------------------------------------

    @property
    def num_cpus(self) -> int:
        """Total CPUs of the nodes that reported metrics."""
        return sum(int(n["sample"].get("num_cpus", 0)) for n in self.state.nodes())

    @property
    def cores(self) -> list[float]:
        """CPU % of each core, node after node, as last drawn."""
        return [
            float(p)
            for n in self.state.nodes()
            for p in n["sample"].get("cpu_percent_per_core", [])
        ]

    # --- views -----------------------------------------------------------------------------

    def _build(self) -> list[ipywidgets.Widget]:
        self._nodes_html = ipywidgets.HTML()
        # CPU and memory are the whole machine's (psutil), not only the cluster's workers
        self._cores = _percent_figure(
            "CPU per core (whole machine)",
            420,
            data=[go.Bar(x=[], y=[], marker_color="#3b82f6", name="CPU %")],
        )
        self._history = _percent_figure(
            "Last minutes (whole machine)",
            520,
            xaxis={"title": "seconds ago", "autorange": "reversed"},
            # under the plot: above it, a line at 100% ran under the legend
            legend={"orientation": "h", "x": 0, "y": -0.45, "yanchor": "top"},
            margin={"l": 40, "r": 10, "t": 35, "b": 70},
            height=250,
        )
        self._workers_html = ipywidgets.HTML()
        return [
            self._nodes_html,
            ipywidgets.HBox([self._cores, self._history]),
            self._workers_html,
        ]

    def _nodes_table(self, nodes: list[dict[str, Any]]) -> str:
        return html_table(
            [
                "node",
                "CPUs",
                "CPU (whole machine)",
                "memory (whole machine)",
                "GPUs",
                "object store",
            ],
            [self._node_row(n) for n in nodes],
        )

    def _workers_table(self, state: EventAggregator) -> str:
        rows = state.worker_rows()
        if not rows:
            return "<i>no worker reported yet</i>"
        return html_table(
            ["worker", "pid", "state", "task", "CPU", "memory"],
            [self._worker_row(w) for w in rows[-64:]],
        )

    def _picture(self, state: EventAggregator) -> str:
        nodes = state.nodes()
        return monitor_html(
            self._nodes_table(nodes), nodes, time.time(), self._workers_table(state)
        )

    def _draw(self, state: EventAggregator) -> None:
        nodes = state.nodes()
        self._nodes_html.value = self._nodes_table(nodes)
        xs, ys = [], []
        for n in nodes:
            prefix = f"{n['node_id'][:6]}:" if len(nodes) > 1 else ""
            for i, p in enumerate(n["sample"].get("cpu_percent_per_core", [])):
                xs.append(f"{prefix}{i}")
                ys.append(p)
        now = time.time()
        lines: list[Any] = []
        for n in nodes:
            hist = n["history"]
            ago = [now - h[0] for h in hist]
            short = n["node_id"][:6]
            lines.append(go.Scatter(x=ago, y=[h[1] for h in hist], name=f"{short} CPU %"))
            lines.append(go.Scatter(x=ago, y=[h[2] for h in hist], name=f"{short} memory %"))
            if any(h[4] is not None for h in hist):
                lines.append(go.Scatter(x=ago, y=[h[4] for h in hist], name=f"{short} GPU %"))
        with self._cores.batch_update():
            self._cores.data[0].x = xs
            self._cores.data[0].y = ys
        with self._history.batch_update():
            if len(self._history.data) != len(lines):
                self._history.data = []
                for line in lines:
                    self._history.add_trace(line)
            else:
                for trace, line in zip(self._history.data, lines, strict=True):
                    trace.x, trace.y = line.x, line.y
        self._workers_html.value = self._workers_table(state)

    @staticmethod
    def _node_row(n: dict[str, Any]) -> list[Any]:
        s = n["sample"]
        gpus = s.get("gpus") or []
        gpu = (
            Markup(
                "<br>".join(
                    f"{g['name']}: {bar(g['utilization'], '#8b5cf6', 60)} "
                    f"{human_bytes(g['memory_used'])}/{human_bytes(g['memory_total'])}"
                    for g in gpus
                )
            )
            if gpus
            else "none"
        )
        return [
            n["node_id"][:12],
            s.get("num_cpus", "?"),
            bar(s.get("cpu_percent", 0.0)),
            Markup(
                f"{bar(s.get('memory_percent', 0.0), '#f59e0b')} "
                f"{human_bytes(s.get('memory_used', 0))} / {human_bytes(s.get('memory_total', 0))}"
            ),
            gpu,
            human_bytes(s.get("object_store_bytes", 0)),
        ]

    @staticmethod
    def _worker_row(w: dict[str, Any]) -> list[Any]:
        st = w.get("state", "?")
        color = _WORKER_COLORS.get(st, "#6b7280")
        exit_code = w.get("exit_code")
        label = f"{st} (exit {exit_code})" if st == "DEAD" and exit_code is not None else st
        return [
            w["worker"],
            w.get("pid", ""),
            Markup(f'<span style="color:{color}">{label.lower()}</span>'),
            w.get("task", ""),
            f"{w.get('cpu_percent', 0.0):.0f}%",
            human_bytes(w.get("rss", 0)),
        ]

    def _text(self, state: EventAggregator) -> str:
        lines = ["ClusterMonitor"]
        for n in state.nodes():
            s = n["sample"]
            lines.append(
                f"  node {n['node_id'][:12]}: {s.get('num_cpus', '?')} CPUs "
                f"{s.get('cpu_percent', 0.0):.0f}% | memory {s.get('memory_percent', 0.0):.0f}% "
                f"of {human_bytes(s.get('memory_total', 0))} | GPUs {len(s.get('gpus') or [])} "
                f"| object store {human_bytes(s.get('object_store_bytes', 0))}"
            )
        if len(lines) == 1:
            lines.append("  no metrics received yet")
        states: dict[str, int] = {}
        for w in state.worker_rows():
            k = str(w.get("state", "?")).lower()
            states[k] = states.get(k, 0) + 1
        if states:
            lines.append("  workers: " + ", ".join(f"{v} {k}" for k, v in sorted(states.items())))
        return "\n".join(lines)


def _percent_figure(title: str, width: int, data: Any = None, **layout: Any) -> go.FigureWidget:
    """A small live chart with a 0-100 % y axis."""
    settings: dict[str, Any] = {
        "title": {"text": title, "font": {"size": 13}},
        "height": 220,
        "width": width,
        "margin": {"l": 40, "r": 10, "t": 35, "b": 30},
        "yaxis": {"range": [0, 100], "title": "%"},
    }
    settings.update(layout)
    return go.FigureWidget(data=data, layout=go.Layout(**settings))
