"""The adapter shared by the engines with Ray's API: ``remote``, ``get``, ``put``, ``kill``,
``shutdown``, a ``util.multiprocessing.Pool`` and a ``util.joblib`` backend.

    RayApiEngine ──self.api──▶ ray   (ray_engine.RayEngine)
                            └─▶ nbray (nbray_engine.NbrayEngine: the local engine;
                                       nbray_engine.NbrayRayEngine: nbray on Ray)

A subclass imports its module in ``load`` (as ``self.api``) and starts it in ``start``;
everything else goes through the same calls, so the engines differ only in what they start.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from .base import Engine


class RayApiEngine(Engine):
    """Remote functions, ObjectRefs and actors of a module with Ray's API (``self.api``)."""

    has_objects = True
    has_actors = True
    has_pool = True
    has_joblib = True

    def __init__(self) -> None:
        self.api: Any = None
        self._remote: dict[Any, Any] = {}

    def _remote_of(self, target: Any) -> Any:
        wrapped = self._remote.get(target)
        if wrapped is None:
            wrapped = self._remote[target] = self.api.remote(target)
        return wrapped

    def submit(self, fn: Callable[..., Any], *args: Any) -> Any:
        return self._remote_of(fn).remote(*args)

    def gather(self, handles: list[Any]) -> list[Any]:
        return list(self.api.get(handles))

    def put(self, value: Any) -> Any:
        return self.api.put(value)

    def get(self, handle: Any) -> Any:
        return self.api.get(handle)

    def create_actor(self, cls: type) -> Any:
        return self._remote_of(cls).remote()

    def call(self, actor: Any, method: str, *args: Any) -> Any:
        return getattr(actor, method).remote(*args)

    def destroy_actor(self, actor: Any) -> None:
        self.api.kill(actor)

    def start_pool(self, num_cpus: int) -> None:
        module = importlib.import_module(f"{self.api.__name__}.util.multiprocessing")
        self.pool = module.Pool(num_cpus)

    def pool_map(self, fn: Callable[..., Any], items: list[Any]) -> list[Any]:
        return list(self.pool.map(fn, items))

    def stop_pool(self) -> None:
        self.pool.terminate()

    def joblib_backend(self) -> str:
        """``register_ray()`` / ``register_nbray()``: the backend is named after the module."""
        backend = str(self.api.__name__)
        module = importlib.import_module(f"{backend}.util.joblib")
        getattr(module, f"register_{backend}")()
        return backend

    def shutdown(self) -> None:
        self.api.shutdown()
