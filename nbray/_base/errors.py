"""The whole exception tree of nbray, and the rebuild of errors raised in other processes.

Where errors come from and go::

    worker: task raises ──▶ RemoteError (picklable record) ──▶ head stores it as the value
    of the task's return objects ──▶ client ``get`` ──▶ RemoteError.to_exception() ──▶ raise

Every class says when it is raised. Names follow Ray's ``ray.exceptions`` where Ray has
one (``RayTaskError`` is :class:`TaskError` here, and both names are exported).
"""

from __future__ import annotations

import pickle
from typing import Any

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
    "RaySystemError",
    "RemoteError",
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


class NbrayError(Exception):
    """Raised never by itself: the base class of every nbray error (Ray: ``RayError``)."""


class TaskError(NbrayError):
    """Raised by ``get`` when the task raised an exception.

    The error raised is also an instance of the original exception's class (when that
    class can be subclassed), so ``except ValueError`` around ``get`` works as in Ray.
    The worker's traceback is attached as ``__cause__`` and shown under the error.
    """

    function_name: str = ""
    task_id: str = ""
    cause: BaseException | None = None
    remote_traceback: str = ""
    #: the user's frames in the worker, with their locals (``nbray._model.tracebacks.RemoteFrame``)
    remote_frames: tuple[Any, ...] = ()

    def __str__(self) -> str:
        cause = self.cause
        what = f"{type(cause).__name__}: {cause}" if cause is not None else "an exception"
        return f"task {self.function_name} ({self.task_id}) raised {what}"

    def as_instanceof_cause(self) -> TaskError:
        """Ray's ``RayTaskError.as_instanceof_cause()``: the error as an instance of the
        cause's class too. nbray's error already is one (when the class can be
        subclassed), so this returns it.

        Example::

            try:
                nbray.get(divide.remote(1, 0))
            except nbray.exceptions.RayTaskError as e:
                assert isinstance(e.as_instanceof_cause(), ZeroDivisionError)
        """
        return self


class WorkerCrashedError(NbrayError):
    """Raised by ``get`` when the worker running the task died and no retry was left.

    Carries ``exit_code`` (negative: the signal number) and the attempts made.
    """

    def __init__(self, message: str, exit_code: int | None = None) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class ActorError(NbrayError):
    """Raised never by itself: the base of the errors of an actor's calls (Ray:
    ``RayActorError``); ``except ActorError`` catches a dead and an unavailable actor."""


class ActorDiedError(ActorError):
    """Raised when a method is called on, or was running in, an actor that died or was killed
    and will not be restarted (or whose constructor raised, or that called ``exit_actor``)."""


class ActorUnavailableError(ActorError):
    """Raised when an actor cannot answer for now (restarting, or unreachable) and the call
    may succeed if made again (Ray's ``ActorUnavailableError``; the Ray engine raises it)."""


class ActorAlreadyExistsError(NbrayError, ValueError):
    """Raised when an actor is created with a name that a live actor in that namespace
    already has (also a ``ValueError``, as in Ray)."""


class PendingCallsLimitExceeded(NbrayError):
    """Raised when an actor has more pending calls than its ``max_pending_calls`` allows."""


class ActorNotFoundError(NbrayError, ValueError):
    """Raised by ``get_actor`` when no live actor has that name in that namespace."""


class GetTimeoutError(NbrayError, TimeoutError):
    """Raised by ``get`` when ``timeout`` passed before every object was ready."""


class TaskCancelledError(NbrayError):
    """Raised by ``get`` on the result of a task that was cancelled with ``cancel``, or whose
    owner disconnected."""


class ObjectLostError(NbrayError):
    """Raised when an object was freed or lost (its owner released every reference to it)."""


class OwnerDiedError(ObjectLostError):
    """Raised when the process that owned an object (the one that created its ObjectRef)
    died, so the object cannot be reached any more."""


class ObjectFetchTimedOutError(ObjectLostError):
    """Raised when an object could not be fetched from the node that holds it in time."""


class ObjectReconstructionFailedError(ObjectLostError):
    """Raised when a lost object could not be made again by re-running its task."""


class ObjectFreedError(ObjectLostError):
    """Raised when an object was freed explicitly before it was read."""


class ObjectStoreFullError(NbrayError):
    """Raised when the object store is full and nothing can be spilled to make room."""


class OutOfMemoryError(NbrayError):
    """Raised when nbray's memory monitor killed the task to keep the node alive."""


