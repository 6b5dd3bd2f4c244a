"""Measuring helpers: statistics, process-tree memory, a peak-RSS sampler, and where an
array's memory lives (shared memory, or a private copy).

    workloads.py ──▶ tree_footprint(), PeakRss, memory_region() ──▶ numbers for the child
    run.py / report.py ──▶ median(), percentile()
"""

from __future__ import annotations

import math
import os
import resource
import statistics
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psutil

MB = 1024 * 1024


def median(values: Sequence[float]) -> float:
    """The median of ``values`` (the figure every table shows)."""
    return float(statistics.median(values))


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile by nearest rank (p99 of 200 samples is the 198th smallest)."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return float(ordered[rank - 1])


@dataclass
class Footprint:
    """Memory of a process and all its descendants, summed."""

    processes: int
    rss_mb: float
    pss_mb: float
    uss_mb: float


def tree_footprint(root: psutil.Process | None = None) -> Footprint:
    """Sum RSS, PSS and USS over ``root`` (default: this process) and its descendants.

    RSS counts pages shared between processes (a forked worker's copy-on-write pages, shared
    libraries, shared-memory segments) once per process; PSS splits each shared page among
    the processes that map it, so the PSS sum is the memory the tree really uses; USS is
    what each process alone holds. Processes that left the tree (daemonized) are missed.
    """
    root = root or psutil.Process()
    procs = [root, *root.children(recursive=True)]
    count = 0
    rss = pss = uss = 0
    for proc in procs:
        try:
            info = proc.memory_full_info()
        except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
            continue
        count += 1
        rss += info.rss
        pss += getattr(info, "pss", 0)
        uss += info.uss
    return Footprint(count, rss / MB, pss / MB, uss / MB)


class PeakRss:
    """The peak RSS of this process while the ``with`` block runs.

    A thread samples RSS every ``interval`` seconds; ``getrusage``'s lifetime maximum makes
    the figure exact whenever the block set a new lifetime peak (a sample can miss a short
    spike, the kernel's counter cannot).
    """

    def __init__(self, interval: float = 0.005) -> None:
        self.interval = interval
        self._proc = psutil.Process()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="peak-rss", daemon=True)
        self.baseline_mb = 0.0
        self.peak_mb = 0.0

    def _rss(self) -> float:
        return float(self._proc.memory_info().rss) / MB

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak_mb = max(self.peak_mb, self._rss())

    def __enter__(self) -> PeakRss:
        self._maxrss_before = _maxrss_mb()
        self.baseline_mb = self.peak_mb = self._rss()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_mb = max(self.peak_mb, self._rss())
        maxrss_after = _maxrss_mb()
        if maxrss_after > self._maxrss_before:
            self.peak_mb = max(self.peak_mb, maxrss_after)

    @property
    def growth_mb(self) -> float:
        return self.peak_mb - self.baseline_mb


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def memory_region(arr: Any) -> str:
    """What backs a numpy array's data in this process: the path of a file-backed mapping
    (``/dev/shm/...``: a shared-memory store, read in place), or "anonymous" (private memory:
    the value was copied into this process). Linux only; "unknown" elsewhere."""
    address = int(arr.__array_interface__["data"][0])
    try:
        with open(f"/proc/{os.getpid()}/maps") as maps:
            for line in maps:
                fields = line.split(maxsplit=5)
                lo, hi = (int(x, 16) for x in fields[0].split("-"))
                if lo <= address < hi:
                    path = fields[5].strip() if len(fields) > 5 else ""
                    return path if path.startswith("/") else "anonymous"
    except OSError:
        return "unknown"
    return "unknown"


def is_shared_region(region: str) -> bool:
    """Whether ``memory_region`` names a file-backed (shared, zero-copy) mapping."""
    return region.startswith("/")


def machine_load() -> dict[str, float]:
    """The 1, 5 and 15 minute load averages and the CPU count (the machine's other load)."""
    one, five, fifteen = os.getloadavg()
    return {"load1": one, "load5": five, "load15": fifteen, "cpus": float(os.cpu_count() or 0)}
