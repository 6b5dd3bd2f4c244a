"""Unit tests for nbray._node.resources, the node's resource pool (pure bookkeeping).

Each test builds a ``ResourcePool``, takes and gives back resources, and compares the free
amounts, the GPU ids chosen and what ``check`` finds against the holdings it is given.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nbray._node.resources import ResourcePool, normalize, shape_of


def test_totals_drop_zero_and_negative_amounts() -> None:
    pool = ResourcePool({"CPU": 2, "GPU": 0, "x": -1})
    assert pool.total == pool.available == {"CPU": 2.0}
    assert pool.gpu_free == {}
    assert pool.check([]) == []


def test_gpu_ids_default_to_the_gpu_count_or_are_given() -> None:
    assert ResourcePool({"GPU": 2}).gpu_free == {0: 1.0, 1: 1.0}
    assert ResourcePool({"GPU": 2}, gpu_ids=[3, 7]).gpu_free == {3: 1.0, 7: 1.0}


def test_normalize_and_shape() -> None:
    assert normalize({"CPU": 1, "GPU": 0, "x": 0.5}) == {"CPU": 1.0, "x": 0.5}
    assert shape_of({"x": 0.5, "CPU": 1.0}) == (("CPU", 1.0), ("x", 0.5))


def test_acquire_and_release_amounts() -> None:
    pool = ResourcePool({"CPU": 3, "accel": 1})
    assert pool.acquire({"CPU": 2, "accel": 1}) == ()
    assert pool.available == {"CPU": 1.0, "accel": 0.0}
    assert pool.check([({"CPU": 2, "accel": 1}, ())]) == []
    assert not pool.fits({"accel": 1})
    assert pool.fits({"CPU": 1})
    pool.release({"CPU": 2, "accel": 1}, ())
    assert pool.available == pool.total


def test_ten_tenths_fit_in_one_cpu() -> None:
    pool = ResourcePool({"CPU": 1})
    for _ in range(10):
        assert pool.fits({"CPU": 0.1})
        pool.acquire({"CPU": 0.1})
    assert not pool.fits({"CPU": 0.1})
    assert pool.check([({"CPU": 0.1}, ())] * 10) == []


@pytest.mark.parametrize(
    ("resources", "expected"),
    [
        ({"CPU": 1}, ""),
        ({"CPU": 3}, "asks for 3 CPU but the cluster has 2 in total, so it can never run."),
        ({"custom": 1}, "asks for 1 custom but the cluster has 0 in total"),
        ({"GPU": 1.5}, "asks for 1.5 GPUs: more than one GPU must be a whole number"),
        ({"GPU": 0.5}, "asks for 0.5 GPU but the cluster has 0 in total"),
    ],
)
def test_infeasible_says_why(resources: dict[str, float], expected: str) -> None:
    problem = ResourcePool({"CPU": 2}).infeasible(resources)
    assert problem.startswith(expected) if expected else problem == ""


def test_whole_gpus_take_distinct_free_ids() -> None:
    pool = ResourcePool({"GPU": 3})
    assert pool.acquire({"GPU": 2}) == (0, 1)
    assert not pool.fits({"GPU": 2})
    assert pool.acquire({"GPU": 1}) == (2,)
    pool.release({"GPU": 2}, (0, 1))
    assert pool.gpu_free == {0: 1.0, 1: 1.0, 2: 0.0}
    assert pool.check([({"GPU": 1}, (2,))]) == []


def test_fractions_pack_onto_the_fullest_gpu_that_fits() -> None:
    pool = ResourcePool({"GPU": 2})
    assert pool.acquire({"GPU": 0.5}) == (0,)
    assert pool.acquire({"GPU": 0.25}) == (0,)  # the fuller one
    assert pool.acquire({"GPU": 0.5}) == (1,)  # 0 has only 0.25 left
    assert pool.gpu_free == {0: 0.25, 1: 0.5}
    # no whole GPU is left, though 0.75 GPU is free in sum
    assert pool.available["GPU"] == pytest.approx(0.75)
    assert not pool.fits({"GPU": 1})
    held = [({"GPU": 0.5}, (0,)), ({"GPU": 0.25}, (0,)), ({"GPU": 0.5}, (1,))]
    assert pool.check(held) == []


def test_lend_and_reclaim_may_overcommit_cpu() -> None:
    pool = ResourcePool({"CPU": 1})
    pool.acquire({"CPU": 1})  # the parent
    pool.lend(1.0)  # it blocks in get
    assert pool.fits({"CPU": 1})
    pool.acquire({"CPU": 1})  # its child
    pool.reclaim(1.0)  # the parent wakes while the child still runs
    assert pool.available == {"CPU": -1.0}
    assert pool.free() == {"CPU": 0.0}
    assert pool.check([({"CPU": 1}, ()), ({"CPU": 1}, ())]) == []


def test_any_fits_and_count_fitting_look_at_shapes() -> None:
    pool = ResourcePool({"CPU": 2, "x": 1})
    one, with_x = shape_of({"CPU": 1.0}), shape_of({"CPU": 1.0, "x": 1.0})
    assert pool.any_fits([with_x])
    assert pool.count_fitting({with_x: 5}, limit=10) == 1
    assert pool.count_fitting({one: 5}, limit=10) == 2
    assert pool.count_fitting({with_x: 5, one: 5}, limit=10) == 2
    assert pool.count_fitting({one: 5}, limit=1) == 1
    pool.acquire({"CPU": 2})
    assert not pool.any_fits([one, with_x])
    assert pool.count_fitting({one: 5}, limit=10) == 0


def test_check_reports_a_broken_ledger() -> None:
    pool = ResourcePool({"CPU": 2, "GPU": 1, "x": 1})
    pool.acquire({"CPU": 1, "GPU": 1})
    # forgot a holding: the amounts and the GPU share do not add up
    problems = pool.check([])
    assert "CPU: 1 available, but 2 total - 0 held + 0 lent = 2" in problems
    assert "GPU: 0 available, but 1 total - 0 held = 1" in problems
    assert "GPU 0: free share 0 plus the shares held is not 1" in problems
    pool.available["x"] = -1.0
    assert "x: -1 available is negative" in pool.check([({"CPU": 1, "GPU": 1}, (0,))])
    pool.available["x"] = 2.0
    assert "x: 2 available is above the 1 in total" in pool.check([({"CPU": 1, "GPU": 1}, (0,))])
    pool.available["x"] = 1.0
    assert pool.check([({"CPU": 1, "GPU": 1}, (0,))]) == []
    assert pool.check([({"CPU": 1, "GPU": 1}, (0,)), ({"y": 1}, ())]) == [
        "1 y held, but the node has none"
    ]
    assert pool.check([({"CPU": 1, "GPU": 1}, ())]) == [
        "a holding of 1 GPU has the GPU ids ()",
        "GPU 0: free share 0 plus the shares held is not 1",
    ]


def test_a_reservation_is_a_pool_carved_out_of_the_node_pool() -> None:
    """How placement-group bundles fit (see the module docstring): the bundle acquires from
    the node like a task, and its tasks acquire from the bundle's own pool."""
    node = ResourcePool({"CPU": 4, "GPU": 2})
    bundle_amounts = {"CPU": 2.0, "GPU": 1.0}
    ids = node.acquire(bundle_amounts)
    bundle = ResourcePool(bundle_amounts, gpu_ids=ids)
    assert bundle.gpu_free == {0: 1.0}
    assert bundle.acquire({"CPU": 1, "GPU": 0.5}) == (0,)
    assert node.available == {"CPU": 2.0, "GPU": 1.0}
    assert node.check([(bundle_amounts, ids)]) == []
    assert bundle.check([({"CPU": 1, "GPU": 0.5}, (0,))]) == []


