"""Garbage collection that frees ObjectRefs while the client holds its lock."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator

import nbray
from nbray._engines.local.engine import LocalEngine
from nbray._model.session import current_engine


class _Cycle:
    pass


def test_refs_freed_by_gc_inside_fetch_do_not_deadlock(cluster: nbray.ClusterContext) -> None:
    engine = current_engine()
    assert isinstance(engine, LocalEngine)
    kept = nbray.put("kept")
    cycle = _Cycle()
    cycle.self = cycle  # type: ignore[attr-defined]
    cycle.ref = nbray.put("only reachable from a cycle")  # type: ignore[attr-defined]
    del cycle

    def oids() -> Iterator[int]:
        gc.collect()  # ObjectRef.__del__ of the cycle runs here, under the client's lock
        yield kept.id

    done = threading.Event()

    def fetch() -> None:
        engine.client.fetch(oids())
        done.set()

    threading.Thread(target=fetch, daemon=True).start()
    assert done.wait(10), "fetch deadlocked on an ObjectRef freed by garbage collection"
    assert nbray.get(kept) == "kept"
