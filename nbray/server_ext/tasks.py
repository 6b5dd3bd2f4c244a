"""The server's picture of recent tasks: the one fold of the event stream, plus task output.

    head ──events──▶ ClusterManager (reader thread) ──▶ TaskTable.apply() ──▶ EventFold
    REST /nbray/api/tasks    ──▶ TaskTable.query(state=, name=, owner=, limit=)
    REST /nbray/api/summary  ──▶ TaskTable.summary(): counts by state, rate, latest failures
    REST /nbray/api/graph    ──▶ TaskTable.graph_record(): the DAG in layers (grouped)
    REST /nbray/api/timeline ──▶ TaskTable.timeline_records(): a bar per attempt per worker
    head ──log events──▶ TaskLogs.apply() ──▶ REST /nbray/api/tasks/<id>/logs

The fold (``nbray._base.event_fold.EventFold``, the same the notebook widgets use) keeps
the newest ``capacity`` tasks (finished ones drop first), so a long session never grows
the server's memory. Thread-safe: events arrive on the client's reader thread, queries on
the server's.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from typing import Any

from .._base.event_fold import EventFold
from .._base.events import TERMINAL_STATES, GraphRecord, SegmentRecord

__all__ = ["TERMINAL_STATES", "TaskLogs", "TaskTable"]

LOG_LINES = 200  # pieces of output kept per task
LOG_BYTES = 64 * 1024  # characters of output kept per task
LOG_TASKS = 1000  # tasks whose output is kept (the least recently written drop first)
GRAPH_TASKS = 2000  # the newest tasks the dashboard's graph shows
GROUP_ABOVE = 60  # a graph of more tasks is grouped by function and stage


class TaskTable(EventFold):
    """The newest ``capacity`` tasks seen on the event stream, as REST answers: the fold's
    ``query``, ``get``, ``summary`` and ``clear``, plus the graph and timeline records.

    >>> table = TaskTable()
    >>> table.apply({"type": "task", "task_id": "a1", "name": "f", "state": "PENDING",
    ...              "time": 1.0, "owner": 1, "node_id": "", "actor_id": "", "parent": ""})
    >>> table.query()[0]["state"]
    'PENDING'
    """

    def __init__(self, capacity: int = 5000) -> None:
        super().__init__(max_tasks=capacity, max_segments=4 * capacity)
        self.capacity = capacity

    def graph_record(self, limit: int = GRAPH_TASKS) -> GraphRecord:
        """The DAG of the newest ``limit`` tasks, grouped by function and stage above
        ``GROUP_ABOVE`` tasks, each node placed by the layered layout."""
        return self.graph(newest=limit, group_above=GROUP_ABOVE).record()

    def timeline_records(self, limit: int = 2000) -> list[SegmentRecord]:
        """The latest ``limit`` attempts (running ones end now), oldest first."""
        return [s.record() for s in self.timeline(limit=limit)]


class TaskLogs:
    """The latest output of the latest tasks, from the head's ``type == "log"`` events.

    Per task it keeps the last ``lines`` pieces and at most ``chars`` characters (the
    oldest go first, and are counted in ``dropped``); it keeps ``tasks`` tasks, dropping the
    one written least recently. The head sends these events only while the server
    subscribes (a panel or dashboard is open), so output from unwatched moments is absent.

    >>> logs = TaskLogs()
    >>> logs.apply({"type": "log", "task_id": "00000000000000a1", "stream": "stdout",
    ...             "text": "hello\\n", "time": 1.0})
    >>> logs.get("00000000000000a1")["lines"][0]["text"]
    'hello\\n'
    """

    def __init__(
        self, lines: int = LOG_LINES, chars: int = LOG_BYTES, tasks: int = LOG_TASKS
    ) -> None:
        self.lines = lines
        self.chars = chars
        self.tasks = tasks
        self._logs: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def apply(self, event: dict[str, Any]) -> None:
        """Fold one log event into the task's log."""
        task_id = event.get("task_id")
        text = event.get("text")
        if not isinstance(task_id, str) or not isinstance(text, str):
            return
        piece: dict[str, Any] = {
            "stream": str(event.get("stream") or "stdout"),
            "text": text[-self.chars :],
            "time": float(event.get("time") or time.time()),
            "truncated": bool(event.get("truncated")),
        }
        with self._lock:
            log = self._logs.get(task_id)
            if log is None:
                log = self._logs[task_id] = {"lines": deque(), "chars": 0, "dropped": 0}
                while len(self._logs) > self.tasks:
                    self._logs.popitem(last=False)
            else:
                self._logs.move_to_end(task_id)
            log["lines"].append(piece)
            log["chars"] += len(piece["text"])
            while len(log["lines"]) > self.lines or log["chars"] > self.chars:
                old = log["lines"].popleft()
                log["chars"] -= len(old["text"])
                log["dropped"] += 1

    def get(self, task_id: str) -> dict[str, Any] | None:
        """``{"lines": [{"stream", "text", "time", "truncated"}, ...], "dropped": n}``
        (oldest first), or None when no output of that task is kept."""
        with self._lock:
            log = self._logs.get(task_id)
            if log is None:
                return None
            return {"lines": [dict(p) for p in log["lines"]], "dropped": log["dropped"]}

    def clear(self) -> None:
        with self._lock:
            self._logs.clear()
