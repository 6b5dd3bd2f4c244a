"""Ray's exceptions, raised again as nbray's (``nbray.errors``), with Ray's as the cause.

    ray.get ──RayError──▶ to_nbray_error() ──▶ TaskError(original class) / ActorDiedError / ...

A task's own exception keeps its class (the error is also an instance of it) and carries
the remote traceback, as with the local engine.
"""

from __future__ import annotations

import re
from typing import Any

from nbray._base import errors as E

__all__ = ["to_nbray_error"]


def _table() -> list[tuple[type[BaseException], type[E.NbrayError]]]:
    import ray.exceptions as R

    pairs: list[tuple[str, type[E.NbrayError]]] = [
        ("GetTimeoutError", E.GetTimeoutError),
        ("TaskCancelledError", E.TaskCancelledError),
        ("WorkerCrashedError", E.WorkerCrashedError),
        ("NodeDiedError", E.NodeDiedError),
        ("ActorDiedError", E.ActorDiedError),
        ("ActorUnavailableError", E.ActorUnavailableError),
        ("RayActorError", E.ActorDiedError),
        ("ActorUnschedulableError", E.ActorUnschedulableError),
        ("TaskUnschedulableError", E.TaskUnschedulableError),
        ("PendingCallsLimitExceeded", E.PendingCallsLimitExceeded),
        ("ActorAlreadyExistsError", E.ActorAlreadyExistsError),
        ("OutOfMemoryError", E.OutOfMemoryError),
        ("ObjectStoreFullError", E.ObjectStoreFullError),
        ("OwnerDiedError", E.OwnerDiedError),
        ("ObjectFetchTimedOutError", E.ObjectFetchTimedOutError),
        ("ObjectReconstructionFailedError", E.ObjectReconstructionFailedError),
        ("ObjectFreedError", E.ObjectFreedError),
        ("ObjectLostError", E.ObjectLostError),
        ("RaySystemError", E.RaySystemError),
    ]
    return [(getattr(R, name), cls) for name, cls in pairs if hasattr(R, name)]


_TABLE: list[tuple[type[BaseException], type[E.NbrayError]]] | None = None


def to_nbray_error(exc: BaseException) -> BaseException:
    """The nbray error for ``exc`` raised by Ray (``exc`` itself if it is not Ray's)."""
    global _TABLE
    import ray.exceptions as R

    if isinstance(exc, R.RayTaskError):  # (before: it may also be an nbray error's class)
        return _task_error(exc)
    if isinstance(exc, E.NbrayError):
        return exc
    if _TABLE is None:
        _TABLE = _table()
    for ray_cls, nbray_cls in _TABLE:
        if isinstance(exc, ray_cls):
            err = nbray_cls(_message(exc))
            err.__cause__ = exc
            return err
    if isinstance(exc, R.RayError):
        err = E.NbrayError(_message(exc))
        err.__cause__ = exc
        return err
    return exc


def _message(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return f"{text} (Ray: {type(exc).__name__})"


def _task_error(exc: Any) -> BaseException:
    cause = getattr(exc, "cause", None)
    if isinstance(cause, E.NbrayError):
        # already ours: the task wrapper in the worker made it (RemoteError.to_exception),
        # so a nested task's error has its innermost class and both tracebacks already
        return cause
    import ray.exceptions as R

    if isinstance(cause, R.RayError) and not isinstance(cause, R.RayTaskError):
        return to_nbray_error(cause)
    if cause is None:
        cause = RuntimeError(str(exc))
    err = E._task_error_for(cause)
    first_line = str(exc).split("\n", 1)[0]
    match = re.search(r"ray::([^\s(]+)\(", first_line)
    err.function_name = match.group(1) if match else ""
    err.task_id = ""
    err.cause = cause
    err.remote_traceback = str(getattr(exc, "traceback_str", "") or "")
    err.__cause__ = E.RemoteTraceback(err.remote_traceback)
    return err
