"""The scheduler keys workers by runtime_env, as Ray's worker pool does: a worker started
for env A runs only env A's tasks; the default pool never runs an env's task; idle env
workers are stopped after ``ENV_IDLE_TRIMS`` trims. Pure: no process starts."""

from __future__ import annotations

from test_scheduler import validate_after_every_event  # noqa: F401  (autouse: validate)

from nbray._node.scheduler import (
    ENV_IDLE_TRIMS,
    ActorStateChanged,
    Dispatch,
    KillWorker,
    Scheduler,
    SpawnWorker,
    StartActor,
)

A = '{"env_vars":{"X":"a"}}'
B = '{"env_vars":{"X":"b"}}'


def booted(cpus: float = 2) -> Scheduler:
    s = Scheduler({"CPU": cpus})
    for ins in s.start():
        assert isinstance(ins, SpawnWorker) and ins.runtime_env == ""
        s.worker_started(ins.worker_id)
    return s


def submit(s: Scheduler, task_id: int, env: str = "") -> list[object]:
    return list(
        s.submit(
            task_id, f"t{task_id}", {"CPU": 1}, 0, owner=1, unready_deps=set(), runtime_env=env
        )
    )


def test_env_task_gets_a_worker_of_its_own_while_default_workers_idle() -> None:
    s = booted()
    assert submit(s, 1, A) == [SpawnWorker(3, 0, A)]
    assert s.worker_started(3) == [Dispatch(3, 1, ())]
    # a default task goes to the default pool, never to the env worker
    assert submit(s, 2) == [Dispatch(2, 2, ())]
    s.task_finished(1, ok=True)
    s.task_finished(2, ok=True)
    # the env worker is idle now: a default task still takes a default worker
    assert submit(s, 4) == [Dispatch(2, 4, ())]
    s.task_finished(4, ok=True)
    # and the next env-A task reuses the env-A worker, without a spawn
    assert submit(s, 5, A) == [Dispatch(3, 5, ())]


def test_two_envs_never_share_a_worker() -> None:
    s = booted(cpus=4)
    assert submit(s, 1, A) == [SpawnWorker(5, 0, A)]
    s.worker_started(5)
    s.task_finished(1, ok=True)
    assert submit(s, 2, B) == [SpawnWorker(6, 0, B)]
    assert s.worker_started(6) == [Dispatch(6, 2, ())]
    assert s.workers[5].env == A and s.workers[6].env == B


def test_env_tasks_wait_for_resources_like_any_task() -> None:
    s = booted(cpus=1)
    assert submit(s, 1) == [Dispatch(1, 1, ())]
    assert submit(s, 2, A) == []  # the only CPU is taken: no spawn yet
    assert s.task_finished(1, ok=True) == [SpawnWorker(2, 0, A)]
    assert s.worker_started(2) == [Dispatch(2, 2, ())]


def test_idle_env_workers_are_stopped_after_some_trims_and_the_pool_stays() -> None:
    s = booted()
    submit(s, 1, A)
    s.worker_started(3)
    s.task_finished(1, ok=True)
    for _ in range(ENV_IDLE_TRIMS):
        assert s.trim() == []
    assert s.trim() == [KillWorker(3)]
    assert s.worker_died(3, -9) == []  # the default pool is untouched, nothing refills
    assert sorted(s.idle) == [1, 2]


def test_a_busy_env_worker_is_not_trimmed() -> None:
    s = booted()
    submit(s, 1, A)
    s.worker_started(3)
    for _ in range(ENV_IDLE_TRIMS + 2):
        assert s.trim() == []


def test_actor_worker_starts_with_the_actors_env() -> None:
    s = booted()
    out = s.create_actor(7, "Actor", {}, 0, 0, owner=1, runtime_env=A)
    assert out == [ActorStateChanged(7, "PENDING"), SpawnWorker(3, 7, A)]
    assert s.worker_started(3)[0] == StartActor(3, 7, ())


def test_an_idle_worker_of_another_env_makes_room_at_the_worker_limit() -> None:
    s = Scheduler({"CPU": 2}, max_workers=2)
    for ins in s.start():
        s.worker_started(ins.worker_id)
    # both workers are idle default ones and the limit is reached: one stops for env A's
    assert submit(s, 1, A) == [KillWorker(1), SpawnWorker(3, 0, A)]
    assert s.worker_started(3) == [Dispatch(3, 1, ())]
