"""The engines under benchmark, by name, each an adapter over ``base.Engine``.

    run.py / child.py ──ENGINES[name]──▶ "module:Class" ──load_engine()──▶ Engine instance

Adapters are imported only when their engine runs, so a missing peer never breaks the
suite: ``missing_requirements`` tells the runner to report it "not installed".
"""

from __future__ import annotations

import importlib
import importlib.util

from .base import Engine, NotSupported

__all__ = ["ENGINES", "Engine", "NotSupported", "load_engine", "missing_requirements"]

#: Engine name -> "module:Class", in the order of the tables (nbray first, serial last).
ENGINES: dict[str, str] = {
    "nbray": "nbray_engine:NbrayEngine",
    "ray": "ray_engine:RayEngine",
    "nbray_ray": "nbray_ray_engine:NbrayRayEngine",
    "dask": "dask_engine:DaskEngine",
    "ipyparallel": "ipyparallel_engine:IpyparallelEngine",
    "loky": "loky_engine:LokyEngine",
    "process_pool": "process_pool:ProcessPoolEngine",
    "mp_pool": "mp_pool:MpPoolEngine",
    "serial": "serial:SerialEngine",
}


def engine_class(name: str) -> type[Engine]:
    """The adapter class of engine ``name`` (imports the adapter, not the engine)."""
    try:
        module_name, cls_name = ENGINES[name].split(":")
    except KeyError:
        raise ValueError(f"unknown engine {name!r}; known: {', '.join(ENGINES)}") from None
    module = importlib.import_module(f"{__name__}.{module_name}")
    cls: type[Engine] = getattr(module, cls_name)
    return cls


def load_engine(name: str) -> Engine:
    """A fresh adapter instance for engine ``name``."""
    return engine_class(name)()


def missing_requirements(name: str) -> list[str]:
    """The import names engine ``name`` needs that are not installed here."""
    return [m for m in engine_class(name).requires if importlib.util.find_spec(m) is None]
