"""The one fold of the event stream (widgets and server alike), fed typed events by hand
(no process started)."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from nbray.widgets.gantt import write_chrome_trace
from nbray.widgets.progress import Progress
from nbray.widgets.state import EventAggregator


def task(tid: int, state: str, t: float, **extra: Any) -> dict[str, Any]:
    return {
        "type": "task",
        "task_id": f"{tid:016x}",
        "name": extra.pop("name", "f"),
        "state": state,
        "time": t,
        "node_id": "n1",
        "actor_id": "",
        **extra,
    }


def oid(n: int) -> str:
    return f"{n:016x}"


def submitted(tid: int, t: float, deps: list[int] = (), returns: tuple[int, ...] = (), **kw: Any):
    return task(
        tid, "PENDING", t, deps=[oid(d) for d in deps], returns=[oid(r) for r in returns], **kw
    )


def run_and_finish(agg: EventAggregator, tid: int, worker: int, start: float, end: float) -> None:
    agg.apply(task(tid, "RUNNING", start, worker_id=worker))
    agg.apply(task(tid, "FINISHED", end, worker_id=worker))


def diamond() -> EventAggregator:
    """a -> (b, c) -> d, through return objects 101..104."""
    agg = EventAggregator()
    agg.apply(submitted(1, 0.0, returns=(101,), name="a"))
    agg.apply(submitted(2, 0.0, deps=[101], returns=(102,), name="b"))
    agg.apply(submitted(3, 0.0, deps=[101], returns=(103,), name="c"))
    agg.apply(submitted(4, 0.0, deps=[102, 103, 999], returns=(104,), name="d"))
    return agg


def test_graph_nodes_edges_and_stages() -> None:
    agg = diamond()
    g = agg.graph()
    assert [n.name for n in g.nodes] == ["a", "b", "c", "d"]
    assert [n.stage for n in g.nodes] == [0, 1, 1, 2]
    assert g.edges == [(0, 1), (0, 2), (1, 3), (2, 3)]  # the put object 999 adds no edge
    assert not g.grouped
    assert {n.state for n in g.nodes} == {"PENDING"}


def test_states_move_through_running_finished_failed_retried_cancelled() -> None:
    agg = diamond()
    run_and_finish(agg, 1, 1, 1.0, 2.0)
    agg.apply(task(2, "RUNNING", 2.0, worker_id=1))
    agg.apply(task(3, "RUNNING", 2.0, worker_id=2))
    agg.apply(task(3, "RETRYING", 2.5, attempt=1, reason="worker died"))
    agg.apply(task(4, "CANCELLED", 2.6, worker_id=0, error="cancelled"))
    assert agg.counts() == {
        "PENDING": 0,
        "RUNNING": 1,
        "RETRYING": 1,
        "FINISHED": 1,
        "FAILED": 0,
        "CANCELLED": 1,
    }
    agg.apply(task(3, "RUNNING", 3.0, worker_id=1))
    agg.apply(task(3, "FAILED", 3.5, worker_id=1, error="Traceback...\nValueError: boom"))
    node = agg.graph().nodes[2]
    assert node.state == "FAILED"  # a single task
    assert node.error.endswith("ValueError: boom")
    assert node.workers == ["n1:1"]
    assert agg.tasks[oid(3)].attempts == 2
    assert agg.producer_states([oid(103), oid(101), oid(999)]) == {"FAILED": 1, "FINISHED": 1}


def test_timeline_has_one_bar_per_attempt_on_its_worker() -> None:
    agg = diamond()
    run_and_finish(agg, 1, 1, 1.0, 2.0)
    agg.apply(task(2, "RUNNING", 2.0, worker_id=2))
    agg.apply(task(2, "RETRYING", 2.5, attempt=1, reason="died"))
    run_and_finish(agg, 2, 1, 3.0, 4.0)
    agg.apply(task(3, "RUNNING", 3.0, worker_id=2))  # still running
    segs = agg.timeline(now=10.0)
    assert [(s.worker, s.name, s.start, s.end, s.state) for s in segs] == [
        ("n1:1", "a", 1.0, 2.0, "FINISHED"),
        ("n1:2", "b", 2.0, 2.5, "RETRYING"),
        ("n1:1", "b", 3.0, 4.0, "FINISHED"),
        ("n1:2", "c", 3.0, 10.0, "RUNNING"),
    ]
    trace = agg.chrome_trace()
    assert {(e["tid"], e["ph"]) for e in trace} == {("worker 1", "X"), ("worker 2", "X")}
    assert trace[0]["ts"] == 1.0e6 and trace[0]["dur"] == 1.0e6


def test_big_graph_is_grouped_by_function_and_stage() -> None:
    agg = EventAggregator()
    for i in range(1000):
        agg.apply(submitted(i + 1, 0.0, returns=(10_000 + i,), name="load"))
    for i in range(1000):
        agg.apply(submitted(2000 + i, 0.0, deps=[10_000 + i], returns=(20_000 + i,), name="clean"))
    agg.apply(submitted(5000, 0.0, deps=list(range(20_000, 21_000)), returns=(1,), name="reduce"))
    for i in range(10):
        run_and_finish(agg, i + 1, 1, 1.0, 2.0)
    g = agg.graph()
    assert g.grouped and g.total_tasks == 2001
    assert [(n.name, n.stage, n.count) for n in g.nodes] == [
        ("load", 0, 1000),
        ("clean", 1, 1000),
        ("reduce", 2, 1),
    ]
    assert g.nodes[0].states == {"FINISHED": 10, "PENDING": 990}
    assert g.edges == [(0, 1), (1, 2)]


def test_a_deep_chain_stays_a_bounded_number_of_nodes() -> None:
    agg = EventAggregator()
    agg.apply(submitted(1, 0.0, returns=(1,), name="step"))
    for i in range(2, 10_001):
        agg.apply(submitted(i, 0.0, deps=[i - 1], returns=(i,), name="step"))
    g = agg.graph(max_columns=60)
    assert g.grouped and g.total_tasks == 10_000
    assert len(g.nodes) <= 60 and sum(n.count for n in g.nodes) == 10_000
    assert g.edges == [(i, i + 1) for i in range(len(g.nodes) - 1)]


def test_scopes_refs_with_ancestors_and_cells() -> None:
    # cells by submission time, for this process's own tasks (owner 0) only
    agg = EventAggregator(cell_of=lambda t: None if t.owner else 1 if t.submitted < 10 else 2)
    agg.apply(submitted(1, 5.0, returns=(101,), name="a"))
    agg.apply(submitted(2, 10.0, deps=[101], returns=(102,), name="b"))
    agg.apply(submitted(3, 11.0, returns=(103,), name="c"))
    agg.apply(submitted(4, 11.0, returns=(104,), name="another kernel's", owner=9))
    assert agg.task_ids([oid(102)]) == [oid(1), oid(2)]
    assert agg.task_ids(2) == [oid(2), oid(3)]
    assert [n.name for n in agg.graph(1).nodes] == ["a"]
    with pytest.raises(ValueError, match="scope"):
        agg.task_ids("everything")


def test_state_stays_bounded() -> None:
    agg = EventAggregator(max_tasks=100, max_segments=50, history=10)
    for i in range(1000):
        agg.apply(submitted(i + 1, float(i), returns=(100_000 + i,)))
        run_and_finish(agg, i + 1, i % 4, float(i), i + 0.5)
    for i in range(30):
        agg.apply(
            {
                "type": "metrics",
                "node_id": "n1",
                "time": float(i),
                "cpu_percent": 5.0,
                "memory_percent": 1.0,
                "num_cpus": 2,
                "workers": {},
            }
        )
    assert len(agg.tasks) == 100 and agg.dropped_tasks == 900
    assert len(agg._producer) == 100
    assert len(agg.segments) == 50
    assert len(agg.nodes()[0]["history"]) == 10
    assert sum(agg.counts().values()) == 100


def test_metrics_and_worker_events_make_worker_rows() -> None:
    agg = EventAggregator()
    agg.apply(submitted(7, 0.0, returns=(70,), name="train"))
    agg.apply(task(7, "RUNNING", 1.0, worker_id=3))
    agg.apply(
        {
            "type": "metrics",
            "node_id": "n1",
            "time": 1.0,
            "num_cpus": 4,
            "cpu_percent": 50.0,
            "cpu_percent_per_core": [10.0, 20.0, 30.0, 40.0],
            "memory_percent": 20.0,
            "gpus": [],
            "workers": {
                "3": {
                    "pid": 33,
                    "cpu_percent": 99.0,
                    "rss": 1,
                    "state": "BUSY",
                    "task_id": oid(7),
                    "actor_id": "",
                },
                "4": {
                    "pid": 44,
                    "cpu_percent": 0.0,
                    "rss": 1,
                    "state": "IDLE",
                    "task_id": "",
                    "actor_id": "",
                },
            },
            "object_store_bytes": 10,
        }
    )
    agg.apply(
        {
            "type": "worker",
            "node_id": "n1",
            "worker_id": 4,
            "pid": 44,
            "state": "DEAD",
            "exit_code": -9,
            "time": 2.0,
        }
    )
    rows = {r["worker"]: r for r in agg.worker_rows()}
    assert rows["n1:3"]["task"] == "train" and rows["n1:3"]["state"] == "BUSY"
    assert rows["n1:4"]["state"] == "DEAD" and rows["n1:4"]["exit_code"] == -9
    node = agg.nodes()[0]
    assert node["sample"]["num_cpus"] == 4 and node["history"][0][1] == 50.0


def test_deferred_mode_queues_events_until_read() -> None:
    agg = EventAggregator(deferred=True, max_pending=10)
    agg.apply(submitted(1, 0.0, returns=(101,), name="a"))
    assert agg.version == 1 and not agg.tasks  # queued, not taken in yet
    assert agg.counts()["PENDING"] == 1  # a read takes the queue in
    for i in range(2, 14):
        agg.apply(submitted(i, 0.0))
    assert len(agg.tasks) >= 11  # past max_pending the queue is taken in at once


def test_unknown_events_are_ignored() -> None:
    agg = EventAggregator()
    agg.apply({"type": "something-new"})
    agg.apply({"type": "log", "task_id": "00000000000000a1", "stream": "stdout", "text": "x\n"})
    agg.apply({})
    assert agg.version == 0


def test_chrome_trace_file_is_json(tmp_path: Any) -> None:
    agg = diamond()
    run_and_finish(agg, 1, 1, 1.0, 2.0)
    path = write_chrome_trace(tmp_path / "t.json", agg)
    assert json.loads(path.read_text())[0]["name"] == "a"


def test_text_progress_bar() -> None:
    out = io.StringIO()
    bar = Progress(4, "get", frontend=False, stream=out)
    bar.update(2, 1)
    bar.finish()
    text = out.getvalue()
    assert "[" + "#" * 15 + "." * 15 + "] get: 2/4 done, 1 failed" in text
    assert text.endswith("\n")


def test_monitor_rows_show_gpus_and_dead_workers() -> None:
    from nbray.widgets.cluster_monitor import ClusterMonitor

    sample = {
        "num_cpus": 8,
        "cpu_percent": 12.0,
        "memory_percent": 50.0,
        "memory_used": 2**30,
        "memory_total": 2**31,
        "object_store_bytes": 3 * 2**20,
        "gpus": [
            {
                "index": 0,
                "name": "H100",
                "utilization": 75.0,
                "memory_used": 2**30,
                "memory_total": 80 * 2**30,
            }
        ],
    }
    row = ClusterMonitor._node_row({"node_id": "abcdef0123456789", "sample": sample})
    assert row[0] == "abcdef012345" and row[1] == 8
    assert "H100" in row[4] and "75%" in row[4] and "80.0 GiB" in row[4]
    assert row[5] == "3.0 MiB"
    dead = ClusterMonitor._worker_row({"worker": "n:3", "state": "DEAD", "exit_code": -9})
    assert "dead (exit -9)" in dead[2]


def test_hover_and_labels_name_function_duration_worker_and_error() -> None:
    from nbray.widgets.graph import hover, label, layout

    agg = diamond()
    run_and_finish(agg, 1, 1, 1.0, 3.5)
    agg.apply(task(2, "RUNNING", 4.0, worker_id=2))
    agg.apply(task(2, "FAILED", 4.5, worker_id=2, error="Traceback\nValueError: x < 0"))
    nodes = agg.graph().nodes
    text = hover(nodes[0])
    assert "<b>a</b> (FINISHED)" in text and "run time 2.500 s" in text
    assert "worker n1:1" in text
    assert "error: ValueError: x &lt; 0" in hover(nodes[1])  # escaped for plotly's HTML
    assert label(nodes[0], grouped=False, total=4) == "a"
    assert [p[0] for p in layout(nodes)] == [0.0, 1.0, 1.0, 2.0]
    assert layout(nodes)[1][1] == -layout(nodes)[2][1]  # a stage's nodes centred


def test_layered_layout_columns_by_stage_and_order_by_predecessors() -> None:
    """Stages become consecutive columns; within one, nodes follow their predecessors'
    places (so a fan-out/fan-in has no crossing edges), first on top, all in [-0.5, 0.5]."""
    agg = EventAggregator()
    # two chains a1 -> b1 and a2 -> b2, whose b's are submitted in the crossed order
    agg.apply(submitted(1, 0.0, returns=(11,), name="a1"))
    agg.apply(submitted(2, 0.0, returns=(12,), name="a2"))
    agg.apply(submitted(4, 0.0, deps=[12], returns=(14,), name="b2"))
    agg.apply(submitted(3, 0.0, deps=[11], returns=(13,), name="b1"))
    nodes = {n.name: n for n in agg.graph().nodes}
    assert [nodes[k].x for k in ("a1", "a2", "b1", "b2")] == [0.0, 0.0, 1.0, 1.0]
    assert nodes["a1"].y > nodes["a2"].y  # the first submitted on top
    assert nodes["b1"].y > nodes["b2"].y  # ordered like their inputs: no crossing
    assert all(-0.5 <= n.y <= 0.5 for n in nodes.values())


def test_graph_of_the_newest_tasks_and_records_for_the_api() -> None:
    agg = diamond()
    g = agg.graph(newest=2)  # c and d: only the edge between them
    assert [n.name for n in g.nodes] == ["c", "d"] and g.edges == [(0, 1)]
    assert [n["x"] for n in g.record()["nodes"]] == [0.0, 1.0]  # columns made consecutive
    assert json.loads(json.dumps(g.record()))["total_tasks"] == 2
    assert agg.graph(newest=0).nodes == []


def test_eviction_drops_ended_tasks_before_live_ones() -> None:
    agg = EventAggregator(max_tasks=3)
    agg.apply(submitted(1, 0.0))
    agg.apply(task(1, "RUNNING", 1.0, worker_id=1))
    for i in range(2, 6):
        agg.apply(submitted(i, 0.0))
        agg.apply(task(i, "FINISHED", 1.0))
    assert oid(1) in agg.tasks and len(agg.tasks) == 3 and agg.dropped_tasks == 2
    assert agg.counts()["RUNNING"] == 1 and agg.counts()["FINISHED"] == 2
    agg.clear()
    assert agg.tasks == {} and agg.counts()["FINISHED"] == 0


def test_eviction_takes_the_task_that_ended_first_wherever_it_is() -> None:
    """Behind hundreds of pending tasks (a flood of submissions), the task that ended first
    goes; a task that ended and runs again (a retry) is live, so it stays."""
    agg = EventAggregator(max_tasks=300)
    for i in range(1, 301):
        agg.apply(submitted(i, 0.0))
    run_and_finish(agg, 250, 1, 1.0, 2.0)  # ended first
    run_and_finish(agg, 200, 1, 1.0, 3.0)
    agg.apply(task(200, "RUNNING", 4.0, worker_id=2))  # runs again
    run_and_finish(agg, 290, 1, 1.0, 5.0)
    agg.apply(submitted(301, 6.0))
    assert oid(250) not in agg.tasks and oid(1) in agg.tasks
    agg.apply(submitted(302, 6.0))
    assert oid(290) not in agg.tasks and oid(200) in agg.tasks
    agg.apply(submitted(303, 6.0))  # nothing ended any more: the oldest goes
    assert oid(1) not in agg.tasks and len(agg.tasks) == 300 and agg.dropped_tasks == 3
    assert agg.counts()["PENDING"] == 299 and agg.counts()["RUNNING"] == 1


def test_events_outside_the_vocabulary_are_not_folded() -> None:
    agg = EventAggregator()
    agg.apply(task(1, "SUBMITTED", 0.0))  # the old name: not a state any more
    agg.apply(task(2, "running", 0.0))
    agg.apply({"type": "log", "task_id": oid(1), "text": "x"})
    assert agg.tasks == {} and agg.version == 0


def test_a_coalesced_event_folds_as_the_states_it_stands_for() -> None:
    """The head's batches merge a short task's states (``events.TaskEvent``, coalesced):
    the fold ends in the same place as from the separate events."""
    separate = EventAggregator()
    merged = EventAggregator(cell_of=lambda t: int(t.submitted), deferred=True)
    separate.apply(submitted(1, 1.0, returns=(101,), name="a"))
    separate.apply(task(1, "RUNNING", 2.0, worker_id=3, pid=30))
    separate.apply(task(1, "FINISHED", 3.0, worker_id=3))
    separate.apply(submitted(2, 1.5, deps=[101], returns=(102,), name="b"))
    separate.apply(task(2, "CANCELLED", 4.0, error="cancelled"))
    separate.apply(task(3, "RUNNING", 5.0, worker_id=4, pid=40, name="c"))
    separate.apply(task(3, "FAILED", 6.0, worker_id=4, error="boom", name="c"))
    separate.apply(submitted(4, 6.5, name="d"))
    separate.apply(task(4, "RUNNING", 7.0, worker_id=5, pid=50, name="d"))
    coalesced = [
        task(1, "FINISHED", 3.0, worker_id=3, pid=30, submitted=1.0, started=2.0,
             deps=[], returns=[oid(101)], name="a"),
        task(2, "CANCELLED", 4.0, error="cancelled", submitted=1.5, deps=[oid(101)],
             returns=[oid(102)], name="b"),
        task(3, "FAILED", 6.0, worker_id=4, pid=40, started=5.0, error="boom", name="c"),
        task(4, "RUNNING", 7.0, worker_id=5, pid=50, submitted=6.5, deps=[], returns=[],
             name="d"),
    ]  # fmt: skip
    merged.apply_all(coalesced)
    assert merged.counts() == separate.counts()
    assert [t.record() for t in merged.tasks.values()] == [
        t.record() for t in separate.tasks.values()
    ]
    bars = [(s.worker, s.task_id, s.start, s.state) for s in separate.timeline()]
    assert [(s.worker, s.task_id, s.start, s.state) for s in merged.timeline()] == bars
    assert merged.graph().edges == separate.graph().edges == [(0, 1)]
    # a task's cell is the one running at its submission
    assert [merged.tasks[oid(t)].cell for t in (1, 2, 3, 4)] == [1, 1, None, 6]
