"""nbray: Ray's programming model made native to Jupyter.

``import nbray as ray`` runs code written for Ray's core API on an embedded runtime that
starts in a blink::

    import nbray

    @nbray.remote
    def square(x):
        return x * x

    print(nbray.get([square.remote(i) for i in range(4)]))   # [0, 1, 4, 9]

The names below are imported on first use (PEP 562), so ``import nbray`` costs a few
milliseconds, and so do the start-up of the head and worker processes, which import only
the runtime modules they need.
"""

from __future__ import annotations

import importlib
import sys
from typing import TYPE_CHECKING

from . import progress_lines as _progress_lines

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    "ActorClass": "actor",
    "ActorHandle": "actor",
    "method": "actor",
    "ClusterContext": "lifecycle",
    "available_resources": "api",
    "cancel": "api",
    "cluster_resources": "api",
    "get": "api",
    "get_actor": "api",
    "get_gpu_ids": "api",
    "init": "lifecycle",
    "is_initialized": "lifecycle",
    "kill": "api",
    "nodes": "api",
    "put": "api",
    "remote": "api",
    "shutdown": "lifecycle",
    "wait": "api",
    "ObjectRef": "object_ref",
    "RemoteFunction": "remote_function",
    "monitor": "widgets",
    "task_graph": "widgets",
    "timeline": "widgets",
}
_MODULES = {
    "errors": "errors",
    "exceptions": "errors",
    "experimental": "experimental",
    "util": "util",
    "widgets": "widgets",
}

__all__ = [
    "ActorClass",
    "ActorHandle",
    "ClusterContext",
    "ObjectRef",
    "RemoteFunction",
    "__version__",
    "available_resources",
    "cancel",
    "cluster_resources",
    "errors",
    "exceptions",
    "experimental",
    "get",
    "get_actor",
    "get_gpu_ids",
    "init",
    "is_initialized",
    "kill",
    "method",
    "monitor",
    "nodes",
    "put",
    "remote",
    "shutdown",
    "task_graph",
    "timeline",
    "util",
    "wait",
    "widgets",
]


def __getattr__(name: str) -> object:
    if name == "load_ipython_extension":  # %load_ext nbray; not part of the API
        from .magics import load_ipython_extension

        return load_ipython_extension
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    elif name in _MODULES:
        value = importlib.import_module(f".{_MODULES[name]}", __name__)
    else:
        raise AttributeError(f"module 'nbray' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


def _register_in_ipython() -> None:
    """``import nbray`` in IPython registers the magics, as ``%load_ext nbray`` does (IPython
    finds ``nbray.load_ipython_extension`` through ``__getattr__``: see ``nbray.magics``)."""
    get_ipython = getattr(sys.modules.get("IPython"), "get_ipython", None)
    shell = get_ipython() if get_ipython is not None else None
    if shell is not None:
        from .magics import load_ipython_extension

        load_ipython_extension(shell)


_register_in_ipython()

# progress bars drawn by tasks (nbray.experimental.tqdm_ray) show where their output lands
_progress_lines.sink_path = "nbray.experimental.tqdm_ray:show_remote_state"


if TYPE_CHECKING:
    from . import errors, experimental, util, widgets
    from . import errors as exceptions
    from .actor import ActorClass, ActorHandle, method
    from .api import (
        available_resources,
        cancel,
        cluster_resources,
        get,
        get_actor,
        get_gpu_ids,
        kill,
        nodes,
        put,
        remote,
        wait,
    )
    from .lifecycle import ClusterContext, init, is_initialized, shutdown
    from .object_ref import ObjectRef
    from .remote_function import RemoteFunction
    from .widgets import monitor, task_graph, timeline

del TYPE_CHECKING
