"""Static pictures of the widgets: plain HTML, boxes placed with inline CSS, no script.

    widget state ──▶ graph_picture / timeline_picture / monitor_html / comparison_picture /
                     progress_html
                 ──▶ the ``text/html`` entry of the widget's output, next to its live view

A live widget needs its kernel; the picture does not. nbconvert's HTML export, nbviewer and
GitHub show the ``text/html`` entry of an output, and so does JupyterLab: itself when the
notebook is not trusted, through nbray's extension (frontend/src/pictures.ts, which finds
the picture by its ``PICTURE_CLASS``) while ipywidgets has no live view in a trusted one.
``base.LiveWidget.snapshot`` keeps the entry current. Only ``div``s with
``position``/``left``/``top``/``width``/``height``/``background-color`` styles are used:
JupyterLab's sanitizer keeps those in untrusted HTML (the extension sanitises the picture
too), and drops SVG and ``data:`` images.

Each function is pure (data in, a string out) and escapes every text it places.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

from .state import STATE_COLORS, STATES, GraphNode, GraphView, Segment

__all__ = [
    "PICTURE_CLASS",
    "comparison_picture",
    "graph_picture",
    "monitor_html",
    "progress_html",
    "timeline_picture",
]

# every picture's outer element has this class and "<PICTURE_CLASS>-<kind>" (kind: monitor,
# progress, task-graph, timeline, comparison); marks inside have "nbray-mark-<node|bar|core>"
# (JupyterLab's sanitizer keeps class attributes, not data-* ones); the JupyterLab extension
# finds a picture by its opening 'class="<PICTURE_CLASS> <PICTURE_CLASS>-' (pictures.ts)
PICTURE_CLASS = "nbray-picture"
_FONT = "font-family:system-ui,-apple-system,'Segoe UI',sans-serif;font-size:11px"
_PALETTE = ("#3b82f6", "#22c55e", "#f59e0b", "#8b5cf6", "#14b8a6", "#ec4899", "#84cc16", "#0ea5e9")
_GREY = "#9ca3af"
_MAX_BARS = 2000  # timeline bars drawn in a picture (the newest)


def _esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def _frame(kind: str, title: str, body: str, note: str = "") -> str:
    """The outer ``div`` of a picture: a title, the body and an optional note under it."""
    foot = f'<div style="color:#6b7280">{note}</div>' if note else ""
    return (
        f'<div class="{PICTURE_CLASS} {PICTURE_CLASS}-{kind}" style="{_FONT}">'
        f'<div style="font-weight:600;font-size:12px;margin:2px 0">{_esc(title)}</div>'
        f"{body}{foot}</div>"
    )


class _Canvas:
    """Boxes and words placed in pixels: ``div``s with inline ``position``/``left``/``top``
    styles, which JupyterLab's HTML sanitizer keeps for untrusted outputs (it drops SVG
    and ``data:`` images)."""

    def __init__(self, width: float, height: float, label: str) -> None:
        self.width, self.height, self.label = width, height, label
        self.parts: list[str] = []

    def box(
        self,
        x: float,
        y: float,
        w: float,
        h: float,
        color: str,
        *,
        title: str = "",
        round_: bool = False,
        ring: str = "",
        kind: str = "",
    ) -> None:
        extra = ";border-radius:50%" if round_ else ""
        if ring:
            extra += f";border:{ring};box-sizing:border-box"
        tip = f' title="{_esc(title)}"' if title else ""
        mark = f' class="nbray-mark-{kind}"' if kind else ""
        self.parts.append(
            f'<div{mark}{tip} style="position:absolute;left:{x:.1f}px;top:{y:.1f}px;'
            f"width:{max(w, 0.5):.1f}px;height:{max(h, 0.5):.1f}px;"
            f'background-color:{color}{extra}"></div>'
        )

    def text(
        self, x: float, y: float, text: str, *, anchor: str = "start", color: str = "#374151"
    ) -> None:
        """Words whose baseline-ish top is ``y``; ``anchor`` as in SVG: start, middle, end."""
        width = max(160.0, self.width - x) if anchor == "start" else 160.0
        left = {"start": x, "middle": x - width / 2, "end": x - width}[anchor]
        align = {"start": "left", "middle": "center", "end": "right"}[anchor]
        self.parts.append(
            f'<div style="position:absolute;left:{left:.1f}px;top:{y - 10:.1f}px;'
            f"width:{width:.0f}px;text-align:{align};color:{color};font-size:10px;"
            f'white-space:nowrap;overflow:hidden">{_esc(text)}</div>'
        )

    def hline(self, x1: float, x2: float, y: float, color: str = _GREY) -> None:
        self.box(min(x1, x2), y, abs(x2 - x1), 1, color)

    def vline(self, x: float, y1: float, y2: float, color: str = _GREY) -> None:
        self.box(x, min(y1, y2), 1, abs(y2 - y1), color)

    def html(self) -> str:
        return (
            f'<div role="img" aria-label="{_esc(self.label)}" style="position:relative;'
            f"width:{self.width:.0f}px;height:{self.height:.0f}px;overflow:hidden;"
            f'margin:2px 0">{"".join(self.parts)}</div>'
        )


def _legend(items: Sequence[tuple[str, str]]) -> str:
    return " ".join(
        f'<span style="white-space:nowrap"><span style="display:inline-block;width:9px;'
        f'height:9px;background:{color};margin:0 3px 0 8px"></span>{_esc(name)}</span>'
        for name, color in items
    )


# --- task graph ------------------------------------------------------------------------------


def graph_picture(
    view: GraphView, positions: Sequence[tuple[float, float]], headline: str, labels: list[str]
) -> str:
    """The task graph as drawn live: columns by stage, one dot per node coloured by state
    (a red ring when some of a group failed), edges from dependency to dependent drawn as
    elbows; hovering a dot shows its function, count and states."""
    if not view.nodes:
        return _frame("task-graph", "Task graph", "", _esc(headline))
    stages = max(int(x) for x, _ in positions) + 1
    per_stage: dict[int, int] = {}
    for n in view.nodes:
        per_stage[n.stage] = per_stage.get(n.stage, 0) + 1
    tallest = max(per_stage.values())
    col = 170.0
    width = max(320.0, col * stages + 40)
    height = min(max(120.0, 24.0 * tallest + 40), 520.0)
    canvas = _Canvas(width, height, headline)

    def at(p: tuple[float, float]) -> tuple[float, float]:
        # y in [-0.5, 0.5] from graph.layout; stage index as x
        return 20 + col * (p[0] + 0.5), height / 2 + p[1] * (height - 40)

    for a, b in view.edges:
        (x1, y1), (x2, y2) = at(positions[a]), at(positions[b])
        mid = x1 + (x2 - x1) * 0.5
        canvas.hline(x1, mid, y1)
        canvas.vline(mid, y1, y2)
        canvas.hline(mid, x2, y2)
    biggest = max(n.count for n in view.nodes)
    for i, n in enumerate(view.nodes):
        x, y = at(positions[i])
        r = (5 + 10 * (n.count / biggest) ** 0.5) if view.grouped else 6
        failed = bool(n.states.get("FAILED"))
        ring = f"3px solid {STATE_COLORS['FAILED']}" if failed else "1px solid #374151"
        canvas.box(
            x - r,
            y - r,
            2 * r,
            2 * r,
            STATE_COLORS[n.state],
            title=_node_hover(n),
            round_=True,
            ring=ring,
            kind="node",
        )
        if labels[i]:
            canvas.text(x, y - r - 2, labels[i], anchor="middle")
    legend = _legend(
        [(s.lower(), STATE_COLORS[s]) for s in STATES if any(n.state == s for n in view.nodes)]
    )
    return _frame("task-graph", "Task graph", canvas.html(), f"{_esc(headline)}<br>{legend}")


def _node_hover(n: GraphNode) -> str:
    states = ", ".join(f"{c} {s}" for s, c in n.states.items())
    text = f"{n.name} ({n.state}): {n.count} task{'s' if n.count != 1 else ''}, {states}"
    if n.error:
        text += " | error: " + (n.error.strip().splitlines() or [""])[-1][:200]
    return text


# --- timeline --------------------------------------------------------------------------------


def timeline_picture(segments: Sequence[Segment], workers: Sequence[str]) -> str:
    """Each task attempt as a bar on its worker's row, coloured by function (the busiest
    eight, then grey), with a time axis; the newest 2,000 attempts."""
    title = "Timeline (tasks per worker)"
    if not segments:
        return _frame("timeline", title, "", "no task has run yet in this session's view")
    segs = list(segments)[-_MAX_BARS:]
    t0 = min(s.start for s in segs)
    span = max(max(s.end for s in segs) - t0, 1e-3)
    counts: dict[str, int] = {}
    for s in segs:
        counts[s.name] = counts.get(s.name, 0) + 1
    top = sorted(counts, key=lambda k: -counts[k])[: len(_PALETTE)]
    color = {name: _PALETTE[i] for i, name in enumerate(top)}
    rows = {w: i for i, w in enumerate(workers)}
    left, plot_w, row_h = 90.0, 620.0, 18.0
    height = 34 + row_h * max(len(rows), 1)
    canvas = _Canvas(left + plot_w + 40, height, title)
    for w, i in rows.items():
        canvas.text(left - 6, 14 + row_h * i + 10, w, anchor="end")
    for s in segs:
        if s.worker not in rows:
            continue
        canvas.box(
            left + plot_w * (s.start - t0) / span,
            6 + row_h * rows[s.worker],
            max(plot_w * (s.end - s.start) / span, 0.8),
            row_h - 5,
            color.get(s.name, _GREY),
            title=f"{s.name} ({s.state}) {s.end - s.start:.3f} s on worker {s.worker}",
            kind="bar",
        )
    axis_y = height - 14
    canvas.hline(left, left + plot_w, axis_y - 4)
    for k in range(5):
        at = span * k / 4
        label = f"{at * 1000:.0f} ms" if span < 1 else f"{at:.2f} s"
        canvas.text(left + plot_w * k / 4, axis_y + 10, label, anchor="middle")
    legend = [(n, color[n]) for n in top] + ([("other", _GREY)] if len(counts) > len(top) else [])
    note = (
        f"{len(segs)} task attempts on {len(rows)} workers over {span:.2f} s<br>{_legend(legend)}"
    )
    return _frame("timeline", title, canvas.html(), note)


# --- cluster monitor ---------------------------------------------------------------------------


def monitor_html(
    nodes_table: str, nodes: Sequence[dict[str, Any]], now: float, workers_table: str
) -> str:
    """The monitor's node table, each node's CPU per core and its last minutes of CPU and
    memory use, and the worker table. CPU and memory are the whole machine's."""
    charts = []
    for n in nodes:
        short = n["node_id"][:6]
        cores = [float(p) for p in n["sample"].get("cpu_percent_per_core", [])]
        charts.append(_cores_picture(cores, f"node {short}: CPU per core (whole machine)"))
        charts.append(_history_picture(n["history"], now, f"node {short}: last minutes"))
    body = (
        nodes_table
        + f'<div style="display:flex;flex-wrap:wrap;gap:12px;margin:4px 0">{"".join(charts)}</div>'
        + workers_table
    )
    return _frame("monitor", "Cluster monitor", body)


