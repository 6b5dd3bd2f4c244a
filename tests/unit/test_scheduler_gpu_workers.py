"""A worker serves one GPU assignment, as in Ray: CUDA fixes the visible devices at a
process's first use, so a worker that ran a task on GPU 0 never runs one on GPU 1, nor a
CPU task (and a CPU worker never runs a GPU task). Pure: no process starts."""

from __future__ import annotations

from test_scheduler import boot, submit, validate_after_every_event  # noqa: F401  (autouse)

from nbray._node.instructions import Instruction
from nbray._node.scheduler import Dispatch, KillWorker, SpawnWorker


def test_a_cpu_worker_does_not_run_a_gpu_task() -> None:
    s = boot({"CPU": 1, "GPU": 1})
    assert submit(s, 1, {"CPU": 1}) == [Dispatch(1, 1)]
    assert s.task_finished(1, ok=True) == []
    # the only worker ran a CPU task: the GPU task gets a worker of its own
    assert submit(s, 2, {"CPU": 1, "GPU": 1}) == [SpawnWorker(2, 0, "")]
    assert s.worker_started(2) == [Dispatch(2, 2, (0,))]
    assert s.task_finished(2, ok=True) == []
    # and each kind of task goes back to its own worker
    assert submit(s, 3, {"CPU": 1}) == [Dispatch(1, 3)]
    assert s.task_finished(3, ok=True) == []
    assert submit(s, 4, {"CPU": 1, "GPU": 1}) == [Dispatch(2, 4, (0,))]


def test_a_worker_keeps_the_gpu_ids_of_its_first_task() -> None:
    s = boot({"CPU": 2, "GPU": 2})
    assert submit(s, 1, {"GPU": 1}) == [Dispatch(2, 1, (0,))]
    assert submit(s, 2, {"GPU": 1}) == [Dispatch(1, 2, (1,))]
    assert s.task_finished(1, ok=True) == []
    assert submit(s, 3, {"GPU": 1}) == [Dispatch(2, 3, (0,))]  # GPU 0 again: its worker
    assert s.task_finished(2, ok=True) == []
    assert s.task_finished(3, ok=True) == []
    assert [s.workers[w].gpus for w in (1, 2)] == [(1,), (0,)]
    # a CPU task finds no worker that ran CPU tasks: a fresh one
    assert submit(s, 4, {"CPU": 1}) == [SpawnWorker(3, 0, "")]
    assert s.worker_started(3) == [Dispatch(3, 4)]


def test_a_task_that_finds_no_matching_worker_keeps_its_place_and_its_resources_free() -> None:
    s = boot({"CPU": 1, "GPU": 1})
    assert submit(s, 1, {"CPU": 1}) == [Dispatch(1, 1)]
    s.task_finished(1, ok=True)
    assert submit(s, 2, {"CPU": 1, "GPU": 1}) == [SpawnWorker(2, 0, "")]
    assert s.available == s.total  # nothing held while its worker starts
    # a CPU task arriving meanwhile runs at once on the CPU worker
    assert submit(s, 3, {"CPU": 1}) == [Dispatch(1, 3)]
    assert s.worker_started(2) == []  # the CPU is taken: the GPU task waits for it
    assert s.task_finished(3, ok=True) == [Dispatch(2, 2, (0,))]


def test_idle_workers_beyond_one_per_cpu_and_gpu_are_trimmed() -> None:
    s = boot({"CPU": 1, "GPU": 1})
    submit(s, 1, {"CPU": 1})
    s.task_finished(1, ok=True)
    assert submit(s, 2, {"GPU": 0.5}) == [SpawnWorker(2, 0, "")]
    assert s.worker_started(2) == [Dispatch(2, 2, (0,))]
    # half of GPU 0 is still free, but its worker is busy: another worker for GPU 0
    assert submit(s, 3, {"GPU": 0.5}) == [SpawnWorker(3, 0, "")]
    assert s.worker_started(3) == [Dispatch(3, 3, (0,))]
    s.task_finished(2, ok=True)
    s.task_finished(3, ok=True)
    assert sorted(s.idle) == [1, 2, 3]
    assert s.trim() == [KillWorker(1)]  # the longest idle beyond one per CPU and GPU
    assert s.trim() == []


def test_at_the_cap_a_worker_of_the_env_that_cannot_serve_makes_room_before_the_pool() -> None:
    """Workers of runtime_env B that ran CPU tasks sit idle beside B's GPU task; at the
    worker cap one of them stops to make room for a fresh B worker, not the pool's worker:
    the pool would start another one at once, over the cap, and the next stop would find
    no room again (the state machine found that cycle, the GPU task waiting forever)."""
    s = boot({"CPU": 1, "GPU": 1}, max_workers=3)

    def submit_b(task_id: int, resources: dict[str, float]) -> list[Instruction]:
        return s.submit(task_id, f"t{task_id}", resources, 0, 1, set(), runtime_env="B")

    assert submit_b(1, {"CPU": 0.5}) == [SpawnWorker(2, 0, "B")]
    assert s.worker_started(2) == [Dispatch(2, 1)]
    assert submit_b(2, {"CPU": 0.5}) == [SpawnWorker(3, 0, "B")]
    assert s.worker_started(3) == [Dispatch(3, 2)]
    s.task_finished(1, ok=True)
    s.task_finished(2, ok=True)
    assert sorted(s.idle) == [1, 2, 3]  # the pool's worker 1, and B's CPU workers 2 and 3
    assert submit_b(3, {"CPU": 1, "GPU": 0.5}) == [KillWorker(2), SpawnWorker(4, 0, "B")]
    assert s.worker_died(2, -9) == []  # the pool keeps its worker: nothing to refill
    assert s.worker_started(4) == [Dispatch(4, 3, (0,))]
