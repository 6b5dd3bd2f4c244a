"""The joblib backend: joblib's batches of calls run on an nbray ``Pool``.

    joblib.Parallel ──▶ NbrayBackend.configure ──▶ Pool(n_jobs) (actors on the cluster)
    each batch ──▶ submit ──▶ numpy arrays over max_nbytes put once per call ──▶ Pool
        .apply_async(batch) ──▶ result callback ──▶ joblib (its auto-batching sizes the
        batches from their durations, as with its multiprocessing backend)

The arrays are joblib's auto-memmapping equivalent: stored once in the object store and
read zero-copy (read-only, as joblib's default ``mmap_mode="r"``) by every batch that
uses them, instead of being pickled into each batch.
"""

from __future__ import annotations

from typing import Any

from joblib._parallel_backends import (
    AutoBatchingMixin,
    FallbackToBackend,
    ParallelBackendBase,
    PoolManagerMixin,
    SequentialBackend,
)
from joblib.parallel import BatchedCalls

import nbray

from ..multiprocessing import Pool

__all__ = ["NbrayBackend"]

_DEFAULT_MAX_NBYTES = 1_000_000  # joblib's default "1M"


class _Stored:
    """A large argument replaced by its ObjectRef in a batch sent to the pool."""

    __slots__ = ("ref",)

    def __init__(self, ref: Any) -> None:
        self.ref = ref


def _load(value: Any) -> Any:
    return nbray.get(value.ref) if type(value) is _Stored else value


class _StoredCalls:
    """A joblib batch whose large arguments travel as refs; run in a pool process."""

    def __init__(self, batch: BatchedCalls) -> None:
        self.batch = batch

    def __call__(self) -> Any:
        batch = self.batch
        batch.items = [
            (func, [_load(a) for a in args], {k: _load(v) for k, v in kwargs.items()})
            for func, args, kwargs in batch.items
        ]
        return batch()


class NbrayBackend(PoolManagerMixin, AutoBatchingMixin, ParallelBackendBase):
    """joblib's backend on nbray: ``n_jobs=-1`` is the cluster's CPUs (not this
    machine's), more jobs than CPUs are capped to the CPUs.

    ``ray_remote_args`` (here or in ``parallel_backend("nbray", ray_remote_args=...)``)
    configure the pool's actors, as in Ray.
    """

    supports_retrieve_callback = True
    supports_timeout = True
    supports_inner_max_num_threads = False
    default_n_jobs = -1
    _pool: Pool | None = None

    def __init__(
        self,
        nesting_level: int | None = None,
        inner_max_num_threads: int | None = None,
        ray_remote_args: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            nesting_level=nesting_level, inner_max_num_threads=inner_max_num_threads, **kwargs
        )
        self.ray_remote_args = ray_remote_args
        self._max_nbytes: int | None = _DEFAULT_MAX_NBYTES
        self._stored: dict[int, tuple[Any, Any]] = {}

    def effective_n_jobs(self, n_jobs: int | None) -> int:
        if n_jobs == 0:
            raise ValueError("n_jobs == 0 in Parallel has no meaning")
        if n_jobs is None:
            n_jobs = 1
        cpus = max(int(nbray.cluster_resources().get("CPU", 1)), 1)
        if n_jobs < 0:
            n_jobs = max(cpus + 1 + n_jobs, 1)
        return min(n_jobs, cpus)

    def configure(
        self,
        n_jobs: int = 1,
        parallel: Any = None,
        prefer: str | None = None,
        require: str | None = None,
        ray_remote_args: dict[str, Any] | None = None,
        max_nbytes: int | None = _DEFAULT_MAX_NBYTES,
        mmap_mode: str | None = "r",
        **_unused: Any,  # temp_folder, context, verbose: nothing to do with them here
    ) -> int:
        n = self.effective_n_jobs(n_jobs)
        if n == 1:
            raise FallbackToBackend(SequentialBackend(nesting_level=self.nesting_level))
        self.parallel = parallel
        # arrays go through the store read-only, as joblib's memmaps in mode "r"
        self._max_nbytes = max_nbytes if mmap_mode in ("r", "c") else None
        args = ray_remote_args if ray_remote_args is not None else self.ray_remote_args
        self._pool = _reusable_pool(n, args)
        return n

    def submit(self, func: Any, callback: Any = None) -> Any:
        if isinstance(func, BatchedCalls) and self._max_nbytes is not None:
            if any(self._is_large(a) for _, args, kw in func.items for a in (*args, *kw.values())):
                func.items = [
                    (f, [self._store(a) for a in args], {k: self._store(v) for k, v in kw.items()})
                    for f, args, kw in func.items
                ]
                func = _StoredCalls(func)
        return super().submit(func, callback)

    def _is_large(self, value: Any) -> bool:
        nbytes = getattr(value, "nbytes", None)
        return (
            isinstance(nbytes, int)
            and self._max_nbytes is not None
            and nbytes > self._max_nbytes
            and type(value).__module__ == "numpy"
        )

    def _store(self, value: Any) -> Any:
        if not self._is_large(value):
            return value
        held = self._stored.get(id(value))
        if held is None:
            # the value is held with its ref, so its id stays unique while stored
            held = self._stored[id(value)] = (value, nbray.put(value))
        return _Stored(held[1])

    def terminate(self) -> None:
        # the pool stays for the next Parallel call (as loky's reusable executor does);
        # it goes with nbray.shutdown(), or when a call needs another size
        self._pool = None
        self._stored.clear()

    def abort_everything(self, ensure_ready: bool = True) -> None:
        # a failed call: stop its remaining batches for real, with the pool's processes
        _drop_reusable_pool()
        super().abort_everything(ensure_ready)


_reusable: tuple[tuple[int, str], Pool] | None = None


def _reusable_pool(processes: int, remote_args: dict[str, Any] | None) -> Pool:
    """The pool of the previous Parallel call when it fits and its processes still
    answer (the cluster may have been restarted since), else a new one."""
    global _reusable
    key = (processes, repr(sorted((remote_args or {}).items())))
    if _reusable is not None and _reusable[0] == key and _reusable[1].alive():
        return _reusable[1]
    _drop_reusable_pool()
    pool = Pool(processes=processes, ray_remote_args=remote_args)
    _reusable = (key, pool)
    return pool


def _drop_reusable_pool() -> None:
    global _reusable
    if _reusable is not None:
        _, pool = _reusable
        _reusable = None
        pool.terminate()
