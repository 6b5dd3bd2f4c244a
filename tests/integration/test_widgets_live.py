"""Widgets against a real cluster, outside a notebook: text fallback, subscriptions released
on close, "cluster gone" after shutdown, throttled redraws of a 10,000-task run, progress."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from nbray_testing import run_python, wait_until

import nbray
from nbray._model import session
from nbray.widgets.gantt import Timeline
from nbray.widgets.graph import TaskGraph


@nbray.remote
def inc(x: int) -> int:
    return x + 1


@nbray.remote
def total(*xs: int) -> int:
    return sum(xs)


@nbray.remote(max_retries=0)
def boom(x: int) -> int:
    raise ValueError(f"boom {x}")


def subscribers(engine: Any) -> int:
    return len(engine.client.event_handlers)


def test_text_fallback_and_release_on_close(cluster: Any) -> None:
    engine = session.current_engine()
    graph = nbray.task_graph("session")
    mon = nbray.monitor()
    assert not graph.frontend and graph.children == ()  # no kernel: nothing built
    refs = [inc.remote(i) for i in range(3)]
    assert nbray.get(total.remote(*refs)) == 6
    graph.sync()
    text = repr(graph)
    assert text.startswith("TaskGraph: 4 tasks (4 FINISHED)")
    assert "[stage 1] total: FINISHED" in text and "3 edges" in text
    wait_until(lambda: mon.num_cpus > 0, 10)
    assert f"node {engine.client.node_id[:12]}" in str(mon)
    assert subscribers(engine) == 1  # one shared subscription for both widgets
    mon.close()
    assert subscribers(engine) == 1
    graph.close()
    assert subscribers(engine) == 0
    assert not engine._subscribed


@nbray.remote
class Acc:
    def __init__(self) -> None:
        self.total = 0

    def add(self, x: int) -> int:
        self.total += x
        return self.total


def test_actor_calls_are_graph_nodes_with_edges_from_their_arguments(cluster: Any) -> None:
    graph = TaskGraph("session")
    acc = Acc.remote()
    out = acc.add.remote(inc.remote(1))
    assert nbray.get(out) == 2
    graph.sync()
    assert [(n.name, n.state) for n in graph.nodes] == [
        ("inc", "FINISHED"),
        ("Acc.add", "FINISHED"),
    ]
    assert graph.edges == [(0, 1)]
    graph.close()


def test_a_new_widget_gets_the_recorded_history_and_a_closed_one_stops(cluster: Any) -> None:
    first = TaskGraph("session")
    assert nbray.get([inc.remote(i) for i in range(5)]) == [1, 2, 3, 4, 5]
    first.sync()
    draws = first.draws
    first.close()  # the last view: unsubscribed, state dropped
    assert nbray.get(inc.remote(10)) == 11  # nobody listens: kept compactly by the head
    second = TaskGraph("session")  # subscribes again; the head replays its history
    wait_until(lambda: second.view.total_tasks == 6, 10)
    assert [n.name for n in second.nodes] == ["inc"] * 6
    nbray.get(inc.remote(20))
    wait_until(lambda: second.view.total_tasks == 7, 10)
    assert first.draws == draws and first.view.total_tasks == 5  # closed: no more updates
    second.close()


def test_widgets_say_cluster_gone_after_shutdown(cluster_factory: Any) -> None:
    cluster_factory(num_cpus=1)
    tl = Timeline()
    nbray.get(inc.remote(1))
    hub = tl._hub
    nbray.shutdown()
    wait_until(lambda: tl.gone, 5)
    assert "session ended" in tl.gone
    assert repr(tl).endswith(f"[{tl.gone}]")
    wait_until(lambda: hub._thread is None, 5)
    assert hub.views == 0
    with pytest.raises(RuntimeError, match="cluster is gone"):
        hub.attach(lambda *_: None)


def test_widgets_say_cluster_gone_when_the_head_dies(cluster_factory: Any) -> None:
    cluster_factory(num_cpus=1)
    engine = session.current_engine()
    mon = nbray.monitor()
    wait_until(lambda: mon.num_cpus > 0, 10)
    engine.cluster.process.kill()  # SIGKILL: the head vanishes without a word
    wait_until(lambda: mon.gone, 10)
    assert "connection to the cluster is lost" in mon.gone
    assert repr(mon).endswith(f"[{mon.gone}]")


def test_a_stalled_head_is_shown_and_then_forgotten(cluster_factory: Any) -> None:
    cluster_factory(num_cpus=1)
    head = session.current_engine().cluster.process
    mon = nbray.monitor()
    wait_until(lambda: mon.num_cpus > 0, 10)
    mon._hub.stale_after = 1.5
    head.send_signal(signal.SIGSTOP)
    try:
        wait_until(lambda: mon.stalled, 10)
        assert "no news from the cluster" in mon._banner.value
    finally:
        head.send_signal(signal.SIGCONT)
    wait_until(lambda: not mon.stalled, 10)  # the head came back: still live, not gone
    assert mon._banner.value == "" and not mon.gone
    assert nbray.get(inc.remote(1)) == 2
    mon.close()


def test_ten_thousand_tasks_redraw_a_few_times_a_second(cluster: Any) -> None:
    graph = TaskGraph("session", frontend=True)  # builds and draws the plotly figures
    tl = Timeline(frontend=True)
    hub = graph._hub
    before, started = hub.redraws, time.monotonic()
    refs = [inc.remote(i) for i in range(10_000)]
    assert nbray.get(refs) == list(range(1, 10_001))
    graph.sync()
    elapsed = time.monotonic() - started
    # the throttle: at most one round per interval (plus the one that was due)
    assert hub.redraws - before <= elapsed / hub.interval + 2
    wait_until(lambda: graph.view.total_tasks == 10_000, 10)
    assert graph.view.grouped and [n.count for n in graph.nodes] == [10_000]
    assert len(graph._fig.data[1 + 3].x) == 1  # one "finished" node drawn
    assert len(tl.segments) <= tl.limit and len(tl._fig.data[0].x) <= tl.limit
    figures = [graph._fig, tl._fig]
    graph.close()
    tl.close()
    assert all(f.comm is None for f in figures)  # the figures' models are closed too


def test_plain_ipython_shows_the_text_summary() -> None:
    ipython = Path(sys.executable).with_name("ipython")
    code = (
        "import nbray; nbray.init(num_cpus=1); g = nbray.task_graph('session'); "
        "nbray.get(nbray.remote(lambda: 1).remote()); g.sync(); g"
    )
    proc = subprocess.run(
        [str(ipython), "--quick", "--no-banner", "-c", code],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "TaskGraph: 1 tasks (1 FINISHED); scope: session" in proc.stdout
    assert "[stage 0] <lambda>: FINISHED" in proc.stdout


def test_get_with_progress_returns_values_and_raises_errors(cluster: Any) -> None:
    refs = [inc.remote(i) for i in range(20)]
    assert nbray.get(refs, progress=True) == list(range(1, 21))
    bad = [inc.remote(1), boom.remote(2), inc.remote(3)]
    with pytest.raises(ValueError, match="boom 2"):
        nbray.get(bad, progress=True)
    ready, pending = nbray.wait(refs, num_returns=20, progress=True)
    assert len(ready) == 20 and pending == []


def test_get_with_progress_times_out(cluster: Any) -> None:
    @nbray.remote
    def slow() -> None:
        time.sleep(30)

    ref = slow.remote()
    with pytest.raises(nbray.exceptions.GetTimeoutError, match="1 of 1 objects"):
        nbray.get([ref], timeout=0.5, progress=True)
    nbray.cancel(ref, force=True)


def test_text_progress_bar_in_a_script() -> None:
    proc = run_python(
        """
        import nbray
        nbray.init(num_cpus=2)

        @nbray.remote
        def f(x):
            return x * 2

        print(sum(nbray.get([f.remote(i) for i in range(50)], progress=True)))
        nbray.shutdown()
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "2450"
    # (text mode turns the bar's carriage returns into newlines)
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("[" + "#" * 30 + "] get: 50/50 done, 0 failed"), proc.stderr
