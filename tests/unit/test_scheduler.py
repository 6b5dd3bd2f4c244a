"""Unit tests for nbray._node.scheduler, the pure scheduling state machine.

Nothing here starts a process: each test feeds events (method calls) to a ``Scheduler``
and compares the exact list of instructions it returns. Worker ids are handed out in
order from 1; ``start()`` pre-warms workers ``1..N`` and the scheduler hands work to the
most recently idle worker first, so on a freshly booted N-CPU node the first task lands on
worker N. Messages that are free text are matched with ``mock.ANY`` where the test is
about something else, and checked verbatim where they are the point.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any
from unittest.mock import ANY

import pytest

from nbray._node.scheduler import (
    MAX_STARTUP_FAILURES,
    ActorStateChanged,
    BusyWorker,
    DeathCause,
    Dispatch,
    DispatchCall,
    FailCall,
    FailTask,
    Instruction,
    Interrupt,
    KillWorker,
    Retry,
    Scheduler,
    SpawnWorker,
    StartActor,
    Unqueue,
)

#: every event a Scheduler takes; each is followed by ``validate()`` in these tests
EVENTS = (
    "start",
    "worker_started",
    "trim",
    "worker_died",
    "unqueued",
    "worker_retiring",
    "submit",
    "object_ready",
    "task_finished",
    "worker_blocked",
    "worker_unblocked",
    "cancel",
    "owner_gone",
    "create_actor",
    "actor_call",
    "call_finished",
    "count_lost_try",
    "kill_actor",
    "create_placement_group",
    "remove_placement_group",
)

CANCELLED_BEFORE = "the task was cancelled before it ran"
CANCELLED_RUNNING = "the task was cancelled"
RETRIABLE = "the task raised a retriable exception"
ACTOR_DEAD = "the actor is dead"


# --- helpers ----------------------------------------------------------------------------


def _validated(event: Callable[..., list[Instruction]]) -> Callable[..., list[Instruction]]:
    @functools.wraps(event)
    def checked(s: Scheduler, *args: Any, **kwargs: Any) -> list[Instruction]:
        s.validate()  # the state the event starts from (a test may have set it up by hand)
        out = event(s, *args, **kwargs)
        s.validate()
        return out

    return checked


@pytest.fixture(autouse=True)
def validate_after_every_event(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every event of every test here ends with ``Scheduler.validate()`` (its invariants),
    as distributed's tests do with ``validate_state``."""
    for name in EVENTS:
        monkeypatch.setattr(Scheduler, name, _validated(getattr(Scheduler, name)))


def test_every_event_is_validated() -> None:
    """EVENTS lists every public method that changes the scheduler."""
    views = {
        "counts",
        "busy_workers",
        "worker_states",
        "validate",
        "total",
        "available",
        "placement_group_problem",
        "running_by_owner",
        "ready_fits_with",
    }
    public = {n for n in vars(Scheduler) if not n.startswith("_")} - views - {"gpu_free"}
    assert public == set(EVENTS)


def test_validate_names_what_is_broken() -> None:
    s = boot({"CPU": 2})
    assert submit(s, 1) == [Dispatch(2, 1)]
    s.idle.append(2)  # a busy worker listed as idle
    s.available["CPU"] = 5.0
    with pytest.raises(AssertionError) as err:
        s.validate()
    assert "worker 2 (BUSY): IDLE state and the idle list disagree" in str(err.value)
    assert "CPU: 5 available is above the 2 in total" in str(err.value)


def started(s: Scheduler, instructions: Iterable[Instruction]) -> list[Instruction]:
    """Report every worker spawned by ``instructions`` as started; return what followed."""
    out: list[Instruction] = []
    for ins in instructions:
        if isinstance(ins, SpawnWorker):
            out += s.worker_started(ins.worker_id)
    return out


def boot(
    resources: dict[str, float] | None = None,
    gpu_ids: list[int] | None = None,
    max_workers: int = 256,
    pipeline_depth: int = 1,
) -> Scheduler:
    """A scheduler whose pre-warmed pool has started and sits idle."""
    s = Scheduler(
        resources if resources is not None else {"CPU": 1}, gpu_ids, max_workers, pipeline_depth
    )
    assert started(s, s.start()) == []
    return s


def submit(
    s: Scheduler,
    task_id: int,
    resources: dict[str, float] | None = None,
    *,
    retries: int = 3,
    owner: int = 1,
    deps: Iterable[int] = (),
    parent: int = 0,
    short: bool = False,
) -> list[Instruction]:
    res: dict[str, float] = resources if resources is not None else {"CPU": 1.0}
    return s.submit(task_id, f"t{task_id}", res, retries, owner, set(deps), parent, short=short)


def create(
    s: Scheduler,
    actor_id: int,
    resources: dict[str, float] | None = None,
    *,
    restarts: int = 0,
    task_retries: int = 0,
    owner: int = 1,
    detached: bool = False,
) -> list[Instruction]:
    res = resources if resources is not None else {}
    return s.create_actor(
        actor_id, f"A{actor_id}", res, restarts, task_retries, owner, detached=detached
    )


def alive_actor(
    s: Scheduler,
    actor_id: int,
    resources: dict[str, float] | None = None,
    *,
    restarts: int = 0,
    task_retries: int = 0,
    owner: int = 1,
    detached: bool = False,
) -> int:
    """Create an actor and start its worker; return the worker id."""
    out = create(
        s,
        actor_id,
        resources,
        restarts=restarts,
        task_retries=task_retries,
        owner=owner,
        detached=detached,
    )
    assert out[0] == ActorStateChanged(actor_id, "PENDING")
    assert isinstance(out[1], SpawnWorker)
    wid = out[1].worker_id
    assert out == [ActorStateChanged(actor_id, "PENDING"), SpawnWorker(wid, actor_id)]
    assert s.worker_started(wid) == [
        StartActor(wid, actor_id),
        ActorStateChanged(actor_id, "ALIVE"),
    ]
    return wid


def crashed(task_id: int, attempts: int, exit_code: int | None) -> FailTask:
    return FailTask(task_id, "worker_crashed", f"after {attempts} attempt(s)", exit_code)


def died(task_id: int, attempt: int, exit_code: int | None) -> Retry:
    return Retry(task_id, attempt, f"worker died (exit code {exit_code})")


def idle_counts() -> dict[str, int]:
    return {"WAITING": 0, "READY": 0, "RUNNING": 0}


# --- the pool ---------------------------------------------------------------------------


def test_start_prewarms_one_worker_per_cpu() -> None:
    s = Scheduler({"CPU": 4})
    assert s.start() == [SpawnWorker(1), SpawnWorker(2), SpawnWorker(3), SpawnWorker(4)]
    assert s.worker_states() == {1: "STARTING", 2: "STARTING", 3: "STARTING", 4: "STARTING"}
    assert started(s, [SpawnWorker(1), SpawnWorker(2), SpawnWorker(3), SpawnWorker(4)]) == []
    assert s.worker_states() == {1: "IDLE", 2: "IDLE", 3: "IDLE", 4: "IDLE"}


@pytest.mark.parametrize(
    ("resources", "expected"),
    [({"CPU": 2.5}, 2), ({"CPU": 0.5}, 1), ({}, 1), ({"CPU": 0}, 1), ({"CPU": 3, "GPU": 8}, 3)],
)
def test_pool_size_is_whole_cpus_at_least_one(resources: dict[str, float], expected: int) -> None:
    s = Scheduler(resources)
    assert s.start() == [SpawnWorker(i) for i in range(1, expected + 1)]


def test_zero_and_negative_resources_are_dropped_from_totals() -> None:
    s = Scheduler({"CPU": 2, "GPU": 0, "x": -1})
    assert s.total == {"CPU": 2.0}
    assert s.available == {"CPU": 2.0}
    assert s.gpu_free == {}


def test_worker_started_twice_or_unknown_is_ignored() -> None:
    s = Scheduler({"CPU": 1})
    assert s.start() == [SpawnWorker(1)]
    assert s.worker_started(1) == []
    assert s.worker_started(1) == []
    assert s.worker_started(99) == []
    assert s.worker_states() == {1: "IDLE"}


def test_task_submitted_before_the_pool_starts_waits_for_a_worker() -> None:
    s = Scheduler({"CPU": 2})
    assert s.start() == [SpawnWorker(1), SpawnWorker(2)]
    # two workers are already starting: no extra spawn for one ready task
    assert submit(s, 1) == []
    assert s.counts() == {"WAITING": 0, "READY": 1, "RUNNING": 0}
    assert s.worker_started(2) == [Dispatch(2, 1)]
    assert s.worker_started(1) == []
    assert s.worker_states() == {1: "IDLE", 2: "BUSY"}


def test_spawns_on_demand_when_more_ready_tasks_than_starting_workers() -> None:
    s = Scheduler({"CPU": 1})
    assert s.start() == [SpawnWorker(1)]
    assert submit(s, 1, {}) == []  # worker 1 is starting, enough for one task
    assert submit(s, 2, {}) == [SpawnWorker(2)]  # two ready, one starting
    assert s.worker_started(1) == [Dispatch(1, 1)]
    assert s.worker_started(2) == [Dispatch(2, 2)]


def test_burst_before_the_pool_starts_spawns_no_more_workers_than_cpus() -> None:
    s = Scheduler({"CPU": 4})
    assert s.start() == [SpawnWorker(1), SpawnWorker(2), SpawnWorker(3), SpawnWorker(4)]
    for tid in range(1, 101):
        assert submit(s, tid) == []  # four workers are on their way for four CPUs
    assert [s.worker_started(w) for w in (1, 2, 3, 4)] == [
        [Dispatch(1, 1)],
        [Dispatch(2, 2)],
        [Dispatch(3, 3)],
        [Dispatch(4, 4)],
    ]
    assert s.task_finished(2, ok=True) == [Dispatch(2, 5)]
    assert len(s.workers) == 4


def test_burst_of_fractional_tasks_spawns_what_fits() -> None:
    s = Scheduler({"CPU": 1})
    assert s.start() == [SpawnWorker(1)]
    assert submit(s, 1, {"CPU": 0.5}) == []
    assert submit(s, 2, {"CPU": 0.5}) == [SpawnWorker(2)]
    assert submit(s, 3, {"CPU": 0.5}) == []


def test_max_workers_bounds_on_demand_spawns() -> None:
    s = boot({"CPU": 1}, max_workers=2)
    assert submit(s, 1, {}) == [Dispatch(1, 1)]
    assert submit(s, 2, {}) == [SpawnWorker(2)]
    assert submit(s, 3, {}) == []  # 2 workers alive already
    assert s.worker_started(2) == [Dispatch(2, 2)]
    assert s.task_finished(1, ok=True) == [Dispatch(1, 3)]


# --- dispatch ---------------------------------------------------------------------------


def test_dispatch_goes_to_idle_workers() -> None:
    s = boot({"CPU": 2})
    assert submit(s, 1) == [Dispatch(2, 1)]
    assert submit(s, 2) == [Dispatch(1, 2)]
    assert s.worker_states() == {1: "BUSY", 2: "BUSY"}
    assert s.counts() == {"WAITING": 0, "READY": 0, "RUNNING": 2}


def test_ready_tasks_dispatch_in_fifo_order() -> None:
    s = boot({"CPU": 1})
    assert submit(s, 1) == [Dispatch(1, 1)]
    for tid in (2, 3, 4):
        assert submit(s, tid) == []  # no CPU free, and no spawn for a task that cannot fit
    assert s.counts() == {"WAITING": 0, "READY": 3, "RUNNING": 1}
    assert s.task_finished(1, ok=True) == [Dispatch(1, 2)]
    assert s.task_finished(2, ok=True) == [Dispatch(1, 3)]
    assert s.task_finished(3, ok=True) == [Dispatch(1, 4)]
    assert s.task_finished(4, ok=True) == []
    assert s.counts() == idle_counts()
    assert s.worker_states() == {1: "IDLE"}


