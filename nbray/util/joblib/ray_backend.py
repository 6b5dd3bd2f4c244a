"""Ray's module path for the joblib backend: ``ray.util.joblib.ray_backend.RayBackend``
(with ``import nbray as ray``) is nbray's ``NbrayBackend``.

Example::

    from nbray.util.joblib import register_ray
    from nbray.util.joblib.ray_backend import RayBackend

    register_ray()
    with joblib.parallel_backend("ray"):
        assert isinstance(joblib.parallel.get_active_backend()[0], RayBackend)
"""

from __future__ import annotations

from .backend import NbrayBackend as RayBackend

__all__ = ["RayBackend"]
