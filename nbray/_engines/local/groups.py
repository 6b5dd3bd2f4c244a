"""Placement groups and scheduling strategies on the local engine.

    nbray.util.placement_group ──▶ LocalEngine.create_placement_group ──Request("pg_create")──▶
        head (GroupTable ─▶ Scheduler: refused at once if it can never be placed)
    .options(scheduling_strategy=PlacementGroupSchedulingStrategy(pg, i)) ──placement()──▶
        TaskSpec.placement = (group id, bundle index, capture child tasks)
    pg.ready() ──▶ a zero-CPU task in bundle 0 (as in Ray): ready once the group is reserved

A worker running a task whose placement captures child tasks submits its children into the
same group (``captured``), as Ray's ``placement_group_capture_child_tasks`` does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nbray._base.errors import UnschedulableError
from nbray._base.options import TaskOptions
from nbray._base.scheduling import NodeAffinitySchedulingStrategy, PlacementGroupSchedulingStrategy
from nbray._model.placement_group import PlacementGroup, ready_value

if TYPE_CHECKING:
    from nbray._model.object_ref import ObjectRef

    from .client import Client

__all__ = ["PlacementGroups"]

STRATEGY_NAMES = ("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD")


class PlacementGroups:
    """The LocalEngine's placement-group methods (a mixin: ``self.client`` is the Client)."""

    client: Client
    #: (group id, bundle -1, True) while running a task that captures its child tasks
    captured: tuple[int, int, bool] | None = None

    def placement(self, strategy: Any) -> tuple[int, int, bool] | None:
        """The TaskSpec placement for a scheduling strategy (None: the node's pool)."""
        if isinstance(strategy, PlacementGroupSchedulingStrategy):
            group = strategy.placement_group
            if group.is_empty:
                return None
            return (
                group._group_id,
                strategy.placement_group_bundle_index,
                bool(strategy.placement_group_capture_child_tasks),
            )
        if isinstance(strategy, NodeAffinitySchedulingStrategy):
            if strategy.node_id != self.client.node_id and not strategy.soft:
                raise UnschedulableError(
                    f"NodeAffinitySchedulingStrategy(node_id={strategy.node_id!r}, soft=False) "
                    f"names a node this cluster does not have: its one node is "
                    f"{self.client.node_id!r}. Use that id, or soft=True to run anywhere"
                )
            return None
        if strategy is None:
            return self.captured
        return None  # "DEFAULT", "SPREAD": one node, nothing to choose

    def create_placement_group(
        self, bundles: list[dict[str, float]], strategy: str, name: str, lifetime: str | None
    ) -> PlacementGroup:
        group_id = self.client.new_id()
        bundles = [dict(b) for b in bundles]
        self.client.request(
            "pg_create",
            group_id,
            bundles,
            strategy,
            name,
            self.client.namespace,
            lifetime == "detached",
        )
        return PlacementGroup(group_id, bundles)

    def remove_placement_group(self, group: PlacementGroup) -> None:
        self.client.request("pg_remove", group._group_id)

    def get_placement_group(self, name: str) -> PlacementGroup:
        group_id, bundles = self.client.request("pg_get", name, self.client.namespace)
        return PlacementGroup(group_id, bundles)

    def placement_group_table(self, group: PlacementGroup | None) -> dict[str, Any]:
        return dict(self.client.request("pg_table", group._group_id if group is not None else None))

    def current_placement_group(self) -> PlacementGroup | None:
        if self.captured is None:
            return None
        record = self.placement_group_table(PlacementGroup(self.captured[0], []))
        bundles = record.get("bundles", {})
        return PlacementGroup(self.captured[0], [bundles[i] for i in sorted(bundles)])

    def placement_group_ready(self, group: PlacementGroup) -> ObjectRef:
        options = TaskOptions(
            num_cpus=0,
            max_retries=0,
            scheduling_strategy=PlacementGroupSchedulingStrategy(group, 0),
        )
        refs: list[ObjectRef] = self.submit_task(  # type: ignore[attr-defined]
            ready_value, (id(ready_value),), (group,), {}, options, "placement_group.ready"
        )
        return refs[0]
