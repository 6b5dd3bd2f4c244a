"""The functions and the actor class that every engine runs.

    workloads.py ──submit(fn, *args)──▶ an engine ──pickled by reference──▶ its workers

They live in an importable module (not in ``__main__``) so that engines that pickle by
reference (``concurrent.futures``, ``multiprocessing``) can ship them; the runner puts the
repository root on ``PYTHONPATH`` so that every worker process can import them.
"""

from __future__ import annotations

from typing import Any


def noop(i: int) -> int:
    """A trivial task: returns its argument, so the gathered results can be checked."""
    return i


def checksum(arr: Any) -> tuple[tuple[int, ...], str, int]:
    """An exact, order-independent checksum of a numpy array: its shape, dtype, and the sum
    of its bytes read as uint64 (wrapping), so the driver's and a worker's agree bit for bit."""
    import numpy as np

    flat = np.ascontiguousarray(arr).reshape(-1).view(np.uint8)
    usable = flat[: flat.size - flat.size % 8].view(np.uint64)
    total = int(usable.sum(dtype=np.uint64)) + int(flat[usable.size * 8 :].sum())
    return tuple(arr.shape), str(arr.dtype), total


def is_prime(k: int) -> bool:
    """Trial division, as in Ray's classic example."""
    if k < 2:
        return False
    if k % 2 == 0:
        return k == 2
    d = 3
    while d * d <= k:
        if k % d == 0:
            return False
        d += 2
    return True


def sum_primes(n: int) -> int:
    """The sum of the primes below ``n``: pure Python, CPU bound."""
    return sum(k for k in range(n) if is_prime(k))


class Counter:
    """The actor: a counter whose calls return 1, 2, 3, ..."""

    def __init__(self) -> None:
        self.n = 0

    def incr(self) -> int:
        self.n += 1
        return self.n