requests = st.dictionaries(
    st.sampled_from(["CPU", "GPU", "x"]),
    st.sampled_from([0.1, 0.25, 0.5, 1.0, 2.0]),
    min_size=1,
)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.booleans(), requests, st.integers(0, 50)), max_size=40))
def test_random_acquire_release_keeps_the_ledger(
    steps: list[tuple[bool, dict[str, float], int]],
) -> None:
    pool = ResourcePool({"CPU": 4, "GPU": 2, "x": 1.5})
    held: list[tuple[dict[str, float], tuple[int, ...]]] = []
    for take, resources, pick in steps:
        if take and not pool.infeasible(resources) and pool.fits(resources):
            held.append((resources, pool.acquire(resources)))
        elif held:
            pool.release(*held.pop(pick % len(held)))
        assert pool.check(held) == []
    for h in held:
        pool.release(*h)
    assert pool.available == pytest.approx(pool.total)
    assert pool.gpu_free == pytest.approx({0: 1.0, 1: 1.0})


def test_free_amounts_come_back_exactly_after_many_fractions() -> None:
    import random

    rng = random.Random(7)
    pool = ResourcePool({"CPU": 2, "GPU": 2, "Custom": 2})
    held = []
    for _ in range(200):  # Ray's test_many_fractional_resources, kept deterministic
        request = {k: int(rng.random() * 10000) / 10000 or 0.0001 for k in ("CPU", "GPU")}
        request["Custom"] = int(rng.random() * 10000) / 10000 or 0.0001
        if not pool.fits(request):
            pool.release(*held.pop(0))
            continue
        held.append((request, pool.acquire(request)))
        if len(held) > 1 and rng.random() < 0.5:
            pool.lend(0.3333)
            pool.reclaim(0.3333)
    for request, ids in held:
        pool.release(request, ids)
    assert pool.available == pool.total
    assert pool.gpu_free == {0: 1.0, 1: 1.0}
