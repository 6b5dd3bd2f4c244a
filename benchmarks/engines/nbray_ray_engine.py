"""nbray on Ray: ``nbray.init(engine="ray", num_cpus=N)``, nbray's API over a private Ray.

Set beside the ``ray`` engine, it measures what nbray's Ray engine (nbray/_engines/ray/)
adds to Ray used directly: the same workloads through ``nbray.remote``/``nbray.get``.
"""

from __future__ import annotations

from .nbray_engine import NbrayEngine
from .ray_engine import RAY_INIT, quiet_ray


class NbrayRayEngine(NbrayEngine):
    name = "nbray_ray"
    requires = ("nbray", "ray")
    description = (
        "nbray.init(engine='ray', num_cpus=N): a private Ray, dashboard off as for `ray`, "
        "but with Ray's token authentication, log_to_driver=True and a 256 MiB object store "
        "(nbray's private-Ray settings; nbray.init accepts and ignores log_to_driver and "
        "logging_level)"
    )

    def load(self) -> None:
        quiet_ray()
        super().load()

    def start(self, num_cpus: int) -> None:
        self.api.init(engine="ray", num_cpus=num_cpus, **RAY_INIT)
