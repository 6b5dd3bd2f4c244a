"""Placement groups and scheduling strategies on the Ray engine: Ray's own, wrapped.

    nbray.util.placement_group ──▶ RayEngine.create_placement_group ──▶
        ray.util.placement_group ──▶ nbray PlacementGroup holding Ray's (``_ray``)
    scheduling_strategy=nbray strategy ──ray_strategy()──▶ Ray's strategy object

Ray leaves a group that can never be placed pending; nbray's local engine refuses it.
"""

from __future__ import annotations

from typing import Any

from nbray._base.scheduling import NodeAffinitySchedulingStrategy, PlacementGroupSchedulingStrategy
from nbray._model.placement_group import PlacementGroup

__all__ = ["RayPlacementGroups", "ray_strategy"]


def ray_strategy(strategy: Any) -> Any:
    """nbray's scheduling strategy as Ray's (names and None pass as they are)."""
    from ray.util import scheduling_strategies as rs

    if isinstance(strategy, PlacementGroupSchedulingStrategy):
        group = strategy.placement_group
        if group._ray is None:
            raise ValueError(
                f"{group!r} was not made on the Ray engine (it is from another nbray.init): "
                "create it again with nbray.util.placement_group after init(engine='ray')"
            )
        return rs.PlacementGroupSchedulingStrategy(
            group._ray,
            placement_group_bundle_index=strategy.placement_group_bundle_index,
            placement_group_capture_child_tasks=strategy.placement_group_capture_child_tasks,
        )
    if isinstance(strategy, NodeAffinitySchedulingStrategy):
        return rs.NodeAffinitySchedulingStrategy(
            strategy.node_id,
            strategy.soft,
            _spill_on_unavailable=strategy._spill_on_unavailable,
            _fail_on_unavailable=strategy._fail_on_unavailable,
        )
    return strategy


def _wrap(ray_group: Any) -> PlacementGroup:
    return PlacementGroup(0, list(ray_group.bundle_specs), ray_group)


class RayPlacementGroups:
    """The RayEngine's placement-group methods (a mixin; ``placement_group_ready``, which
    wraps a Ray ObjectRef, is in ``engine``)."""

    def create_placement_group(
        self, bundles: list[dict[str, float]], strategy: str, name: str, lifetime: str | None
    ) -> PlacementGroup:
        from ray.util import placement_group

        return _wrap(placement_group(bundles, strategy=strategy, name=name, lifetime=lifetime))

    def remove_placement_group(self, group: PlacementGroup) -> None:
        from ray.util import remove_placement_group

        remove_placement_group(group._ray)

    def get_placement_group(self, name: str) -> PlacementGroup:
        from ray.util import get_placement_group

        return _wrap(get_placement_group(name))

    def placement_group_table(self, group: PlacementGroup | None) -> dict[str, Any]:
        from ray.util import placement_group_table

        return dict(placement_group_table(group._ray if group is not None else None))

    def current_placement_group(self) -> PlacementGroup | None:
        from ray.util import get_current_placement_group

        current = get_current_placement_group()
        return _wrap(current) if current is not None else None