def test_fifo_among_several_workers() -> None:
    s = boot({"CPU": 2})
    assert submit(s, 1) == [Dispatch(2, 1)]
    assert submit(s, 2) == [Dispatch(1, 2)]
    assert submit(s, 3) == []
    assert submit(s, 4) == []
    assert s.task_finished(2, ok=True) == [Dispatch(1, 3)]
    assert s.task_finished(1, ok=True) == [Dispatch(2, 4)]


def test_small_task_overtakes_one_that_does_not_fit_yet() -> None:
    s = boot({"CPU": 2})
    assert submit(s, 1) == [Dispatch(2, 1)]
    assert submit(s, 2, {"CPU": 2}) == []  # needs both CPUs
    assert submit(s, 3) == [Dispatch(1, 3)]  # fits beside task 1
    assert s.task_finished(1, ok=True) == []
    assert s.task_finished(3, ok=True) == [Dispatch(1, 2)]


def test_task_finished_unknown_or_twice_is_ignored() -> None:
    s = boot()
    assert s.task_finished(42, ok=True) == []
    assert submit(s, 1) == [Dispatch(1, 1)]
    assert s.task_finished(1, ok=True) == []
    assert s.task_finished(1, ok=True) == []
    assert s.available == {"CPU": 1.0}


# --- resources --------------------------------------------------------------------------


def test_cpu_accounting() -> None:
    s = boot({"CPU": 3})
    assert submit(s, 1, {"CPU": 2}) == [Dispatch(3, 1)]
    assert s.available == {"CPU": 1.0}
    assert submit(s, 2, {"CPU": 2}) == []
    assert submit(s, 3, {"CPU": 1}) == [Dispatch(2, 3)]
    assert s.available == {"CPU": 0.0}
    assert s.task_finished(1, ok=True) == [Dispatch(3, 2)]
    assert s.task_finished(3, ok=True) == []
    assert s.task_finished(2, ok=True) == []
    assert s.available == s.total == {"CPU": 3.0}


def test_fractional_cpus_share_a_cpu() -> None:
    s = boot({"CPU": 1})
    assert submit(s, 1, {"CPU": 0.5}) == [Dispatch(1, 1)]
    assert submit(s, 2, {"CPU": 0.5}) == [SpawnWorker(2)]  # fits, but no idle worker
    assert s.worker_started(2) == [Dispatch(2, 2)]
    assert s.available["CPU"] == pytest.approx(0.0)
    assert submit(s, 3, {"CPU": 0.5}) == []
    assert s.task_finished(1, ok=True) == [Dispatch(1, 3)]
    assert s.task_finished(2, ok=True) == []
    assert s.task_finished(3, ok=True) == []
    assert s.available["CPU"] == pytest.approx(1.0)


def test_many_small_fractions_add_up_exactly() -> None:
    s = boot({"CPU": 1}, max_workers=100)
    out: list[Instruction] = []
    for tid in range(1, 11):
        out += submit(s, tid, {"CPU": 0.1})
        out += started(s, out[-1:])
    dispatched = [i.task_id for i in out if isinstance(i, Dispatch)]
    assert dispatched == list(range(1, 11))  # float rounding does not keep the tenth out
    assert submit(s, 11, {"CPU": 0.1}) == []


def test_custom_resources() -> None:
    s = boot({"CPU": 4, "accel": 1})
    assert submit(s, 1, {"CPU": 1, "accel": 1}) == [Dispatch(4, 1)]
    assert submit(s, 2, {"CPU": 1, "accel": 1}) == []
    assert submit(s, 3, {"CPU": 1}) == [Dispatch(3, 3)]  # plain CPU work is not held up
    assert s.available == {"CPU": 2.0, "accel": 0.0}
    assert s.task_finished(1, ok=True) == [Dispatch(4, 2)]
    assert s.task_finished(2, ok=True) == []
    assert s.task_finished(3, ok=True) == []
    assert s.available == s.total


def test_fractional_custom_resource() -> None:
    s = boot({"CPU": 4, "slot": 1})
    assert submit(s, 1, {"slot": 0.5}) == [Dispatch(4, 1)]
    assert submit(s, 2, {"slot": 0.5}) == [Dispatch(3, 2)]
    assert submit(s, 3, {"slot": 0.5}) == []
    assert s.task_finished(2, ok=True) == [Dispatch(3, 3)]


def test_whole_gpus_get_distinct_ids() -> None:
    s = boot({"CPU": 4, "GPU": 2})
    assert submit(s, 1, {"CPU": 1, "GPU": 1}) == [Dispatch(4, 1, (0,))]
    assert submit(s, 2, {"CPU": 1, "GPU": 1}) == [Dispatch(3, 2, (1,))]
    assert submit(s, 3, {"CPU": 1, "GPU": 1}) == []
    assert s.gpu_free == {0: 0.0, 1: 0.0}
    assert s.task_finished(1, ok=True) == [Dispatch(4, 3, (0,))]
    assert s.task_finished(2, ok=True) == []
    assert s.task_finished(3, ok=True) == []
    assert s.gpu_free == {0: 1.0, 1: 1.0}
    assert s.available == s.total


def test_multi_gpu_task_gets_several_ids() -> None:
    s = boot({"CPU": 2, "GPU": 3})
    assert submit(s, 1, {"GPU": 1}) == [Dispatch(2, 1, (0,))]
    assert submit(s, 2, {"GPU": 2}) == [Dispatch(1, 2, (1, 2))]
    assert s.task_finished(1, ok=True) == []
    assert submit(s, 3, {"GPU": 2}) == []  # only one GPU free
    # neither idle worker served GPUs (0, 1): a fresh one is started for them
    assert s.task_finished(2, ok=True) == [SpawnWorker(3, 0, "")]
    assert s.worker_started(3) == [Dispatch(3, 3, (0, 1))]


def test_explicit_gpu_ids_are_used() -> None:
    s = boot({"CPU": 2, "GPU": 2}, gpu_ids=[3, 7])
    assert submit(s, 1, {"GPU": 1}) == [Dispatch(2, 1, (3,))]
    assert submit(s, 2, {"GPU": 1}) == [Dispatch(1, 2, (7,))]


def test_fractional_gpus_pack_onto_one_gpu() -> None:
    s = boot({"CPU": 4, "GPU": 2})
    assert submit(s, 1, {"GPU": 0.5}) == [Dispatch(4, 1, (0,))]
    assert submit(s, 2, {"GPU": 0.25}) == [Dispatch(3, 2, (0,))]  # the fullest that fits
    assert submit(s, 3, {"GPU": 1}) == [Dispatch(2, 3, (1,))]  # a whole GPU is still free
    assert s.gpu_free == {0: 0.25, 1: 0.0}
    assert submit(s, 4, {"GPU": 0.5}) == []  # 0.25 left on GPU 0 only
    assert s.task_finished(1, ok=True) == [Dispatch(4, 4, (0,))]
    for tid in (2, 3, 4):
        assert s.task_finished(tid, ok=True) == []
    assert s.gpu_free == {0: 1.0, 1: 1.0}
    assert s.available["GPU"] == pytest.approx(2.0)


def test_fractional_gpus_fill_the_next_gpu_when_one_is_full() -> None:
    s = boot({"CPU": 4, "GPU": 2})
    assert submit(s, 1, {"GPU": 0.5}) == [Dispatch(4, 1, (0,))]
    assert submit(s, 2, {"GPU": 0.5}) == [Dispatch(3, 2, (0,))]
    assert submit(s, 3, {"GPU": 0.5}) == [Dispatch(2, 3, (1,))]
    assert submit(s, 4, {"GPU": 0.5}) == [Dispatch(1, 4, (1,))]
    assert submit(s, 5, {"GPU": 0.5}) == []


def test_whole_gpus_are_not_made_of_leftover_fractions() -> None:
    s = boot({"CPU": 4, "GPU": 4})
    assert submit(s, 1, {"GPU": 0.6}) == [Dispatch(4, 1, (0,))]
    assert submit(s, 2, {"GPU": 0.6}) == [Dispatch(3, 2, (1,))]
    assert submit(s, 3, {"GPU": 0.6}) == [Dispatch(2, 3, (2,))]
    assert s.available["GPU"] == pytest.approx(2.2)
    # 2.2 GPUs are free in total, but only GPU 3 is whole
    assert submit(s, 4, {"GPU": 2}) == []
    # worker 3 served GPU 1 alone: the unused worker 1 takes GPUs (1, 3)
    assert s.task_finished(2, ok=True) == [Dispatch(1, 4, (1, 3))]


def test_resources_released_when_worker_dies() -> None:
    s = boot({"CPU": 2, "GPU": 1})
    assert submit(s, 1, {"CPU": 2, "GPU": 1}, retries=0) == [Dispatch(2, 1, (0,))]
    assert s.worker_died(2, -9) == [crashed(1, 1, -9), SpawnWorker(3)]
    assert s.available == s.total
    assert s.gpu_free == {0: 1.0}


# --- infeasible -------------------------------------------------------------------------


def test_infeasible_task_fails_at_once() -> None:
    s = boot({"CPU": 2})
    assert submit(s, 1, {"CPU": 3}) == [
        FailTask(
            1,
            "unschedulable",
            "task t1 asks for 3 CPU but the cluster has 2 in total, so it can never run. "
            "Ask for less, or start the cluster with more (nbray.init(resources=...))",
        )
    ]
    assert s.counts() == idle_counts()
    assert s.tasks == {}


@pytest.mark.parametrize(
    ("cluster", "resources"),
    [
        ({"CPU": 2}, {"GPU": 1}),  # no GPU at all
        ({"CPU": 2}, {"CPU": 1, "accel": 1}),  # unknown custom resource
        ({"CPU": 2}, {"CPU": 2.01}),
        ({"CPU": 2, "GPU": 2}, {"GPU": 3}),
        ({"CPU": 2, "GPU": 2}, {"GPU": 1.5}),  # more than one GPU, not whole
    ],
)
def test_infeasible_requests(cluster: dict[str, float], resources: dict[str, float]) -> None:
    s = boot(cluster)
    assert submit(s, 5, resources) == [FailTask(5, "unschedulable", ANY)]
    assert s.counts() == idle_counts()
    assert s.worker_states() == {1: "IDLE", 2: "IDLE"}


def test_fractional_gpu_over_one_message() -> None:
    s = boot({"CPU": 2, "GPU": 2})
    out = submit(s, 1, {"GPU": 1.5})
    assert out == [FailTask(1, "unschedulable", ANY)]
    assert isinstance(out[0], FailTask)
    assert "more than one GPU must be a whole number" in out[0].message


def test_infeasible_task_with_deps_fails_before_waiting() -> None:
    s = boot({"CPU": 1})
    assert submit(s, 1, {"CPU": 2}, deps={10}) == [FailTask(1, "unschedulable", ANY)]
    assert s.object_ready(10) == []


def test_zero_amounts_are_ignored_by_feasibility() -> None:
    s = boot({"CPU": 1})
    assert submit(s, 1, {"CPU": 1, "GPU": 0, "accel": 0}) == [Dispatch(1, 1)]


def test_infeasible_actor_is_dead_at_once() -> None:
    s = boot({"CPU": 1})
    out = create(s, 1, {"GPU": 1})
    assert out == [ActorStateChanged(1, "DEAD", ANY)]
    assert isinstance(out[0], ActorStateChanged)
    assert out[0].reason.startswith("actor A1 asks for 1 GPU")
    assert s.actor_call(100, 1) == [FailCall(100, 1, "actor_died", ACTOR_DEAD)]


# --- dependencies -----------------------------------------------------------------------


