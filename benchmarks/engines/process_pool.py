"""``concurrent.futures.ProcessPoolExecutor(max_workers=N)`` (the platform's default start
method). No objects, no actors."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from .base import Engine


class ProcessPoolEngine(Engine):
    name = "process_pool"
    description = "concurrent.futures.ProcessPoolExecutor(max_workers=N)"

    def start(self, num_cpus: int) -> None:
        self.executor = ProcessPoolExecutor(max_workers=num_cpus)

    def submit(self, fn: Callable[..., Any], *args: Any) -> Any:
        return self.executor.submit(fn, *args)

    def gather(self, handles: list[Any]) -> list[Any]:
        return [h.result() for h in handles]

    def shutdown(self) -> None:
        self.executor.shutdown(wait=True)
