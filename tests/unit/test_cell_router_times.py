"""The cell router's record of when each cell started (``nbray.magics.routing``): which
notebook cell ran when, driven by IPython's own event manager. A kernel test
(tests/notebooks/test_widgets_between_cells.py) shows what it is for: a task graph's cell
scope for tasks known only by when the cluster took them in."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest
from IPython.core.events import EventManager, available_events

from nbray.magics import routing
from nbray.magics.routing import CellRouter

pytestmark = pytest.mark.timeout(30)


def shell(count: int) -> SimpleNamespace:
    """A shell whose ``execution_count`` is ``count``: IPython 9 counts it up before a cell
    runs, so the cell running is In[count - 1]."""
    sh = SimpleNamespace(execution_count=count)
    sh.events = EventManager(sh, available_events)
    return sh


def test_a_task_belongs_to_the_cell_running_when_it_was_taken_in() -> None:
    before = time.time()
    time.sleep(0.001)
    sh = shell(3)
    router = CellRouter(sh)  # In[2], the cell loading nbray, has begun by now
    sh.events.register("pre_run_cell", router.pre_run_cell)
    in_cell_2 = time.time()
    time.sleep(0.001)  # time.time() is a double: 0.24 µs apart is the same instant
    sh.execution_count = 4
    sh.events.trigger("pre_run_cell", None)
    time.sleep(0.001)
    in_cell_3 = time.time()
    assert router.cell_at(before - 1) is None  # before the router saw any cell
    assert router.cell_at(in_cell_2) == 2
    assert router.cell_at(in_cell_3) == 3
    assert router.cell_at(in_cell_3 + 3600) == 3  # the latest cell until another starts


def test_the_record_of_cell_starts_stays_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(routing, "_MAX_EPOCHS", 10)
    sh = shell(1)
    router = CellRouter(sh)
    for n in range(2, 40):
        sh.execution_count = n
        router.pre_run_cell()
    assert len(router._cell_times) <= 10
    assert router.cell_at(time.time()) == 38