def test_task_waits_for_all_deps_then_dispatches() -> None:
    s = boot({"CPU": 1})
    assert submit(s, 1, deps={10, 11}) == []
    assert s.counts() == {"WAITING": 1, "READY": 0, "RUNNING": 0}
    assert s.object_ready(10) == []
    assert s.counts() == {"WAITING": 1, "READY": 0, "RUNNING": 0}
    assert s.object_ready(11) == [Dispatch(1, 1)]
    assert s.counts() == {"WAITING": 0, "READY": 0, "RUNNING": 1}


def test_failed_dep_fails_the_task() -> None:
    s = boot({"CPU": 1})
    assert submit(s, 1, deps={10, 11}) == []
    assert s.object_ready(11, ok=False) == [FailTask(1, "dependency", dependency=11)]
    assert s.counts() == idle_counts()
    assert s.waiting_on == {}
    assert s.object_ready(10) == []


def test_one_object_releases_every_waiting_task_in_order() -> None:
    s = boot({"CPU": 2})
    assert submit(s, 2, deps={10}) == []
    assert submit(s, 1, deps={10}) == []
    assert submit(s, 3, deps={10}) == []
    assert s.object_ready(10) == [Dispatch(2, 1), Dispatch(1, 2)]
    assert s.counts() == {"WAITING": 0, "READY": 1, "RUNNING": 2}


def test_one_failed_object_fails_every_waiting_task() -> None:
    s = boot({"CPU": 1})
    assert submit(s, 1, deps={10}) == []
    assert submit(s, 2, deps={10, 11}) == []
    assert submit(s, 3, deps={11}) == []
    assert s.object_ready(10, ok=False) == [
        FailTask(1, "dependency", dependency=10),
        FailTask(2, "dependency", dependency=10),
    ]
    assert s.object_ready(11) == [Dispatch(1, 3)]


def test_object_ready_without_waiters_is_ignored() -> None:
    s = boot()
    assert s.object_ready(123) == []
    assert s.object_ready(123, ok=False) == []


def test_ready_dep_still_needs_resources() -> None:
    s = boot({"CPU": 1})
    assert submit(s, 1) == [Dispatch(1, 1)]
    assert submit(s, 2, deps={10}) == []
    assert s.object_ready(10) == []
    assert s.counts() == {"WAITING": 0, "READY": 1, "RUNNING": 1}
    assert s.task_finished(1, ok=True) == [Dispatch(1, 2)]


# --- worker death and retries -------------------------------------------------------------


def test_worker_death_retries_until_attempts_exceed_max_retries() -> None:
    s = boot({"CPU": 1})
    assert submit(s, 1, retries=2) == [Dispatch(1, 1)]
    assert s.worker_died(1, -9) == [died(1, 2, -9), SpawnWorker(2)]
    assert s.counts() == {"WAITING": 0, "READY": 1, "RUNNING": 0}
    assert s.worker_started(2) == [Dispatch(2, 1)]
    assert s.worker_died(2, 137) == [died(1, 3, 137), SpawnWorker(3)]
    assert s.worker_started(3) == [Dispatch(3, 1)]
    assert s.worker_died(3, 1) == [crashed(1, 3, 1), SpawnWorker(4)]
    assert s.counts() == idle_counts()
    assert s.worker_started(4) == []
    assert s.available == s.total


def test_max_retries_zero_fails_at_once() -> None:
    s = boot({"CPU": 1})
    assert submit(s, 1, retries=0) == [Dispatch(1, 1)]
    assert s.worker_died(1, None) == [
        FailTask(1, "worker_crashed", "after 1 attempt(s)", exit_code=None),
        SpawnWorker(2),
    ]


def test_max_retries_minus_one_retries_forever() -> None:
    s = boot({"CPU": 1})
    assert submit(s, 1, retries=-1) == [Dispatch(1, 1)]
    wid = 1
    for attempt in range(2, 40):
        assert s.worker_died(wid, -11) == [died(1, attempt, -11), SpawnWorker(wid + 1)]
        wid += 1
        assert s.worker_started(wid) == [Dispatch(wid, 1)]
    assert s.task_finished(1, ok=True) == []
    assert s.counts() == idle_counts()


def test_retried_task_goes_before_other_ready_tasks() -> None:
    s = boot({"CPU": 1})
    assert submit(s, 1) == [Dispatch(1, 1)]
    assert submit(s, 2) == []
    assert s.worker_died(1, 1) == [died(1, 2, 1), SpawnWorker(2)]
    assert s.worker_started(2) == [Dispatch(2, 1)]


def test_retry_dispatches_on_another_idle_worker() -> None:
    s = boot({"CPU": 2})
    assert submit(s, 1) == [Dispatch(2, 1)]
    assert s.worker_died(2, -9) == [died(1, 2, -9), SpawnWorker(3), Dispatch(1, 1)]
    assert s.worker_started(3) == []


def test_replacement_worker_spawned_after_idle_worker_dies() -> None:
    s = boot({"CPU": 2})
    assert s.worker_died(1, 1) == [SpawnWorker(3)]
    assert s.worker_states() == {2: "IDLE", 3: "STARTING"}
    assert s.worker_started(3) == []
    assert submit(s, 1) == [Dispatch(3, 1)]
    assert submit(s, 2) == [Dispatch(2, 2)]


def test_unknown_or_repeated_worker_death_is_ignored() -> None:
    s = boot({"CPU": 1})
    assert s.worker_died(99, 1) == []
    assert s.worker_died(1, 1) == [SpawnWorker(2)]
    assert s.worker_died(1, 1) == []


def test_retriable_exception_is_retried() -> None:
    s = boot({"CPU": 1})
    assert submit(s, 1, retries=1) == [Dispatch(1, 1)]
    assert s.task_finished(1, ok=False, retriable=True) == [
        Retry(1, 2, RETRIABLE),
        Dispatch(1, 1),
    ]
    assert s.task_finished(1, ok=False, retriable=True) == []  # attempts exhausted
    assert s.counts() == idle_counts()
    assert s.available == s.total


def test_retriable_exception_with_max_retries_minus_one() -> None:
    s = boot({"CPU": 1})
    assert submit(s, 1, retries=-1) == [Dispatch(1, 1)]
    for attempt in range(2, 30):
        assert s.task_finished(1, ok=False, retriable=True) == [
            Retry(1, attempt, RETRIABLE),
            Dispatch(1, 1),
        ]


def test_non_retriable_exception_is_not_retried() -> None:
    s = boot({"CPU": 1})
    assert submit(s, 1, retries=5) == [Dispatch(1, 1)]
    assert submit(s, 2) == []
    assert s.task_finished(1, ok=False, retriable=False) == [Dispatch(1, 2)]


def test_retriable_exception_and_worker_death_share_one_budget() -> None:
    s = boot({"CPU": 1})
    assert submit(s, 1, retries=2) == [Dispatch(1, 1)]
    assert s.task_finished(1, ok=False, retriable=True) == [Retry(1, 2, RETRIABLE), Dispatch(1, 1)]
    assert s.worker_died(1, 3) == [died(1, 3, 3), SpawnWorker(2)]
    assert s.worker_started(2) == [Dispatch(2, 1)]
    assert s.task_finished(1, ok=False, retriable=True) == []


def test_retried_task_after_exception_waits_behind_nothing() -> None:
    s = boot({"CPU": 1})
    assert submit(s, 1, retries=1) == [Dispatch(1, 1)]
    assert submit(s, 2) == []
    assert s.task_finished(1, ok=False, retriable=True) == [Retry(1, 2, RETRIABLE), Dispatch(1, 1)]
    assert s.task_finished(1, ok=True) == [Dispatch(1, 2)]


# --- cancellation -----------------------------------------------------------------------


def test_cancel_waiting_task() -> None:
    s = boot({"CPU": 1})
    assert submit(s, 1, deps={10}) == []
    assert s.cancel(1, force=False) == [FailTask(1, "cancelled", CANCELLED_BEFORE)]
    assert s.waiting_on == {}
    assert s.object_ready(10) == []
    assert s.counts() == idle_counts()


def test_cancel_ready_task() -> None:
    s = boot({"CPU": 1})
    assert submit(s, 1) == [Dispatch(1, 1)]
    assert submit(s, 2) == []
    assert submit(s, 3) == []
    assert s.cancel(2, force=True) == [FailTask(2, "cancelled", CANCELLED_BEFORE)]
    assert s.task_finished(1, ok=True) == [Dispatch(1, 3)]


def test_cancel_running_task_interrupts() -> None:
    s = boot({"CPU": 1})
    assert submit(s, 1, retries=3) == [Dispatch(1, 1)]
    assert submit(s, 2) == []
    assert s.cancel(1, force=False) == [Interrupt(1, 1)]
    assert s.counts() == {"WAITING": 0, "READY": 1, "RUNNING": 1}
    # the interrupted task ends with an exception; a cancelled task is never retried
    assert s.task_finished(1, ok=False, retriable=True) == [Dispatch(1, 2)]


def test_interrupted_task_whose_worker_dies_fails_cancelled() -> None:
    s = boot({"CPU": 1})
    assert submit(s, 1, retries=3) == [Dispatch(1, 1)]
    assert s.cancel(1, force=False) == [Interrupt(1, 1)]
    assert s.worker_died(1, -2) == [FailTask(1, "cancelled", CANCELLED_RUNNING), SpawnWorker(2)]


def test_force_cancel_kills_worker_and_does_not_retry() -> None:
    s = boot({"CPU": 1})
    assert submit(s, 1, retries=-1) == [Dispatch(1, 1)]
    assert s.cancel(1, force=True) == [KillWorker(1)]
    assert s.worker_died(1, -9) == [FailTask(1, "cancelled", CANCELLED_RUNNING), SpawnWorker(2)]
    assert s.counts() == idle_counts()
    assert s.available == s.total
    assert s.worker_started(2) == []


def test_cancel_twice_or_unknown_is_ignored() -> None:
    s = boot({"CPU": 1})
    assert s.cancel(77, force=True) == []
    assert submit(s, 1) == [Dispatch(1, 1)]
    assert s.cancel(1, force=False) == [Interrupt(1, 1)]
    assert s.cancel(1, force=False) == []
    assert s.cancel(1, force=True) == []


def test_cancel_of_finished_task_is_ignored() -> None:
    s = boot({"CPU": 1})
    assert submit(s, 1) == [Dispatch(1, 1)]
    assert s.task_finished(1, ok=True) == []
    assert s.cancel(1, force=True) == []


def test_force_cancelled_worker_is_not_reused_if_result_races_the_kill() -> None:
    # The killed worker may report the task's end before the head sees it die: it must not
    # go back to the idle pool, or the next task is sent to a process being killed.
    s = boot({"CPU": 1})
    assert submit(s, 1) == [Dispatch(1, 1)]
    assert s.cancel(1, force=True) == [KillWorker(1)]
    assert s.task_finished(1, ok=True) == []
    assert submit(s, 2, retries=0) == [SpawnWorker(2)]
    assert s.worker_died(1, -9) == []
    assert s.worker_started(2) == [Dispatch(2, 2)]
    assert s.task_finished(2, ok=True) == []
    assert s.counts() == idle_counts()


def test_recursive_cancel_reaches_children_and_grandchildren() -> None:
    s = boot({"CPU": 2})
    assert submit(s, 1) == [Dispatch(2, 1)]
    assert submit(s, 2, parent=1) == [Dispatch(1, 2)]
    assert submit(s, 3, parent=1) == []  # ready, no CPU
    assert submit(s, 4, parent=2, deps={10}) == []  # waiting
    assert submit(s, 5) == []  # unrelated
    assert s.cancel(1, force=False) == [
        FailTask(4, "cancelled", CANCELLED_BEFORE),
        Interrupt(1, 2),
        FailTask(3, "cancelled", CANCELLED_BEFORE),
        Interrupt(2, 1),
    ]
    assert s.counts() == {"WAITING": 0, "READY": 1, "RUNNING": 2}
    assert s.task_finished(2, ok=False) == [Dispatch(1, 5)]


