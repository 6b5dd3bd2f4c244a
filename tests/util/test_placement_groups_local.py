"""Placement groups and scheduling strategies on the local engine, in real clusters:
ready/wait, reservations enforced, infeasible groups refused with the reason, removal
(tasks fail, actors die, the reservation is freed), names, the table, capture of child
tasks, node affinity, and nothing left behind."""

from __future__ import annotations

import time

import pytest

import nbray
from nbray._base import errors
from nbray.util.placement_group import (
    get_current_placement_group,
    get_placement_group,
    placement_group,
    placement_group_table,
    remove_placement_group,
)
from nbray.util.scheduling_strategies import (
    NodeAffinitySchedulingStrategy,
    PlacementGroupSchedulingStrategy,
)


@nbray.remote(max_retries=0)
def hold(seconds: float) -> int:
    import os
    import time

    time.sleep(seconds)
    return os.getpid()


@nbray.remote(max_retries=0)
def quick() -> str:
    return "ran"


@nbray.remote
class Holder:
    def ping(self) -> str:
        return "pong"


def in_bundle(pg: object, index: int = -1, capture: bool | None = None) -> object:
    return PlacementGroupSchedulingStrategy(pg, index, capture)


def test_ready_wait_and_the_table(cluster: nbray.ClusterContext) -> None:
    pg = placement_group([{"CPU": 1}, {"CPU": 1}], strategy="SPREAD", name="pair")
    assert nbray.get(pg.ready(), timeout=30) == pg
    assert pg.wait(timeout_seconds=10) is True
    assert pg.bundle_count == 2 and pg.bundle_specs == [{"CPU": 1}, {"CPU": 1}]
    row = placement_group_table(pg)
    assert row["state"] == "CREATED" and row["strategy"] == "SPREAD" and row["name"] == "pair"
    assert row["bundles"] == {0: {"CPU": 1}, 1: {"CPU": 1}}
    assert pg.id.hex() in placement_group_table()
    assert get_placement_group("pair") == pg
    assert nbray.available_resources().get("CPU", 0) == 0
    remove_placement_group(pg)
    assert placement_group_table(pg)["state"] == "REMOVED"
    with pytest.raises(ValueError, match="pair"):
        get_placement_group("pair")
    assert wait_for_cpus(2)


