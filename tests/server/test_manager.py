"""The tornado-free ClusterManager, driven directly: it subscribes to the cluster's
events only while watched, and rebuilds its task table from the head's replay."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from nbray_testing import wait_until
from server_support import left_behind

import nbray
from nbray.server_ext import watching as watching_module
from nbray.server_ext.manager import ClusterManager, ClusterSettings, ClusterStateError

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def manager(monkeypatch: pytest.MonkeyPatch) -> Iterator[ClusterManager]:
    monkeypatch.setattr(watching_module, "LINGER", 0.3)
    monkeypatch.delenv("NBRAY_ADDRESS", raising=False)
    m = ClusterManager(ClusterSettings(num_cpus=1))
    m.start()
    yield m
    last = m.status()
    nbray.shutdown()
    m.shutdown()
    assert left_behind(last) == []


@nbray.remote
def double(x: int) -> int:
    return 2 * x


def test_subscribed_only_while_watched(manager: ClusterManager) -> None:
    nbray.init()  # NBRAY_ADDRESS: the manager's cluster
    assert not manager.subscribed
    assert nbray.get(double.remote(1)) == 2  # nobody watches: no task events are built
    assert manager.tasks.query() == []

    release = manager.watch()  # the head replays the task that ended unwatched
    assert manager.subscribed
    assert nbray.get([double.remote(i) for i in range(3)]) == [0, 2, 4]
    wait_until(lambda: len(manager.tasks.query(state="FINISHED")) == 4, 10)
    release()
    release()  # twice is harmless
    assert manager.subscribed  # lingers a moment, for a reconnecting WebSocket
    wait_until(lambda: not manager.subscribed, 5)

    manager.touch()  # a REST request subscribes again; the head replays its history
    assert manager.subscribed
    wait_until(lambda: len(manager.tasks.query(state="FINISHED")) == 4, 10)
    assert {t["name"] for t in manager.tasks.query()} == {"double"}


def test_state_errors_and_restart(manager: ClusterManager) -> None:
    with pytest.raises(ClusterStateError, match="already running"):
        manager.start()
    first = manager.status()
    manager.stop()
    manager.stop()  # stopping a stopped cluster is fine
    assert manager.status()["state"] == "stopped"
    assert left_behind(first) == []
    second = manager.restart(ClusterSettings(num_cpus=2))
    assert second["resources"]["CPU"] == 2.0


@nbray.remote
def shout(word: str) -> str:
    print(word)
    return word


def test_task_output_is_kept_only_while_watched(manager: ClusterManager) -> None:
    nbray.init()
    assert nbray.get(shout.remote("unheard")) == "unheard"  # nobody watches: not kept
    release = manager.watch()
    assert nbray.get(shout.remote("heard")) == "heard"

    def task_ids() -> dict[str, str]:
        return {t["task_id"]: t["name"] for t in manager.tasks.query(name="shout")}

    wait_until(lambda: len(task_ids()) == 2, 10)  # the unwatched one comes with the replay
    wait_until(lambda: len([t for t in task_ids() if manager.logs.get(t)]) == 1, 10)
    texts = [[p["text"] for p in log["lines"]] for t in task_ids() if (log := manager.logs.get(t))]
    assert texts == [["heard\n"]]
    release()
    wait_until(lambda: not manager.subscribed, 5)
    manager.touch()  # re-subscribing replays task events; output is not in that history
    replayed = manager._engine.client.request("events")
    assert replayed and not [e for e in replayed if e.get("type") == "log"]
    texts = [[p["text"] for p in log["lines"]] for t in task_ids() if (log := manager.logs.get(t))]
    assert texts == [["heard\n"]]  # kept across re-subscribes
