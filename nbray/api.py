"""The public API, as in Ray: ``init``, ``remote``, ``get``, ``put``, ``wait``, actors.

    user code ──▶ these functions ──▶ current_engine() ──▶ LocalEngine (or another Engine)

Everything here validates its arguments and delegates; no function knows how the engine
runs the work.
"""

from __future__ import annotations

import atexit
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar, overload

from . import session
from .actor import ActorClass, ActorHandle
from .engine import Engine
from .object_ref import ObjectRef
from .options import ActorOptions, TaskOptions, make_options
from .remote_function import RemoteFunction

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

# Ray's init() arguments we accept so Ray code runs unchanged; they change nothing here.
_RAY_INIT_IGNORED = {
    "include_dashboard",
    "dashboard_host",
    "dashboard_port",
    "log_to_driver",
    "logging_level",
    "logging_format",
    "configure_logging",
    "runtime_env",
    "local_mode",
    "_temp_dir",
    "object_store_memory",
    "_system_config",
    "job_config",
    "_node_ip_address",
}
_init_lock = threading.Lock()
_context: ClusterContext | None = None


@dataclass
class ClusterContext:
    """What ``init`` returns (Ray: ``RayContext``): where the cluster is and what it has."""

    address: str
    engine: str
    node_id: str
    namespace: str
    owned: bool
    session_dir: str = ""
    resources: dict[str, float] = field(default_factory=dict)

    @property
    def address_info(self) -> dict[str, Any]:
        return {"address": self.address, "node_id": self.node_id, "session_dir": self.session_dir}

    def __getitem__(self, key: str) -> Any:
        return self.address_info[key]

    def __enter__(self) -> ClusterContext:
        return self

    def __exit__(self, *exc: object) -> None:
        shutdown()


def init(
    address: str | None = None,
    *,
    num_cpus: float | None = None,
    num_gpus: int | None = None,
    resources: dict[str, float] | None = None,
    namespace: str | None = None,
    ignore_reinit_error: bool = False,
    engine: str = "local",
    port: int | None = None,
    host: str | None = None,
    **ray_kwargs: Any,
) -> ClusterContext:
    """Start a local cluster owned by this process, or connect to a running one.

    With no ``address`` (and no ``NBRAY_ADDRESS`` set) a private cluster starts, with one
    worker per CPU, and stops with this process. ``address="auto"`` connects to the cluster
    `nbray start` runs; a socket path, session directory or ``host:port`` to that cluster.
    ``port``/``host`` also open an authenticated TCP endpoint (loopback unless ``host``
    says otherwise).

    Example::

        import nbray
        nbray.init(num_cpus=2)
        print(nbray.cluster_resources())   # {'CPU': 2.0}
        nbray.shutdown()
    """
    global _context
    unknown = set(ray_kwargs) - _RAY_INIT_IGNORED
    if unknown:
        raise TypeError(f"init() got unexpected keyword argument(s): {', '.join(sorted(unknown))}")
    if engine != "local":
        raise ValueError(
            f"unknown engine {engine!r}: this version runs the 'local' engine (the Ray engine "
            "comes with scale-out support)"
        )
    with _init_lock:
        if session.in_worker:
            assert _context is not None or session.get_engine() is not None
            return _context or _worker_context()
        if session.get_engine() is not None:
            if ignore_reinit_error:
                assert _context is not None
                return _context
            raise RuntimeError(
                "nbray.init() was already called in this process. Call nbray.shutdown() "
                "first, or pass ignore_reinit_error=True to keep the running cluster."
            )
        from .cluster.local import START_TIMEOUT, resolve_address, start_failed, start_local_cluster

        address = address or os.environ.get("NBRAY_ADDRESS") or None
        cluster = None
        if address in (None, "local"):
            # the head starts first; this process's imports below overlap its start-up
            cluster = start_local_cluster(
                num_cpus=num_cpus,
                num_gpus=num_gpus,
                resources=resources,
                namespace=namespace or "default",
                owner_pid=os.getpid(),
                tcp_host=host or ("127.0.0.1" if port is not None else ""),
                tcp_port=port or 0,
                wait=False,
            )
            sock, secret, role = f"unix:{cluster.session_dir / 'sock'}", cluster.secret, "owner"
        else:
            if num_cpus is not None or num_gpus is not None or resources:
                raise ValueError(
                    "num_cpus, num_gpus and resources describe a new cluster: they cannot be "
                    f"given when connecting to the running cluster at {address!r}"
                )
            sock, secret = resolve_address(address)
            role = "client"
        from .client import Client
        from .errors import NbrayConnectionError
        from .runtime.local_engine import LocalEngine

        try:
            client = Client(sock, secret, role=role, timeout=START_TIMEOUT)
        except BaseException as exc:
            if cluster is None:
                raise
            error = start_failed(cluster, f"connecting failed: {exc}")
            cluster.stop()
            if isinstance(exc, NbrayConnectionError):
                raise error from exc
            raise
        if namespace:
            client.namespace = namespace
        eng = LocalEngine(client, cluster)
        session.set_engine(eng)
        info = eng.cluster_info()
        _context = ClusterContext(
            address=cluster.address if cluster else address or sock,
            engine="local",
            node_id=client.node_id,
            namespace=client.namespace,
            owned=cluster is not None,
            session_dir=str(cluster.session_dir) if cluster else "",
            resources=info["total"],
        )
        return _context


