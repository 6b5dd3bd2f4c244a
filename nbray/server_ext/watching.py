"""A cluster the server watches: its event subscription, task table, output and nodes.

    head ──events (while watched)──▶ WatchedCluster._on_event ──▶ TaskTable, TaskLogs,
                                     latest metrics ──▶ listeners (the WebSocket handler)
    REST nodes/tasks/summary/graph/timeline ──▶ the same WatchedCluster

The server's own cluster (manager.ClusterManager: it also starts and stops it) and the
private clusters its kernels start (kernel_clusters.KernelCluster: the server only
watches) are both one of these, so one set of handlers serves either, chosen by the
route's cluster id.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from nbray._base.errors import NbrayConnectionError

from .tasks import TaskLogs, TaskTable

__all__ = ["LINGER", "Listener", "WatchedCluster"]

log = logging.getLogger("nbray.server_ext")
Listener = Callable[[dict[str, Any]], None]

LINGER = 30.0  # seconds the server stays subscribed after the last watcher left


class WatchedCluster:
    """The watching half of a cluster: ``_engine`` (a LocalEngine connected to its head, or
    None) is set by the subclass, which also says what a lost head means
    (``_forget_dead_head``)."""

    def __init__(self, task_capacity: int = 5000) -> None:
        self.tasks = TaskTable(task_capacity)
        self.logs = TaskLogs()
        self.state = "stopped"
        self.error = ""
        self.latest_metrics: dict[str, Any] | None = None
        self._engine: Any = None
        self._unsubscribe: Callable[[], None] | None = None
        self._watchers = 0
        self._linger: threading.Timer | None = None
        self._listeners: list[Listener] = []
        self._lock = threading.RLock()

    def ensure_started(self) -> None:
        """Start on first use, where the cluster does that (the server's own)."""

    def _forget_dead_head(self, force: bool = False) -> None:
        """The head went away by itself: drop the connection (``force``: it is gone)."""
        if self._drop_connection(force) is not None:
            self._set_state("stopped")

    def _drop_connection(self, force: bool) -> tuple[Any, str] | None:
        """Close and forget the connection to a head that went away; returns its engine and
        why the connection ended, or None where there was none (or, unless ``force``, it
        is still open)."""
        engine = self._engine
        if engine is None or not (force or engine.client.closed):
            return None
        self._engine = None
        self._unsubscribe = None
        self._cancel_linger()
        reason = engine.client.disconnect_reason or "the connection closed"
        with contextlib.suppress(Exception):
            engine.client.close()
        return engine, reason

    def _ask(self, engine: Any, func: Callable[[], Any]) -> Any:
        """``func()`` against the head; None (and the state "stopped") if it is gone."""
        try:
            return func()
        except NbrayConnectionError:
            with self._lock:
                if self._engine is engine:
                    self._forget_dead_head(force=True)
            return None

    # --- events --------------------------------------------------------------------------
    #
    # The head builds task events only while someone subscribes, and that costs throughput
    # on short tasks, so the server subscribes only while it is watched: a WebSocket is
    # open (``watch``), or a REST request came in the last LINGER seconds (``touch``). On
    # subscribing, the head replays its event history, from which the task table is rebuilt.

    def watch(self) -> Callable[[], None]:
        """Keep the event subscription on until the returned function is called."""
        with self._lock:
            self._watchers += 1
            self._subscribe()
        released = False

        def release() -> None:
            nonlocal released
            with self._lock:
                if released:
                    return
                released = True
                self._watchers -= 1
                if self._watchers == 0:
                    self._cancel_linger()
                    self._linger = threading.Timer(LINGER, self._unsubscribe_if_unwatched)
                    self._linger.daemon = True
                    self._linger.start()

        return release

    def touch(self) -> None:
        """A request for recent tasks or metrics: subscribe, for the next LINGER seconds."""
        self.watch()()

    def _subscribe(self) -> None:
        self._cancel_linger()
        engine = self._engine
        if engine is None or self._unsubscribe is not None:
            return
        self.tasks.clear()  # the replay brings the history back
        try:
            self._unsubscribe = engine.subscribe(self._on_event)
        except NbrayConnectionError:
            self._forget_dead_head(force=True)

    def _unsubscribe_if_unwatched(self) -> None:
        with self._lock:
            unsubscribe = self._unsubscribe
            if self._watchers or unsubscribe is None or self._engine is None:
                return
            self._unsubscribe = None
            with contextlib.suppress(NbrayConnectionError):
                unsubscribe()

    def _cancel_linger(self) -> None:
        if self._linger is not None:
            self._linger.cancel()
            self._linger = None

    @property
    def subscribed(self) -> bool:
        """Whether the server receives the cluster's events right now."""
        return self._unsubscribe is not None

    def add_listener(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener`` (from a background thread) with every event; returns a remover.
        Besides the head's events it receives ``{"type": "cluster", "state": ...}``."""
        with self._lock:
            self._listeners.append(listener)

        def remove() -> None:
            with self._lock, contextlib.suppress(ValueError):
                self._listeners.remove(listener)

        return remove

    def forward(self, event: dict[str, Any]) -> None:
        """Pass an event from elsewhere (the SSH cluster's nodes) to the listeners."""
        self._emit(event)

    def _on_event(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "task":
            self.tasks.apply(event)
        elif kind == "log":
            self.logs.apply(event)
        elif kind == "metrics":
            self.latest_metrics = event
        self._emit(event)

    def _emit(self, event: dict[str, Any]) -> None:
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:
                log.exception("an nbray event listener failed")

    def nodes(self) -> list[dict[str, Any]]:
        """One entry per node: Ray's node fields plus the latest CPU/memory/GPU sample."""
        engine = self._engine
        if engine is None:
            return []
        info = self._ask(engine, engine.cluster_info)
        if info is None:
            return []
        metrics = self.latest_metrics
        nodes = []
        for node in info["nodes"]:
            node = dict(node, available=info["available"])
            if metrics is not None and metrics.get("node_id") == node["NodeID"]:
                node["metrics"] = metrics
            nodes.append(node)
        return nodes

    def _set_state(self, state: str) -> None:
        self.state = state
        self._emit({"type": "cluster", "state": state, "error": self.error, "time": time.time()})