def test_recursive_force_cancel_kills_every_running_descendant() -> None:
    s = boot({"CPU": 2})
    assert submit(s, 1) == [Dispatch(2, 1)]
    assert submit(s, 2, parent=1) == [Dispatch(1, 2)]
    assert s.cancel(1, force=True) == [KillWorker(1), KillWorker(2)]
    assert s.worker_died(1, -9) == [FailTask(2, "cancelled", CANCELLED_RUNNING), SpawnWorker(3)]
    assert s.worker_died(2, -9) == [FailTask(1, "cancelled", CANCELLED_RUNNING), SpawnWorker(4)]


def test_non_recursive_cancel_leaves_children() -> None:
    s = boot({"CPU": 2})
    assert submit(s, 1) == [Dispatch(2, 1)]
    assert submit(s, 2, parent=1) == [Dispatch(1, 2)]
    assert submit(s, 3, parent=1) == []
    assert s.cancel(1, force=False, recursive=False) == [Interrupt(2, 1)]
    assert s.counts() == {"WAITING": 0, "READY": 1, "RUNNING": 2}


def test_children_of_a_finished_parent_can_still_be_cancelled_directly() -> None:
    s = boot({"CPU": 1})
    assert submit(s, 1) == [Dispatch(1, 1)]
    assert submit(s, 2, parent=1, deps={10}) == []
    assert s.task_finished(1, ok=True) == []
    assert s.cancel(2, force=False) == [FailTask(2, "cancelled", CANCELLED_BEFORE)]


# --- nested tasks and blocked workers ---------------------------------------------------


def test_nested_fan_out_on_one_cpu_does_not_deadlock() -> None:
    s = boot({"CPU": 1})
    assert submit(s, 1) == [Dispatch(1, 1)]
    assert submit(s, 2, parent=1) == []  # the parent holds the only CPU
    # the parent blocks in get(): its CPU is lent, a new worker runs the child
    assert s.worker_blocked(1) == [SpawnWorker(2)]
    assert s.available == {"CPU": 1.0}
    assert s.worker_started(2) == [Dispatch(2, 2)]
    assert s.available == {"CPU": 0.0}
    assert s.task_finished(2, ok=True) == []
    assert s.available == {"CPU": 1.0}
    # the parent wakes up and takes its CPU back
    assert s.worker_unblocked(1) == []
    assert s.available == {"CPU": 0.0}
    assert submit(s, 3, parent=1) == []  # no CPU for a second child now
    assert s.worker_blocked(1) == [Dispatch(2, 3)]
    assert s.task_finished(3, ok=True) == []
    assert s.worker_unblocked(1) == []
    assert s.task_finished(1, ok=True) == []
    assert s.available == s.total
    assert s.worker_states() == {1: "IDLE", 2: "IDLE"}
    assert s.trim() == [KillWorker(2)]


def test_unblock_while_child_runs_overcommits_until_child_ends() -> None:
    s = boot({"CPU": 1})
    assert submit(s, 1) == [Dispatch(1, 1)]
    assert submit(s, 2, parent=1) == []
    assert s.worker_blocked(1) == [SpawnWorker(2)]
    assert s.worker_started(2) == [Dispatch(2, 2)]
    assert s.worker_unblocked(1) == []
    assert s.available == {"CPU": -1.0}
    assert submit(s, 3) == []
    assert s.task_finished(2, ok=True) == []  # still no CPU: the parent has it back
    assert s.task_finished(1, ok=True) == [Dispatch(1, 3)]


def test_fan_out_of_many_children() -> None:
    s = boot({"CPU": 2})
    assert submit(s, 1) == [Dispatch(2, 1)]
    assert submit(s, 2) == [Dispatch(1, 2)]
    for tid in (10, 11):
        assert submit(s, tid, parent=1) == []
    assert s.worker_blocked(2) == [SpawnWorker(3)]
    assert s.worker_blocked(1) == [SpawnWorker(4)]
    # children go to the front of the queue, newest first (depth-first)
    assert s.worker_started(3) == [Dispatch(3, 11)]
    assert s.worker_started(4) == [Dispatch(4, 10)]


def test_block_is_counted_once_and_only_for_busy_workers() -> None:
    s = boot({"CPU": 2})
    assert s.worker_blocked(1) == []  # idle: nothing to lend
    assert s.available == {"CPU": 2.0}
    assert submit(s, 1) == [Dispatch(2, 1)]
    assert s.worker_blocked(2) == []
    assert s.worker_blocked(2) == []
    assert s.available == {"CPU": 2.0}
    assert s.worker_unblocked(2) == []
    assert s.worker_unblocked(2) == []
    assert s.available == {"CPU": 1.0}
    assert s.worker_blocked(99) == []
    assert s.worker_unblocked(99) == []


def test_block_lends_fractional_cpus() -> None:
    s = boot({"CPU": 1})
    assert submit(s, 1, {"CPU": 0.5}) == [Dispatch(1, 1)]
    assert submit(s, 2, {"CPU": 1}) == []
    assert s.worker_blocked(1) == [SpawnWorker(2)]
    assert s.worker_started(2) == [Dispatch(2, 2)]


def test_blocked_zero_cpu_task_lends_nothing() -> None:
    s = boot({"CPU": 1, "slot": 1})
    assert submit(s, 1, {"slot": 1}) == [Dispatch(1, 1)]
    assert submit(s, 2, {"slot": 1}) == []
    assert s.worker_blocked(1) == []  # only CPUs are lent
    assert s.available == {"CPU": 1.0, "slot": 0.0}


def test_task_ending_while_blocked_returns_lent_cpus() -> None:
    s = boot({"CPU": 1})
    assert submit(s, 1) == [Dispatch(1, 1)]
    assert s.worker_blocked(1) == []
    assert s.task_finished(1, ok=True) == []
    assert s.available == {"CPU": 1.0}
    assert s.worker_unblocked(1) == []
    assert s.available == {"CPU": 1.0}


def test_worker_dying_while_blocked_returns_lent_cpus() -> None:
    s = boot({"CPU": 1})
    assert submit(s, 1, retries=0) == [Dispatch(1, 1)]
    assert s.worker_blocked(1) == []
    assert s.worker_died(1, -9) == [crashed(1, 1, -9), SpawnWorker(2)]
    assert s.available == {"CPU": 1.0}


# --- owner gone -------------------------------------------------------------------------


def test_owner_gone_cancels_its_tasks_and_kills_its_non_detached_actors() -> None:
    s = boot({"CPU": 2})
    assert submit(s, 1, owner=7) == [Dispatch(2, 1)]
    assert submit(s, 2, owner=8) == [Dispatch(1, 2)]
    assert submit(s, 3, owner=7) == []
    assert submit(s, 4, owner=7, deps={99}) == []
    assert submit(s, 5, owner=8) == []
    w1 = alive_actor(s, 1, owner=7)
    w2 = alive_actor(s, 2, owner=7, detached=True)
    w3 = alive_actor(s, 3, owner=8)
    assert (w1, w2, w3) == (3, 4, 5)
    assert s.owner_gone(7) == [
        KillWorker(2),
        FailTask(3, "cancelled", CANCELLED_BEFORE),
        FailTask(4, "cancelled", CANCELLED_BEFORE),
        KillWorker(3),
    ]
    assert s.worker_died(2, -9) == [FailTask(1, "cancelled", CANCELLED_RUNNING), SpawnWorker(6)]
    assert s.worker_started(6) == [Dispatch(6, 5)]
    assert s.worker_died(3, -9) == [ActorStateChanged(1, "DEAD", "it was killed")]
    assert s.actor_call(100, 1) == [FailCall(100, 1, "actor_died", ACTOR_DEAD)]
    assert s.actor_call(101, 2) == [DispatchCall(4, 2, 101)]
    assert s.actor_call(102, 3) == [DispatchCall(5, 3, 102)]
    assert s.counts() == {"WAITING": 0, "READY": 0, "RUNNING": 2}


def test_owner_gone_cancels_other_owners_children_of_its_tasks() -> None:
    s = boot({"CPU": 1})
    assert submit(s, 1, owner=7) == [Dispatch(1, 1)]
    assert submit(s, 2, owner=8, parent=1, deps={10}) == []
    assert s.owner_gone(7) == [FailTask(2, "cancelled", CANCELLED_BEFORE), KillWorker(1)]


def test_owner_gone_with_nothing_is_empty() -> None:
    s = boot({"CPU": 1})
    assert submit(s, 1, owner=8) == [Dispatch(1, 1)]
    assert s.owner_gone(7) == []


def test_owner_gone_frees_a_pending_actor_so_tasks_can_run() -> None:
    s = boot({"CPU": 1})
    assert submit(s, 1, owner=8) == [Dispatch(1, 1)]
    assert create(s, 1, {"CPU": 1}, owner=7) == [ActorStateChanged(1, "PENDING")]
    assert s.actor_call(100, 1) == []
    assert s.owner_gone(7) == [
        ActorStateChanged(1, "DEAD", "the actor was killed"),
        FailCall(100, 1, "actor_died", "the actor was killed"),
    ]
    assert submit(s, 2, owner=8) == []
    assert s.task_finished(1, ok=True) == [Dispatch(1, 2)]  # no actor took the CPU


# --- pipelining -------------------------------------------------------------------------
# Short tasks (``short=True``) may queue on a busy worker whose current task has the same
# resource shape, up to ``pipeline_depth - 1`` per worker, when no worker is idle. They hold
# no resources of their own: each takes over those of the task before it.


def test_no_pipelining_with_the_default_depth_of_one() -> None:
    s = boot({"CPU": 1})
    assert submit(s, 1, short=True) == [Dispatch(1, 1)]
    assert submit(s, 2, short=True) == []
    assert s.task_finished(1, ok=True) == [Dispatch(1, 2)]


def test_short_tasks_are_pipelined_only_when_no_worker_is_idle() -> None:
    s = boot({"CPU": 2}, pipeline_depth=4)
    assert submit(s, 1, short=True) == [Dispatch(2, 1)]  # idle workers come first
    assert submit(s, 2, short=True) == [Dispatch(1, 2)]
    assert submit(s, 3, short=True) == [Dispatch(1, 3)]  # none idle: queued behind task 2
    assert submit(s, 4) == []  # not short: waits for a free CPU
    assert submit(s, 5, short=True) == []  # behind a task that waits: the queue stays FIFO
    assert s.counts() == {"WAITING": 0, "READY": 2, "RUNNING": 3}
    assert s.available == {"CPU": 0.0}
    assert s.task_finished(2, ok=True) == []  # 3 takes over on worker 1
    # 4 takes the free CPU; no worker is idle then, so short 5 queues behind short 3
    assert s.task_finished(1, ok=True) == [Dispatch(2, 4), Dispatch(1, 5)]
    assert s.task_finished(3, ok=True) == []  # 5 takes over on worker 1
    assert s.counts() == {"WAITING": 0, "READY": 0, "RUNNING": 2}


def test_pipelined_task_goes_to_the_least_loaded_busy_worker() -> None:
    s = boot({"CPU": 3}, pipeline_depth=4)
    assert [submit(s, tid, short=True) for tid in (1, 2, 3)] == [
        [Dispatch(3, 1)],
        [Dispatch(2, 2)],
        [Dispatch(1, 3)],
    ]
    # equally loaded workers: the lowest id first
    assert [submit(s, tid, short=True) for tid in (4, 5, 6, 7)] == [
        [Dispatch(1, 4)],
        [Dispatch(2, 5)],
        [Dispatch(3, 6)],
        [Dispatch(1, 7)],
    ]
    # worker 2's queue empties (5 takes over): it is now the least loaded
    assert s.task_finished(2, ok=True) == []
    assert submit(s, 8, short=True) == [Dispatch(2, 8)]
    assert submit(s, 9, short=True) == [Dispatch(2, 9)]  # 2 and 3 hold one each, 1 two


