"""Ray's ``ray.util`` libraries on nbray, at Ray's paths (``import nbray as ray`` and then
``ray.util.ActorPool``, ``ray.util.queue.Queue``, ``ray.util.multiprocessing.Pool``, ...).

Everything here is built on nbray's public API only (``remote``, ``get``, ``put``,
``wait``, actors), so it runs the same on the local engine and on the Ray engine.

    ActorPool               nbray.util.actor_pool     calls spread over a set of actors
    queue.Queue             nbray.util.queue          a FIFO shared by kernel, tasks, actors
    multiprocessing.Pool    nbray.util.multiprocessing  the stdlib Pool API on the cluster
    joblib.register_nbray   nbray.util.joblib         joblib / scikit-learn n_jobs on it
    inspect_serializability nbray.util.check_serialize what in an object cannot be pickled
    tqdm                    nbray.experimental.tqdm_ray  progress bars from tasks

Modules and names load on first use, so ``import nbray.util`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

# public name -> module (relative to this package) that defines it
_EXPORTS = {
    "ActorPool": ".actor_pool",
    "inspect_serializability": ".check_serialize",
    "FailureTuple": ".check_serialize",
    "tqdm": "nbray.experimental.tqdm_ray",
}
_MODULES = {"actor_pool", "check_serialize", "joblib", "multiprocessing", "queue"}

__all__ = [
    "ActorPool",
    "FailureTuple",
    "actor_pool",
    "check_serialize",
    "inspect_serializability",
    "joblib",
    "multiprocessing",
    "queue",
    "tqdm",
]


def __getattr__(name: str) -> object:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    elif name in _MODULES:
        value = importlib.import_module(f".{name}", __name__)
    else:
        raise AttributeError(f"module 'nbray.util' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:
    from nbray.experimental.tqdm_ray import tqdm

    from . import actor_pool, check_serialize, joblib, multiprocessing, queue
    from .actor_pool import ActorPool
    from .check_serialize import FailureTuple, inspect_serializability
