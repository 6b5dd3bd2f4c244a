"""loky: ``get_reusable_executor(max_workers=N)``, a robust process pool (no objects, no
actors)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .base import Engine


class LokyEngine(Engine):
    name = "loky"
    requires = ("loky",)
    distribution = "loky"
    has_joblib = True
    description = "loky.get_reusable_executor(max_workers=N)"

    def load(self) -> None:
        import loky

        self.loky = loky

    def start(self, num_cpus: int) -> None:
        self.executor = self.loky.get_reusable_executor(max_workers=num_cpus)

    def submit(self, fn: Callable[..., Any], *args: Any) -> Any:
        return self.executor.submit(fn, *args)

    def gather(self, handles: list[Any]) -> list[Any]:
        return [h.result() for h in handles]

    def joblib_backend(self) -> str:
        return "loky"  # joblib's default backend, on joblib's own (vendored) loky

    def shutdown(self) -> None:
        self.executor.shutdown(wait=True, kill_workers=True)
