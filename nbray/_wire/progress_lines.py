"""Progress-bar states inside task output: found where task output reaches the driver.

    tqdm bar in a task ──print──▶ one JSON line with Ray's tqdm magic token
        ──▶ task output ──▶ Client._on_output (driver only) ──▶ intercept()
        ──▶ the registered sink (nbray.experimental.tqdm_ray draws the bar in the cell)
        └─▶ the other lines go on to the output routing unchanged

The line format is Ray's (``ray.experimental.tqdm_ray``), so on the Ray engine Ray's own
driver recognises the same lines. The sink is handed down by the faces (``nbray``'s
``__init__`` sets ``sink``), so this module knows nothing of widgets.
"""

from __future__ import annotations

from collections.abc import Callable

TYPE_CHECKING = False  # typing is not imported: see nbray/_base/lazy.py
if TYPE_CHECKING:
    from typing import Any

__all__ = ["MAGIC", "intercept", "sink"]

MAGIC = "__ray_tqdm_magic_token__"
_START = '{"__magic_token__"'
# json and logging load with the first bar: ``import nbray`` imports this module

#: called as ``sink(state, task_id, client)`` for each bar state (set by ``nbray``)
sink: Callable[[dict[str, Any], int, Any], None] | None = None


def intercept(msg: Any, client: Any) -> Any | None:
    """``msg`` (a task's ``Output``) without its bar-state lines, which go to the sink;
    ``None`` when nothing else is left."""
    import json

    kept = []
    for line in msg.text.splitlines(keepends=True):
        start = line.find(_START)
        if start < 0 or MAGIC not in line:
            kept.append(line)
            continue
        try:
            state = json.loads(line[start:])
        except ValueError:  # not ours after all (or cut): show it as it is
            kept.append(line)
            continue
        _deliver(state, msg.task_id, client)
    text = "".join(kept)
    if not text:
        return None
    return msg if text == msg.text else msg._replace(text=text)


def _deliver(state: dict[str, Any], task_id: int, client: Any) -> None:
    if sink is None:
        return
    try:
        sink(state, task_id, client)
    except Exception:  # a broken bar must never break the output routing
        import logging

        logging.getLogger("nbray.progress").exception("showing a progress bar from a task failed")
