"""Ray: ``ray.init(num_cpus=N)`` with its dashboard off and its logging quiet."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

from .base import Engine


class RayEngine(Engine):
    name = "ray"
    requires = ("ray",)
    distribution = "ray"
    has_objects = True
    has_actors = True
    has_pool = True
    has_joblib = True
    description = (
        "ray.init(num_cpus=N, include_dashboard=False, log_to_driver=False, logging_level=ERROR)"
    )

    def __init__(self) -> None:
        self._remote: dict[Any, Any] = {}

    def load(self) -> None:
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        import ray

        self.ray = ray

    def start(self, num_cpus: int) -> None:
        self.ray.init(
            num_cpus=num_cpus,
            include_dashboard=False,
            log_to_driver=False,
            logging_level=logging.ERROR,
        )

    def _remote_of(self, target: Any) -> Any:
        wrapped = self._remote.get(target)
        if wrapped is None:
            wrapped = self._remote[target] = self.ray.remote(target)
        return wrapped

    def submit(self, fn: Callable[..., Any], *args: Any) -> Any:
        return self._remote_of(fn).remote(*args)

    def gather(self, handles: list[Any]) -> list[Any]:
        return list(self.ray.get(handles))

    def put(self, value: Any) -> Any:
        return self.ray.put(value)

    def get(self, handle: Any) -> Any:
        return self.ray.get(handle)

    def start_pool(self, num_cpus: int) -> None:
        from ray.util.multiprocessing import Pool

        self.pool = Pool(num_cpus)

    def pool_map(self, fn: Callable[..., Any], items: list[Any]) -> list[Any]:
        return list(self.pool.map(fn, items))

    def stop_pool(self) -> None:
        self.pool.terminate()

    def joblib_backend(self) -> str:
        from ray.util.joblib import register_ray

        register_ray()
        return "ray"

    def create_actor(self, cls: type) -> Any:
        return self._remote_of(cls).remote()

    def call(self, actor: Any, method: str, *args: Any) -> Any:
        return getattr(actor, method).remote(*args)

    def destroy_actor(self, actor: Any) -> None:
        self.ray.kill(actor)

    def shutdown(self) -> None:
        self.ray.shutdown()