class SerializationError(NbrayError, TypeError):
    """Raised at ``.remote()``/``put`` when a function or argument cannot be pickled; the
    message names the object."""


class UnschedulableError(NbrayError):
    """Raised when a task or actor asks for more resources than the cluster has in total,
    so it could never run."""


class ActorUnschedulableError(UnschedulableError):
    """Raised when an actor asks for resources no node of the cluster has (Ray's
    ``ActorUnschedulableError``; the Ray engine raises it)."""


class TaskUnschedulableError(UnschedulableError):
    """Raised when a task asks for resources no node of the cluster has (Ray's
    ``TaskUnschedulableError``; the Ray engine raises it)."""


class NodeDiedError(NbrayError):
    """Raised when the node running a task died (the Ray engine raises it)."""


class RaySystemError(NbrayError):
    """Raised when the runtime itself failed (not the user's code): the message says where."""


class AsyncioActorExit(NbrayError):
    """Raised inside an async actor by ``nbray.actor.exit_actor()`` to end it; never seen by
    the caller."""


class RuntimeEnvSetupError(NbrayError):
    """Raised when a task's or actor's ``runtime_env`` could not be set up (a ``pip``
    install failed, a ``working_dir`` is missing); the message carries the installer's
    output. Ray: ``ray.exceptions.RuntimeEnvSetupError``."""


class TaskPlacementGroupRemoved(NbrayError):
    """Raised when a task's placement group was removed before or while it ran (Ray:
    ``ray.exceptions.TaskPlacementGroupRemoved``)."""


class NbrayConnectionError(NbrayError, ConnectionError):
    """Raised when the cluster cannot be reached, refuses authentication, or went away."""


class RemoteTraceback(Exception):
    """Holds a traceback formatted in another process; shown as the ``__cause__``."""

    def __init__(self, tb: str) -> None:
        super().__init__(tb)
        self.tb = tb

    def __str__(self) -> str:
        return f"\n\nRemote traceback:\n{self.tb}"


# ---------------------------------------------------------------------------------------
# Errors crossing processes


_KINDS: dict[str, type[NbrayError]] = {
    "task": TaskError,
    "worker_crashed": WorkerCrashedError,
    "actor_died": ActorDiedError,
    "cancelled": TaskCancelledError,
    "object_lost": ObjectLostError,
    "oom": OutOfMemoryError,
    "unschedulable": UnschedulableError,
    "store_full": ObjectStoreFullError,
    "runtime_env": RuntimeEnvSetupError,
    "pg_removed": TaskPlacementGroupRemoved,
}