def _worker_context() -> ClusterContext:
    eng = session.get_engine()
    client = getattr(eng, "client", None)
    return ClusterContext(
        address=getattr(client, "address", ""),
        engine="local",
        node_id=getattr(client, "node_id", ""),
        namespace=getattr(client, "namespace", ""),
        owned=False,
    )


def shutdown() -> None:
    """Disconnect; stop the cluster if this process started it. Safe to call twice."""
    global _context
    with _init_lock:
        if session.in_worker:
            return
        eng = session.get_engine()
        session.set_engine(None)
        _context = None
        if eng is not None:
            eng.shutdown()


atexit.register(shutdown)


def is_initialized() -> bool:
    """Whether ``init`` was called (or a cluster was started on first use)."""
    return session.get_engine() is not None


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
    if args and (len(args) != 1 or options or not callable(args[0])):
        raise TypeError(
            "@nbray.remote takes a function or class, or only keyword options: "
            "@nbray.remote or @nbray.remote(num_cpus=1, ...)"
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
    for r in refs:
        if not isinstance(r, ObjectRef):
            raise TypeError(
                f"{what} takes ObjectRefs (or a list of them), got {type(r).__name__}: {r!r}"
            )


@overload
def get(object_refs: ObjectRef, *, timeout: float | None = None) -> Any: ...
@overload
def get(object_refs: Sequence[ObjectRef], *, timeout: float | None = None) -> list[Any]: ...


def get(object_refs: Any, *, timeout: float | None = None) -> Any:
    """The value of an ObjectRef, or the list of values of a list of refs, blocking.

    Raises the task's exception (also an instance of its original class), or
    ``GetTimeoutError`` (a ``TimeoutError``) when ``timeout`` seconds pass first.

    Example::

        refs = [f.remote(i) for i in range(3)]
        values = nbray.get(refs, timeout=10)
    """
    if timeout is not None and timeout < 0:
        raise ValueError(f"timeout must be >= 0 or None, got {timeout}")
    if isinstance(object_refs, ObjectRef):
        return _engine().get([object_refs], timeout)[0]
    if not isinstance(object_refs, list | tuple):
        raise TypeError(
            "get takes an ObjectRef or a list of ObjectRefs, "
            f"got {type(object_refs).__name__}: {object_refs!r}"
        )
    _check_refs(object_refs, "get")
    return _engine().get(list(object_refs), timeout) if object_refs else []


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
) -> tuple[list[ObjectRef], list[ObjectRef]]:
    """Split ``object_refs`` into (ready, not ready) once ``num_returns`` are ready or
    ``timeout`` passed. Both lists keep the input order.

    Example::

        ready, pending = nbray.wait(refs, num_returns=2, timeout=5.0)
    """
    if isinstance(object_refs, ObjectRef) or not isinstance(object_refs, list | tuple):
        raise TypeError("wait takes a list of ObjectRefs")
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
    ready = _engine().wait(refs, num_returns, timeout)
    ready_ids = {r.id for r in ready}
    return ready, [r for r in refs if r.id not in ready_ids]


def cancel(object_ref: ObjectRef, *, force: bool = False, recursive: bool = True) -> None:
    """Cancel the task that produces ``object_ref``: a queued task never runs; a running one
    gets ``TaskCancelledError`` raised inside it (``force=True``: its worker is killed).
    ``get`` on the ref then raises ``TaskCancelledError``."""
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
