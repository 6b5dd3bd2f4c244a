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
    placement_group         nbray.util.placement_group  bundles of reserved resources
    scheduling_strategies   nbray.util.scheduling_strategies  into a bundle, onto a node

The names are listed once, in ``__init__.pyi``; modules and names load on first use, so
``import nbray.util`` stays cheap.
"""

from __future__ import annotations

from nbray._base.lazy import lazy_getattr, stub_exports

_EXPORTS = stub_exports(__file__)
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_getattr(__name__, _EXPORTS, globals())

# ``placement_group`` is a function and a submodule (as in Ray): bound here, after the
# submodule's import has set the package attribute to the module, it stays the function
from .placement_group import placement_group as placement_group  # noqa: E402


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
