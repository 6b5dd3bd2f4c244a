"""Which notebook cell ran when: the cell clock.

    load_ipython_extension ──▶ install(shell): the cell running now, from now on
    pre_run_cell ──▶ CellClock.started: (time.time(), the cell's In[N] number)
    a task's submission time ──▶ cell_at(when) ──▶ the cell that was running then

The widgets give this kernel's own tasks the cell that submitted them from the cell
router's record of their ids (routing.py); the others that are this kernel's work (tasks
that its tasks submit, the Ray engine's tasks) get the cell running when they were taken
in, by the head's or the engine's time stamp, on this machine's clock. Either way not the
cell running when the event arrives: a task graph opened in a later cell replays the
earlier cells' tasks, and those stay in their own cells.

Example::

    from nbray.magics import cells

    cells.cell_at(time.time())   # the cell running now (None outside IPython)
"""

from __future__ import annotations

import bisect
import threading
import time
from typing import Any

__all__ = ["CellClock", "cell_at", "install", "installed", "running_cell"]

MAX_CELLS = 10_000  # the oldest starts are forgotten past this many (their tasks: no cell)


def running_cell(shell: Any) -> int | None:
    """The In[N] number of the cell running now (IPython 9 counts ``execution_count`` up
    before it runs a cell, and before ``pre_run_cell``); None without a shell."""
    count = getattr(shell, "execution_count", None)
    return max(0, count - 1) if isinstance(count, int) else None


class CellClock:
    """The start times of one shell's cells, in order."""

    def __init__(self, shell: Any) -> None:
        self.shell = shell
        self._lock = threading.Lock()
        self._times: list[float] = []
        self._cells: list[int] = []
        self.started()  # the cell running now (the one that imported nbray) began by now

    def started(self, *_: Any) -> None:
        """``pre_run_cell``: the cell In[N] starts now."""
        cell = running_cell(self.shell)
        if cell is None:
            return
        with self._lock:
            now = time.time()  # (not monotonic: task events carry this clock; a step back
            # must not unsort the starts)
            self._times.append(max(now, self._times[-1]) if self._times else now)
            self._cells.append(cell)
            if len(self._times) > MAX_CELLS:
                del self._times[: MAX_CELLS // 2], self._cells[: MAX_CELLS // 2]

    def cell_at(self, when: float) -> int | None:
        """The cell that was running at ``when`` (``time.time()``): the latest one started
        by then; None before the first start this clock saw."""
        with self._lock:
            i = bisect.bisect_right(self._times, when) - 1
            return self._cells[i] if i >= 0 else None


_clock: CellClock | None = None


def install(shell: Any) -> CellClock:
    """Start timing ``shell``'s cells (idempotent)."""
    global _clock
    if _clock is None or _clock.shell is not shell:
        _clock = CellClock(shell)
        shell.events.register("pre_run_cell", _clock.started)
    return _clock


def installed() -> bool:
    """Whether a shell's cells are being timed."""
    return _clock is not None


def cell_at(when: float) -> int | None:
    """The cell running at ``when``; without a clock (outside IPython), None."""
    clock = _clock
    return clock.cell_at(when) if clock is not None else None
