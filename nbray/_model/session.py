"""The current engine of this process: set by ``init`` (or by a worker at start).

nbray._compose.api ──▶ current_engine() ──▶ the Engine set by init(), started on first use

The layers above hand this module what it must call back, since nothing here imports
upward: ``auto_init`` (the composition layer's ``init``, for a first use without one) and
``progress_get``/``progress_wait`` (the faces' progress bar for ``get``/``wait``).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

TYPE_CHECKING = False  # typing is not imported: see nbray/_base/lazy.py
if TYPE_CHECKING:
    from typing import Any

    from .engine import Engine
    from .object_ref import ObjectRef

_engine: Engine | None = None
_lock = threading.RLock()
in_worker = False
#: called with each engine that becomes current (the notebook magics attach to it)
engine_listeners: list[Callable[[Engine], None]] = []
#: starts a cluster when the API is first used without ``init``, as Ray does (set by
#: ``nbray._compose.lifecycle``)
auto_init: Callable[[], object] | None = None
#: ``get(..., progress=True)``: engine, refs, timeout -> values (set by ``nbray``)
progress_get: Callable[[Engine, list[ObjectRef], float | None], list[Any]] | None = None
#: ``wait(..., progress=True)``: engine, refs, num_returns, timeout -> ready refs
progress_wait: Callable[[Engine, list[ObjectRef], int, float | None], list[ObjectRef]] | None = None


def current_engine() -> Engine:
    """The engine of this process; like Ray, the first use starts a local cluster (unless
    ``RAY_ENABLE_AUTO_CONNECT=0``, Ray's switch)."""
    engine = _engine
    if engine is not None:
        return engine
    with _lock:
        if _engine is None:
            if auto_init is None:
                raise RuntimeError("nbray is not initialized: call nbray.init() first")
            if os.environ.get("RAY_ENABLE_AUTO_CONNECT", "") == "0":
                raise RuntimeError(
                    "nbray is not initialized and RAY_ENABLE_AUTO_CONNECT=0 turns off starting "
                    "a cluster on first use: call nbray.init() first"
                )
            auto_init()
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
