"""Static pictures of the widgets: plain HTML with inline SVG, no script.

    widget state ──▶ graph_svg / timeline_svg / monitor_html / comparison_svg / progress_html
                 ──▶ the ``text/html`` entry of the widget's output, next to its live view

A live widget needs its kernel; the picture does not. nbconvert's HTML export, nbviewer and
GitHub show the ``text/html`` entry of an output, and so does JupyterLab when the notebook
is not trusted or the live view cannot be drawn. ``snapshot.py`` keeps the entry current.

Each function is pure (data in, a string out) and escapes every text it places.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

from .state import STATE_COLORS, STATES, GraphNode, GraphView, Segment

__all__ = [
    "PICTURE_CLASS",
    "comparison_svg",
    "graph_svg",
    "monitor_html",
    "progress_html",
    "timeline_svg",
]

# every picture's outer element carries this class (and a data-nbray-picture="<kind>")
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
        f'<div class="{PICTURE_CLASS}" data-nbray-picture="{kind}" style="{_FONT}">'
        f'<div style="font-weight:600;font-size:12px;margin:2px 0">{_esc(title)}</div>'
        f"{body}{foot}</div>"
    )


def _svg(width: float, height: float, body: str, label: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {width:.0f} {height:.0f}" role="img" aria-label="{_esc(label)}">'
        f"{body}</svg>"
    )


def _text(x: float, y: float, text: str, *, anchor: str = "start", color: str = "#374151") -> str:
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" fill="{color}" '
        f'font-size="10">{_esc(text)}</text>'
    )


def _legend(items: Sequence[tuple[str, str]]) -> str:
    return " ".join(
        f'<span style="white-space:nowrap"><span style="display:inline-block;width:9px;'
        f'height:9px;background:{color};margin:0 3px 0 8px"></span>{_esc(name)}</span>'
        for name, color in items
    )


# --- task graph ------------------------------------------------------------------------------


def graph_svg(
    view: GraphView, positions: Sequence[tuple[float, float]], headline: str, labels: list[str]
) -> str:
    """The task graph as drawn live: columns by stage, one dot per node coloured by state
    (a red ring when some of a group failed), edges from dependency to dependent; hovering a
    dot shows its function, count and states (an SVG ``title``)."""
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

    def at(p: tuple[float, float]) -> tuple[float, float]:
        # y in [-0.5, 0.5] from graph.layout; stage index as x
        return 20 + col * (p[0] + 0.5), height / 2 + p[1] * (height - 40)

    body = []
    for a, b in view.edges:
        (x1, y1), (x2, y2) = at(positions[a]), at(positions[b])
        body.append(
            f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" '
            f'stroke="{_GREY}" stroke-width="1"/>'
        )
    biggest = max(n.count for n in view.nodes)
    for i, n in enumerate(view.nodes):
        x, y = at(positions[i])
        r = (5 + 10 * (n.count / biggest) ** 0.5) if view.grouped else 6
        failed = bool(n.states.get("failed"))
        ring = (
            f'stroke="{STATE_COLORS["failed"]}" stroke-width="3"'
            if failed
            else ('stroke="#374151" stroke-width="1"')
        )
        body.append(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{r:.1f}" fill="{STATE_COLORS[n.state]}" {ring}>'
            f"<title>{_esc(_node_hover(n))}</title></circle>"
        )
        if labels[i]:
            body.append(_text(x, y - r - 3, labels[i], anchor="middle"))
    legend = _legend(
        [(s, STATE_COLORS[s]) for s in STATES if any(n.state == s for n in view.nodes)]
    )
    return _frame(
        "task-graph",
        "Task graph",
        _svg(width, height, "".join(body), headline),
        f"{_esc(headline)}<br>{legend}",
    )


def _node_hover(n: GraphNode) -> str:
    states = ", ".join(f"{c} {s}" for s, c in n.states.items())
    text = f"{n.name} ({n.state}): {n.count} task{'s' if n.count != 1 else ''}, {states}"
    if n.error:
        text += " | error: " + (n.error.strip().splitlines() or [""])[-1][:200]
    return text


# --- timeline --------------------------------------------------------------------------------


def timeline_svg(segments: Sequence[Segment], workers: Sequence[str]) -> str:
    """Each task attempt as a bar on its worker's row, coloured by function (the busiest
    eight, then grey), with a seconds axis; the newest 2,000 attempts."""
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
    height = 30 + row_h * max(len(rows), 1)
    body = []
    for w, i in rows.items():
        body.append(_text(left - 6, 14 + row_h * i + 9, w, anchor="end"))
    for s in segs:
        if s.worker not in rows:
            continue
        x = left + plot_w * (s.start - t0) / span
        bw = max(plot_w * (s.end - s.start) / span, 0.8)
        y = 14 + row_h * rows[s.worker]
        body.append(
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{bw:.1f}" height="{row_h - 5:.0f}" '
            f'fill="{color.get(s.name, _GREY)}"><title>{_esc(s.name)} ({_esc(s.state)}) '
            f"{s.end - s.start:.3f} s on worker {_esc(s.worker)}</title></rect>"
        )
    axis_y = height - 12
    for k in range(5):
        x = left + plot_w * k / 4
        at = span * k / 4
        body.append(
            _text(
                x, axis_y + 9, f"{at * 1000:.0f} ms" if span < 1 else f"{at:.2f} s", anchor="middle"
            )
        )
    legend = [(n, color[n]) for n in top] + ([("other", _GREY)] if len(counts) > len(top) else [])
    note = (
        f"{len(segs)} task attempts on {len(rows)} workers over {span:.2f} s<br>{_legend(legend)}"
    )
    return _frame("timeline", title, _svg(left + plot_w + 20, height, "".join(body), title), note)


# --- cluster monitor ---------------------------------------------------------------------------


def monitor_html(
    nodes_table: str, nodes: Sequence[dict[str, Any]], now: float, workers_table: str
) -> str:
    """The monitor's node table, each node's CPU per core and its last minutes of CPU and
    memory use (lines), and the worker table. CPU and memory are the whole machine's."""
    charts = []
    for n in nodes:
        short = _esc(n["node_id"][:6])
        cores = [float(p) for p in n["sample"].get("cpu_percent_per_core", [])]
        charts.append(_cores_svg(cores, f"node {short}: CPU per core (whole machine)"))
        charts.append(_history_svg(n["history"], now, f"node {short}: last minutes"))
    body = (
        nodes_table
        + f'<div style="display:flex;flex-wrap:wrap;gap:12px;margin:4px 0">{"".join(charts)}</div>'
        + workers_table
    )
    return _frame("monitor", "Cluster monitor", body)


