"""Placement groups and scheduling strategies on every engine (fixture ``engine``: "local"
and "ray"): the same calls, the same outcomes. The local engine's own behaviour (refusing
infeasible groups, killing what runs in a removed group) is in tests/util/."""

from __future__ import annotations

import pytest

import nbray
from nbray.util.placement_group import (
    get_placement_group,
    placement_group,
    placement_group_table,
    remove_placement_group,
)
from nbray.util.scheduling_strategies import (
    NodeAffinitySchedulingStrategy,
    PlacementGroupSchedulingStrategy,
)


@nbray.remote(max_retries=0)
def where() -> str:
    return "in"


@nbray.remote
class Counter:
    def __init__(self) -> None:
        self.n = 0

    def add(self) -> int:
        self.n += 1
        return self.n


def test_group_ready_tasks_and_actors_run_in_it(engine: str) -> None:
    pg = placement_group([{"CPU": 1}, {"CPU": 1}], strategy="PACK", name=f"g-{engine}")
    assert pg.wait(timeout_seconds=60) is True
    nbray.get(pg.ready(), timeout=60)
    assert pg.bundle_count == 2
    assert get_placement_group(f"g-{engine}").id == pg.id
    table = placement_group_table(pg)
    assert table["state"] == "CREATED" and table["strategy"] == "PACK"
    in_pg = PlacementGroupSchedulingStrategy(pg, placement_group_bundle_index=0)
    assert nbray.get(where.options(scheduling_strategy=in_pg).remote(), timeout=60) == "in"
    counter = Counter.options(
        num_cpus=1, scheduling_strategy=PlacementGroupSchedulingStrategy(pg, 1)
    ).remote()
    assert nbray.get([counter.add.remote() for _ in range(3)], timeout=60) == [1, 2, 3]
    nbray.kill(counter)
    remove_placement_group(pg)
    assert placement_group_table(pg)["state"] == "REMOVED"


def test_node_affinity_and_names(engine: str) -> None:
    node = nbray.nodes()[0]["NodeID"]
    strategy = NodeAffinitySchedulingStrategy(node, soft=False)
    assert nbray.get(where.options(scheduling_strategy=strategy).remote(), timeout=60) == "in"
    assert nbray.get(where.options(scheduling_strategy="SPREAD").remote(), timeout=60) == "in"


def test_bad_bundle_index_is_refused(engine: str) -> None:
    pg = placement_group([{"CPU": 1}])
    with pytest.raises(ValueError, match="out of range"):
        where.options(scheduling_strategy=PlacementGroupSchedulingStrategy(pg, 1))
    remove_placement_group(pg)
