"""``multiprocessing.Pool`` on the cluster (Ray's ``ray.util.multiprocessing``): a program
written for the standard library switches by changing one import::

    from nbray.util.multiprocessing import Pool

    with Pool() as pool:                      # one process per CPU of the cluster
        print(pool.map(abs, range(-5, 5)))
"""

from __future__ import annotations

from multiprocessing import JoinableQueue, TimeoutError

from .pool import AsyncResult, IMapIterator, Pool

__all__ = ["AsyncResult", "IMapIterator", "JoinableQueue", "Pool", "TimeoutError"]
