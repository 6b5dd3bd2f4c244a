"""The ready tasks, shared fairly between owners (the kernels using one cluster).

    Scheduler ──push(owner, task, left?)──▶ FairQueue: one FIFO per owner
    Scheduler ──peek() / pop()──▶ the front task of the owner running the fewest tasks now
        (ties: the owner whose turn comes first; a served owner goes to the back)

First come, first served across kernels lets one notebook's batch of thousands of tasks
starve another's single interactive cell: that cell's task waits behind the whole batch.
Here each owner has a queue of its own, and a free worker goes to the owner that has the
fewest tasks running, so two flooding kernels each get half the workers and a single
task from a third starts as soon as any worker frees. With one owner (the usual case) it
is a plain FIFO and ``running`` is never called.

``left`` pushes (retries, tasks of tasks: run them next, depth first) go to the front of
their owner's queue; an owner that had nothing queued then takes the first turn.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Mapping

__all__ = ["FairQueue"]


class FairQueue:
    """Ready task ids by owner. ``running()`` says how many tasks each owner runs now."""

    __slots__ = ("_len", "_queues", "_running", "_turns")

    def __init__(self, running: Callable[[], Mapping[int, int]]) -> None:
        self._queues: dict[int, deque[int]] = {}
        self._turns: deque[int] = deque()  # owners with queued tasks, in turn order
        self._running = running
        self._len = 0

    def __len__(self) -> int:
        return self._len

    def __bool__(self) -> bool:
        return self._len > 0

    def __iter__(self) -> Iterator[int]:
        for queue in self._queues.values():
            yield from queue

    def owners(self) -> list[int]:
        """The owners with queued tasks, in turn order."""
        return list(self._turns)

    def lengths(self) -> dict[int, int]:
        """How many tasks each owner has queued."""
        return {owner: len(queue) for owner, queue in self._queues.items()}

    def items(self) -> Iterator[tuple[int, int]]:
        """Every queued ``(owner, task id)``."""
        for owner, queue in self._queues.items():
            for task_id in queue:
                yield owner, task_id

    def problems(self) -> list[str]:
        """Its own broken invariants ([] when consistent)."""
        out: list[str] = []
        if sorted(self._turns) != sorted(self._queues):
            out.append(f"turns {list(self._turns)} are not the owners queued {list(self._queues)}")
        if any(not q for q in self._queues.values()):
            out.append("an owner's queue is empty but kept")
        if self._len != sum(len(q) for q in self._queues.values()):
            out.append(f"length {self._len} is not the queues' total")
        return out

    def push(self, owner: int, task_id: int, left: bool = False) -> None:
        queue = self._queues.get(owner)
        if queue is None:
            queue = self._queues[owner] = deque()
            if left:
                self._turns.appendleft(owner)
            else:
                self._turns.append(owner)
        if left:
            queue.appendleft(task_id)
        else:
            queue.append(task_id)
        self._len += 1

    def push_back_front(self, items: list[tuple[int, int]]) -> None:
        """Put back ``(owner, task id)`` pairs that ``pop`` took, ahead of the rest of
        their owners' queues, in their order."""
        for owner, task_id in reversed(items):
            self.push(owner, task_id, left=True)

    def _next_owner(self) -> int:
        turns = self._turns
        if len(turns) == 1:
            return turns[0]
        running = self._running()
        # min keeps the first of equals: the owner whose turn comes first
        return min(turns, key=lambda owner: running.get(owner, 0))

    def peek(self) -> int:
        """The task ``pop`` would take (the queue is not empty)."""
        turns = self._turns
        if len(turns) == 1:  # one owner: a FIFO (the per-task path, kept short)
            return self._queues[turns[0]][0]
        return self._queues[self._next_owner()][0]

    def pop(self) -> int:
        turns = self._turns
        self._len -= 1
        if len(turns) == 1:
            owner = turns[0]
            queue = self._queues[owner]
            task_id = queue.popleft()
            if not queue:
                turns.clear()
                del self._queues[owner]
            return task_id
        owner = self._next_owner()
        queue = self._queues[owner]
        task_id = queue.popleft()
        turns.remove(owner)
        if queue:
            turns.append(owner)  # served: its next turn comes after the others'
        else:
            del self._queues[owner]
        return task_id

    def remove(self, owner: int, task_id: int) -> None:
        """Take out a queued task (cancelled, its group removed); ValueError if absent."""
        queue = self._queues.get(owner)
        if queue is None:
            raise ValueError(f"task {task_id} is not queued")
        queue.remove(task_id)
        self._len -= 1
        if not queue:
            del self._queues[owner]
            self._turns.remove(owner)
