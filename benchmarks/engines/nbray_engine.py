"""nbray's local engine: ``nbray.init(num_cpus=N)``, remote functions, ObjectRefs, actors."""

from __future__ import annotations

from .ray_api import RayApiEngine


class NbrayEngine(RayApiEngine):
    name = "nbray"
    requires = ("nbray",)
    distribution = "nbray"
    has_watching = True
    description = "nbray.init(num_cpus=N), local engine"

    def load(self) -> None:
        import nbray

        self.api = nbray

    def start(self, num_cpus: int) -> None:
        self.api.init(num_cpus=num_cpus)