def test_pipeline_depth_bounds_the_tasks_queued_per_worker() -> None:
    s = boot({"CPU": 1}, pipeline_depth=4)
    assert submit(s, 1, short=True) == [Dispatch(1, 1)]
    for tid in (2, 3, 4):
        assert submit(s, tid, short=True) == [Dispatch(1, tid)]
    assert submit(s, 5, short=True) == []  # 1 running and 3 queued: the depth is reached
    assert submit(s, 6, short=True) == []
    assert s.counts() == {"WAITING": 0, "READY": 2, "RUNNING": 4}
    assert s.task_finished(1, ok=True) == [Dispatch(1, 5)]  # 2 takes over: a place frees
    assert s.task_finished(2, ok=True) == [Dispatch(1, 6)]
    assert s.counts() == {"WAITING": 0, "READY": 0, "RUNNING": 4}


def test_tasks_of_another_shape_are_not_pipelined() -> None:
    s = boot({"CPU": 2, "x": 1}, pipeline_depth=4)
    assert submit(s, 1, {"CPU": 1, "x": 1}, short=True) == [Dispatch(2, 1)]
    assert submit(s, 2, {"CPU": 1}, short=True) == [Dispatch(1, 2)]
    # each queues behind the worker running its own shape, even the busier one
    assert submit(s, 3, {"CPU": 1, "x": 1}, short=True) == [Dispatch(2, 3)]
    assert submit(s, 4, {"CPU": 1, "x": 1}, short=True) == [Dispatch(2, 4)]
    assert submit(s, 5, {"CPU": 1}, short=True) == [Dispatch(1, 5)]
    # no busy worker runs this shape: it waits for resources
    assert submit(s, 6, {"CPU": 0.5}, short=True) == []
    assert s.counts() == {"WAITING": 0, "READY": 1, "RUNNING": 5}
    assert s.task_finished(2, ok=True) == []  # 5 takes over {"CPU": 1}
    assert s.task_finished(5, ok=True) == [Dispatch(1, 6)]


def test_a_lease_holds_its_worker_until_it_finishes_and_nothing_queues_behind_it() -> None:
    s = boot({"CPU": 2}, pipeline_depth=4)
    lease = s.submit(9, "lease", {"CPU": 1.0}, 0, 1, set(), lease=True)
    assert lease == [Dispatch(2, 9)]
    assert submit(s, 1, short=True) == [Dispatch(1, 1)]
    # short tasks queue behind the task on worker 1, never behind the lease (worker 2 is
    # the less loaded one by the third)
    assert submit(s, 2, short=True) == [Dispatch(1, 2)]
    assert submit(s, 3, short=True, owner=2) == [Dispatch(1, 3)]
    assert s.counts() == {"WAITING": 0, "READY": 0, "RUNNING": 3}  # (a lease is no task)
    assert s.available == {"CPU": 0.0}
    assert s.running_by_owner() == {1: 3, 2: 1}  # (it is its owner's share)
    # what waits would fit in the lease's CPU (a lease is asked back then), not in none
    assert submit(s, 4) == []
    assert s.ready_fits_with({"CPU": 1.0}) and not s.ready_fits_with({})
    assert s.cancel(4, force=False) == [FailTask(4, "cancelled", CANCELLED_BEFORE)]
    # returned: its worker is idle again
    assert s.task_finished(9, ok=True) == []
    assert s.available == {"CPU": 1.0}
    # the client went while its lease's worker ran its task: the worker is killed
    assert s.submit(10, "lease", {"CPU": 1.0}, 0, 3, set(), lease=True) == [Dispatch(2, 10)]
    assert KillWorker(2) in s.owner_gone(3)


def test_gpu_tasks_are_never_pipelined() -> None:
    s = boot({"CPU": 2, "GPU": 1}, pipeline_depth=4)
    shape = {"CPU": 1, "GPU": 0.5}
    assert submit(s, 1, shape, short=True) == [Dispatch(2, 1, (0,))]
    assert submit(s, 2, shape, short=True) == [Dispatch(1, 2, (0,))]
    assert submit(s, 3, shape, short=True) == []  # same shape, both busy: it still waits
    assert s.task_finished(1, ok=True) == [Dispatch(2, 3, (0,))]
    s = boot({"GPU": 1}, pipeline_depth=4)
    assert submit(s, 1, {"GPU": 1}, short=True) == [Dispatch(1, 1, (0,))]
    assert submit(s, 2, {"GPU": 1}, short=True) == []
    assert s.task_finished(1, ok=True) == [Dispatch(1, 2, (0,))]


def test_next_pipelined_task_takes_over_the_resources_until_the_queue_empties() -> None:
    s = boot({"CPU": 2, "x": 2}, pipeline_depth=4)
    shape = {"CPU": 1, "x": 1}
    assert submit(s, 1, shape, short=True) == [Dispatch(2, 1)]
    assert submit(s, 2, shape, short=True) == [Dispatch(1, 2)]
    assert submit(s, 3, shape, short=True) == [Dispatch(1, 3)]
    assert submit(s, 4, shape, short=True) == [Dispatch(2, 4)]
    held = {"CPU": 0.0, "x": 0.0}
    assert s.available == held
    assert s.task_finished(2, ok=True) == []  # 3 runs on worker 1 with 2's resources
    assert s.available == held
    assert s.task_finished(1, ok=False) == []  # a failure hands over the same way
    assert s.available == held
    assert s.worker_states() == {1: "BUSY", 2: "BUSY"}
    assert s.task_finished(3, ok=True) == []  # nothing queued behind it: released
    assert s.available == {"CPU": 1.0, "x": 1.0}
    assert s.worker_states() == {1: "IDLE", 2: "BUSY"}
    assert submit(s, 5, shape, short=True) == [Dispatch(1, 5)]  # to the idle worker
    assert s.task_finished(4, ok=True) == []
    assert s.task_finished(5, ok=True) == []
    assert s.available == s.total
    assert s.worker_states() == {1: "IDLE", 2: "IDLE"}
    assert s.counts() == idle_counts()


def test_blocked_worker_gives_back_its_queue_which_runs_first_elsewhere() -> None:
    s = boot({"CPU": 1}, pipeline_depth=4)
    assert submit(s, 1, short=True) == [Dispatch(1, 1)]
    assert submit(s, 2, short=True, retries=1) == [Dispatch(1, 2)]
    assert submit(s, 3, short=True) == [Dispatch(1, 3)]
    assert submit(s, 4, short=True) == [Dispatch(1, 4)]
    assert submit(s, 5, short=True) == []
    # task 1 waits in get: what is queued behind it could wait forever, so it is taken back
    assert s.worker_blocked(1) == [Unqueue(1, (2, 3, 4)), SpawnWorker(2)]
    assert submit(s, 6, short=True) == []  # nothing more queues behind a blocked task
    assert s.unqueued(1, (2, 3, 4)) == []
    assert s.counts() == {"WAITING": 0, "READY": 5, "RUNNING": 1}
    # back at the front of the queue, in order; each now waits for a worker of its own
    # (queued behind another task that blocks, it could be given back again and again)
    assert s.worker_started(2) == [Dispatch(2, 2)]
    assert submit(s, 7, short=True) == []  # nothing is pipelined past them
    # the dispatch to the blocked worker was not an attempt: task 2 has its one retry left
    assert s.worker_died(2, -9) == [died(2, 2, -9), SpawnWorker(3)]
    assert s.worker_started(3) == [Dispatch(3, 2)]
    assert s.task_finished(2, ok=True) == [Dispatch(3, 3)]
    # 4 takes the CPU; the short tasks behind it queue on its worker, in order
    assert s.task_finished(3, ok=True) == [
        Dispatch(3, 4),
        Dispatch(3, 5),
        Dispatch(3, 6),
        Dispatch(3, 7),
    ]


def test_partial_unqueue_when_the_worker_started_one_already() -> None:
    s = boot({"CPU": 1}, pipeline_depth=4)
    for tid in (1, 2, 3, 4):
        assert submit(s, tid, short=True) == [Dispatch(1, tid)]
    assert s.worker_blocked(1) == [Unqueue(1, (2, 3, 4))]
    # before the Unqueue reaches the worker, task 1 wakes up and ends; 2 starts, blocks too
    assert s.worker_unblocked(1) == []
    assert s.task_finished(1, ok=True) == []
    assert s.worker_blocked(1) == [Unqueue(1, (3, 4))]
    # the answer to the first Unqueue: 2 had started, only 3 and 4 come back
    assert s.unqueued(1, (3, 4)) == [SpawnWorker(2)]
    assert s.unqueued(1, ()) == []  # the answer to the second: nothing was left
    assert s.worker_started(2) == [Dispatch(2, 3)]
    assert s.worker_unblocked(1) == []
    assert s.task_finished(2, ok=True) == []  # no CPU free: task 1 took its own back
    assert s.worker_states() == {1: "IDLE", 2: "BUSY"}
    assert s.task_finished(3, ok=True) == [Dispatch(2, 4)]
    assert s.task_finished(4, ok=True) == []
    assert s.available == s.total
    assert s.counts() == idle_counts()


def test_unqueued_task_that_had_already_taken_over_is_requeued() -> None:
    # The worker gives back what it had not started, but the result of the task before can
    # reach the head first: there the first given-back task already took over.
    s = boot({"CPU": 1}, pipeline_depth=4)
    for tid in (1, 2, 3):
        assert submit(s, tid, short=True, retries=0) == [Dispatch(1, tid)]
    assert s.worker_blocked(1) == [Unqueue(1, (2, 3))]
    assert s.worker_unblocked(1) == []
    assert submit(s, 4, short=True) == [Dispatch(1, 4)]  # queued after the Unqueue
    assert s.task_finished(1, ok=True) == []  # 2 takes over here...
    # ...but never started: 2 and 3 are requeued, 4, kept by the worker, takes over
    assert s.unqueued(1, (2, 3)) == []
    assert s.counts() == {"WAITING": 0, "READY": 2, "RUNNING": 1}
    assert s.available == {"CPU": 0.0}
    assert s.task_finished(4, ok=True) == [Dispatch(1, 2)]
    assert s.task_finished(2, ok=True) == [Dispatch(1, 3)]
    assert s.task_finished(3, ok=True) == []
    assert s.available == s.total
    assert s.counts() == idle_counts()
    # with nothing kept, the worker is idle and the resources are free
    for tid in (5, 6):
        assert submit(s, tid, short=True, retries=0) == [Dispatch(1, tid)]
    assert s.worker_blocked(1) == [Unqueue(1, (6,))]
    assert s.worker_unblocked(1) == []
    assert s.task_finished(5, ok=True) == []
    assert s.cancel(6, force=False) == [Interrupt(1, 6)]  # the current one here
    assert s.unqueued(1, (6,)) == [FailTask(6, "cancelled", CANCELLED_BEFORE)]
    assert s.worker_states() == {1: "IDLE"}
    assert s.available == s.total
    assert s.counts() == idle_counts()


def test_blocked_worker_gets_no_pipelined_task_even_when_it_lends_no_cpu() -> None:
    s = boot({"CPU": 1}, pipeline_depth=4)
    assert submit(s, 1, {}, short=True) == [Dispatch(1, 1)]
    assert submit(s, 2, {}, short=True) == [Dispatch(1, 2)]
    assert s.worker_blocked(1) == [Unqueue(1, (2,))]  # a zero-CPU task lends nothing
    # queued behind the blocked task again, 2 would wait forever if 1 waits for it
    assert s.unqueued(1, (2,)) == [SpawnWorker(2)]
    assert s.worker_started(2) == [Dispatch(2, 2)]
    assert s.task_finished(2, ok=True) == []
    assert s.worker_unblocked(1) == []
    assert s.task_finished(1, ok=True) == []
    assert s.counts() == idle_counts()


