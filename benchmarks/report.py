"""Markdown tables from the suite's results: one table per workload, one row per engine,
and for each compared metric a column with nbray's ratio to that engine.

    run.py ──results JSON──▶ render_markdown() ──▶ results/latest.md and stdout

A ratio always reads "nbray is Xx better" or "Xx worse": for a metric where higher is
better it is nbray / engine, where lower is better engine / nbray, and it is then turned
into words, so no one has to remember which way a number points.
"""

from __future__ import annotations

from typing import Any

from .engines import ENGINES
from .workloads import WORKLOADS, Metric, Sizes

ARROW = {"higher": "↑", "lower": "↓", None: ""}

#: (engine, peer) pairs compared on a line under each table where both ran: nbray's Ray
#: engine against Ray used directly (issue 17: within 5 %).
PAIRS = [("nbray_ray", "ray")]


def fmt_value(value: Any, metric: Metric) -> str:
    """A value for a table cell, with a precision that suits its kind."""
    if value is None:
        return "n/a"
    if metric.kind == "flag":
        return "yes" if value else "no"
    if metric.kind == "text":
        return str(value)
    v = float(value)
    if metric.kind == "count":
        return f"{v:,.0f}"
    if metric.kind == "rate":
        return f"{v:,.0f}" if v >= 100 else f"{v:.1f}"
    if metric.kind == "factor":
        return f"{v:.2f}"
    if metric.kind == "mb":
        return f"{v:,.0f}" if v >= 100 else f"{v:.1f}"
    if metric.kind == "ms":
        return f"{v:.2f}" if v < 100 else f"{v:,.0f}"
    # seconds
    if v == 0:
        return "0"
    if v < 0.001:
        return f"{v * 1e6:.0f} µs"
    if v < 1:
        return f"{v * 1e3:.1f} ms"
    return f"{v:.2f} s"


def ratio(nbray: Any, other: Any, better: str | None) -> float | None:
    """How many times better nbray is (> 1) or worse (< 1); None when not comparable."""
    if better is None or nbray is None or other is None:
        return None
    if isinstance(nbray, bool) or isinstance(other, bool):
        return None
    a, b = float(nbray), float(other)
    if a <= 0 or b <= 0:
        return None
    return a / b if better == "higher" else b / a


def fmt_ratio(r: float | None, emphasis: bool = True) -> str:
    """ "2.10x better" / "1.30x worse" (bold from 2x on, when ``emphasis``)."""
    if r is None:
        return "—"
    if 0.95 <= r <= 1.05:
        return f"≈ ({r:.2f}x)"
    text = f"{r:.2f}x better" if r > 1 else f"{1 / r:.2f}x worse"
    return f"**{text}**" if emphasis and (r >= 2 or r <= 0.5) else text


def _header(metric: Metric) -> str:
    unit = f"{metric.unit} " if metric.unit and metric.kind != "seconds" else ""
    arrow = ARROW[metric.better]
    suffix = f" ({unit}{arrow})".replace(" )", ")") if (unit or arrow) else ""
    return f"{metric.label}{suffix}"


def render_workload(name: str, cells: dict[str, Any], sizes: Sizes) -> list[str]:
    """The section of one workload: its description and its table."""
    workload = WORKLOADS[name](sizes)
    metrics = workload.metrics()
    lines = [f"### {workload.number}. {workload.title}", "", workload.describe(), ""]
    nbray = cells.get("nbray")
    nbray_ok = nbray is not None and nbray["status"] == "ok"
    head = ["engine"]
    for m in metrics:
        head.append(_header(m))
        if m.better and nbray is not None:
            head.append("nbray vs it")
    head += ["repeats", "load"]
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "|".join(["---"] + ["--:"] * (len(head) - 1)) + "|")
    footnotes: list[str] = []
    order = list(ENGINES)
    for engine in sorted(cells, key=lambda e: order.index(e) if e in order else len(order)):
        cell = cells[engine]
        row = [f"**{engine}**" if engine == "nbray" else engine]
        status = cell["status"]
        for m in metrics:
            if status in ("ok", "n/a"):
                row.append(fmt_value(cell["medians"].get(m.key), m))
            else:
                row.append(status)
            if m.better and nbray is not None:
                if engine == "nbray" or not nbray_ok or status != "ok":
                    row.append("—")
                else:
                    r = ratio(nbray["medians"].get(m.key), cell["medians"].get(m.key), m.better)
                    row.append(fmt_ratio(r, emphasis=engine != "serial"))
        row.append(str(cell.get("repeats") or "—"))
        load = cell.get("load1_before")
        row.append(f"{load:.2f}" if load is not None else "—")
        lines.append("| " + " | ".join(row) + " |")
        if status not in ("ok", "n/a", "not installed") and cell.get("error"):
            first = str(cell["error"]).strip().splitlines()[0][:400]
            footnotes.append(f"- {engine}: **{status}**: {first}")
        elif status == "not installed":
            footnotes.append(f"- {engine}: not installed ({cell.get('error')})")
        if cell.get("notes", {}).get("get_memory"):
            footnotes.append(
                f"- {engine}: `get` returned memory from `{cell['notes']['get_memory']}`"
            )
        if cell.get("leftovers"):
            footnotes.append(
                f"- {engine}: processes left behind after the run exited: "
                + "; ".join(f"`{x}`" for x in cell["leftovers"][:5])
            )
    for engine, peer in PAIRS:
        pair = pair_line(engine, peer, cells, metrics)
        if pair:
            lines += ["", pair]
    if footnotes:
        lines += ["", *footnotes]
    lines.append("")
    return lines


