"""nbray: Ray's programming model made native to Jupyter.

``import nbray as ray`` runs code written for Ray's core API on an embedded runtime that
starts in a blink::

    import nbray

    @nbray.remote
    def square(x):
        return x * x

    print(nbray.get([square.remote(i) for i in range(4)]))   # [0, 1, 4, 9]
"""

from __future__ import annotations

from . import errors
from . import errors as exceptions
from .actor import ActorClass, ActorHandle, method
from .api import (
    ClusterContext,
    available_resources,
    cancel,
    cluster_resources,
    get,
    get_actor,
    get_gpu_ids,
    init,
    is_initialized,
    kill,
    nodes,
    put,
    remote,
    shutdown,
    wait,
)
from .object_ref import ObjectRef
from .remote_function import RemoteFunction

__version__ = "0.1.0"

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
    "get",
    "get_actor",
    "get_gpu_ids",
    "init",
    "is_initialized",
    "kill",
    "method",
    "nodes",
    "put",
    "remote",
    "shutdown",
    "wait",
]
