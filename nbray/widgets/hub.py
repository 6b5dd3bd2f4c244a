"""One event subscription per engine, shared by every widget, with throttled redraws.

    engine.subscribe ──▶ EventAggregator (reader thread, cheap) ──▶ version++
    redraw thread, every ``interval`` s: version changed? ──▶ each attached view's refresh()

Views attach and detach; the first attach subscribes to the engine (the head then replays
its recent history), the last detach unsubscribes and drops the state. A view is told the
cluster is gone when the session that owned the engine ended or its connection closed; when
no event (metrics come every second) arrived for ``stale_after`` seconds, the hub is
``stalled`` (views say so) but keeps listening, since a busy head comes back.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from nbray._model import session
from nbray._model.engine import Engine
from nbray.magics import submitting_cell
from nbray.magics.cells import running_cell

from .state import EventAggregator, TaskInfo

__all__ = ["EventHub", "hub_for"]

log = logging.getLogger(__name__)

Refresh = Callable[[EventAggregator, str], None]  # (state, "" or why the cluster is gone)

_hubs: dict[int, EventHub] = {}
_hubs_lock = threading.Lock()


def _current_cell() -> int | None:
    """The number of the notebook cell running now (IPython), else None. Called for each
    task submitted while widgets watch: IPython is imported once."""
    global _get_ipython
    if _get_ipython is None:
        try:
            from IPython import get_ipython
        except ImportError:
            return None
        _get_ipython = get_ipython
    shell = _get_ipython()
    return running_cell(shell) if shell is not None else None


_get_ipython: Callable[[], Any] | None = None


def _cells_of(engine: Engine) -> Callable[[TaskInfo], int | None]:
    """The cell a task was submitted from, for the tasks of this process's connection only
    (on a cluster that several kernels share, the others' belong to no cell here): by its
    id when this process submitted it (the local engine's ids carry the submitting
    connection's in their top bits), else (tasks that tasks submitted, the Ray engine's) by
    when the cluster took it in."""
    own = getattr(getattr(engine, "client", None), "client_id", 0)

    def cell_of(info: TaskInfo) -> int | None:
        if info.owner != own:
            return None
        task_id: int | None = None
        if own:
            try:
                task_id = int(info.task_id, 16)
            except ValueError:
                pass
            if task_id is not None and task_id >> 32 != own:
                task_id = None
        return submitting_cell(engine, task_id, info.submitted)

    return cell_of


class EventHub:
    """The shared aggregator of one engine and the views redrawn from it.

    Example::

        hub = hub_for(engine)
        detach = hub.attach(lambda state, gone: print(state.counts(), gone))
        ...
        detach()
    """

    def __init__(self, engine: Engine, *, interval: float = 0.4, stale_after: float = 10.0):
        self.engine = engine
        self.interval = interval
        self.stale_after = stale_after
        self.state = EventAggregator(cell_of=_cells_of(engine), deferred=True)
        self._views: dict[int, Refresh] = {}
        self._next = 0
        self._lock = threading.Lock()
        self._unsubscribe: Callable[[], None] | None = None
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._subscribed_at = 0.0
        self.gone = ""
        self.redraws = 0  # refresh rounds run, for tests and benchmarks

    # --- views -----------------------------------------------------------------------------

    def attach(self, refresh: Refresh) -> Callable[[], None]:
        """Redraw ``refresh`` at most every ``interval`` s while events come; returns the
        function that detaches it (idempotent)."""
        with self._lock:
            if self.gone:
                raise RuntimeError(f"the cluster is gone ({self.gone}): call nbray.init()")
            key = self._next
            self._next += 1
            self._views[key] = refresh
            if self._unsubscribe is None:
                self._subscribed_at = time.monotonic()
                self._unsubscribe = self.engine.subscribe(self.state.apply)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._loop, name="nbray-widgets", daemon=True
                )
                self._thread.start()

        def detach() -> None:
            with self._lock:
                if self._views.pop(key, None) is None or self._views:
                    return
            self.close()

        return detach

    @property
    def views(self) -> int:
        return len(self._views)

    def sync(self) -> None:
        """Wait until the events the engine sent before now (the replay included) are in
        the state: a request's reply comes after them on the connection."""
        if not self.gone:
            self.engine.cluster_info()

    def close(self) -> None:
        """Unsubscribe from the engine and stop redrawing."""
        with self._lock:
            unsubscribe, self._unsubscribe = self._unsubscribe, None
            self._views.clear()
            thread, self._thread = self._thread, None
        with _hubs_lock:
            if _hubs.get(id(self.engine)) is self:
                del _hubs[id(self.engine)]
        if unsubscribe is not None and not self.gone:
            try:
                unsubscribe()
            except Exception:  # the connection died under us: nothing left to release
                log.debug("unsubscribing failed", exc_info=True)
        self._wake.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)

    # --- redraw loop -----------------------------------------------------------------------

    def check_gone(self) -> str:
        """Why the cluster is unreachable, or ""."""
        if self.gone:
            return self.gone
        if session.get_engine() is not self.engine:
            return "the nbray session ended (nbray.shutdown() or the process is exiting)"
        client = getattr(self.engine, "client", None)
        if getattr(client, "closed", False):
            reason = getattr(client, "disconnect_reason", "") or "closed"
            return f"the connection to the cluster is lost ({reason})"
        return ""

    @property
    def stalled(self) -> float:
        """Seconds without any event once that passed ``stale_after``, else 0."""
        last = max(self.state.last_event, self._subscribed_at)
        quiet = time.monotonic() - last if last else 0.0
        return quiet if quiet > self.stale_after else 0.0

    def _loop(self) -> None:
        seen = -1
        was_stalled = False
        pause = self.interval
        while True:
            self._wake.wait(pause)
            self._wake.clear()
            with self._lock:
                if self._thread is not threading.current_thread():
                    return
                views = list(self._views.values())
            gone = self.check_gone()
            version = self.state.version
            stalled = bool(self.stalled)
            if version == seen and not gone and stalled == was_stalled and not stalled:
                continue
            seen, was_stalled = version, stalled
            self.redraws += 1
            started = time.monotonic()
            for refresh in views:
                try:
                    refresh(self.state, gone)
                except Exception:
                    log.exception("an nbray widget failed to redraw")
            # big redraws come less often: drawing takes at most a fifth of the time
            pause = max(self.interval, 4 * (time.monotonic() - started))
            if gone:
                self.gone = gone
                self.close()
                return

    def refresh_now(self) -> None:
        """Redraw every view at once (after ``sync``), outside the throttle."""
        gone = self.check_gone()
        for refresh in list(self._views.values()):
            refresh(self.state, gone)


def hub_for(engine: Engine | None = None) -> EventHub:
    """The hub of ``engine`` (default: the current session's, started if needed)."""
    engine = engine if engine is not None else session.current_engine()
    with _hubs_lock:
        hub = _hubs.get(id(engine))
        if hub is None or hub.engine is not engine or hub.gone:
            hub = _hubs[id(engine)] = EventHub(engine)
        return hub