def test_worker_death_requeues_its_queue_uncounted_and_retries_the_running_task() -> None:
    s = boot({"CPU": 1}, pipeline_depth=4)
    assert submit(s, 1, short=True, retries=1) == [Dispatch(1, 1)]
    for tid in (2, 3, 4):
        assert submit(s, tid, short=True, retries=0) == [Dispatch(1, tid)]
    assert submit(s, 5, short=True, retries=0) == []
    assert s.worker_died(1, -9) == [died(1, 2, -9), SpawnWorker(2)]
    assert s.counts() == {"WAITING": 0, "READY": 5, "RUNNING": 0}
    assert s.available == s.total
    # in the same order: the retried task, then the queue it had, behind it at once
    assert s.worker_started(2) == [Dispatch(2, 1), Dispatch(2, 2), Dispatch(2, 3), Dispatch(2, 4)]
    assert submit(s, 6, short=True) == []  # the queue behind task 1 is full
    # a second death: task 1 is out of retries; the queued ones, with none, go back again
    assert s.worker_died(2, -9) == [crashed(1, 2, -9), SpawnWorker(3)]
    assert s.worker_started(3) == [Dispatch(3, 2), Dispatch(3, 3), Dispatch(3, 4), Dispatch(3, 5)]
    assert submit(s, 7, short=True) == []
    assert s.task_finished(2, ok=True) == [Dispatch(3, 6)]
    assert s.task_finished(3, ok=True) == [Dispatch(3, 7)]
    for tid in (4, 5, 6, 7):
        assert s.task_finished(tid, ok=True) == []
    assert s.available == s.total
    assert s.counts() == idle_counts()


def test_killed_worker_that_reported_its_task_still_requeues_its_queue() -> None:
    # the result of a force-cancelled task can arrive before its worker's death
    s = boot({"CPU": 1}, pipeline_depth=4)
    assert submit(s, 1, short=True) == [Dispatch(1, 1)]
    assert submit(s, 2, short=True, retries=0) == [Dispatch(1, 2)]
    assert s.cancel(1, force=True) == [KillWorker(1)]
    assert s.task_finished(1, ok=True) == []  # no takeover: the worker is being killed
    assert s.available == s.total
    assert s.worker_died(1, -9) == [SpawnWorker(2)]
    assert s.worker_started(2) == [Dispatch(2, 2)]
    assert s.task_finished(2, ok=True) == []
    assert s.counts() == idle_counts()


def test_force_cancel_of_a_queued_task_interrupts_and_spares_the_worker() -> None:
    s = boot({"CPU": 1}, pipeline_depth=4)
    for tid in (1, 2, 3, 4):
        assert submit(s, tid, short=True) == [Dispatch(1, tid)]
    assert s.cancel(2, force=True) == [Interrupt(1, 2)]  # not started: the worker drops it
    assert s.task_finished(2, ok=False) == []  # reported cancelled; task 1 runs on
    assert s.worker_states() == {1: "BUSY"}
    assert s.available == {"CPU": 0.0}
    assert s.cancel(3, force=True) == [Interrupt(1, 3)]
    assert s.cancel(1, force=True) == [KillWorker(1)]  # only the running task is killed
    # the worker dies before it dropped 3: cancelled all the same; 4 goes elsewhere
    assert s.worker_died(1, -9) == [
        FailTask(3, "cancelled", CANCELLED_BEFORE),
        FailTask(1, "cancelled", CANCELLED_RUNNING),
        SpawnWorker(2),
    ]
    assert s.worker_started(2) == [Dispatch(2, 4)]
    assert s.task_finished(4, ok=True) == []
    assert s.available == s.total
    assert s.counts() == idle_counts()


def test_owner_gone_interrupts_its_queued_tasks_and_spares_another_owners_running_task() -> None:
    s = boot({"CPU": 1}, pipeline_depth=4)
    assert submit(s, 1, owner=8, short=True) == [Dispatch(1, 1)]
    assert submit(s, 2, owner=7, short=True) == [Dispatch(1, 2)]
    assert submit(s, 3, owner=8, short=True) == [Dispatch(1, 3)]
    assert submit(s, 4, owner=7, short=True) == [Dispatch(1, 4)]
    assert submit(s, 5, owner=7, short=True) == []
    assert s.owner_gone(7) == [
        Interrupt(1, 2),
        Interrupt(1, 4),
        FailTask(5, "cancelled", CANCELLED_BEFORE),
    ]
    assert s.task_finished(2, ok=False) == []
    assert s.task_finished(4, ok=False) == []
    assert s.task_finished(1, ok=True) == []  # 3 takes over
    assert s.task_finished(3, ok=True) == []
    assert s.available == s.total
    assert s.counts() == idle_counts()


def test_owner_gone_kills_its_running_task_and_requeues_another_owners_queued_one() -> None:
    s = boot({"CPU": 1}, pipeline_depth=4)
    assert submit(s, 1, owner=7, short=True) == [Dispatch(1, 1)]
    assert submit(s, 2, owner=8, short=True, retries=0) == [Dispatch(1, 2)]
    assert s.owner_gone(7) == [KillWorker(1)]
    assert s.worker_died(1, -9) == [FailTask(1, "cancelled", CANCELLED_RUNNING), SpawnWorker(2)]
    assert s.worker_started(2) == [Dispatch(2, 2)]
    assert s.task_finished(2, ok=True) == []
    assert s.counts() == idle_counts()


# --- actors -----------------------------------------------------------------------------


def test_create_actor_spawns_a_dedicated_worker_and_queues_calls() -> None:
    s = boot({"CPU": 2})
    assert create(s, 1, {"CPU": 1}) == [ActorStateChanged(1, "PENDING"), SpawnWorker(3, 1)]
    assert s.available == {"CPU": 1.0}  # held from placement on
    assert s.actor_call(100, 1) == []
    assert s.actor_call(101, 1) == []
    assert s.actor_call(102, 1) == []
    assert s.worker_states() == {1: "IDLE", 2: "IDLE", 3: "STARTING"}
    assert s.worker_started(3) == [
        StartActor(3, 1),
        ActorStateChanged(1, "ALIVE"),
        DispatchCall(3, 1, 100),
        DispatchCall(3, 1, 101),
        DispatchCall(3, 1, 102),
    ]
    assert s.worker_states() == {1: "IDLE", 2: "IDLE", 3: "ACTOR"}
    assert s.actor_call(103, 1) == [DispatchCall(3, 1, 103)]
    assert s.call_finished(100, 1) == []


def test_actor_worker_is_not_a_pool_worker() -> None:
    s = boot({"CPU": 1})
    wid = alive_actor(s, 1)
    assert wid == 2
    assert submit(s, 1) == [Dispatch(1, 1)]
    assert submit(s, 2) == []
    assert s.trim() == []


def test_actor_holds_its_resources_while_alive() -> None:
    s = boot({"CPU": 2, "GPU": 1})
    assert create(s, 1, {"CPU": 1, "GPU": 1}) == [
        ActorStateChanged(1, "PENDING"),
        SpawnWorker(3, 1),
    ]
    assert s.worker_started(3) == [StartActor(3, 1, (0,)), ActorStateChanged(1, "ALIVE")]
    assert submit(s, 1, {"GPU": 1}) == []
    assert submit(s, 2, {"CPU": 1}) == [Dispatch(2, 2)]
    assert submit(s, 3, {"CPU": 1}) == []


def test_actor_waits_for_resources() -> None:
    s = boot({"CPU": 1})
    assert submit(s, 1) == [Dispatch(1, 1)]
    assert create(s, 1, {"CPU": 1}) == [ActorStateChanged(1, "PENDING")]
    assert s.actor_call(100, 1) == []
    assert s.task_finished(1, ok=True) == [SpawnWorker(2, 1)]
    assert s.worker_started(2) == [
        StartActor(2, 1),
        ActorStateChanged(1, "ALIVE"),
        DispatchCall(2, 1, 100),
    ]


def test_pending_actors_are_placed_in_creation_order() -> None:
    s = boot({"CPU": 1, "GPU": 1})
    assert create(s, 1, {"GPU": 1}) == [ActorStateChanged(1, "PENDING"), SpawnWorker(2, 1)]
    assert create(s, 2, {"GPU": 1}) == [ActorStateChanged(2, "PENDING")]
    assert create(s, 3, {"GPU": 0.5}) == [ActorStateChanged(3, "PENDING")]
    assert s.worker_started(2) == [StartActor(2, 1, (0,)), ActorStateChanged(1, "ALIVE")]
    assert s.kill_actor(1) == [KillWorker(2)]
    assert s.worker_died(2, -9) == [
        ActorStateChanged(1, "DEAD", "it was killed"),
        SpawnWorker(3, 2),
    ]


def test_a_kill_with_a_cause_retries_then_fails_with_the_causes_kind_and_text() -> None:
    s = boot({"CPU": 1})
    oom = DeathCause("oom", "memory use reached 96%")
    assert submit(s, 1, retries=1) == [Dispatch(1, 1)]
    assert s.worker_died(1, -9, oom) == [Retry(1, 2, "memory use reached 96%"), SpawnWorker(2)]
    assert s.worker_started(2) == [Dispatch(2, 1)]
    assert s.worker_died(2, -9, oom) == [
        FailTask(1, "oom", "after 2 attempt(s)", -9, cause="memory use reached 96%"),
        SpawnWorker(3),
    ]


def test_an_actor_killed_with_a_cause_reports_it() -> None:
    s = boot({"CPU": 1})
    wid = alive_actor(s, 1, restarts=0)
    assert s.actor_call(100, 1) == [DispatchCall(wid, 1, 100)]
    out = s.worker_died(wid, -9, DeathCause("oom", "memory use reached 96%"))
    assert ActorStateChanged(1, "DEAD", "memory use reached 96%") in out
    assert FailCall(100, 1, "actor_died", "memory use reached 96%") in out


def test_busy_workers_say_what_they_run_and_whether_a_kill_is_retried() -> None:
    s = boot({"CPU": 3})
    assert submit(s, 1, retries=0) == [Dispatch(3, 1)]
    assert submit(s, 2, retries=1) == [Dispatch(2, 2)]
    actor_wid = alive_actor(s, 7, {"CPU": 0}, restarts=1)
    assert sorted(s.busy_workers()) == sorted(
        [BusyWorker(3, 1, 0, False), BusyWorker(2, 2, 0, True), BusyWorker(actor_wid, 0, 7, True)]
    )


def test_actor_restarts_and_retries_in_flight_calls_in_order() -> None:
    s = boot({"CPU": 1})
    assert create(s, 1, {"CPU": 1}, restarts=2, task_retries=-1) == [
        ActorStateChanged(1, "PENDING"),
        SpawnWorker(2, 1),
    ]
    assert s.worker_started(2) == [StartActor(2, 1), ActorStateChanged(1, "ALIVE")]
    for cid in (100, 101, 102, 103):
        assert s.actor_call(cid, 1) == [DispatchCall(2, 1, cid)]
    assert s.call_finished(101, 1) == []
    assert s.worker_died(2, 1) == [
        ActorStateChanged(1, "RESTARTING", "its process exited with code 1"),
        SpawnWorker(3, 1),
    ]
    assert s.actor_call(104, 1) == []  # queued behind the retried calls
    assert s.worker_started(3) == [
        StartActor(3, 1),
        ActorStateChanged(1, "ALIVE"),
        DispatchCall(3, 1, 100),
        DispatchCall(3, 1, 102),
        DispatchCall(3, 1, 103),
        DispatchCall(3, 1, 104),
    ]
    # second restart: the retried calls keep their original order
    assert s.call_finished(100, 1) == []
    assert s.worker_died(3, -9) == [
        ActorStateChanged(1, "RESTARTING", "its process exited with code -9"),
        SpawnWorker(4, 1),
    ]
    assert s.worker_started(4) == [
        StartActor(4, 1),
        ActorStateChanged(1, "ALIVE"),
        DispatchCall(4, 1, 102),
        DispatchCall(4, 1, 103),
        DispatchCall(4, 1, 104),
    ]
    # restarts exhausted: dead, and every call in flight fails
    assert s.worker_died(4, -9) == [
        ActorStateChanged(1, "DEAD", "its process exited with code -9"),
        FailCall(102, 1, "actor_died", "its process exited with code -9"),
        FailCall(103, 1, "actor_died", "its process exited with code -9"),
        FailCall(104, 1, "actor_died", "its process exited with code -9"),
    ]
    assert s.actor_call(105, 1) == [FailCall(105, 1, "actor_died", ACTOR_DEAD)]
    assert s.available == s.total


