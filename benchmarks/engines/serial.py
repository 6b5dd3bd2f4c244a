"""The serial baseline: every task runs at once, in the driver, one after another.

Its "actor" is a plain object in the driver (a method call), the floor that any engine's
actor call is compared with. It has no object store: ``put``/``get`` are "n/a".
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .base import Engine


class SerialEngine(Engine):
    name = "serial"
    has_actors = True
    description = "plain calls in the driver, one after another"

    def start(self, num_cpus: int) -> None:
        pass

    def submit(self, fn: Callable[..., Any], *args: Any) -> Any:
        return fn(*args)

    def gather(self, handles: list[Any]) -> list[Any]:
        return list(handles)

    def create_actor(self, cls: type) -> Any:
        return cls()

    def call(self, actor: Any, method: str, *args: Any) -> Any:
        return getattr(actor, method)(*args)

    def shutdown(self) -> None:
        pass
