"""``multiprocessing.Pool(N)`` with ``apply_async`` (the platform's default start method).
No objects, no actors."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from typing import Any

from .base import Engine


class MpPoolEngine(Engine):
    name = "mp_pool"
    has_pool = True
    description = "multiprocessing.Pool(N).apply_async"

    def start(self, num_cpus: int) -> None:
        self.pool = multiprocessing.Pool(num_cpus)

    def submit(self, fn: Callable[..., Any], *args: Any) -> Any:
        return self.pool.apply_async(fn, args)

    def gather(self, handles: list[Any]) -> list[Any]:
        return [h.get() for h in handles]

    def start_pool(self, num_cpus: int) -> None:
        self.map_pool = multiprocessing.Pool(num_cpus)

    def pool_map(self, fn: Callable[..., Any], items: list[Any]) -> list[Any]:
        return self.map_pool.map(fn, items)

    def stop_pool(self) -> None:
        self.map_pool.terminate()
        self.map_pool.join()

    def shutdown(self) -> None:
        self.pool.close()
        self.pool.join()
