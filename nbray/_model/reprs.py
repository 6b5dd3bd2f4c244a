"""Compact HTML reprs for the objects a notebook user meets.

    ObjectRef._repr_html_ / ActorHandle._repr_html_ / ClusterContext._repr_html_ /
    TaskError._repr_html_ ──▶ these functions ──▶ Engine.object_info / actor_info /
    cluster_info / status (one request to the head) ──▶ a one-line table

Every function answers even when the cluster is gone: the repr then says so.
"""

from __future__ import annotations

import html
from typing import Any

__all__ = [
    "actor_html",
    "error_html",
    "human_size",
    "object_ref_html",
    "session_html",
    "session_text",
]

_STYLE = (
    "font-family:var(--jp-code-font-family,monospace);font-size:12px;"
    "border-collapse:collapse;margin:2px 0"
)
_CELL = "padding:1px 8px;text-align:left"
_STATE_COLOURS = {
    "READY": "#2e7d32",
    "FINISHED": "#2e7d32",
    "ALIVE": "#2e7d32",
    "RUNNING": "#1565c0",
    "PENDING": "#6d6d6d",
    "SUBMITTED": "#6d6d6d",
    "RESTARTING": "#ef6c00",
    "FAILED": "#c62828",
    "DEAD": "#c62828",
    "FREED": "#6d6d6d",
}


def _row(title: str, fields: dict[str, Any]) -> str:
    cells = "".join(
        f"<td style='{_CELL}'><span style='color:#888'>{html.escape(k)}</span> "
        f"{v if k == 'state' else html.escape(str(v))}</td>"
        for k, v in fields.items()
        if v not in (None, "")
    )
    return (
        f"<table style='{_STYLE}'><tr><td style='{_CELL}'><b>{html.escape(title)}</b>"
        f"</td>{cells}</tr></table>"
    )


def _state(state: str) -> str:
    colour = _STATE_COLOURS.get(state, "#6d6d6d")
    return f"<span style='color:{colour};font-weight:bold'>{html.escape(state)}</span>"


def human_size(n: float | None) -> str:
    """``1234567`` -> ``"1.2 MB"`` (decimal units); ``""`` for None."""
    if n is None:
        return ""
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "TB":
            break
        n /= 1000
    else:
        unit = "TB"
    return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"


def _owner(object_or_actor_id: int, engine: Any) -> str:
    client = getattr(engine, "client", None)
    owner = object_or_actor_id >> 32
    if client is not None and owner == getattr(client, "client_id", None):
        return "this kernel"
    return f"client {owner}"


def object_ref_html(ref: Any) -> str:
    """``ObjectRef(...)``: state, owner, size, producing task and node."""
    try:
        info = ref._engine.object_info([ref.id])[0]
    except Exception as exc:
        info = {"state": "UNKNOWN", "error": f"cluster not reachable ({type(exc).__name__})"}
    return _row(
        f"ObjectRef {ref.hex()}",
        {
            "state": _state(str(info.get("state", "UNKNOWN"))),
            "owner": _owner(ref.id, ref._engine),
            "size": human_size(info.get("size")),
            "task": info.get("task", ""),
            "node": str(info.get("node_id", ""))[:12],
            "": info.get("error", ""),
        },
    )


def actor_html(handle: Any) -> str:
    """``ActorHandle``: class, state, name, owner, process and node."""
    try:
        info = handle._engine.actor_info(handle._actor_id)
    except Exception as exc:
        info = {"state": "UNKNOWN", "error": f"cluster not reachable ({type(exc).__name__})"}
    return _row(
        f"Actor {handle._class_name} {handle.actor_id}",
        {
            "state": _state(str(info.get("state", "UNKNOWN"))),
            "name": info.get("name", ""),
            "owner": _owner(handle._actor_id, handle._engine),
            "pending calls": info.get("pending_calls", ""),
            "pid": info.get("pid") or "",
            "node": str(info.get("node_id", ""))[:12],
            "": info.get("error", ""),
        },
    )


def _session_facts(context: Any) -> tuple[dict[str, Any], dict[str, int]]:
    from . import session

    engine = session.get_engine()
    facts: dict[str, Any] = {
        "engine": context.engine,
        "address": context.address,
        "namespace": context.namespace,
    }
    tasks: dict[str, int] = {}
    if engine is None:
        facts["state"] = "shut down"
        return facts, tasks
    try:
        info = engine.cluster_info()
        facts["nodes"] = len(info["nodes"])
        facts["resources"] = ", ".join(f"{k} {v:g}" for k, v in sorted(info["total"].items()))
        facts["available"] = ", ".join(
            f"{k} {v:g}" for k, v in sorted(info["available"].items()) if v > 0
        )
        status = getattr(engine, "status", None)
        if status is not None:
            st = status()
            tasks = {k: int(v) for k, v in st.get("tasks", {}).items() if v}
            facts["workers"] = len(st.get("workers", {}))
            facts["actors"] = st.get("actors", 0)
    except Exception as exc:
        facts["state"] = f"cluster not reachable ({type(exc).__name__}: {exc})"
    return facts, tasks


def session_html(context: Any) -> str:
    """The session (``ClusterContext``): engine, address, nodes, resources, tasks by state."""
    facts, tasks = _session_facts(context)
    cell = _CELL
    rows = "".join(
        f"<tr><td style='{cell};color:#888'>{html.escape(k)}</td>"
        f"<td style='{cell}'>{html.escape(str(v))}</td></tr>"
        for k, v in facts.items()
    )
    if tasks:
        counts = " ".join(f"{_state(k)} {n:,}" for k, n in sorted(tasks.items()))
        rows += f"<tr><td style='{cell};color:#888'>tasks</td><td style='{cell}'>{counts}</td></tr>"
    return (
        f"<table style='{_STYLE}'><tr><th colspan=2 style='{cell}'>nbray session</th></tr>"
        f"{rows}</table>"
    )


def session_text(context: Any) -> str:
    """The session as plain text (``%nbray`` outside a notebook)."""
    facts, tasks = _session_facts(context)
    lines = ["nbray session"] + [f"  {k}: {v}" for k, v in facts.items()]
    if tasks:
        lines.append("  tasks: " + ", ".join(f"{k} {n:,}" for k, n in sorted(tasks.items())))
    return "\n".join(lines)


def _place(filename: str) -> str:
    """``Cell In[4]`` for a notebook cell's file, else the file name."""
    import sys

    get_ipython = getattr(sys.modules.get("IPython"), "get_ipython", None)
    shell = get_ipython() if get_ipython is not None else None
    number = getattr(getattr(shell, "compile", None), "_filename_map", {}).get(filename)
    return f"Cell In[{number}]" if number is not None else filename


def error_html(err: Any) -> str:
    """A ``TaskError``: the original error, the task, and where it was raised."""
    cause = getattr(err, "cause", None)
    what = f"{type(cause).__name__}: {cause}" if cause is not None else str(err)
    frames = getattr(err, "remote_frames", ())
    where = ""
    if frames:
        f = frames[-1]
        where = f"{_place(f.filename)}, line {f.lineno}, in {f.name}"
    return _row(
        f"TaskError in {getattr(err, 'function_name', '')}",
        {
            "state": _state("FAILED"),
            "task": getattr(err, "task_id", ""),
            "error": what,
            "at": where,
        },
    )
