"""The current engine of this process: set by ``init`` (or by a worker at start).

nbray.api ──▶ current_engine() ──▶ the Engine set by init(), started on first use
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .engine import Engine

_engine: Engine | None = None
_lock = threading.RLock()
in_worker = False
#: called with each engine that becomes current (the notebook magics attach to it)
engine_listeners: list[Callable[[Engine], None]] = []


def current_engine() -> Engine:
    """The engine of this process; like Ray, the first use starts a local cluster."""
    engine = _engine
    if engine is not None:
        return engine
    with _lock:
        if _engine is None:
            from .lifecycle import init

            init()
        assert _engine is not None
        return _engine


def set_engine(engine: Engine | None) -> None:
    global _engine
    with _lock:
        _engine = engine
    if engine is not None:
        for listener in list(engine_listeners):
            listener(engine)


def get_engine() -> Engine | None:
    return _engine