def wait_for_cpus(n: float, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if nbray.available_resources().get("CPU", 0) == n:
            return True
        time.sleep(0.05)
    return False


def test_reservation_is_enforced(cluster: nbray.ClusterContext) -> None:
    pg = placement_group([{"CPU": 1}])
    pg.wait(10)
    # two one-CPU tasks in a one-CPU bundle run one after the other, on the bundle's CPU;
    # the node's other CPU stays free for plain tasks meanwhile
    first = hold.options(scheduling_strategy=in_bundle(pg, 0)).remote(1.5)
    second = quick.options(scheduling_strategy=in_bundle(pg, 0)).remote()
    assert nbray.wait([second], timeout=0.5)[0] == []
    assert nbray.get(quick.remote(), timeout=10) == "ran"
    nbray.get(first, timeout=30)
    assert nbray.get(second, timeout=30) == "ran"
    # a task asking for more than its bundle reserves fails at once, saying why
    with pytest.raises(errors.UnschedulableError, match="bundle 0"):
        nbray.get(hold.options(num_cpus=2, scheduling_strategy=in_bundle(pg, 0)).remote(0))
    remove_placement_group(pg)


def test_infeasible_group_is_refused_with_the_reason(cluster: nbray.ClusterContext) -> None:
    with pytest.raises(errors.UnschedulableError, match=r"bundle 1 \{'CPU': 4\}.*has 2"):
        placement_group([{"CPU": 1}, {"CPU": 4}])
    with pytest.raises(errors.UnschedulableError, match="together ask for 3 CPU"):
        placement_group([{"CPU": 1}, {"CPU": 1}, {"CPU": 1}])
    with pytest.raises(errors.UnschedulableError, match="one node"):
        placement_group([{"CPU": 1}, {"CPU": 1}], strategy="STRICT_SPREAD")
    with pytest.raises(ValueError, match="strategy"):
        placement_group([{"CPU": 1}], strategy="CLOSE")
    with pytest.raises(ValueError, match="non-empty list"):
        placement_group([])
    with pytest.raises(ValueError, match="out of range"):
        quick.options(scheduling_strategy=in_bundle(placement_group([{"CPU": 1}]), 3))
    assert wait_for_cpus(1)  # the last one (feasible) holds one CPU until shutdown


def test_removal_fails_tasks_and_kills_actors(cluster: nbray.ClusterContext) -> None:
    pg = placement_group([{"CPU": 1}, {"CPU": 1}])
    pg.wait(10)
    running = hold.options(scheduling_strategy=in_bundle(pg, 0)).remote(60)
    queued = hold.options(scheduling_strategy=in_bundle(pg, 0)).remote(0)
    actor = Holder.options(num_cpus=1, scheduling_strategy=in_bundle(pg, 1)).remote()
    assert nbray.get(actor.ping.remote(), timeout=30) == "pong"
    time.sleep(0.5)  # the long task is running
    remove_placement_group(pg)
    for ref in (running, queued):
        with pytest.raises(errors.TaskPlacementGroupRemoved, match="placement group was removed"):
            nbray.get(ref, timeout=30)
    with pytest.raises(errors.ActorDiedError, match="placement group was removed"):
        nbray.get(actor.ping.remote(), timeout=30)
    assert wait_for_cpus(2)
    # tasks submitted into a removed group fail too
    with pytest.raises(errors.TaskPlacementGroupRemoved):
        nbray.get(quick.options(scheduling_strategy=in_bundle(pg)).remote(), timeout=30)


def test_pending_group_becomes_ready_when_resources_free(cluster: nbray.ClusterContext) -> None:
    busy = hold.options(num_cpus=2).remote(1.0)
    assert wait_for_cpus(0)  # the task holds both CPUs (it may wait for a worker first)
    pg = placement_group([{"CPU": 2}])
    assert pg.wait(timeout_seconds=0.2) is False
    assert placement_group_table(pg)["state"] == "PENDING"
    nbray.get(busy, timeout=30)
    assert pg.wait(timeout_seconds=30) is True
    remove_placement_group(pg)


@nbray.remote(max_retries=0)
def parent_in_group() -> tuple[str | None, str]:
    import nbray
    from nbray.util.placement_group import get_current_placement_group

    @nbray.remote(num_cpus=1)
    def child() -> str:
        return "child ran"

    current = get_current_placement_group()
    return (current.id.hex() if current else None), nbray.get(child.remote())


def test_capture_child_tasks(cluster: nbray.ClusterContext) -> None:
    pg = placement_group([{"CPU": 2}])
    pg.wait(10)
    strategy = PlacementGroupSchedulingStrategy(pg, placement_group_capture_child_tasks=True)
    # the parent holds one of the bundle's CPUs, its child takes the other: both inside
    got = nbray.get(parent_in_group.options(scheduling_strategy=strategy).remote(), timeout=60)
    assert got == (pg.id.hex(), "child ran")
    assert get_current_placement_group() is None  # the driver is in no group


def test_node_affinity_and_named_strategies(cluster: nbray.ClusterContext) -> None:
    node = nbray.nodes()[0]["NodeID"]
    hard = NodeAffinitySchedulingStrategy(node, soft=False)
    assert nbray.get(quick.options(scheduling_strategy=hard).remote(), timeout=30) == "ran"
    soft = NodeAffinitySchedulingStrategy("ff" * 28, soft=True)
    assert nbray.get(quick.options(scheduling_strategy=soft).remote(), timeout=30) == "ran"
    with pytest.raises(errors.UnschedulableError, match="does not have"):
        quick.options(scheduling_strategy=NodeAffinitySchedulingStrategy("ff" * 28, False)).remote()
    for name in ("DEFAULT", "SPREAD"):
        assert nbray.get(quick.options(scheduling_strategy=name).remote(), timeout=30) == "ran"
    with pytest.raises(ValueError, match="scheduling_strategy"):
        quick.options(scheduling_strategy="NEAREST")
