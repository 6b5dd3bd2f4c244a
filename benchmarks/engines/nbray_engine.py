"""nbray's local engine: ``nbray.init(num_cpus=N)``, remote functions, ObjectRefs, actors."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .base import Engine


class NbrayEngine(Engine):
    name = "nbray"
    requires = ("nbray",)
    distribution = "nbray"
    has_objects = True
    has_actors = True
    has_pool = True
    has_joblib = True
    has_watching = True
    description = "nbray.init(num_cpus=N), local engine"

    def __init__(self) -> None:
        self._remote: dict[Any, Any] = {}

    def load(self) -> None:
        import nbray

        self.nbray = nbray

    def start(self, num_cpus: int) -> None:
        self.nbray.init(num_cpus=num_cpus)

    def _remote_of(self, target: Any) -> Any:
        wrapped = self._remote.get(target)
        if wrapped is None:
            wrapped = self._remote[target] = self.nbray.remote(target)
        return wrapped

    def submit(self, fn: Callable[..., Any], *args: Any) -> Any:
        return self._remote_of(fn).remote(*args)

    def gather(self, handles: list[Any]) -> list[Any]:
        return list(self.nbray.get(handles))

    def put(self, value: Any) -> Any:
        return self.nbray.put(value)

    def get(self, handle: Any) -> Any:
        return self.nbray.get(handle)

    def create_actor(self, cls: type) -> Any:
        return self._remote_of(cls).remote()

    def call(self, actor: Any, method: str, *args: Any) -> Any:
        return getattr(actor, method).remote(*args)

    def destroy_actor(self, actor: Any) -> None:
        self.nbray.kill(actor)

    def start_pool(self, num_cpus: int) -> None:
        from nbray.util.multiprocessing import Pool

        self.pool = Pool(num_cpus)

    def pool_map(self, fn: Callable[..., Any], items: list[Any]) -> list[Any]:
        return list(self.pool.map(fn, items))

    def stop_pool(self) -> None:
        self.pool.terminate()

    def joblib_backend(self) -> str:
        from nbray.util.joblib import register_nbray

        register_nbray()
        return "nbray"

    def shutdown(self) -> None:
        self.nbray.shutdown()
