"""Ray's ``ray.util.placement_group`` on nbray: reserve resources as bundles, then schedule
tasks and actors into them.

    placement_group(bundles) ──validate──▶ current engine ──▶ PlacementGroup
        local engine: the head reserves the bundles in the node's resource pool (refused at
                      once, saying why, if they can never fit); ray engine: Ray's own
    pg.ready() / pg.wait(t) ──▶ reserved?     remove_placement_group(pg) ──▶ freed; what runs
                                              in it fails (tasks) or dies (actors), as in Ray

Example::

    import nbray
    from nbray.util.placement_group import placement_group, remove_placement_group
    from nbray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    pg = placement_group([{"CPU": 1}, {"CPU": 1}], strategy="PACK")
    nbray.get(pg.ready())
    strategy = PlacementGroupSchedulingStrategy(pg, placement_group_bundle_index=0)
    print(nbray.get(f.options(scheduling_strategy=strategy).remote()))
    remove_placement_group(pg)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nbray._model.placement_group import PlacementGroup, PlacementGroupID
from nbray._model.session import current_engine

__all__ = [
    "PlacementGroup",
    "PlacementGroupID",
    "get_current_placement_group",
    "get_placement_group",
    "placement_group",
    "placement_group_table",
    "remove_placement_group",
]

VALID_STRATEGIES = ("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD")


def placement_group(
    bundles: list[dict[str, float]],
    strategy: str = "PACK",
    name: str = "",
    lifetime: str | None = None,
    _soft_target_node_id: str | None = None,
    bundle_label_selector: list[dict[str, str]] | None = None,
) -> PlacementGroup:
    """Reserve ``bundles`` (each a dict of resource -> amount) with ``strategy`` (PACK,
    SPREAD, STRICT_PACK, STRICT_SPREAD). Returns at once; ``pg.ready()``/``pg.wait()`` tell
    when the reservation is made. ``lifetime="detached"`` keeps it after this process
    disconnects; ``name`` makes it findable with ``get_placement_group``.

    On the local engine a group that can never fit on the node raises
    ``UnschedulableError`` here, naming the bundle and what the node has (Ray would leave
    it pending forever).

    Example::

        pg = placement_group([{"CPU": 1}])
        assert pg.wait(timeout_seconds=10)
    """
    if not isinstance(bundles, list | tuple) or not bundles:
        raise ValueError(
            f"The placement group `bundles` argument must be a non-empty list of dicts, "
            f"got {bundles!r}"
        )
    for bundle in bundles:
        if (
            not isinstance(bundle, Mapping)
            or not bundle
            or not all(isinstance(v, int | float) and v >= 0 for v in bundle.values())
            or not any(bundle.values())
        ):
            raise ValueError(
                "Bundles cannot be an empty dictionary or resources with only 0 values; each "
                f"bundle is a dict of resource name -> amount >= 0, got {bundle!r}"
            )
    if strategy not in VALID_STRATEGIES:
        raise ValueError(
            f"Invalid placement group strategy {strategy!r}. Supported strategies are: "
            f"{', '.join(VALID_STRATEGIES)}."
        )
    if lifetime not in (None, "detached"):
        raise ValueError(
            f"Placement group `lifetime` argument must be either `None` or 'detached', "
            f"got {lifetime!r}"
        )
    if not isinstance(name, str):
        raise TypeError(f"placement group name must be a str, got {name!r}")
    return current_engine().create_placement_group(
        [dict(b) for b in bundles], strategy, name, lifetime
    )


def remove_placement_group(placement_group: PlacementGroup) -> None:
    """Free the group's reservation. Tasks scheduled in it fail with
    ``TaskPlacementGroupRemoved`` (running ones are killed) and its actors die, as in Ray."""
    if not isinstance(placement_group, PlacementGroup):
        raise TypeError(f"remove_placement_group takes a PlacementGroup, got {placement_group!r}")
    current_engine().remove_placement_group(placement_group)


def get_placement_group(placement_group_name: str) -> PlacementGroup:
    """The live placement group named ``placement_group_name`` in this namespace; raises
    ValueError when there is none."""
    return current_engine().get_placement_group(placement_group_name)


def placement_group_table(placement_group: PlacementGroup | None = None) -> dict[str, Any]:
    """State of every placement group by id hex (or of one): ``placement_group_id``,
    ``name``, ``bundles`` (index -> resources), ``bundles_to_node_id``, ``strategy``,
    ``state`` (PENDING, CREATED, REMOVED), as in Ray."""
    return current_engine().placement_group_table(placement_group)


def get_current_placement_group() -> PlacementGroup | None:
    """The placement group the calling task or actor runs in when it captures its child
    tasks (``placement_group_capture_child_tasks=True``); None in a driver, as in Ray."""
    return current_engine().current_placement_group()