def _cores_picture(cores: Sequence[float], title: str) -> str:
    width, height, top, bottom = 300.0, 120.0, 18.0, 12.0
    plot_h = height - top - bottom
    canvas = _Canvas(width, height, title)
    canvas.text(4, 12, title)
    _percent_axis(canvas, top, plot_h, width)
    slot = (width - 30) / max(len(cores), 1)
    for i, p in enumerate(cores):
        h = plot_h * max(0.0, min(p, 100.0)) / 100
        canvas.box(
            26 + slot * i + slot * 0.1,
            top + plot_h - h,
            slot * 0.8,
            h,
            "#3b82f6",
            title=f"core {i}: {p:.0f}%",
            kind="core",
        )
    return canvas.html()


def _history_picture(history: Sequence[Sequence[Any]], now: float, title: str) -> str:
    """CPU, memory (and GPU) % per sample as dots over time; the legend sits in the title
    row, above the plot, so a line at 100% never runs under it."""
    width, height, top, bottom = 360.0, 120.0, 18.0, 14.0
    plot_h = height - top - bottom
    canvas = _Canvas(width, height, title)
    canvas.text(4, 12, title)
    _percent_axis(canvas, top, plot_h, width)
    if history:
        oldest = max(now - float(history[0][0]), 1.0)
        series = [(1, "#3b82f6", "CPU %"), (2, "#f59e0b", "memory %"), (4, "#8b5cf6", "GPU %")]
        legend_x = width - 6.0
        for column, color, name in reversed(series):
            points = [
                (26 + (width - 34) * (1 - (now - float(h[0])) / oldest), float(h[column]))
                for h in history
                if len(h) > column and h[column] is not None
            ]
            if not points:
                continue
            for x, v in points:
                canvas.box(x - 1.5, top + plot_h * (1 - min(v, 100.0) / 100) - 1.5, 3, 3, color)
            canvas.text(legend_x, 12, name, anchor="end", color=color)
            legend_x -= 6.5 * len(name) + 8
        canvas.text(width - 4, height - 1, f"{oldest:.0f} s ago … now", anchor="end")
    return canvas.html()


