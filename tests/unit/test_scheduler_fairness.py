"""Kernels sharing one cluster share it fairly: a free worker goes to the owner running
the fewest tasks, so one kernel's batch does not starve another's single task, and two
flooding kernels get half the workers each. Pure: no process starts."""

from __future__ import annotations

from collections import Counter

import pytest
from test_scheduler import boot, submit, validate_after_every_event  # noqa: F401  (autouse)

from nbray._node.fair_queue import FairQueue
from nbray._node.scheduler import Dispatch, Retry


def test_one_owners_batch_does_not_hold_back_anothers_task() -> None:
    s = boot({"CPU": 2})
    for tid in range(1, 101):  # kernel 1 floods
        submit(s, tid, owner=1)
    assert submit(s, 500, owner=2) == []  # both workers are busy with kernel 1's work
    # the first worker that frees runs kernel 2's task, ahead of kernel 1's 98 others
    assert s.task_finished(1, ok=True) == [Dispatch(2, 500)]
    assert s.task_finished(500, ok=True) == [Dispatch(2, 3)]


def test_two_flooding_owners_get_half_the_workers_each() -> None:
    s = boot({"CPU": 4})
    for i in range(200):
        submit(s, 1000 + i, owner=1)
    for i in range(200):
        submit(s, 2000 + i, owner=2)
    shares: Counter[int] = Counter()
    for step in range(300):  # finish whatever runs longest, again and again
        running = sorted(tid for w in s.workers.values() if (tid := w.task_id))
        per_owner = Counter(tid // 1000 for tid in running)
        if step >= 4 and len(s.ready.owners()) == 2:  # once kernel 1's head start is over
            shares[per_owner[1] - per_owner[2]] += 1
        s.task_finished(running[0], ok=True)
    # while both wait, the four workers split two and two
    assert set(shares) == {0} and shares[0] > 150


def test_with_one_owner_it_is_first_come_first_served() -> None:
    s = boot({"CPU": 1})
    assert submit(s, 1) == [Dispatch(1, 1)]
    for tid in (2, 3, 4):
        submit(s, tid)
    assert s.task_finished(1, ok=True) == [Dispatch(1, 2)]
    assert s.task_finished(2, ok=True) == [Dispatch(1, 3)]


def test_a_retry_runs_next_within_its_owners_queue() -> None:
    s = boot({"CPU": 1})
    assert submit(s, 1, owner=1, retries=1) == [Dispatch(1, 1)]
    submit(s, 2, owner=1)
    submit(s, 3, owner=2)
    out = s.worker_died(1, -9)
    assert isinstance(out[0], Retry) and out[0].task_id == 1
    # neither kernel runs anything: kernel 1's turn came first, and its retry leads its
    # queue; then kernel 2's task, then kernel 1's next
    assert s.worker_started(2) == [Dispatch(2, 1)]
    assert s.task_finished(1, ok=True) == [Dispatch(2, 3)]
    assert s.task_finished(3, ok=True) == [Dispatch(2, 2)]


def test_fair_queue_round_robin_and_removal() -> None:
    q = FairQueue(lambda: {})
    for tid in (1, 2, 3):
        q.push(10, tid)
    q.push(20, 4)
    q.push(30, 5, left=True)  # an owner with nothing queued pushing left: first turn
    assert q.owners() == [30, 10, 20]
    assert [q.pop() for _ in range(3)] == [5, 1, 4]  # each owner in turn
    q.remove(10, 3)
    assert list(q) == [2] and len(q) == 1 and q.problems() == []
    with pytest.raises(ValueError):
        q.remove(20, 4)
    q.push_back_front([(10, 7), (10, 8)])
    assert [q.pop() for _ in range(3)] == [7, 8, 2]
    assert not q and q.problems() == []


def test_fair_queue_serves_the_owner_running_fewest() -> None:
    running = {10: 3, 20: 1}
    q = FairQueue(lambda: running)
    q.push(10, 1)
    q.push(20, 2)
    q.push(20, 3)
    assert q.peek() == 2 and q.pop() == 2
    running[20] = 3  # equal now: the owner whose turn comes first (10; 20 was served)
    assert q.pop() == 1
    assert q.pop() == 3
