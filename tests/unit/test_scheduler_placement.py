"""Placement groups in the pure scheduler: bundles reserve resources in the node's pool,
tasks and actors in a bundle use only its reservation, an infeasible group says why, and
removal gives the reservation back and fails or kills what runs in it. No process starts."""

from __future__ import annotations

from unittest.mock import ANY

import pytest
from test_scheduler import validate_after_every_event  # noqa: F401  (autouse: validate)

from nbray._node.instructions import GroupStateChanged
from nbray._node.scheduler import (
    ActorStateChanged,
    Dispatch,
    FailTask,
    KillWorker,
    Scheduler,
    SpawnWorker,
    StartActor,
)


def booted(resources: dict[str, float]) -> Scheduler:
    s = Scheduler(resources)
    for ins in s.start():
        assert isinstance(ins, SpawnWorker)
        s.worker_started(ins.worker_id)
    return s


def submit(s: Scheduler, tid: int, cpus: float, placement: tuple[int, int] | None = None) -> list:
    return list(s.submit(tid, f"t{tid}", {"CPU": cpus}, 0, 1, set(), placement=placement))


def test_group_reserves_its_bundles_out_of_the_node() -> None:
    s = booted({"CPU": 4})
    assert s.create_placement_group(9, "", [{"CPU": 1}, {"CPU": 2}], "PACK", 1) == [
        GroupStateChanged(9, "CREATED")
    ]
    assert s.available["CPU"] == 1
    # a plain task uses what is left, a second one waits although the group has room
    assert submit(s, 1, 1) == [Dispatch(4, 1, ())]
    assert submit(s, 2, 1) == []


def test_tasks_in_a_bundle_use_only_its_reservation() -> None:
    s = booted({"CPU": 4})
    s.create_placement_group(9, "", [{"CPU": 1}, {"CPU": 2}], "PACK", 1)
    assert submit(s, 1, 1, (9, 0)) == [Dispatch(4, 1, ())]
    assert submit(s, 2, 1, (9, 0)) == []  # bundle 0 is full; the node's free CPU is not used
    assert submit(s, 3, 1, (9, -1)) == [Dispatch(3, 3, ())]  # any bundle: bundle 1 has room
    assert s.available["CPU"] == 1
    assert s.task_finished(1, ok=True) == [Dispatch(4, 2, ())]


def test_group_waits_until_its_bundles_fit_then_runs_its_tasks() -> None:
    s = booted({"CPU": 2})
    assert submit(s, 1, 2) == [Dispatch(2, 1, ())]
    assert s.create_placement_group(9, "", [{"CPU": 1}], "PACK", 1) == []  # pending
    assert submit(s, 2, 0, (9, 0)) == []  # e.g. pg.ready(): waits for the reservation
    out = s.task_finished(1, ok=True)
    assert out == [GroupStateChanged(9, "CREATED"), Dispatch(2, 2, ())]


@pytest.mark.parametrize(
    ("bundles", "strategy", "match"),
    [
        ([{"CPU": 8}], "PACK", "bundle 0 {'CPU': 8} asks for 8 CPU but the node has 2"),
        ([{"CPU": 1}, {"CPU": 1}, {"CPU": 1}], "PACK", "together ask for 3 CPU"),
        ([{"CPU": 1}, {"CPU": 1}], "STRICT_SPREAD", "this cluster has one node"),
        ([{"GPU": 1}], "PACK", "asks for 1 GPU but the node has 0"),
        ([], "PACK", "at least one bundle"),
        ([{"CPU": 0}], "PACK", "asks for nothing"),
        ([{"CPU": 1}], "NEAR", "not one of"),
    ],
)
def test_infeasible_group_says_why(bundles: list, strategy: str, match: str) -> None:
    s = booted({"CPU": 2})
    assert match in s.placement_group_problem(bundles, strategy)


def test_task_too_big_for_its_bundle_fails_at_once() -> None:
    s = booted({"CPU": 4})
    s.create_placement_group(9, "", [{"CPU": 1}], "PACK", 1)
    out = submit(s, 1, 2, (9, 0))
    assert out == [FailTask(1, "unschedulable", ANY)]
    assert "bundle 0 ({'CPU': 1.0})" in out[0].message
    assert submit(s, 2, 1, (9, 3)) == [FailTask(2, "unschedulable", ANY)]
    assert submit(s, 3, 1, (8, 0)) == [FailTask(3, "pg_removed", ANY)]


