"""Scheduling strategies (Ray's ``ray.util.scheduling_strategies``), checked where given.

    @remote(scheduling_strategy=S) / .options(scheduling_strategy=S) ──check()──▶ options
        ──▶ local engine: the placement (group id, bundle index) in the TaskSpec, which the
            scheduler runs inside that bundle's reservation
        ──▶ ray engine: translated into Ray's own strategy objects

The placement group itself (``ready``, ``wait``...) lives in ``_model.placement_group``;
here it is only something with an ``id`` and a ``bundle_count``.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "NodeAffinitySchedulingStrategy",
    "PlacementGroupSchedulingStrategy",
    "check_strategy",
]

STRATEGY_NAMES = ("DEFAULT", "SPREAD")


class PlacementGroupSchedulingStrategy:
    """Run a task or actor inside a placement group's reservation (Ray's class).

    ``placement_group_bundle_index=-1`` takes any bundle with room; an index pins one.
    With ``placement_group_capture_child_tasks=True`` the tasks it submits run in the
    same group too.

    Example::

        pg = placement_group([{"CPU": 1}])
        f.options(scheduling_strategy=PlacementGroupSchedulingStrategy(pg)).remote()
    """

    def __init__(
        self,
        placement_group: Any,
        placement_group_bundle_index: int = -1,
        placement_group_capture_child_tasks: bool | None = None,
    ) -> None:
        self.placement_group = placement_group
        self.placement_group_bundle_index = placement_group_bundle_index
        self.placement_group_capture_child_tasks = placement_group_capture_child_tasks

    def __repr__(self) -> str:
        return (
            f"PlacementGroupSchedulingStrategy({self.placement_group!r}, "
            f"placement_group_bundle_index={self.placement_group_bundle_index})"
        )


class NodeAffinitySchedulingStrategy:
    """Run on the node ``node_id`` (hex); with ``soft=True`` elsewhere when it cannot
    (Ray's class). On the local engine there is one node: its id is
    ``nbray.get_runtime_context().get_node_id()`` / ``nbray.nodes()[0]["NodeID"]``.

    Example::

        node = nbray.nodes()[0]["NodeID"]
        f.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False))
    """

    def __init__(
        self,
        node_id: str,
        soft: bool,
        _spill_on_unavailable: bool = False,
        _fail_on_unavailable: bool = False,
    ) -> None:
        self.node_id = node_id
        self.soft = soft
        self._spill_on_unavailable = _spill_on_unavailable
        self._fail_on_unavailable = _fail_on_unavailable

    def __repr__(self) -> str:
        return f"NodeAffinitySchedulingStrategy(node_id={self.node_id!r}, soft={self.soft})"


def check_strategy(strategy: Any) -> Any:
    """``strategy`` itself when valid; raises ValueError/TypeError saying what is wrong."""
    if strategy is None or strategy in STRATEGY_NAMES:
        return strategy
    if isinstance(strategy, str):
        raise ValueError(
            f"scheduling_strategy {strategy!r} is not one of {STRATEGY_NAMES}, a "
            "PlacementGroupSchedulingStrategy or a NodeAffinitySchedulingStrategy"
        )
    if isinstance(strategy, PlacementGroupSchedulingStrategy):
        pg = strategy.placement_group
        if not hasattr(pg, "bundle_count"):
            raise TypeError(
                f"PlacementGroupSchedulingStrategy needs a PlacementGroup (from "
                f"nbray.util.placement_group(...)), got {pg!r}"
            )
        index = strategy.placement_group_bundle_index
        if not isinstance(index, int) or index < -1 or index >= pg.bundle_count:
            raise ValueError(
                f"placement_group_bundle_index {index!r} is out of range: the placement group "
                f"has {pg.bundle_count} bundle(s); use 0..{pg.bundle_count - 1}, or -1 for any"
            )
        return strategy
    if isinstance(strategy, NodeAffinitySchedulingStrategy):
        if not isinstance(strategy.node_id, str) or not isinstance(strategy.soft, bool):
            raise TypeError("NodeAffinitySchedulingStrategy(node_id: str, soft: bool)")
        return strategy
    raise TypeError(
        f"scheduling_strategy must be None, 'DEFAULT', 'SPREAD', a "
        f"PlacementGroupSchedulingStrategy or a NodeAffinitySchedulingStrategy, got {strategy!r}"
    )