def _cores_svg(cores: Sequence[float], title: str) -> str:
    width, height, top, bottom = 300.0, 120.0, 16.0, 14.0
    plot_h = height - top - bottom
    body = [_text(4, 11, title)]
    n = max(len(cores), 1)
    slot = (width - 30) / n
    for i, p in enumerate(cores):
        h = plot_h * max(0.0, min(p, 100.0)) / 100
        x = 26 + slot * i
        body.append(
            f'<rect x="{x + slot * 0.1:.1f}" y="{top + plot_h - h:.1f}" width="{slot * 0.8:.1f}" '
            f'height="{h:.1f}" fill="#3b82f6"><title>core {i}: {p:.0f}%</title></rect>'
        )
    body += _percent_axis(top, plot_h, width)
    return _svg(width, height, "".join(body), title)


def _history_svg(history: Sequence[Sequence[Any]], now: float, title: str) -> str:
    width, height, top, bottom = 360.0, 120.0, 16.0, 14.0
    plot_h = height - top - bottom
    body = [_text(4, 11, title)]
    if history:
        oldest = max(now - float(history[0][0]), 1.0)
        series = [(1, "#3b82f6", "CPU %"), (2, "#f59e0b", "memory %"), (4, "#8b5cf6", "GPU %")]
        legend_x = width - 8.0
        for column, color, name in reversed(series):
            points = [
                (26 + (width - 30) * (1 - (now - float(h[0])) / oldest), float(h[column]))
                for h in history
                if len(h) > column and h[column] is not None
            ]
            if not points:
                continue
            pts = " ".join(
                f"{x:.1f},{top + plot_h * (1 - min(v, 100.0) / 100):.1f}" for x, v in points
            )
            body.append(
                f'<polyline points="{pts}" fill="none" stroke="{color}" stroke-width="1.5"/>'
            )
            # the legend sits in the title row, above the plot: a 100% line never hides it
            body.append(_text(legend_x, 11, name, anchor="end", color=color))
            legend_x -= 6.5 * len(name) + 8
        body.append(_text(width - 4, height - 2, f"{oldest:.0f} s ago … now", anchor="end"))
    body += _percent_axis(top, plot_h, width)
    return _svg(width, height, "".join(body), title)


