"""Starting, joining and leaving a cluster: ``init``, ``shutdown``, ``is_initialized``.

    nbray.init() ──▶ cluster/local.py starts the head (or finds a running cluster)
        ──▶ Client connects ──▶ LocalEngine becomes the process's engine (session.py)

Kept apart from the rest of the API, with light imports, so that ``nbray.init()`` starts
the head before this process imports the client and serialization modules: both start-ups
then overlap.
"""

from __future__ import annotations

import atexit
import os
import threading
from typing import Any

from nbray._model import session

__all__ = ["ClusterContext", "init", "is_initialized", "shutdown"]

# Ray's init() arguments we accept so Ray code runs unchanged; they change nothing here.
_RAY_INIT_IGNORED = {
    "include_dashboard",
    "dashboard_host",
    "dashboard_port",
    "log_to_driver",
    "logging_level",
    "logging_format",
    "configure_logging",
    "_temp_dir",
    "_system_config",
    "job_config",
    "_node_ip_address",
}
_init_lock = threading.Lock()
_context: ClusterContext | None = None
# the record of the private cluster this process started, where its Jupyter server lists it
_registered: Any = None


class ClusterContext:
    """What ``init`` returns (Ray: ``RayContext``): where the cluster is and what it has."""

    def __init__(
        self,
        address: str,
        engine: str,
        node_id: str,
        namespace: str,
        owned: bool,
        session_dir: str = "",
        resources: dict[str, float] | None = None,
        dashboard_url: str = "",
    ) -> None:
        self.address = address
        self.engine = engine
        self.node_id = node_id
        self.namespace = namespace
        self.owned = owned
        self.session_dir = session_dir
        self.resources = resources or {}
        # Ray's dashboard of a Ray cluster ("host:port", as Ray's RayContext); "" otherwise
        self.dashboard_url = dashboard_url

    def __repr__(self) -> str:
        return (
            f"ClusterContext(address={self.address!r}, engine={self.engine!r}, "
            f"node_id={self.node_id!r}, resources={self.resources!r})"
        )

    def _repr_html_(self) -> str:
        from nbray._model.reprs import session_html

        return session_html(self)

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
    engine: str | None = None,
    port: int | None = None,
    host: str | None = None,
    object_store_memory: int | None = None,
    runtime_env: dict[str, Any] | None = None,
    **ray_kwargs: Any,
) -> ClusterContext:
    """Start a local cluster owned by this process, or connect to a running one.

    With no ``address`` (and no ``NBRAY_ADDRESS`` set) a private cluster starts, with one
    worker per CPU, and stops with this process. ``num_cpus``, ``num_gpus`` or ``resources``
    without an address also start a private cluster, even where ``NBRAY_ADDRESS`` names a
    shared one (as in kernels of a Jupyter server running nbray's extension).
    ``address="auto"`` connects to the cluster `nbray start` runs; a socket path, session
    directory or ``host:port`` to that cluster.
    ``port``/``host`` also open an authenticated TCP endpoint (loopback unless ``host``
    says otherwise). ``object_store_memory`` caps the bytes of /dev/shm that objects use
    (default: 30% of the memory, at most what /dev/shm holds); past it the least recently
    used objects spill to disk.

    ``runtime_env`` is the job's environment (Ray's): every task and actor of this process
    runs in it, merged with their own ``runtime_env`` (theirs wins, ``env_vars`` merge). See
    README "Ray libraries" for the fields the local engine supports.

    ``engine="ray"`` runs everything on Ray instead: on the cluster at ``address``
    (``host:port`` of its head), else on the cluster `nbray up` provisioned, else on a private
    local Ray. After `nbray up`, a bare ``nbray.init()`` picks that cluster and the Ray engine
    (``engine`` defaults to ``NBRAY_ENGINE``, else that). See README "Scale out".

    ``local_mode=True`` starts no cluster: every task and actor call runs at once in this
    process (Ray's old local mode), so breakpoints, ``pdb`` and ``%debug`` work on the
    remote functions as on plain code.

    Example::

        import nbray
        nbray.init(num_cpus=2)
        print(nbray.cluster_resources())   # {'CPU': 2.0}
        nbray.shutdown()
    """
    global _context
    local_mode = bool(ray_kwargs.pop("local_mode", False))
    asked_engine = engine
    unknown = set(ray_kwargs) - _RAY_INIT_IGNORED
    if unknown:
        raise TypeError(f"init() got unexpected keyword argument(s): {', '.join(sorted(unknown))}")
    from nbray._base.runtime_env import validate as validate_runtime_env

    job_env = validate_runtime_env(runtime_env)
    engine = engine or os.environ.get("NBRAY_ENGINE") or None
    if engine not in (None, "local", "ray"):
        raise ValueError(f"unknown engine {engine!r}: use 'local' (the default) or 'ray'")
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
        if local_mode:
            if asked_engine == "ray" or address is not None:
                raise ValueError(
                    "local_mode=True runs every task and actor in this process: it cannot be "
                    "combined with an address or engine='ray'"
                )
            return _init_inline(namespace)
        explicit = num_cpus is not None or num_gpus is not None or bool(resources)
        if address is None and engine != "ray" and explicit:
            # the call describes a cluster of its own: NBRAY_ADDRESS (e.g. the cluster a
            # Jupyter server shares with its kernels) is only the default for a bare init()
            address = "local"
            if os.environ.get("NBRAY_ADDRESS"):
                _warn_private_cluster(num_cpus, num_gpus, resources)
        if engine is None:
            engine = _default_engine(address)
        if engine != "ray":
            address = address or os.environ.get("NBRAY_ADDRESS") or None
        if engine == "ray":
            return _init_ray(
                address, namespace, num_cpus, num_gpus, resources, object_store_memory, job_env
            )
        from nbray._compose.cluster.local import (
            START_TIMEOUT,
            resolve_address,
            start_failed,
            start_local_cluster,
        )

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
                object_store_memory=object_store_memory,
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
        from nbray._base.errors import NbrayConnectionError
        from nbray._engines.local.client import Client
        from nbray._engines.local.engine import LocalEngine

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
        eng.job_runtime_env = job_env
        session.set_engine(eng)
        eng.install_job_env()
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
        if cluster is not None:
            _register("local", cluster.address, str(cluster.session_dir))
        return _context


