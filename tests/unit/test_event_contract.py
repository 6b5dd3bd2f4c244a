"""The event contract (nbray/_base/events.py): its TypeScript mirror is current, and what
the producers make keeps it (no process started; the engine suite checks live streams)."""

from __future__ import annotations

import importlib.util
import re
import time
from pathlib import Path
from types import ModuleType
from typing import Any, get_type_hints

import pytest

from nbray._base import events as ev
from nbray._base.event_fold import EventFold
from nbray._base.events import (
    STATE_COLORS,
    TASK_STATES,
    SummaryRecord,
    TaskRecord,
    event_problems,
    record_problems,
)

pytestmark = pytest.mark.timeout(60)

REPO = Path(__file__).resolve().parents[2]
EVENTS_TS = REPO / "frontend" / "src" / "events.ts"


def generator() -> ModuleType:
    path = REPO / "scripts" / "gen_events_ts.py"
    spec = importlib.util.spec_from_file_location("gen_events_ts", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_typescript_mirror_is_generated_from_the_current_contract() -> None:
    assert EVENTS_TS.read_text() == generator().render(), (
        "frontend/src/events.ts is stale: run python scripts/gen_events_ts.py"
    )


def ts_union(name: str) -> list[str]:
    m = re.search(rf"export type {name} = ([^;]+);", EVENTS_TS.read_text())
    assert m, name
    return re.findall(r"'([^']*)'", m.group(1))


def ts_fields(interface: str) -> dict[str, bool]:
    """Field -> optional, read from the committed TypeScript."""
    m = re.search(rf"export interface {interface} \{{\n(.*?)\n\}}", EVENTS_TS.read_text(), re.S)
    assert m, interface
    return {f: bool(q) for f, q in re.findall(r"^  (\w+)(\??):", m.group(1), re.M)}


def test_the_committed_typescript_matches_the_python_definitions() -> None:
    """Read independently of the generator: a hand edit on either side fails here."""
    assert ts_union("TaskState") == list(TASK_STATES)
    assert ts_union("EventType") == list(ev.EVENT_TYPES)
    assert ts_union("WorkerState") == list(ev.WORKER_STATES)
    for state, colour in STATE_COLORS.items():
        assert re.search(rf"^  {state}: '{colour}'", EVENTS_TS.read_text(), re.M), state
    for cls in (*ev.EVENT_CLASSES.values(), TaskRecord, SummaryRecord, ev.GraphRecord):
        hints = get_type_hints(cls, include_extras=True)
        expected = {k: "NotRequired" in str(t) for k, t in hints.items()}
        assert ts_fields("I" + cls.__name__) == expected, cls.__name__


def test_one_vocabulary_of_task_states_with_a_colour_each() -> None:
    assert TASK_STATES == ("PENDING", "RUNNING", "RETRYING", "FINISHED", "FAILED", "CANCELLED")
    assert set(STATE_COLORS) == set(TASK_STATES)
    assert ev.TERMINAL_STATES == {"FINISHED", "FAILED", "CANCELLED"}


def test_event_problems_names_what_breaks_the_contract() -> None:
    good = {"type": "worker", "worker_id": 3, "pid": 9, "state": "DEAD", "exit_code": -9,
            "time": 1.0}  # fmt: skip
    assert event_problems(good) == []
    assert event_problems({**good, "state": "dead"}) == [
        "worker.state: 'dead' is not one of 'STARTING', 'IDLE', 'BUSY', 'ACTOR', 'DEAD'"
    ]
    assert event_problems({**good, "extra": 1}) == ["worker: 'extra' not in the contract"]
    del good["pid"]
    assert event_problems(good) == ["worker: 'pid' is missing"]
    assert event_problems({"type": "tasks"})[0].startswith("unknown event type 'tasks'")
    assert event_problems({**good, "pid": "9"})  # a string where a number belongs


def test_the_local_heads_task_and_log_events_keep_the_contract() -> None:
    from nbray._node import bus
    from nbray._wire import protocol

    spec = protocol.TaskSpec(
        0xA1, "square", b"", b"", (0xB1,), (), (0xC1,), {"CPU": 1.0}, 0, False, 0
    )
    extras: dict[str, dict[str, Any]] = {
        "PENDING": {},
        "RUNNING": {"worker_id": 2, "pid": 99, "gpu_ids": []},
        "RETRYING": {"attempt": 2, "reason": "the worker died"},
        "FINISHED": {"worker_id": 2, "duration": 0.5},
        "FAILED": {"worker_id": 2, "duration": 0.5, "error": "ValueError: x"},
        "CANCELLED": {"worker_id": None, "duration": 0.1, "error": "cancelled"},
    }
    for state, extra in extras.items():
        data = bus.task_data("n1", spec, 1, 0, state, time.time(), extra)
        assert event_problems(data) == [], state
    out = protocol.Output(0xA1, "stderr", "x" * 5000)
    assert event_problems(bus.log_event(out, 99)) == []


def test_the_metrics_sampler_keeps_the_contract() -> None:
    import os

    from nbray._wire.metrics import MetricsSampler

    sampler = MetricsSampler("n1")
    try:
        sample = sampler.sample({"1": os.getpid()})
    finally:
        sampler.close()
    sample.update(type="metrics", object_store_bytes=0, resources_total={"CPU": 2.0})
    sample["workers"]["1"].update(state="BUSY", task_id="", actor_id="")
    assert event_problems(sample) == []


def test_the_ray_engines_node_events_keep_the_contract() -> None:
    from nbray._engines.ray.events import _node_event

    node = {"NodeID": "ab" * 14, "NodeManagerAddress": "127.0.0.1", "Resources": {"CPU": 2}}
    assert event_problems(_node_event(node, "ALIVE")) == []


def test_the_folds_records_keep_the_contract() -> None:
    fold = EventFold()
    base = {"type": "task", "name": "f", "owner": 1, "node_id": "n1", "actor_id": "",
            "parent": ""}  # fmt: skip
    fold.apply({**base, "task_id": "a", "state": "PENDING", "time": 1.0, "returns": ["o1"]})
    fold.apply({**base, "task_id": "b", "state": "PENDING", "time": 1.0, "deps": ["o1"]})
    fold.apply({**base, "task_id": "a", "state": "RUNNING", "time": 2.0, "worker_id": 1})
    fold.apply({**base, "task_id": "a", "state": "FAILED", "time": 3.0, "error": "boom"})
    for rec in fold.query():
        assert record_problems(TaskRecord, rec) == []
    assert record_problems(SummaryRecord, fold.summary(now=4.0)) == []
    assert record_problems(ev.GraphRecord, fold.graph().record()) == []
    for seg in fold.timeline(now=4.0):
        assert record_problems(ev.SegmentRecord, seg.record()) == []


def test_a_coalesced_task_event_separates_into_the_states_it_stands_for() -> None:
    from nbray._base.events import separate_states

    ev = {"type": "task", "task_id": "a1", "state": "FINISHED", "time": 3.0,
          "submitted": 1.0, "started": 2.0, "pid": 7}  # fmt: skip
    assert [(e["state"], e["time"]) for e in separate_states(ev)] == [
        ("PENDING", 1.0), ("RUNNING", 2.0), ("FINISHED", 3.0)
    ]  # fmt: skip
    pending, running, finished = separate_states(ev)
    assert all("submitted" not in e and "started" not in e for e in (pending, running, finished))
    assert running["pid"] == 7 and "pid" not in pending and "pid" not in finished
    assert separate_states({"type": "log", "text": "x"}) == [{"type": "log", "text": "x"}]