class RemoteError:
    """A picklable record of a failure, stored as the value of a failed task's objects.

    ``cause`` holds the pickled original exception (``b""`` when it could not be pickled:
    then ``cause_repr`` and ``cause_type`` describe it). (A plain class, not a dataclass:
    every process imports this module at start-up, and ``dataclasses`` costs it time.)
    """

    _FIELDS = (
        "kind",
        "message",
        "function_name",
        "task_id",
        "cause",
        "cause_type",
        "cause_repr",
        "traceback",
        "exit_code",
        "extra",
    )

    def __init__(
        self,
        kind: str,
        message: str,
        function_name: str = "",
        task_id: str = "",
        cause: bytes = b"",
        cause_type: str = "",
        cause_repr: str = "",
        traceback: str = "",
        exit_code: int | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        self.kind = kind
        self.message = message
        self.function_name = function_name
        self.task_id = task_id
        self.cause = cause
        self.cause_type = cause_type
        self.cause_repr = cause_repr
        self.traceback = traceback
        self.exit_code = exit_code
        self.extra: dict[str, Any] = {} if extra is None else extra

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._FIELDS)
        return f"RemoteError({fields})"

    def __eq__(self, other: object) -> bool:
        if type(other) is not RemoteError:
            return NotImplemented
        return all(getattr(self, n) == getattr(other, n) for n in self._FIELDS)

    __hash__ = None  # type: ignore[assignment]  # mutable, compared by value (as a dataclass)

    @classmethod
    def from_exception(
        cls,
        exc: BaseException,
        function_name: str,
        task_id: str,
        frames: list[Any] | None = None,
    ) -> RemoteError:
        """Record ``exc``, raised while running ``function_name``, with its traceback and
        ``frames``, the user's frames with their locals (``tracebacks.capture_frames``)."""
        import traceback

        import cloudpickle

        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        try:
            blob = cloudpickle.dumps(exc)
            pickle.loads(blob)
        except Exception:  # the exception itself cannot travel: keep its text
            blob = b""
        return cls(
            kind="task",
            message=f"{type(exc).__name__}: {exc}",
            function_name=function_name,
            task_id=task_id,
            cause=blob,
            cause_type=f"{type(exc).__module__}.{type(exc).__qualname__}",
            cause_repr=repr(exc),
            traceback=tb,
            extra={"frames": frames or []},
        )

    @classmethod
    def from_error(cls, err: NbrayError) -> RemoteError:
        """The record of an nbray error rebuilt in this process (say, the value of an
        ObjectRef argument), to pass it on unchanged."""
        if isinstance(err, TaskError):
            import cloudpickle

            return cls(
                kind="task",
                message=str(err),
                function_name=err.function_name,
                task_id=err.task_id,
                cause=cloudpickle.dumps(err.cause) if err.cause is not None else b"",
                traceback=err.remote_traceback,
                extra={"frames": list(err.remote_frames)},
            )
        kind = next((k for k, c in _KINDS.items() if type(err) is c), "")
        return cls(kind=kind, message=str(err), exit_code=getattr(err, "exit_code", None))

    def to_exception(self) -> NbrayError:
        """The exception a ``get`` raises for this failure."""
        if self.kind != "task":
            err_cls = _KINDS.get(self.kind, NbrayError)
            if err_cls is WorkerCrashedError:
                return WorkerCrashedError(self.message, self.exit_code)
            return err_cls(self.message)
        cause: BaseException | None = None
        if self.cause:
            try:
                cause = pickle.loads(self.cause)
            except Exception:  # class not importable here: fall back to text
                cause = None
        if cause is None:
            cause = RuntimeError(f"{self.cause_type}: {self.cause_repr}")
        while isinstance(cause, TaskError) and cause.cause is not None:
            # raised by a nested task and passed on: the error keeps the original class
            # (``except ZeroDivisionError`` works), and ``self.traceback``, formatted from
            # the nested error, holds the nested task's traceback above this task's one
            cause = cause.cause
        err = _task_error_for(cause)
        err.function_name = self.function_name
        err.task_id = self.task_id
        err.cause = cause
        err.remote_traceback = self.traceback
        err.remote_frames = tuple(self.extra.get("frames", ()))
        err.__cause__ = RemoteTraceback(self.traceback)
        return err


_DERIVED: dict[type, type[TaskError]] = {}


def _task_error_for(cause: BaseException) -> TaskError:
    """A TaskError that is also an instance of ``type(cause)`` when Python allows it."""
    cause_cls = type(cause)
    if isinstance(cause, TaskError):
        cause_cls = TaskError
    derived = _DERIVED.get(cause_cls)
    # a cause whose class TaskError already derives from (Exception itself) needs none
    if (
        derived is None
        and issubclass(cause_cls, Exception)
        and not issubclass(TaskError, cause_cls)
    ):
        try:
            derived = type(
                f"TaskError({cause_cls.__name__})",
                (TaskError, cause_cls),
                {
                    "__init__": lambda self, *a, **k: None,
                    "__str__": TaskError.__str__,
                    "__reduce__": _reduce_task_error,
                    "__getattr__": _cause_attribute,
                    "__module__": __name__,
                },
            )
        except TypeError:  # layout conflict or a final class: a plain TaskError it is
            derived = TaskError
        _DERIVED[cause_cls] = derived
    cls: type[TaskError] = derived or TaskError
    try:
        err: TaskError = cls.__new__(cls)
        BaseException.__init__(err, *getattr(cause, "args", ()))
    except TypeError:
        err = TaskError()
    return err


def _cause_attribute(self: TaskError, name: str) -> Any:
    # as in Ray: attributes the original exception has (``e.code``) read through the error
    cause = self.cause
    if cause is None or name.startswith("__"):
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
    return getattr(cause, name)


def _reduce_task_error(self: TaskError) -> tuple[Any, ...]:
    # Derived classes are made at run time and cannot be pickled by name: travel as a
    # RemoteError record and rebuild on the other side.
    import cloudpickle

    record = RemoteError(
        kind="task",
        message=str(self),
        function_name=self.function_name,
        task_id=self.task_id,
        cause=cloudpickle.dumps(self.cause) if self.cause is not None else b"",
        traceback=self.remote_traceback,
        extra={"frames": list(self.remote_frames)},
    )
    return (RemoteError.to_exception, (record,))