def _percent_axis(top: float, plot_h: float, width: float) -> list[str]:
    out = []
    for v in (0, 50, 100):
        y = top + plot_h * (1 - v / 100)
        out.append(
            f'<line x1="24" y1="{y:.1f}" x2="{width - 4:.1f}" y2="{y:.1f}" stroke="#e5e7eb"/>'
        )
        out.append(_text(20, y + 3, f"{v}", anchor="end", color="#6b7280"))
    return out


# --- progress and comparison --------------------------------------------------------------------


def progress_html(fraction: float, summary: str, color: str) -> str:
    """A bar and its summary line (``get: 8/8 done, 0 failed, ...``)."""
    pct = max(0.0, min(1.0, fraction)) * 100
    body = (
        f'<div style="display:flex;align-items:center;gap:8px">'
        f'<div style="width:320px;height:12px;background:#e5e7eb;border-radius:2px">'
        f'<div style="width:{pct:.1f}%;height:12px;background:{color};border-radius:2px"></div>'
        f"</div><span>{_esc(summary)}</span></div>"
    )
    return (
        f'<div class="{PICTURE_CLASS}" data-nbray-picture="progress" style="{_FONT}">{body}</div>'
    )


def comparison_svg(runs: Sequence[Any]) -> str:
    """Wall time in the kernel and on the cluster per label (grouped bars), each cluster bar
    marked with its speedup, and one summary line per run under the chart."""
    title = "Kernel vs cluster: wall time (lower is better)"
    if not runs:
        return _frame("comparison", title, "", "no run yet")
    top_s = max(max(r.kernel_wall, r.cluster_wall) for r in runs) or 1.0
    left, group_w, plot_h, top = 50.0, 150.0, 160.0, 20.0
    width = left + group_w * len(runs) + 20
    height = top + plot_h + 34
    body = []
    for i, r in enumerate(runs):
        x0 = left + group_w * i + 20
        for j, (value, color) in enumerate(
            ((r.kernel_wall, "#636efa"), (r.cluster_wall, "#ef553b"))
        ):
            h = plot_h * value / top_s
            x = x0 + 52 * j
            body.append(
                f'<rect x="{x:.1f}" y="{top + plot_h - h:.1f}" width="46" height="{h:.1f}" '
                f'fill="{color}"><title>{value:.2f} s wall</title></rect>'
            )
            body.append(_text(x + 23, top + plot_h - h - 3, f"{value:.2f} s", anchor="middle"))
        body.append(_text(x0 + 49, top + plot_h + 14, r.label[:28], anchor="middle"))
        body.append(_text(x0 + 49, top + plot_h + 27, r.headline(), anchor="middle"))
    body.append(
        f'<line x1="{left}" y1="{top + plot_h}" x2="{width - 10:.0f}" y2="{top + plot_h}" '
        'stroke="#9ca3af"/>'
    )
    lines = "<br>".join(_esc(r.summary()) for r in runs)
    legend = _legend([("kernel (serial)", "#636efa"), ("cluster", "#ef553b")])
    return _frame(
        "comparison", title, _svg(width, height, "".join(body), title), f"{legend}<br>{lines}"
    )
