"""Ray's ``ray.util.scheduling_strategies`` on nbray: where a task or actor runs.

    f.options(scheduling_strategy=PlacementGroupSchedulingStrategy(pg, 0)).remote()
    f.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=True)).remote()
    f.options(scheduling_strategy="SPREAD").remote()   # "DEFAULT" too: one node, no choice

The classes are defined in ``nbray._base.scheduling`` (options check them without importing
upward); the Ray engine translates them into Ray's own.
"""

from __future__ import annotations

from nbray._base.scheduling import NodeAffinitySchedulingStrategy, PlacementGroupSchedulingStrategy

__all__ = ["NodeAffinitySchedulingStrategy", "PlacementGroupSchedulingStrategy"]
