"""The node's resource pool: how much of each resource is free, and which GPUs.

    Scheduler ──infeasible? / fits? / acquire(resources) ─▶ gpu ids──▶ ResourcePool
    Scheduler ──release(resources, gpu ids) when a task or actor lets go──▶ ResourcePool
    Scheduler ──lend(cpus) when a task blocks in get, reclaim(cpus) when it wakes──▶ ResourcePool
    Scheduler.validate ──check(every holding)──▶ ResourcePool ─▶ the problems found

Pure bookkeeping: no I/O, no tasks, no workers. The caller says what to hold and gives
back exactly what it was given (the amounts and the GPU ids ``acquire`` chose).

Rules, following Ray:

- resources are named amounts (``CPU``, ``GPU``, ``memory``, custom names); a request
  asking for more of one than the node has in total can never run (``infeasible``);
- ``GPU`` is also a set of device ids: a whole number of GPUs takes that many distinct
  free devices, a fraction packs onto the fullest device that still has room;
- a task blocked in ``get``/``wait`` lends its CPUs back so nested tasks cannot deadlock.
  When it wakes while its CPUs are still in use the node is overcommitted: ``CPU`` may
  then stay below zero until enough work ends (Ray does the same).

The ledger, which ``check`` verifies: for every resource,
``available = total - sum(held) + lent`` (``lent`` only for CPU), ``available <= total``,
and ``available >= 0`` for everything but CPU; for every GPU id, its free share plus the
shares held on it is one.

Reservations (placement-group bundles) go here, as pools carved out of this one: a
bundle ``acquire``s its amounts and GPU ids from the node's pool like a task does, and
becomes a ``ResourcePool(amounts, gpu_ids=ids)`` of its own that the bundle's tasks
acquire from and release to; removing the bundle releases it back. The scheduler keeps
the bundles' pools by id and picks the pool by the task's placement group, and
``check`` sees each bundle as one holding of the node's pool (and checks the bundle's
pool against its own tasks).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

__all__ = ["EPS", "ResourcePool", "Shape", "normalize", "pool_size", "shape_of"]

EPS = 1e-9  # amounts are floats: 10 x 0.1 CPU must fit in 1 CPU
# Ray's precision for amounts (finer ones are refused at .options): every sum is rounded to
# it, so after any mix of fractional tasks the free amounts come back exactly to the total
PRECISION = 4

Shape = tuple[tuple[str, float], ...]
"""A request as a hashable key: its (name, amount) pairs, sorted by name."""


def normalize(resources: Mapping[str, float]) -> dict[str, float]:
    """A request as floats, without the zero amounts (they ask for nothing)."""
    return {k: float(v) for k, v in resources.items() if v}


def pool_size(resources: Mapping[str, float]) -> int:
    """How many pool workers the node keeps warm: one per CPU, at least one. (The fork
    server starts that many before the head asks: ``head_process``.)"""
    return max(1, int(resources.get("CPU", 1)))


def shape_of(resources: Mapping[str, float]) -> Shape:
    return tuple(sorted(resources.items()))


class ResourcePool:
    """The node's resources: ``total``, ``available`` (by name) and ``gpu_free`` (the free
    share of each GPU id, 0 to 1).

    >>> pool = ResourcePool({"CPU": 2, "GPU": 2})
    >>> pool.acquire({"CPU": 1, "GPU": 0.5})
    (0,)
    >>> pool.available, pool.gpu_free
    ({'CPU': 1.0, 'GPU': 1.5}, {0: 0.5, 1: 1.0})
    >>> pool.release({"CPU": 1, "GPU": 0.5}, (0,))
    >>> pool.available == pool.total
    True
    """

    __slots__ = ("available", "gpu_free", "lent", "total")

    def __init__(
        self, resources: Mapping[str, float], gpu_ids: Sequence[int] | None = None
    ) -> None:
        self.total = {k: float(v) for k, v in resources.items() if v > 0}
        self.available = dict(self.total)
        gpus = list(gpu_ids if gpu_ids is not None else range(int(self.total.get("GPU", 0))))
        self.gpu_free: dict[int, float] = {g: 1.0 for g in gpus}
        self.lent = 0.0  # CPUs lent by tasks blocked in get

    # --- questions ---------------------------------------------------------------------

    def infeasible(self, resources: Mapping[str, float]) -> str:
        """Why a request can never run here ("" when it can, once enough is free)."""
        gpus = resources.get("GPU", 0.0)
        if gpus > 1 and gpus != int(gpus):
            return f"asks for {gpus} GPUs: more than one GPU must be a whole number"
        for key, amount in resources.items():
            if amount > self.total.get(key, 0.0) + EPS:
                return (
                    f"asks for {amount:g} {key} but the cluster has "
                    f"{self.total.get(key, 0.0):g} in total, so it can never run. Ask for "
                    f"less, or start the cluster with more (nbray.init(resources=...))"
                )
        return ""

    def fits_now(self, shape: Shape) -> bool:
        """Whether the free amounts hold this shape (GPU ids aside): a quick test."""
        avail = self.available
        for k, v in shape:  # a loop, not all(genexpr): this runs for every submitted task
            if avail.get(k, 0.0) + EPS < v:
                return False
        return True

    def fits(self, resources: Mapping[str, float]) -> bool:
        """Whether ``acquire(resources)`` would succeed now, GPU ids included."""
        avail = self.available
        for key, amount in resources.items():
            if avail.get(key, 0.0) + EPS < amount:
                return False
        gpus = resources.get("GPU", 0.0)
        if gpus >= 1:
            return sum(1 for cap in self.gpu_free.values() if cap >= 1.0 - EPS) >= gpus
        if gpus > 0:
            return any(cap + EPS >= gpus for cap in self.gpu_free.values())
        return True

    def any_fits(self, shapes: Iterable[Shape]) -> bool:
        """Whether one of these shapes fits in the free amounts (GPU ids aside)."""
        avail = self.available
        return any(all(avail.get(k, 0.0) + EPS >= v for k, v in shape) for shape in shapes)

    def count_fitting(self, shapes: Mapping[Shape, int], limit: int) -> int:
        """How many requests (``shapes``: shape -> how many of it, in order of preference),
        up to ``limit``, fit in the free amounts together. GPU ids are not checked, so it is
        an upper bound. Looks at each distinct shape once, however many there are."""
        avail = dict(self.available)
        fitting = 0
        for shape, count in shapes.items():
            for _ in range(count):
                if fitting >= limit or not all(avail.get(k, 0.0) + EPS >= v for k, v in shape):
                    break
                for k, v in shape:
                    avail[k] = avail.get(k, 0.0) - v
                fitting += 1
            if fitting >= limit:
                break
        return fitting

    def free(self) -> dict[str, float]:
        """The free amounts for display: an overcommitted CPU shows as zero."""
        return {k: max(0.0, v) for k, v in self.available.items()}

    # --- changes -----------------------------------------------------------------------

    def acquire(self, resources: Mapping[str, float]) -> tuple[int, ...]:
        """Take ``resources`` (the caller checked ``fits``); return the GPU ids chosen."""
        avail = self.available
        for key, amount in resources.items():
            avail[key] = round(avail.get(key, 0.0) - amount, PRECISION)
        gpus = resources.get("GPU", 0.0)
        if not gpus:
            return ()
        if gpus >= 1:
            ids = sorted(g for g, cap in self.gpu_free.items() if cap >= 1.0 - EPS)
            chosen = tuple(ids[: int(gpus)])
            for g in chosen:
                self.gpu_free[g] = 0.0
            return chosen
        # a fraction: pack onto the fullest GPU that still fits
        g = min(
            (g for g, cap in self.gpu_free.items() if cap + EPS >= gpus),
            key=lambda g: (self.gpu_free[g], g),
        )
        self.gpu_free[g] = round(self.gpu_free[g] - gpus, PRECISION)
        return (g,)

    def release(self, resources: Mapping[str, float], gpu_ids: tuple[int, ...]) -> None:
        """Give back what ``acquire(resources)`` took, with the GPU ids it returned."""
        avail = self.available
        for key, amount in resources.items():
            avail[key] = round(avail.get(key, 0.0) + amount, PRECISION)
        if gpu_ids:
            gpus = resources.get("GPU", 0.0)
            share = 1.0 if gpus >= 1 else gpus
            for g in gpu_ids:
                self.gpu_free[g] = min(1.0, round(self.gpu_free[g] + share, PRECISION))

    def lend(self, cpus: float) -> None:
        """A task holding ``cpus`` blocked in ``get``: others may use them meanwhile."""
        self.available["CPU"] = round(self.available.get("CPU", 0.0) + cpus, PRECISION)
        self.lent = round(self.lent + cpus, PRECISION)

    def reclaim(self, cpus: float) -> None:
        """The task that lent ``cpus`` woke up, ended or died: it holds them again (or
        ``release`` follows). CPU may go below zero: the node is overcommitted until
        enough work ends."""
        self.available["CPU"] = round(self.available.get("CPU", 0.0) - cpus, PRECISION)
        self.lent = round(self.lent - cpus, PRECISION)

    # --- invariants --------------------------------------------------------------------

    def check(self, held: Iterable[tuple[Mapping[str, float], tuple[int, ...]]]) -> list[str]:
        """The ledger's problems (none: ``[]``), given every holding now: each task, actor
        (or, later, reservation) that acquired resources, with the GPU ids it got."""
        problems: list[str] = []
        used: dict[str, float] = {}
        gpu_used: dict[int, float] = {}
        n = 0
        for resources, gpu_ids in held:
            n += 1
            for k, v in resources.items():
                used[k] = used.get(k, 0.0) + v
            gpus = resources.get("GPU", 0.0)
            if gpus and len(gpu_ids) != (int(gpus) if gpus >= 1 else 1):
                problems.append(f"a holding of {gpus:g} GPU has the GPU ids {gpu_ids}")
            share = 1.0 if gpus >= 1 else gpus
            for g in gpu_ids:
                gpu_used[g] = gpu_used.get(g, 0.0) + share
        tolerance = EPS * (n + 1) * 10
        if set(self.available) != set(self.total):
            problems.append(f"resources {sorted(self.available)} differ from {sorted(self.total)}")
        if self.lent < -tolerance:
            problems.append(f"lent CPU is negative: {self.lent:g}")
        for k, total in self.total.items():
            avail = self.available.get(k, 0.0)
            expected = total - used.get(k, 0.0) + (self.lent if k == "CPU" else 0.0)
            if abs(avail - expected) > tolerance:
                problems.append(
                    f"{k}: {avail:g} available, but {total:g} total - {used.get(k, 0.0):g} held"
                    + (f" + {self.lent:g} lent" if k == "CPU" else "")
                    + f" = {expected:g}"
                )
            if avail > total + tolerance:
                problems.append(f"{k}: {avail:g} available is above the {total:g} in total")
            if k != "CPU" and avail < -tolerance:
                problems.append(f"{k}: {avail:g} available is negative")
        for k in used.keys() - self.total.keys():
            problems.append(f"{used[k]:g} {k} held, but the node has none")
        for g, free in self.gpu_free.items():
            if free < -tolerance or free > 1.0 + tolerance:
                problems.append(f"GPU {g}: free share {free:g} is outside [0, 1]")
            if abs(free + gpu_used.pop(g, 0.0) - 1.0) > tolerance:
                problems.append(f"GPU {g}: free share {free:g} plus the shares held is not 1")
        for g in gpu_used:
            problems.append(f"GPU id {g} is held but is not one of the node's")
        return problems