def _percent_axis(canvas: _Canvas, top: float, plot_h: float, width: float) -> None:
    for v in (0, 50, 100):
        y = top + plot_h * (1 - v / 100)
        canvas.hline(24, width - 4, y, "#e5e7eb")
        canvas.text(20, y + 4, f"{v}", anchor="end", color="#6b7280")


# --- progress and comparison --------------------------------------------------------------------


def progress_html(fraction: float, summary: str, color: str) -> str:
    """A bar and its summary line (``get: 8/8 done, 0 failed, ...``)."""
    pct = max(0.0, min(1.0, fraction)) * 100
    body = (
        f'<div style="display:flex;align-items:center;gap:8px">'
        f'<div style="width:320px;height:12px;background-color:#e5e7eb;border-radius:2px">'
        f'<div style="width:{pct:.1f}%;height:12px;background-color:{color};border-radius:2px">'
        f"</div></div><span>{_esc(summary)}</span></div>"
    )
    return f'<div class="{PICTURE_CLASS} {PICTURE_CLASS}-progress" style="{_FONT}">{body}</div>'


def comparison_picture(runs: Sequence[Any]) -> str:
    """Wall time in the kernel and on the cluster per label (grouped bars), each group
    marked with its speedup (or "no remote work"), and one summary line per run."""
    title = "Kernel vs cluster: wall time (lower is better)"
    if not runs:
        return _frame("comparison", title, "", "no run yet")
    top_s = max(max(r.kernel_wall, r.cluster_wall) for r in runs) or 1.0
    left, group_w, plot_h, top = 20.0, 150.0, 160.0, 20.0
    width = left + group_w * len(runs) + 20
    canvas = _Canvas(width, top + plot_h + 36, title)
    for i, r in enumerate(runs):
        x0 = left + group_w * i + 20
        for j, (value, color) in enumerate(
            ((r.kernel_wall, "#636efa"), (r.cluster_wall, "#ef553b"))
        ):
            h = plot_h * value / top_s
            x = x0 + 52 * j
            canvas.box(x, top + plot_h - h, 46, h, color, title=f"{value:.2f} s wall", kind="bar")
            canvas.text(x + 23, top + plot_h - h - 3, f"{value:.2f} s", anchor="middle")
        canvas.text(x0 + 49, top + plot_h + 14, r.label[:28], anchor="middle")
        canvas.text(x0 + 49, top + plot_h + 28, r.headline(), anchor="middle")
    canvas.hline(left, width - 10, top + plot_h)
    lines = "<br>".join(_esc(r.summary()) for r in runs)
    legend = _legend([("kernel (serial)", "#636efa"), ("cluster", "#ef553b")])
    return _frame("comparison", title, canvas.html(), f"{legend}<br>{lines}")
