"""nbray's exceptions, public (Ray's ``ray.exceptions``; also reachable as ``nbray.errors``).

Every class says when it is raised; the tree itself lives in the base layer
(``nbray._base.errors``) so that every process's code can raise it. Ray's names are aliases
of nbray's, so ``except ray.exceptions.RayTaskError`` works after ``import nbray as ray``::

    import nbray
    from nbray.exceptions import GetTimeoutError, TaskError

    try:
        nbray.get(ref, timeout=1)
    except GetTimeoutError:
        ...
"""

from __future__ import annotations

from ._base.errors import (
    ActorDiedError,
    ActorNotFoundError,
    GetTimeoutError,
    NbrayConnectionError,
    NbrayError,
    ObjectLostError,
    ObjectStoreFullError,
    OutOfMemoryError,
    RemoteTraceback,
    SerializationError,
    TaskCancelledError,
    TaskError,
    UnschedulableError,
    WorkerCrashedError,
)

# Ray's names for the same errors
RayError = NbrayError
RayTaskError = TaskError
RayActorError = ActorDiedError

__all__ = [
    "ActorDiedError",
    "ActorNotFoundError",
    "GetTimeoutError",
    "NbrayConnectionError",
    "NbrayError",
    "ObjectLostError",
    "ObjectStoreFullError",
    "OutOfMemoryError",
    "RayActorError",
    "RayError",
    "RayTaskError",
    "RemoteTraceback",
    "SerializationError",
    "TaskCancelledError",
    "TaskError",
    "UnschedulableError",
    "WorkerCrashedError",
]