session.auto_init = init  # a first use of the API without init() starts a cluster


def _warn_private_cluster(num_cpus: Any, num_gpus: Any, resources: Any) -> None:
    """Say which cluster an init() with arguments got where a shared one was offered."""
    import warnings

    given = ", ".join(
        f"{k}={v!r}"
        for k, v in (("num_cpus", num_cpus), ("num_gpus", num_gpus), ("resources", resources))
        if v
    )
    warnings.warn(
        f"nbray.init({given}) started a private cluster for this process, not the shared "
        f"cluster NBRAY_ADDRESS names (the Jupyter server's, in a JupyterLab kernel): the "
        "side panel lists it apart, under this kernel, with a dashboard of its own. Call "
        "nbray.init() without arguments to join the shared cluster (set its CPUs in the "
        "panel, or with --NbrayServer.num_cpus).",
        PrivateClusterWarning,
        stacklevel=3,
    )


class PrivateClusterWarning(UserWarning):
    """Warned when ``init`` with cluster arguments starts a private cluster although
    ``NBRAY_ADDRESS`` names a shared one."""


def _default_engine(address: str | None) -> str:
    """The engine an init() that names none gets: Ray for a Ray address (``ray://``), for a
    bare or "auto" init where ``RAY_ADDRESS`` is set (as Ray reads it), or where `nbray up`
    recorded a cluster; else the local engine."""
    if address is not None and address.startswith("ray://"):
        return "ray"
    if address in (None, "auto") and os.environ.get("RAY_ADDRESS"):
        return "ray"
    if address is None and not os.environ.get("NBRAY_ADDRESS"):
        from nbray._engines.ray import record

        if record.read() is not None:
            return "ray"
    return "local"


def _init_ray(
    address: str | None,
    namespace: str | None,
    num_cpus: float | None,
    num_gpus: int | None,
    resources: dict[str, float] | None,
    object_store_memory: int | None,
    runtime_env: dict[str, Any],
) -> ClusterContext:
    global _context
    from nbray._engines.ray.connect import connect

    eng, facts = connect(
        address,
        namespace=namespace,
        num_cpus=num_cpus,
        num_gpus=num_gpus,
        resources=resources,
        object_store_memory=object_store_memory,
        runtime_env=runtime_env,
    )
    session.set_engine(eng)
    info = eng.cluster_info()
    _context = ClusterContext(engine="ray", resources=info["total"], **facts)
    # a private Ray, and a Ray cluster this kernel connects to (its Ray dashboard is then
    # proxied by the server, with the token this process uses)
    _register(
        "ray",
        str(facts["address"]),
        str(getattr(eng, "private_dir", "") or ""),
        nodes=_node_snapshot(info.get("nodes", [])),
        owned=bool(facts.get("owned")),
        dashboard_url=str(facts.get("dashboard_url") or ""),
        token_file=str(getattr(eng, "token_file", "") or ""),
    )
    return _context


def _register(engine: str, address: str, session_dir: str, **extra: Any) -> None:
    """Tell the Jupyter server whose kernel this is (``NBRAY_KERNEL_REGISTRY``) about the
    private cluster this process started, so its panel lists it; nothing elsewhere."""
    global _registered
    from nbray._wire import kernel_registry

    _registered = kernel_registry.register(engine, address, session_dir, **extra)


def _unregister() -> None:
    global _registered
    if _registered is not None:
        from nbray._wire import kernel_registry

        kernel_registry.unregister(_registered)
        _registered = None


def _node_snapshot(nodes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Ray's node records as JSON (the server shows a private Ray's nodes from them)."""
    keep = ("NodeID", "Alive", "NodeManagerAddress", "NodeManagerHostname", "Resources")
    return [{k: node[k] for k in keep if k in node} for node in nodes]


def _init_inline(namespace: str | None) -> ClusterContext:
    """``init(local_mode=True)``: no cluster; every ``.remote()`` runs at once, here."""
    global _context
    from nbray._engines.inline import InlineEngine

    eng = InlineEngine(namespace or "default")
    session.set_engine(eng)
    _context = ClusterContext(
        address="",
        engine="inline",
        node_id="inline",
        namespace=eng.namespace,
        owned=True,
        resources=eng.cluster_info()["total"],
    )
    return _context


def _worker_context() -> ClusterContext:
    eng = session.get_engine()
    client = getattr(eng, "client", None)
    return ClusterContext(
        address=getattr(client, "address", ""),
        engine=getattr(eng, "name", "local"),
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
        _unregister()  # first: the server must not find a record of a cluster going away
        if eng is not None:
            eng.shutdown()


atexit.register(shutdown)


def is_initialized() -> bool:
    """Whether ``init`` was called (or a cluster was started on first use)."""
    return session.get_engine() is not None
