"""The public API, as in Ray: ``init``, ``remote``, ``get``, ``put``, ``wait``, actors.

    user code ──▶ these functions ──▶ current_engine() ──▶ LocalEngine (or another Engine)

Everything here validates its arguments and delegates; no function knows how the engine
runs the work.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any, TypeVar, overload

from nbray._base.options import ActorOptions, TaskOptions, make_options
from nbray._model import session
from nbray._model.actor import ActorClass, ActorHandle
from nbray._model.engine import Engine
from nbray._model.generator import ObjectRefGenerator
from nbray._model.object_ref import ObjectRef
from nbray._model.remote_function import RemoteFunction

from .lifecycle import ClusterContext, init, is_initialized, shutdown

__all__ = [
    "ClusterContext",
    "available_resources",
    "cancel",
    "cluster_resources",
    "get",
    "get_actor",
    "get_gpu_ids",
    "init",
    "is_initialized",
    "kill",
    "nodes",
    "put",
    "remote",
    "shutdown",
    "wait",
]

T = TypeVar("T")
_F = TypeVar("_F")


@overload
def remote(__target: type) -> ActorClass: ...
@overload
def remote(__target: Any) -> RemoteFunction[Any, Any]: ...
@overload
def remote(**options: Any) -> Any: ...


def remote(*args: Any, **options: Any) -> Any:
    """Make a function a remote function, or a class an actor class (Ray's ``@ray.remote``).

    Usable bare (``@nbray.remote``) or with options (``@nbray.remote(num_cpus=2)``).

    Example::

        @nbray.remote
        def f(x):
            return x + 1

        assert nbray.get(f.remote(1)) == 2
    """
    if (args and (len(args) != 1 or options or not callable(args[0]))) or not (
        args or options
    ):  # ``@nbray.remote()`` too, as Ray refuses it
        raise TypeError(
            "@nbray.remote takes a function or class, or only keyword options: "
            "@nbray.remote (no parentheses) or @nbray.remote(num_cpus=1, ...)"
        )

    def decorate(target: Any) -> Any:
        if isinstance(target, type):
            return ActorClass(target, make_options(ActorOptions, None, options))
        if not callable(target):
            raise TypeError(f"@nbray.remote needs a function or a class, not {target!r}")
        return RemoteFunction(target, make_options(TaskOptions, None, options))

    return decorate(args[0]) if args else decorate


def _engine() -> Engine:
    return session.current_engine()


def _check_refs(refs: Sequence[Any], what: str) -> None:
    for i, r in enumerate(refs):
        if not isinstance(r, ObjectRef):
            where = f"item {i} of the list" if len(refs) > 1 else "the argument"
            raise TypeError(
                f"{what} takes ObjectRefs (or a list of them): {where} is "
                f"{type(r).__name__} {r!r}, not an ObjectRef. Pass the refs that .remote() or "
                "nbray.put() returned."
            )


@overload
def get(object_refs: ObjectRef, *, timeout: float | None = None, progress: bool = False) -> Any: ...
@overload
def get(
    object_refs: Sequence[ObjectRef], *, timeout: float | None = None, progress: bool = False
) -> list[Any]: ...


def get(object_refs: Any, *, timeout: float | None = None, progress: bool = False) -> Any:
    """The value of an ObjectRef, or the list of values of a list of refs, blocking.

    Raises the task's exception (also an instance of its original class), or
    ``GetTimeoutError`` (a ``TimeoutError``) when ``timeout`` seconds pass first.

    Example::

        refs = [f.remote(i) for i in range(3)]
        values = nbray.get(refs, timeout=10)
        values = nbray.get(refs, progress=True)   # with a progress bar (nbray.widgets)
    """
    if timeout is not None and timeout < 0:
        raise ValueError(f"timeout must be >= 0 or None, got {timeout}")
    if isinstance(object_refs, ObjectRef):
        if progress:
            return get([object_refs], timeout=timeout, progress=True)[0]
        return _engine().get([object_refs], timeout)[0]
    if not isinstance(object_refs, list | tuple):
        raise TypeError(
            "get takes an ObjectRef or a list of ObjectRefs, "
            f"got {type(object_refs).__name__}: {object_refs!r}"
        )
    _check_refs(object_refs, "get")
    if progress and object_refs:
        return _progress(session.progress_get)(_engine(), list(object_refs), timeout)
    return _engine().get(list(object_refs), timeout) if object_refs else []


def _progress(view: _F | None) -> _F:
    if view is None:  # nbray/__init__ sets them: only a bare import of this module lacks them
        raise RuntimeError("progress=True needs nbray's widgets: import nbray first")
    return view


def put(value: Any) -> ObjectRef:
    """Store ``value`` in the cluster once; pass the ref to many tasks without copying it.

    Example::

        ref = nbray.put(numpy.zeros(10_000_000))
        nbray.get(total.remote(ref))
    """
    if isinstance(value, ObjectRef):
        raise TypeError("put() of an ObjectRef is not allowed: pass the ObjectRef itself")
    return _engine().put(value)


def wait(
    object_refs: Sequence[ObjectRef],
    *,
    num_returns: int = 1,
    timeout: float | None = None,
    fetch_local: bool = True,
    progress: bool = False,
) -> tuple[list[ObjectRef], list[ObjectRef]]:
    """Split ``object_refs`` into (ready, not ready) once ``num_returns`` are ready or
    ``timeout`` passed. Both lists keep the input order.

    Example::

        ready, pending = nbray.wait(refs, num_returns=2, timeout=5.0)
        ready, pending = nbray.wait(refs, num_returns=len(refs), progress=True)  # with a bar
    """
    if isinstance(object_refs, ObjectRef) or not isinstance(object_refs, list | tuple):
        raise TypeError("wait takes a list of ObjectRefs")
    if any(isinstance(r, ObjectRefGenerator) for r in object_refs):
        return _wait_generators(list(object_refs), num_returns, timeout)
    _check_refs(object_refs, "wait")
    if len({r.id for r in object_refs}) != len(object_refs):
        raise ValueError("wait got the same ObjectRef more than once")
    if object_refs and not 0 <= num_returns <= len(object_refs):  # wait([]) is ([], [])
        raise ValueError(
            f"num_returns must be between 0 and the number of refs ({len(object_refs)}), "
            f"got {num_returns}"
        )
    if timeout is not None and timeout < 0:
        raise ValueError(f"timeout must be >= 0 or None, got {timeout}")
    refs = list(object_refs)
    if not refs or num_returns == 0:
        return [], refs
    if progress:
        ready = _progress(session.progress_wait)(_engine(), refs, num_returns, timeout)
    else:
        ready = _engine().wait(refs, num_returns, timeout)
    ready_ids = {r.id for r in ready}
    return ready, [r for r in refs if r.id not in ready_ids]


def _wait_generators(
    refs: list[Any], num_returns: int, timeout: float | None
) -> tuple[list[Any], list[Any]]:
    """``wait`` over refs and ObjectRefGenerators: a generator is ready when its ``next``
    would return at once (as in Ray)."""
    if not 0 <= num_returns <= len(refs):
        raise ValueError(
            f"num_returns must be between 0 and the number of refs ({len(refs)}), got {num_returns}"
        )
    _check_refs([r for r in refs if not isinstance(r, ObjectRefGenerator)], "wait")
    engine = _engine()
    deadline = None if timeout is None else time.monotonic() + timeout
    plain = [r for r in refs if not isinstance(r, ObjectRefGenerator)]
    while True:
        done = {r.id for r in engine.wait(plain, len(plain), 0)} if plain else set()
        ready = [
            r
            for r in refs
            if (r.next_ready() if isinstance(r, ObjectRefGenerator) else r.id in done)
        ][:num_returns]
        if len(ready) >= num_returns or (deadline is not None and time.monotonic() >= deadline):
            taken = {id(r) for r in ready}
            return ready, [r for r in refs if id(r) not in taken]
        time.sleep(0.005)


def cancel(object_ref: ObjectRef, *, force: bool = False, recursive: bool = True) -> None:
    """Cancel the task that produces ``object_ref`` (or an ObjectRefGenerator's task): a
    queued task never runs; a running one gets ``TaskCancelledError`` raised inside it
    (``force=True``: its worker is killed). ``get`` on the ref then raises
    ``TaskCancelledError``."""
    if isinstance(object_ref, ObjectRefGenerator):
        object_ref._cancel(force, recursive)
        return
    _check_refs([object_ref], "cancel")
    _engine().cancel(object_ref, force, recursive)


def kill(actor: ActorHandle, *, no_restart: bool = True) -> None:
    """Kill an actor at once; pending calls fail with ``ActorDiedError``. With
    ``no_restart=False`` it is restarted if it has ``max_restarts`` left."""
    if not isinstance(actor, ActorHandle):
        raise TypeError(f"kill takes an ActorHandle, got {type(actor).__name__}")
    _engine().kill_actor(actor, no_restart)


def get_actor(name: str, namespace: str | None = None) -> ActorHandle:
    """The handle of the live actor called ``name`` (``ActorNotFoundError``, a ValueError,
    if there is none)."""
    return _engine().get_actor(name, namespace)


def nodes() -> list[dict[str, Any]]:
    """One dict per node, with Ray's keys (``NodeID``, ``Alive``, ``Resources``, ...)."""
    return list(_engine().cluster_info()["nodes"])


def cluster_resources() -> dict[str, float]:
    """Total resources of the cluster, e.g. ``{'CPU': 8.0, 'GPU': 1.0}``."""
    return dict(_engine().cluster_info()["total"])


def available_resources() -> dict[str, float]:
    """Resources not held by running tasks and actors right now."""
    return {k: v for k, v in _engine().cluster_info()["available"].items() if v > 0}


def get_gpu_ids() -> list[int]:
    """The GPU ids assigned to the current task or actor (from ``CUDA_VISIBLE_DEVICES``)."""
    value = os.environ.get("CUDA_VISIBLE_DEVICES")
    if not value:
        return []
    return [int(v) for v in value.split(",") if v.strip().isdigit()]