def test_removal_frees_the_reservation_and_fails_what_runs_in_it() -> None:
    s = booted({"CPU": 2})
    s.create_placement_group(9, "", [{"CPU": 1}], "PACK", 1)
    assert submit(s, 1, 1, (9, 0)) == [Dispatch(2, 1, ())]
    assert submit(s, 2, 1, (9, 0)) == []  # queued for the bundle
    assert submit(s, 3, 1) == [Dispatch(1, 3, ())]
    assert submit(s, 4, 1) == []  # waits for the node's CPU
    out = s.remove_placement_group(9)
    assert out[:3] == [
        KillWorker(2),
        FailTask(1, "pg_removed", "task t1: its placement group was removed"),
        FailTask(2, "pg_removed", "task t2: its placement group was removed"),
    ]
    assert GroupStateChanged(9, "REMOVED", ANY) in out
    # the reservation went back to the node: task 4 gets a new worker and the freed CPU
    spawn = [i for i in out if isinstance(i, SpawnWorker)]
    assert len(spawn) == 1
    assert s.available["CPU"] == 1
    assert s.worker_started(spawn[0].worker_id) == [Dispatch(spawn[0].worker_id, 4, ())]
    assert s.available["CPU"] == 0
    # the killed worker's death reports nothing more for tasks 1 and 2
    assert not [i for i in s.worker_died(2, -9) if isinstance(i, FailTask)]
    assert 1 not in s.tasks and 2 not in s.tasks
    assert s.remove_placement_group(9) == []


def test_actor_in_a_bundle_dies_when_the_group_is_removed() -> None:
    s = booted({"CPU": 2})
    s.create_placement_group(9, "", [{"CPU": 1}], "PACK", 1)
    out = s.create_actor(5, "A", {"CPU": 1}, 3, 0, owner=1, placement=(9, 0))
    assert out == [ActorStateChanged(5, "PENDING"), SpawnWorker(3, 5, "")]
    assert s.worker_started(3)[0] == StartActor(3, 5, ())
    assert s.available["CPU"] == 1  # the actor's CPU came out of the bundle
    out = s.remove_placement_group(9)
    assert out[0] == KillWorker(3)
    assert ActorStateChanged(5, "DEAD", ANY) in out  # no restart, despite max_restarts=3
    s.worker_died(3, -9)
    assert s.available["CPU"] == 2


def test_owner_gone_removes_its_groups_but_not_detached_ones() -> None:
    s = booted({"CPU": 4})
    s.create_placement_group(9, "", [{"CPU": 1}], "PACK", owner=1)
    s.create_placement_group(8, "kept", [{"CPU": 1}], "PACK", owner=1, detached=True)
    out = s.owner_gone(1)
    assert GroupStateChanged(9, "REMOVED", ANY) in out
    assert 8 in s.groups and 9 not in s.groups
    assert s.available["CPU"] == 3


def test_gpu_bundles_hand_their_own_gpu_ids_to_their_tasks() -> None:
    s = Scheduler({"CPU": 4, "GPU": 2}, gpu_ids=[0, 1])
    for ins in s.start():
        s.worker_started(ins.worker_id)
    s.create_placement_group(9, "", [{"CPU": 1, "GPU": 1}], "STRICT_PACK", 1)
    # the bundle took GPU 0; a plain GPU task gets GPU 1, the bundle's task GPU 0
    plain = s.submit(1, "plain", {"CPU": 1, "GPU": 1}, 0, 1, set())
    in_pg = s.submit(2, "in_pg", {"CPU": 1, "GPU": 1}, 0, 1, set(), placement=(9, 0))
    assert [i.gpu_ids for i in plain] == [(1,)]
    assert [i.gpu_ids for i in in_pg] == [(0,)]
    # a second GPU task in the bundle waits for the bundle's GPU, not the node's
    assert s.submit(3, "more", {"GPU": 1}, 0, 1, set(), placement=(9, 0)) == []
    s.task_finished(1, ok=True)
    assert s.task_finished(2, ok=True) == [Dispatch(ANY, 3, (0,))]
