"""A bounded table of recent tasks, built from the head's event stream.

    head ──task events──▶ ClusterManager (reader thread) ──▶ TaskTable.apply()
    REST /nbray/api/tasks ──▶ TaskTable.query(state=, name=, owner=, limit=)
    side panel / dashboard ◀── TaskTable.summary(): counts by state, rate, latest failures

It keeps the newest ``capacity`` tasks (oldest finished ones drop first), so a long
session never grows the server's memory. Thread-safe: events arrive on the client's
reader thread, queries on the server's.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from typing import Any

__all__ = ["TERMINAL_STATES", "TaskTable"]

TERMINAL_STATES = frozenset({"FINISHED", "FAILED", "CANCELLED"})
RATE_WINDOW = 10.0  # seconds over which the finish rate is measured
MAX_FAILURES = 20


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
