"""A placement group as user code holds it (Ray's ``ray.util.placement_group.PlacementGroup``).

    nbray.util.placement_group(bundles) ──▶ Engine.create_placement_group ──▶ PlacementGroup
    pg.ready() ──▶ Engine.placement_group_ready ──▶ ObjectRef, ready once reserved
        (local engine: a zero-CPU task in bundle 0, as Ray does it; ray engine: Ray's)
    pg.wait(t) ──▶ nbray.wait([pg.ready()], timeout=t)

It pickles as its id and bundles, so it can be passed to tasks and actors.
"""

from __future__ import annotations

from typing import Any

__all__ = ["PlacementGroup", "PlacementGroupID"]


class PlacementGroupID:
    """The id of a placement group (Ray's ``PlacementGroupID``): ``.hex()`` is its text."""

    def __init__(self, value: int | str) -> None:
        self._hex = value if isinstance(value, str) else f"{value:016x}"

    def hex(self) -> str:
        return self._hex

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PlacementGroupID) and other._hex == self._hex

    def __hash__(self) -> int:
        return hash(self._hex)

    def __repr__(self) -> str:
        return f"PlacementGroupID({self._hex})"


class PlacementGroup:
    """Resources reserved as bundles, for tasks and actors scheduled into them.

    Example::

        from nbray.util.placement_group import placement_group
        from nbray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        pg = placement_group([{"CPU": 1}, {"CPU": 1}], strategy="PACK")
        assert pg.wait(timeout_seconds=10)
        ref = f.options(
            scheduling_strategy=PlacementGroupSchedulingStrategy(pg, placement_group_bundle_index=0)
        ).remote()
    """

    def __init__(
        self, group_id: int, bundles: list[dict[str, float]], ray_group: Any = None
    ) -> None:
        self._group_id = group_id
        self._bundles = [dict(b) for b in bundles]
        self._ray = ray_group  # the Ray engine's own PlacementGroup

    @property
    def id(self) -> PlacementGroupID:
        if self._ray is not None:
            return PlacementGroupID(self._ray.id.hex())
        return PlacementGroupID(self._group_id)

    @property
    def bundle_specs(self) -> list[dict[str, float]]:
        """The bundles, as given (a copy)."""
        return [dict(b) for b in self._bundles]

    @property
    def bundle_count(self) -> int:
        return len(self._bundles)

    @property
    def is_empty(self) -> bool:
        return not self._bundles

    @staticmethod
    def empty() -> PlacementGroup:
        return PlacementGroup(0, [])

    def ready(self) -> Any:
        """An ObjectRef that becomes ready (its value: this group) once every bundle is
        reserved; ``nbray.get(pg.ready())`` waits for it."""
        from .session import current_engine

        return current_engine().placement_group_ready(self)

    def wait(self, timeout_seconds: float | None = 30) -> bool:
        """Wait up to ``timeout_seconds`` for the reservation; True once it is made."""
        from .session import current_engine

        engine = current_engine()
        return bool(engine.wait([self.ready()], 1, timeout_seconds))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PlacementGroup) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    def __reduce__(self) -> tuple[Any, ...]:
        return (PlacementGroup, (self._group_id, self._bundles, self._ray))

    def __repr__(self) -> str:
        return f"PlacementGroup(id={self.id.hex()}, bundles={self._bundles})"


def ready_value(group: PlacementGroup) -> PlacementGroup:
    """What ``ready()``'s task returns (runs in a worker, inside bundle 0)."""
    return group
