"""Dask distributed: a ``LocalCluster`` of N worker processes with one thread each.

``put`` is ``Client.scatter`` and ``get`` is ``Future.result``; actors are
``Client.submit(cls, actor=True)``. Tasks are submitted with ``pure=False`` so that equal
arguments are not collapsed into one task.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .base import Engine


class DaskEngine(Engine):
    name = "dask"
    requires = ("distributed",)
    distribution = "distributed"
    has_objects = True
    has_actors = True
    description = "LocalCluster(n_workers=N, threads_per_worker=1, processes=True)"

    def load(self) -> None:
        from dask import distributed

        self.distributed = distributed

    def start(self, num_cpus: int) -> None:
        self.cluster = self.distributed.LocalCluster(
            n_workers=num_cpus,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            silence_logs=50,  # logging.CRITICAL
        )
        self.client = self.distributed.Client(self.cluster)

    def submit(self, fn: Callable[..., Any], *args: Any) -> Any:
        return self.client.submit(fn, *args, pure=False)

    def gather(self, handles: list[Any]) -> list[Any]:
        if handles and not isinstance(handles[0], self.distributed.Future):
            return [h.result() for h in handles]  # actor futures
        return list(self.client.gather(handles))

    def put(self, value: Any) -> Any:
        return self.client.scatter(value)

    def get(self, handle: Any) -> Any:
        return handle.result()

    def create_actor(self, cls: type) -> Any:
        return self.client.submit(cls, actor=True).result()

    def call(self, actor: Any, method: str, *args: Any) -> Any:
        return getattr(actor, method)(*args)

    def shutdown(self) -> None:
        self.client.close()
        self.cluster.close()
