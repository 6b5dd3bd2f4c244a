"""A bounded table of recent tasks, built from the head's event stream.

    head ──task events──▶ ClusterManager (reader thread) ──▶ TaskTable.apply()
    REST /nbray/api/tasks ──▶ TaskTable.query(state=, name=, owner=, limit=)
    side panel / dashboard ◀── TaskTable.summary(): counts by state, rate, latest failures
    head ──log events──▶ TaskLogs.apply() ──▶ REST /nbray/api/tasks/<id>/logs

It keeps the newest ``capacity`` tasks (oldest finished ones drop first), so a long
session never grows the server's memory. Thread-safe: events arrive on the client's
reader thread, queries on the server's.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from typing import Any

__all__ = ["TERMINAL_STATES", "TaskLogs", "TaskTable"]

TERMINAL_STATES = frozenset({"FINISHED", "FAILED", "CANCELLED"})
RATE_WINDOW = 10.0  # seconds over which the finish rate is measured
MAX_FAILURES = 20
LOG_LINES = 200  # pieces of output kept per task
LOG_BYTES = 64 * 1024  # characters of output kept per task
LOG_TASKS = 1000  # tasks whose output is kept (the least recently written drop first)


class TaskTable:
    """The newest ``capacity`` tasks seen on the event stream, by task id."""

    def __init__(self, capacity: int = 5000) -> None:
        self.capacity = capacity
        self._tasks: OrderedDict[str, dict[str, Any]] = OrderedDict()
        # finish times (a replay may deliver them out of order); bounded like everything here
        self._finishes: deque[float] = deque(maxlen=200_000)
        self._failures: deque[dict[str, Any]] = deque(maxlen=MAX_FAILURES)
        self._lock = threading.Lock()

    def apply(self, event: dict[str, Any]) -> None:
        """Fold one ``type == "task"`` event (see ``Head.task_event``) into the table."""
        task_id = event.get("task_id")
        state = event.get("state")
        if not isinstance(task_id, str) or not isinstance(state, str):
            return
        now = float(event.get("time") or time.time())
        with self._lock:
            rec = self._tasks.get(task_id)
            if rec is None:
                rec = {
                    "task_id": task_id,
                    "name": event.get("name", ""),
                    "state": state,
                    "owner": event.get("owner", 0),
                    "node_id": event.get("node_id", ""),
                    "actor_id": event.get("actor_id", ""),
                    "parent": event.get("parent", ""),
                    "deps": event.get("deps", []),
                    "returns": event.get("returns", []),
                    "submitted": now,
                    "started": None,
                    "ended": None,
                    "worker_id": None,
                    "pid": None,
                    "error": "",
                    "attempts": 0,
                }
                self._tasks[task_id] = rec
                self._trim()
            rec["state"] = state
            if state == "SUBMITTED":
                rec["submitted"] = now
                rec["deps"] = event.get("deps", rec["deps"])
                rec["returns"] = event.get("returns", rec["returns"])
            elif state == "RUNNING":
                rec["started"] = now
                rec["worker_id"] = event.get("worker_id")
                rec["pid"] = event.get("pid")
            elif state == "RETRYING":
                rec["attempts"] = int(event.get("attempt") or rec["attempts"] + 1)
                rec["error"] = str(event.get("reason") or "")
            if state in TERMINAL_STATES:
                rec["ended"] = now
                if event.get("worker_id") is not None:
                    rec["worker_id"] = event.get("worker_id")
                self._finishes.append(now)
                if state == "FAILED":
                    rec["error"] = str(event.get("error") or "")
                    self._failures.append(
                        {k: rec[k] for k in ("task_id", "name", "error", "ended", "owner")}
                    )

    def _trim(self) -> None:
        while len(self._tasks) > self.capacity:
            # the oldest finished task goes first; if none finished, the oldest one
            victim = next(
                (k for k, v in self._tasks.items() if v["state"] in TERMINAL_STATES),
                next(iter(self._tasks)),
            )
            del self._tasks[victim]

    def query(
        self,
        *,
        state: str | None = None,
        name: str | None = None,
        owner: int | None = None,
        limit: int = 200,
    ) -> list[dict[str, Any]]:
        """The newest tasks first, filtered by state (comma-separated list allowed), a
        substring of the name (case-insensitive) and the owning connection."""
        states = {s.strip().upper() for s in state.split(",")} if state else None
        needle = name.lower() if name else None
        out: list[dict[str, Any]] = []
        with self._lock:
            for rec in reversed(self._tasks.values()):
                if states and rec["state"] not in states:
                    continue
                if needle and needle not in str(rec["name"]).lower():
                    continue
                if owner is not None and rec["owner"] != owner:
                    continue
                out.append(dict(rec))
                if len(out) >= limit:
                    break
        return out

    def get(self, task_id: str) -> dict[str, Any] | None:
        """One task's record, or None when the table does not hold it."""
        with self._lock:
            rec = self._tasks.get(task_id)
            return dict(rec) if rec is not None else None

    def summary(self, now: float | None = None) -> dict[str, Any]:
        """Counts by state (of the tasks in the table), tasks finished per second over the
        last ten seconds, and the latest failures (newest first)."""
        now = time.time() if now is None else now
        with self._lock:
            cutoff = now - RATE_WINDOW
            if self._finishes:
                self._finishes = deque(
                    (t for t in self._finishes if t >= cutoff), maxlen=self._finishes.maxlen
                )
            counts: dict[str, int] = {}
            for rec in self._tasks.values():
                counts[rec["state"]] = counts.get(rec["state"], 0) + 1
            return {
                "counts": counts,
                "rate": len(self._finishes) / RATE_WINDOW,
                "failures": list(reversed(self._failures)),
            }

    def clear(self) -> None:
        with self._lock:
            self._tasks.clear()
            self._finishes.clear()
            self._failures.clear()


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
