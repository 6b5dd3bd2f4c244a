"""ipyparallel: a local ``Cluster`` (controller + N engines) and a load-balanced view.

It has no object store that tasks take by reference and no actors in Ray's sense, so those
workloads are "n/a".
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .base import Engine


class IpyparallelEngine(Engine):
    name = "ipyparallel"
    requires = ("ipyparallel",)
    distribution = "ipyparallel"
    description = "ipp.Cluster(n=N).start_and_connect_sync(), load_balanced_view()"

    def load(self) -> None:
        import ipyparallel

        self.ipp = ipyparallel

    def start(self, num_cpus: int) -> None:
        self.cluster = self.ipp.Cluster(n=num_cpus, log_level=40)
        self.rc = self.cluster.start_and_connect_sync()
        self.view = self.rc.load_balanced_view()

    def submit(self, fn: Callable[..., Any], *args: Any) -> Any:
        return self.view.apply_async(fn, *args)

    def gather(self, handles: list[Any]) -> list[Any]:
        return [h.get() for h in handles]

    def shutdown(self) -> None:
        self.rc.close()
        self.cluster.stop_cluster_sync()
