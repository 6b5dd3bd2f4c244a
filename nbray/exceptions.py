"""nbray's exceptions, public (Ray's ``ray.exceptions``; also reachable as ``nbray.errors``).

Every class says when it is raised; the tree itself lives in the base layer
(``nbray._base.errors``) so that every process's code can raise it. Ray's names are aliases
of nbray's, so ``except ray.exceptions.RayTaskError`` works after ``import nbray as ray``::

    import nbray
    from nbray.exceptions import GetTimeoutError, RayTaskError

    try:
        nbray.get(ref, timeout=1)
    except GetTimeoutError:
        ...
    except RayTaskError as err:   # also an instance of the task's own exception class
        print(err.cause)

Ray's name → nbray's class (the same object):

- ``RayError`` → ``NbrayError``; ``RayTaskError`` → ``TaskError``; ``RayActorError`` →
  ``ActorError`` (the base of ``ActorDiedError`` and ``ActorUnavailableError``);
- ``TaskUnschedulableError`` and ``ActorUnschedulableError`` are ``UnschedulableError``\\ s;
- ``OwnerDiedError``, ``ObjectFetchTimedOutError``, ``ObjectReconstructionFailedError`` and
  ``ObjectFreedError`` are ``ObjectLostError``\\ s, as in Ray;
- the other names (``GetTimeoutError``, ``TaskCancelledError``, ``WorkerCrashedError``,
  ``OutOfMemoryError``, ``ObjectStoreFullError``, ``RaySystemError``, ...) are the same in
  both.
"""

from __future__ import annotations

from ._base.errors import (
    ActorAlreadyExistsError,
    ActorDiedError,
    ActorError,
    ActorNotFoundError,
    ActorUnavailableError,
    ActorUnschedulableError,
    AsyncioActorExit,
    GetTimeoutError,
    NbrayConnectionError,
    NbrayError,
    NodeDiedError,
    ObjectFetchTimedOutError,
    ObjectFreedError,
    ObjectLostError,
    ObjectReconstructionFailedError,
    ObjectStoreFullError,
    OutOfMemoryError,
    OwnerDiedError,
    PendingCallsLimitExceeded,
    RaySystemError,
    RemoteTraceback,
    RuntimeEnvSetupError,
    SerializationError,
    TaskCancelledError,
    TaskError,
    TaskPlacementGroupRemoved,
    TaskUnschedulableError,
    UnschedulableError,
    WorkerCrashedError,
)

# Ray's names for the same errors
RayError = NbrayError
RayTaskError = TaskError
RayActorError = ActorError

__all__ = [
    "ActorAlreadyExistsError",
    "ActorDiedError",
    "ActorError",
    "ActorNotFoundError",
    "ActorUnavailableError",
    "ActorUnschedulableError",
    "AsyncioActorExit",
    "GetTimeoutError",
    "NbrayConnectionError",
    "NbrayError",
    "NodeDiedError",
    "ObjectFetchTimedOutError",
    "ObjectFreedError",
    "ObjectLostError",
    "ObjectReconstructionFailedError",
    "ObjectStoreFullError",
    "OutOfMemoryError",
    "OwnerDiedError",
    "PendingCallsLimitExceeded",
    "RayActorError",
    "RayError",
    "RaySystemError",
    "RayTaskError",
    "RemoteTraceback",
    "RuntimeEnvSetupError",
    "SerializationError",
    "TaskCancelledError",
    "TaskError",
    "TaskPlacementGroupRemoved",
    "TaskUnschedulableError",
    "UnschedulableError",
    "WorkerCrashedError",
]