def test_actor_with_max_restarts_zero_dies_with_its_worker() -> None:
    s = boot({"CPU": 1})
    wid = alive_actor(s, 1, restarts=0, task_retries=-1)
    assert s.actor_call(100, 1) == [DispatchCall(wid, 1, 100)]
    assert s.worker_died(wid, 3) == [
        ActorStateChanged(1, "DEAD", "its process exited with code 3"),
        FailCall(100, 1, "actor_died", "its process exited with code 3"),
    ]


def test_actor_max_restarts_minus_one_restarts_forever() -> None:
    s = boot({"CPU": 1})
    wid = alive_actor(s, 1, restarts=-1)
    for _ in range(20):
        assert s.worker_died(wid, 1) == [
            ActorStateChanged(1, "RESTARTING", "its process exited with code 1"),
            SpawnWorker(wid + 1, 1),
        ]
        wid += 1
        assert s.worker_started(wid) == [StartActor(wid, 1), ActorStateChanged(1, "ALIVE")]


def test_in_flight_calls_fail_when_max_task_retries_is_zero() -> None:
    s = boot({"CPU": 1})
    wid = alive_actor(s, 1, restarts=1, task_retries=0)
    assert s.actor_call(100, 1) == [DispatchCall(wid, 1, 100)]
    assert s.actor_call(101, 1) == [DispatchCall(wid, 1, 101)]
    assert s.worker_died(wid, 1) == [
        ActorStateChanged(1, "RESTARTING", "its process exited with code 1"),
        FailCall(100, 1, "actor_died", "its process exited with code 1"),
        FailCall(101, 1, "actor_died", "its process exited with code 1"),
        SpawnWorker(wid + 1, 1),
    ]
    assert s.worker_started(wid + 1) == [StartActor(wid + 1, 1), ActorStateChanged(1, "ALIVE")]


def test_a_direct_call_whose_worker_died_unheard_of_has_used_its_first_try() -> None:
    s = boot({"CPU": 1})
    alive_actor(s, 1, restarts=-1, task_retries=0)
    assert s.count_lost_try(100, 1) is False  # no retry left: the caller fails it
    s = boot({"CPU": 1})
    wid = alive_actor(s, 1, restarts=-1, task_retries=1)
    assert s.count_lost_try(100, 1) is True
    assert s.actor_call(100, 1) == [DispatchCall(wid, 1, 100)]
    # that was its one retry: the next death fails it
    assert s.worker_died(wid, 1) == [
        ActorStateChanged(1, "RESTARTING", "its process exited with code 1"),
        FailCall(100, 1, "actor_died", "its process exited with code 1"),
        SpawnWorker(wid + 1, 1),
    ]


def test_in_flight_call_retried_up_to_max_task_retries() -> None:
    s = boot({"CPU": 1})
    wid = alive_actor(s, 1, restarts=-1, task_retries=1)
    assert s.actor_call(100, 1) == [DispatchCall(wid, 1, 100)]
    assert s.worker_died(wid, 1) == [
        ActorStateChanged(1, "RESTARTING", "its process exited with code 1"),
        SpawnWorker(wid + 1, 1),
    ]
    wid += 1
    assert s.worker_started(wid) == [
        StartActor(wid, 1),
        ActorStateChanged(1, "ALIVE"),
        DispatchCall(wid, 1, 100),
    ]
    assert s.actor_call(101, 1) == [DispatchCall(wid, 1, 101)]
    # call 100 has used its one retry; call 101 has not
    assert s.worker_died(wid, 1) == [
        ActorStateChanged(1, "RESTARTING", "its process exited with code 1"),
        FailCall(100, 1, "actor_died", "its process exited with code 1"),
        SpawnWorker(wid + 1, 1),
    ]
    wid += 1
    assert s.worker_started(wid) == [
        StartActor(wid, 1),
        ActorStateChanged(1, "ALIVE"),
        DispatchCall(wid, 1, 101),
    ]


def test_finished_calls_are_not_retried() -> None:
    s = boot({"CPU": 1})
    wid = alive_actor(s, 1, restarts=1, task_retries=-1)
    assert s.actor_call(100, 1) == [DispatchCall(wid, 1, 100)]
    assert s.call_finished(100, 1) == []
    assert s.call_finished(100, 1) == []
    assert s.call_finished(100, 999) == []
    assert s.worker_died(wid, 1) == [
        ActorStateChanged(1, "RESTARTING", "its process exited with code 1"),
        SpawnWorker(wid + 1, 1),
    ]
    assert s.worker_started(wid + 1) == [StartActor(wid + 1, 1), ActorStateChanged(1, "ALIVE")]


def test_exhausted_restarts_fail_in_flight_and_queued_calls() -> None:
    s = boot({"CPU": 1})
    wid = alive_actor(s, 1, restarts=1, task_retries=-1)
    assert s.actor_call(100, 1) == [DispatchCall(wid, 1, 100)]
    assert s.worker_died(wid, 1) == [
        ActorStateChanged(1, "RESTARTING", "its process exited with code 1"),
        SpawnWorker(wid + 1, 1),
    ]
    assert s.actor_call(101, 1) == []
    # the replacement dies before it starts: no restart left
    assert s.worker_died(wid + 1, 2) == [
        ActorStateChanged(1, "DEAD", "its process exited with code 2"),
        FailCall(100, 1, "actor_died", "its process exited with code 2"),
        FailCall(101, 1, "actor_died", "its process exited with code 2"),
    ]
    assert s.available == s.total


def test_actor_dead_fails_in_flight_before_queued_calls() -> None:
    s = boot({"CPU": 1})
    wid = alive_actor(s, 1, restarts=0)
    assert s.actor_call(100, 1) == [DispatchCall(wid, 1, 100)]
    assert s.kill_actor(1, no_restart=True) == [KillWorker(wid)]
    assert s.actor_call(101, 1) == [DispatchCall(wid, 1, 101)]  # still ALIVE until it dies
    assert s.worker_died(wid, -9) == [
        ActorStateChanged(1, "DEAD", "it was killed"),
        FailCall(100, 1, "actor_died", "it was killed"),
        FailCall(101, 1, "actor_died", "it was killed"),
    ]


def test_kill_actor_no_restart_kills_then_dead_on_death() -> None:
    s = boot({"CPU": 1})
    wid = alive_actor(s, 1, {"CPU": 1}, restarts=5, task_retries=-1)
    assert s.actor_call(100, 1) == [DispatchCall(wid, 1, 100)]
    assert s.kill_actor(1, no_restart=True) == [KillWorker(wid)]
    assert s.available == {"CPU": 0.0}
    assert s.worker_died(wid, -9) == [
        ActorStateChanged(1, "DEAD", "it was killed"),
        FailCall(100, 1, "actor_died", "it was killed"),
    ]
    assert s.available == s.total
    assert s.actor_call(101, 1) == [FailCall(101, 1, "actor_died", ACTOR_DEAD)]
    assert s.kill_actor(1) == []


def test_kill_actor_allowing_restart_restarts_it() -> None:
    s = boot({"CPU": 1})
    wid = alive_actor(s, 1, restarts=1, task_retries=-1)
    assert s.actor_call(100, 1) == [DispatchCall(wid, 1, 100)]
    assert s.kill_actor(1, no_restart=False) == [KillWorker(wid)]
    assert s.worker_died(wid, -9) == [
        ActorStateChanged(1, "RESTARTING", "it was killed"),
        SpawnWorker(wid + 1, 1),
    ]
    assert s.worker_started(wid + 1) == [
        StartActor(wid + 1, 1),
        ActorStateChanged(1, "ALIVE"),
        DispatchCall(wid + 1, 1, 100),
    ]


def test_kill_pending_actor_is_dead_at_once() -> None:
    s = boot({"CPU": 1})
    assert submit(s, 1) == [Dispatch(1, 1)]
    assert create(s, 1, {"CPU": 1}) == [ActorStateChanged(1, "PENDING")]
    assert s.actor_call(100, 1) == []
    assert s.kill_actor(1) == [
        ActorStateChanged(1, "DEAD", "the actor was killed"),
        FailCall(100, 1, "actor_died", "the actor was killed"),
    ]
    assert s.task_finished(1, ok=True) == []  # the dead actor is never placed
    assert s.worker_states() == {1: "IDLE"}


def test_kill_actor_whose_worker_is_starting_releases_its_resources() -> None:
    s = boot({"CPU": 1, "GPU": 1})
    assert create(s, 1, {"GPU": 1}) == [ActorStateChanged(1, "PENDING"), SpawnWorker(2, 1)]
    assert s.gpu_free == {0: 0.0}
    assert submit(s, 1, {"GPU": 1}) == []
    assert s.kill_actor(1) == [
        ActorStateChanged(1, "DEAD", "the actor was killed"),
        Dispatch(1, 1, (0,)),
    ]
    # the worker that was starting for it is stopped as soon as it is up
    assert s.worker_started(2) == [KillWorker(2)]
    assert s.worker_died(2, -9) == []
    assert s.task_finished(1, ok=True) == []
    assert s.available == s.total
    assert s.gpu_free == {0: 1.0}


def test_kill_allowing_restart_of_an_actor_still_starting_uses_up_a_restart() -> None:
    s = boot({"CPU": 1})
    assert create(s, 1, {"CPU": 1}, restarts=1) == [
        ActorStateChanged(1, "PENDING"),
        SpawnWorker(2, 1),
    ]
    assert s.kill_actor(1, no_restart=False) == [KillWorker(2)]
    assert s.worker_died(2, -9) == [
        ActorStateChanged(1, "RESTARTING", "it was killed"),
        SpawnWorker(3, 1),
    ]
    assert s.worker_started(3) == [StartActor(3, 1), ActorStateChanged(1, "ALIVE")]
    # the second kill finds no restart left: dead, and its CPU back
    assert s.kill_actor(1, no_restart=False) == [KillWorker(3)]
    assert s.worker_died(3, -9) == [ActorStateChanged(1, "DEAD", "it was killed")]
    assert s.available == s.total


def test_kill_allowing_restart_of_an_actor_not_placed_yet() -> None:
    s = boot({"CPU": 1})
    assert submit(s, 1) == [Dispatch(1, 1)]
    assert create(s, 1, {"CPU": 1}, restarts=1) == [ActorStateChanged(1, "PENDING")]
    assert s.kill_actor(1, no_restart=False) == []  # a restart used up; still pending
    assert s.kill_actor(1, no_restart=False) == [
        ActorStateChanged(1, "DEAD", "the actor was killed")
    ]
    assert s.task_finished(1, ok=True) == []


def test_owner_gone_while_actor_restarts_releases_its_resources() -> None:
    s = boot({"CPU": 1})
    wid = alive_actor(s, 1, {"CPU": 1}, restarts=3, owner=7)
    assert s.worker_died(wid, 1) == [
        ActorStateChanged(1, "RESTARTING", "its process exited with code 1"),
        SpawnWorker(wid + 1, 1),
    ]
    assert s.available == {"CPU": 0.0}
    assert s.owner_gone(7) == [ActorStateChanged(1, "DEAD", "the actor was killed")]
    assert s.available == s.total
    assert s.worker_started(wid + 1) == [KillWorker(wid + 1)]
    assert s.worker_died(wid + 1, -9) == []
    assert s.available == s.total


