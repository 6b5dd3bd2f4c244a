"""joblib on the cluster: ``register_nbray()`` (``register_ray()`` at Ray's path) adds a
joblib backend, so scikit-learn's ``n_jobs=-1`` uses every CPU of the cluster::

    import joblib
    from nbray.util.joblib import register_nbray

    register_nbray()
    with joblib.parallel_backend("nbray"):
        search.fit(X, y)          # e.g. a GridSearchCV(..., n_jobs=-1)
"""

from __future__ import annotations

__all__ = ["NbrayBackend", "register_nbray", "register_ray"]

from .backend import NbrayBackend


def register_nbray() -> None:
    """Register nbray's joblib backend as ``"nbray"``.

    Example::

        register_nbray()
        with joblib.parallel_backend("nbray"):
            joblib.Parallel(n_jobs=-1)(joblib.delayed(abs)(-i) for i in range(10))
    """
    from joblib import register_parallel_backend

    register_parallel_backend("nbray", NbrayBackend)


def register_ray() -> None:
    """Register nbray's joblib backend as ``"ray"``, as Ray's ``register_ray()`` does, so
    code written for Ray runs unchanged after ``import nbray as ray``."""
    from joblib import register_parallel_backend

    register_parallel_backend("ray", NbrayBackend)
