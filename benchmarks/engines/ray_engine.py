"""Ray: ``ray.init(num_cpus=N)`` with its dashboard off and its logging quiet."""

from __future__ import annotations

import logging
import os
from typing import Any

from .ray_api import RayApiEngine

#: What both Ray-backed engines (``ray``, ``nbray_ray``) ask of ``ray.init``, beside num_cpus.
RAY_INIT: dict[str, Any] = {
    "include_dashboard": False,
    "log_to_driver": False,
    "logging_level": logging.ERROR,
}


def quiet_ray() -> None:
    """No usage-stats report (read when Ray is imported and started)."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


class RayEngine(RayApiEngine):
    name = "ray"
    requires = ("ray",)
    distribution = "ray"
    description = (
        "ray.init(num_cpus=N, include_dashboard=False, log_to_driver=False, logging_level=ERROR)"
    )

    def load(self) -> None:
        quiet_ray()
        import ray

        self.api = ray

    def start(self, num_cpus: int) -> None:
        self.api.init(num_cpus=num_cpus, **RAY_INIT)