def pair_line(engine: str, peer: str, cells: dict[str, Any], metrics: list[Metric]) -> str:
    """The line "`engine` vs `peer`: metric ratio; ..." over the compared metrics, when both
    ran (ratios as in the `nbray vs it` column, with ``engine`` in nbray's place)."""
    a, b = cells.get(engine), cells.get(peer)
    if a is None or b is None or a["status"] != "ok" or b["status"] != "ok":
        return ""
    parts = [
        f"{m.label} {fmt_ratio(ratio(a['medians'].get(m.key), b['medians'].get(m.key), m.better))}"
        for m in metrics
        if m.better
    ]
    return f"`{engine}` vs `{peer}`: " + "; ".join(parts) + "." if parts else ""


def render_markdown(doc: dict[str, Any]) -> str:
    """The whole report: how it was run, on what, then one section per workload."""
    meta = doc["meta"]
    machine = meta["machine"]
    fields: dict[str, Any] = {
        k: tuple(v) if isinstance(v, list) else v for k, v in meta["sizes"].items()
    }
    sizes = Sizes(**fields)
    versions = ", ".join(f"{k} {v or 'not installed'}" for k, v in machine["versions"].items())
    if meta["mode"] == "quick":
        layout = "one fresh process tree per engine, with every workload in it"
    else:
        layout = (
            "a fresh process tree per engine and workload (cold start and footprint: one "
            "per repeat)"
        )
    budget = (
        f"; a workload stops repeating once it has run {meta['budget_s']:.0f} s"
        if meta["budget_s"]
        else ""
    )
    lines = [
        "# nbray benchmarks",
        "",
        f"- Run: {meta['started']}, {meta['mode']} mode, {meta['seconds']:.0f} s. Every "
        f"figure is the median over up to {meta['repeats']} repeats (column `repeats`: how "
        f"many were run{budget}).",
        f"- Machine: {machine['cpu_model']}, {machine['logical_cpus']} logical CPUs "
        f"({machine['physical_cores']} cores), {machine['memory_gb']} GB, {machine['platform']}, "
        f"Python {machine['python']}; nbray commit {str(machine.get('nbray_commit'))[:12]}.",
        f"- Every engine gets {meta['num_cpus']} worker processes; {layout}.",
        f"- Versions: {versions}.",
        "- Column `load`: the machine's 1-minute load average just before the engine's "
        "process started: the machine's other load. With more load than about half a CPU, "
        f"the figures are noisy. At the end: {meta['load_at_end']['load1']:.2f}.",
        "- ↑ higher is better, ↓ lower is better; `nbray vs it` says how many times better "
        "or worse nbray is than that row's engine on the column to its left "
        "(≈: within 5 %). n/a: the engine has no such feature. Against `serial`, the ratio "
        "is the cost of going through an engine at all. A line under a table compares "
        + ", ".join(f"`{e}` with `{p}`" for e, p in PAIRS)
        + " in the same words, where both ran.",
        "",
        "Engines: "
        + "; ".join(f"**{e}**: {d}" for e, d in meta["engine_descriptions"].items() if d)
        + ".",
        "",
    ]
    for name in WORKLOADS:
        if name in doc["results"]:
            lines += render_workload(name, doc["results"][name], sizes)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.report RESULTS.json``: print (and rewrite) its markdown."""
    import argparse
    import json
    from pathlib import Path

    parser = argparse.ArgumentParser(prog="python -m benchmarks.report", description=main.__doc__)
    parser.add_argument("results", type=Path, help="a latest.json written by benchmarks.run")
    args = parser.parse_args(argv)
    text = render_markdown(json.loads(args.results.read_text()))
    args.results.with_suffix(".md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
