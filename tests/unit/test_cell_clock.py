"""The cell clock (``nbray.magics.cells``): which notebook cell ran when, on IPython's own
event manager. A kernel test (tests/notebooks/test_widgets_between_cells.py) shows what it
is for: a task graph's cell scope after earlier cells' tasks are replayed."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest
from IPython.core.events import EventManager, available_events

from nbray.magics import cells

pytestmark = pytest.mark.timeout(30)


def shell(count: int) -> SimpleNamespace:
    """A shell whose ``execution_count`` is ``count``: IPython 9 counts it up before a cell
    runs, so the cell running is In[count - 1]."""
    sh = SimpleNamespace(execution_count=count)
    sh.events = EventManager(sh, available_events)
    return sh


def test_a_task_belongs_to_the_cell_running_when_it_was_submitted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(cells, "_clock", None)
    assert not cells.installed() and cells.cell_at(time.time()) is None
    before = time.time()
    time.sleep(0.001)
    sh = shell(3)
    clock = cells.install(sh)  # In[2], the cell importing nbray, has begun by now
    assert cells.install(sh) is clock and len(sh.events.callbacks["pre_run_cell"]) == 1
    in_cell_2 = time.time()
    time.sleep(0.001)  # time.time() is a double: 0.24 µs apart is the same instant
    sh.execution_count = 4
    sh.events.trigger("pre_run_cell", None)
    time.sleep(0.001)
    in_cell_3 = time.time()
    assert cells.cell_at(before - 1) is None  # before the clock saw any cell
    assert cells.cell_at(in_cell_2) == 2
    assert cells.cell_at(in_cell_3) == 3
    assert cells.cell_at(in_cell_3 + 3600) == 3  # the latest cell until another starts


def test_the_clock_keeps_a_bounded_history(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cells, "_clock", None)
    monkeypatch.setattr(cells, "MAX_CELLS", 10)
    sh = shell(1)
    clock = cells.install(sh)
    for n in range(2, 40):
        sh.execution_count = n
        clock.started()
    assert len(clock._times) <= 10
    assert clock.cell_at(time.time()) == 38