def test_kill_unknown_actor_is_ignored() -> None:
    s = boot()
    assert s.kill_actor(5) == []
    assert s.actor_call(100, 5) == [FailCall(100, 5, "actor_died", ACTOR_DEAD)]


def test_kill_when_idle_lets_submitted_calls_finish_first() -> None:
    s = boot({"CPU": 1})
    assert create(s, 1, {"CPU": 1}) == [ActorStateChanged(1, "PENDING"), SpawnWorker(2, 1)]
    assert s.actor_call(100, 1) == []
    assert s.kill_actor(1, when_idle=True) == []  # its last handle is gone, a call is queued
    assert s.worker_started(2) == [
        StartActor(2, 1),
        ActorStateChanged(1, "ALIVE"),
        DispatchCall(2, 1, 100),
    ]
    assert s.actor_call(101, 1) == [DispatchCall(2, 1, 101)]
    assert s.call_finished(100, 1) == []
    assert s.call_finished(101, 1) == [KillWorker(2)]
    assert s.worker_died(2, -9) == [ActorStateChanged(1, "DEAD", "it was killed")]
    assert s.available == s.total


def test_kill_when_idle_of_an_idle_actor_kills_at_once() -> None:
    s = boot({"CPU": 1})
    wid = alive_actor(s, 1, restarts=3)
    assert s.kill_actor(1, when_idle=True) == [KillWorker(wid)]
    assert s.worker_died(wid, -9) == [ActorStateChanged(1, "DEAD", "it was killed")]


def test_actor_waiting_to_exit_is_not_restarted_with_nothing_to_run() -> None:
    s = boot({"CPU": 1})
    wid = alive_actor(s, 1, restarts=3, task_retries=0)
    assert s.actor_call(100, 1) == [DispatchCall(wid, 1, 100)]
    assert s.kill_actor(1, when_idle=True) == []
    assert s.worker_died(wid, 1) == [
        ActorStateChanged(1, "DEAD", "its process exited with code 1"),
        FailCall(100, 1, "actor_died", "its process exited with code 1"),
    ]
    assert s.actor_call(101, 1) == [FailCall(101, 1, "actor_died", ACTOR_DEAD)]


def test_actor_waiting_to_exit_restarts_to_retry_its_calls() -> None:
    s = boot({"CPU": 1})
    wid = alive_actor(s, 1, restarts=3, task_retries=-1)
    assert s.actor_call(100, 1) == [DispatchCall(wid, 1, 100)]
    assert s.kill_actor(1, when_idle=True) == []
    assert s.worker_died(wid, 1) == [
        ActorStateChanged(1, "RESTARTING", "its process exited with code 1"),
        SpawnWorker(wid + 1, 1),
    ]
    assert s.worker_started(wid + 1) == [
        StartActor(wid + 1, 1),
        ActorStateChanged(1, "ALIVE"),
        DispatchCall(wid + 1, 1, 100),
    ]
    assert s.call_finished(100, 1) == [KillWorker(wid + 1)]


def test_detached_actor_survives_owner() -> None:
    s = boot({"CPU": 1})
    wid = alive_actor(s, 1, owner=7, detached=True)
    assert s.owner_gone(7) == []
    assert s.actor_call(100, 1) == [DispatchCall(wid, 1, 100)]


def test_actor_with_gpu_gets_an_id_and_may_get_another_after_restart() -> None:
    s = boot({"CPU": 1, "GPU": 2})
    assert create(s, 1, {"GPU": 1}, restarts=1) == [
        ActorStateChanged(1, "PENDING"),
        SpawnWorker(2, 1),
    ]
    assert s.worker_started(2) == [StartActor(2, 1, (0,)), ActorStateChanged(1, "ALIVE")]
    assert submit(s, 1, {"GPU": 1}) == [Dispatch(1, 1, (1,))]
    assert s.task_finished(1, ok=True) == []
    assert s.worker_died(2, 1) == [
        ActorStateChanged(1, "RESTARTING", "its process exited with code 1"),
        SpawnWorker(3, 1),
    ]
    assert s.gpu_free == {0: 0.0, 1: 1.0}
    assert s.worker_started(3) == [StartActor(3, 1, (0,)), ActorStateChanged(1, "ALIVE")]


def test_fractional_gpu_actors_share_a_gpu() -> None:
    s = boot({"CPU": 1, "GPU": 1})
    assert create(s, 1, {"GPU": 0.5}) == [ActorStateChanged(1, "PENDING"), SpawnWorker(2, 1)]
    assert create(s, 2, {"GPU": 0.5}) == [ActorStateChanged(2, "PENDING"), SpawnWorker(3, 2)]
    assert s.worker_started(2) == [StartActor(2, 1, (0,)), ActorStateChanged(1, "ALIVE")]
    assert s.worker_started(3) == [StartActor(3, 2, (0,)), ActorStateChanged(2, "ALIVE")]
    assert create(s, 3, {"GPU": 0.5}) == [ActorStateChanged(3, "PENDING")]


# --- trim -------------------------------------------------------------------------------


def test_trim_kills_idle_workers_beyond_pool_size() -> None:
    s = boot({"CPU": 1})
    for tid in (1, 2, 3):
        out = submit(s, tid, {})
        started(s, out)
    assert s.worker_states() == {1: "BUSY", 2: "BUSY", 3: "BUSY"}
    assert s.trim() == []  # nothing idle
    for tid in (1, 2, 3):
        assert s.task_finished(tid, ok=True) == []
    assert s.trim() == [KillWorker(1), KillWorker(2)]
    assert s.worker_states() == {1: "DEAD", 2: "DEAD", 3: "IDLE"}
    assert s.trim() == []
    # the trimmed workers exit; no replacement is spawned for them
    assert s.worker_died(1, 0) == []
    assert s.worker_died(2, 0) == []
    assert submit(s, 4) == [Dispatch(3, 4)]


def test_trim_keeps_the_pre_warmed_pool() -> None:
    s = boot({"CPU": 3})
    assert s.trim() == []
    assert s.worker_states() == {1: "IDLE", 2: "IDLE", 3: "IDLE"}


def test_trim_keeps_busy_extra_workers() -> None:
    s = boot({"CPU": 1})
    assert submit(s, 1, {}) == [Dispatch(1, 1)]
    assert submit(s, 2, {}) == [SpawnWorker(2)]
    assert s.worker_started(2) == [Dispatch(2, 2)]
    assert s.task_finished(1, ok=True) == []
    assert s.trim() == [KillWorker(1)]
    assert s.worker_states() == {1: "DEAD", 2: "BUSY"}


def test_trimmed_worker_gets_no_more_work() -> None:
    s = boot({"CPU": 1})
    assert submit(s, 1, {}) == [Dispatch(1, 1)]
    assert submit(s, 2, {}) == [SpawnWorker(2)]
    assert s.worker_started(2) == [Dispatch(2, 2)]
    assert s.task_finished(2, ok=True) == []
    assert s.task_finished(1, ok=True) == []
    assert s.trim() == [KillWorker(2)]
    assert submit(s, 3) == [Dispatch(1, 3)]
    assert s.worker_died(2, 0) == []


# --- start-up failures ------------------------------------------------------------------


def test_repeated_start_up_failures_fail_ready_tasks() -> None:
    s = Scheduler({"CPU": 1})
    assert s.start() == [SpawnWorker(1)]
    assert submit(s, 1) == []
    assert submit(s, 2, deps={10}) == []
    for wid in range(1, MAX_STARTUP_FAILURES):
        assert s.worker_died(wid, 1) == [SpawnWorker(wid + 1)]
    assert s.worker_died(MAX_STARTUP_FAILURES, 1) == [
        FailTask(1, "worker_crashed", f"{MAX_STARTUP_FAILURES} workers in a row died at start-up"),
    ]
    assert s.counts() == {"WAITING": 1, "READY": 0, "RUNNING": 0}
    assert s.worker_states() == {}
    # a new task tries again with one worker
    assert s.object_ready(10) == [SpawnWorker(MAX_STARTUP_FAILURES + 1)]
    assert s.worker_started(MAX_STARTUP_FAILURES + 1) == [Dispatch(MAX_STARTUP_FAILURES + 1, 2)]


def test_a_successful_start_resets_the_failure_count() -> None:
    s = Scheduler({"CPU": 1})
    assert s.start() == [SpawnWorker(1)]
    wid = 1
    for _ in range(MAX_STARTUP_FAILURES - 1):
        assert s.worker_died(wid, 1) == [SpawnWorker(wid + 1)]
        wid += 1
    assert s.worker_started(wid) == []
    assert s.worker_died(wid, 1) == [SpawnWorker(wid + 1)]  # died after starting
    wid += 1
    for _ in range(MAX_STARTUP_FAILURES - 1):
        assert s.worker_died(wid, 1) == [SpawnWorker(wid + 1)]
        wid += 1
    assert submit(s, 1) == []
    assert s.worker_started(wid) == [Dispatch(wid, 1)]


def test_start_up_failures_on_a_larger_pool() -> None:
    s = Scheduler({"CPU": 3})
    assert s.start() == [SpawnWorker(1), SpawnWorker(2), SpawnWorker(3)]
    assert submit(s, 1) == []
    out: list[Instruction] = []
    for wid in range(1, MAX_STARTUP_FAILURES + 1):
        out = s.worker_died(wid, 127)
        if wid < MAX_STARTUP_FAILURES:
            assert out == [SpawnWorker(wid + 3)]
    assert out == [FailTask(1, "worker_crashed", ANY)]


# --- counts -----------------------------------------------------------------------------


def test_counts_follow_task_states() -> None:
    s = boot({"CPU": 1})
    assert s.counts() == idle_counts()
    assert submit(s, 1) == [Dispatch(1, 1)]
    assert submit(s, 2) == []
    assert submit(s, 3, deps={10}) == []
    assert submit(s, 4, deps={10, 11}) == []
    assert s.counts() == {"WAITING": 2, "READY": 1, "RUNNING": 1}
    assert s.object_ready(10) == []
    assert s.counts() == {"WAITING": 1, "READY": 2, "RUNNING": 1}
    assert s.task_finished(1, ok=True) == [Dispatch(1, 2)]
    assert s.counts() == {"WAITING": 1, "READY": 1, "RUNNING": 1}
    assert s.cancel(4, force=False) == [FailTask(4, "cancelled", CANCELLED_BEFORE)]
    assert s.task_finished(2, ok=True) == [Dispatch(1, 3)]
    assert s.task_finished(3, ok=True) == []
    assert s.counts() == idle_counts()
    assert s.available == s.total


def test_a_retiring_worker_s_tasks_run_elsewhere_without_losing_an_attempt() -> None:
    # max_calls: the worker reported task 1, then retires; 2 (current by now) and 3
    # (pipelined) never started there
    s = boot({"CPU": 1}, pipeline_depth=4)
    assert [submit(s, tid, short=True) for tid in (1, 2, 3)] == [
        [Dispatch(1, 1)],
        [Dispatch(1, 2)],
        [Dispatch(1, 3)],
    ]
    assert s.task_finished(1, ok=True) == []
    assert s.worker_retiring(1) == [SpawnWorker(2)]  # its place in the pool is refilled
    assert s.counts() == {"WAITING": 0, "READY": 2, "RUNNING": 0}
    assert s.worker_died(1, 0) == []  # its exit loses nothing
    assert s.worker_started(2) == [Dispatch(2, 2), Dispatch(2, 3)]  # 3 queued behind 2
    assert s.task_finished(2, ok=True) == []
    assert s.tasks[3].attempts == 1  # the first attempt, not a retry
    assert s.worker_retiring(99) == []  # unknown (already gone): nothing to do
