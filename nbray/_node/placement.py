"""Placement groups on one node: bundles reserved out of the node's resource pool.

    Scheduler.create_placement_group ──problem()? ──▶ refused at once, saying why
                                     └─▶ Group (PENDING) ──reserve() when all bundles fit──▶
        CREATED: each bundle a ResourcePool of its own (amounts + GPU ids taken from the node)
    task/actor with a placement ──bundle_for()──▶ acquires from that bundle's pool only
    Scheduler.remove_placement_group ──unreserve()──▶ bundles back to the node's pool

Pure bookkeeping, like ``resources``: no I/O. On one node every strategy (PACK, SPREAD,
STRICT_PACK) places all bundles here; STRICT_SPREAD with more than one bundle can never
be placed, as in Ray on a one-node cluster.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from .resources import ResourcePool, normalize

__all__ = ["STRATEGIES", "Group", "problem"]

STRATEGIES = ("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD")


class Group:
    """A placement group: its bundles and, once CREATED, their reservations."""

    def __init__(
        self,
        group_id: int,
        name: str,
        bundles: Sequence[Mapping[str, float]],
        strategy: str,
        owner: int,
        detached: bool,
    ) -> None:
        self.group_id = group_id
        self.name = name
        self.bundles = [normalize(b) for b in bundles]
        self.strategy = strategy
        self.owner = owner
        self.detached = detached
        self.state = "PENDING"
        self.pools: list[ResourcePool] = []
        self.gpu_ids: list[tuple[int, ...]] = []

    def reserve(self, node: ResourcePool) -> bool:
        """Take every bundle from ``node`` if all fit now (else take nothing)."""
        taken: list[tuple[dict[str, float], tuple[int, ...]]] = []
        for bundle in self.bundles:
            if not node.fits(bundle):
                for b, ids in reversed(taken):
                    node.release(b, ids)
                return False
            taken.append((bundle, node.acquire(bundle)))
        self.gpu_ids = [ids for _, ids in taken]
        self.pools = [ResourcePool(b, gpu_ids=list(ids)) for b, ids in taken]
        self.state = "CREATED"
        return True

    def unreserve(self, node: ResourcePool) -> None:
        """Give every bundle back to ``node`` (whatever its tasks held is dropped with it)."""
        if self.state == "CREATED":
            for bundle, ids in zip(self.bundles, self.gpu_ids, strict=True):
                node.release(bundle, ids)
        self.pools = []
        self.state = "REMOVED"

    def bundle_for(self, index: int, resources: Mapping[str, float]) -> int:
        """The bundle (``index``, or any for -1) whose free share holds ``resources`` now;
        -1 when none does (or the group is not reserved yet)."""
        if self.state != "CREATED":
            return -1
        for i in [index] if index >= 0 else range(len(self.pools)):
            if self.pools[i].fits(resources):
                return i
        return -1

    def request_problem(self, index: int, resources: Mapping[str, float]) -> str:
        """Why a request can never run in bundle ``index`` (any bundle for -1); "" if it can."""
        if index >= len(self.bundles):
            return f"asks for bundle {index} but its placement group has {len(self.bundles)}"
        candidates = [index] if index >= 0 else range(len(self.bundles))
        for i in candidates:
            if ResourcePool(self.bundles[i]).infeasible(resources) == "":
                return ""
        which = (
            f"bundle {index} ({self.bundles[index]})"
            if index >= 0
            else (f"every bundle ({self.bundles})")
        )
        return (
            f"asks for {dict(resources)} but {which} of its placement group reserves less, "
            "so it can never run there. Ask for less, or create the group with larger bundles"
        )


def problem(bundles: Sequence[Mapping[str, float]], strategy: str, node: ResourcePool) -> str:
    """Why these bundles can never be placed on this node ("" when they can, once free)."""
    if strategy not in STRATEGIES:
        return f"strategy {strategy!r} is not one of {', '.join(STRATEGIES)}"
    if not bundles:
        return "a placement group needs at least one bundle"
    for i, bundle in enumerate(bundles):
        if not isinstance(bundle, Mapping) or not bundle:
            return f"bundle {i} is {bundle!r}: each bundle must be a non-empty dict of resources"
        if any(not isinstance(v, int | float) or v < 0 for v in bundle.values()):
            return f"bundle {i} {dict(bundle)} has an amount that is not a number >= 0"
        if not any(bundle.values()):
            return f"bundle {i} {dict(bundle)} asks for nothing: every bundle needs a resource > 0"
        why = node.infeasible(normalize(bundle))
        if why:
            return f"bundle {i} {dict(bundle)} {why.replace('cluster', 'node')}"
    if strategy == "STRICT_SPREAD" and len(bundles) > 1:
        return (
            f"STRICT_SPREAD puts each of the {len(bundles)} bundles on a different node, but "
            "this cluster has one node. Use PACK or SPREAD (both place every bundle here)"
        )
    together: dict[str, float] = {}
    for bundle in bundles:
        for k, v in normalize(bundle).items():
            together[k] = together.get(k, 0.0) + v
    for k, v in together.items():
        total = node.total.get(k, 0.0)
        if v > total + 1e-9:
            return (
                f"its bundles together ask for {v:g} {k} but the node has {total:g} {k} in "
                f"total (bundles: {[dict(b) for b in bundles]}), so it can never be placed"
            )
    return ""
