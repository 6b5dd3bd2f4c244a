"""Connecting this process to a Ray cluster, always with Ray's token authentication.

    init(engine="ray")                 ──▶ a private local Ray (token in a 0600 file)
    init(engine="ray", address=A)      ──▶ ray.init(address=A), token from the record of
                                           `nbray up` or NBRAY_RAY_TOKEN_FILE
    init() after `nbray up`            ──▶ the recorded cluster (record.py)

Ray reads the token from ``RAY_AUTH_TOKEN_PATH`` in this process's environment; a wrong or
missing token makes Ray hang ~20 s before it fails, so the address is checked first.
"""

from __future__ import annotations

import os
import re
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

from nbray._base.errors import NbrayConnectionError
from nbray._wire import session_files as sf

from . import record

__all__ = ["connect"]

PRIVATE_OBJECT_STORE = 256 * 1024 * 1024


def connect(
    address: str | None,
    *,
    namespace: str | None,
    num_cpus: float | None,
    num_gpus: int | None,
    resources: dict[str, float] | None,
    object_store_memory: int | None = None,
    runtime_env: dict[str, Any] | None = None,
) -> tuple[Any, dict[str, Any]]:
    """Connect (``ray.init``); returns (the RayEngine, facts for the ClusterContext)."""
    current = record.read()
    token_file = os.environ.get("NBRAY_RAY_TOKEN_FILE", "")
    if address in (None, "", "auto") and os.environ.get("RAY_ADDRESS"):
        address = os.environ["RAY_ADDRESS"]  # as Ray: the environment names the cluster
    elif address in (None, "", "auto") and current is not None:
        address = str(current["address"])
    if current is not None and address == current["address"]:
        token_file = token_file or str(current["token_file"])
    # "default", as the local engine: named actors are shared by the kernels of a cluster
    # (Ray would give each driver an anonymous namespace)
    kwargs: dict[str, Any] = {"namespace": namespace or "default", "log_to_driver": True}
    if runtime_env:  # the job's env: Ray packages local directories and installs pip itself
        kwargs["runtime_env"] = runtime_env
    private_dir: Path | None = None
    if address in (None, "", "local"):
        private_dir, _ = sf.new_session_dir()
        # one token for every private Ray this process starts: Ray keeps the first token it
        # read for the life of the process, so a second private Ray with a new token would
        # refuse it (InvalidAuthToken)
        token_file = token_file or str(
            record.write_token(private_dir / "ray_token", _process_token())
        )
        # Ray's own files (logs, sockets) in a short private directory removed on shutdown,
        # not left in /tmp/ray (socket paths below it must stay under 108 characters)
        ray_dir = Path(tempfile.mkdtemp(prefix="nbray-ray-"))
        (private_dir / "ray_temp_dir").write_text(str(ray_dir))
        kwargs.update(
            _temp_dir=str(ray_dir),
            num_cpus=num_cpus,
            num_gpus=num_gpus,
            resources=resources,
            include_dashboard=False,
            object_store_memory=object_store_memory or PRIVATE_OBJECT_STORE,
        )
        address = None
    else:
        if num_cpus is not None or num_gpus is not None or resources:
            raise ValueError(
                "num_cpus, num_gpus and resources describe a new cluster: they cannot be "
                f"given when connecting to the Ray cluster at {address!r}"
            )
        if address != "auto":
            _check_reachable(address)
        kwargs["address"] = address
    saved_env = {k: os.environ.get(k) for k in _AUTH_ENV}
    _use_token(token_file)  # before Ray is imported: it reads the mode once
    try:
        import ray
    except ImportError:
        raise ImportError(
            "the 'ray' engine needs Ray: pip install 'nbray[ray]' (with the same Ray version "
            "as the cluster's)"
        ) from None
    from .engine import RayEngine

    try:
        context = _init_with_retries(ray, kwargs)
    except Exception as exc:
        _restore_env(saved_env)
        if private_dir is not None:
            remove_private_dirs(private_dir)
        mismatch = version_mismatch(str(exc), address or "")
        if mismatch:
            raise NbrayConnectionError(mismatch) from None
        raise NbrayConnectionError(
            f"could not connect to the Ray cluster at {address or 'a new local instance'}: "
            f"{exc}. If the cluster uses token authentication, set NBRAY_RAY_TOKEN_FILE to a "
            "copy of its token (0600), or run `nbray up` on this machine (and if Ray was imported "
            "before nbray.init, set RAY_AUTH_MODE=token before importing it)."
        ) from exc
    engine = RayEngine(owns_ray=True, address=address or "local")
    engine.private_dir = private_dir
    engine.token_file = os.environ.get("RAY_AUTH_TOKEN_PATH", "")  # the token Ray reads
    engine.on_shutdown = lambda: _after_shutdown(saved_env, private_dir)
    ctx = ray.get_runtime_context()
    facts = {
        "address": address or _gcs_address(ray),
        "node_id": ctx.get_node_id(),
        "namespace": ctx.namespace,
        "owned": address is None,
        "dashboard_url": str(getattr(context, "dashboard_url", "") or ""),
    }
    return engine, facts


_VERSIONS = re.compile(
    r"started with:\s*Ray: (\S+)\s*Python: (\S+)\s*This process.*?started with:"
    r"\s*Ray: (\S+)\s*Python: (\S+)",
    re.S,
)


def version_mismatch(message: str, address: str) -> str:
    """What to do about Ray's version check failing ("Version mismatch: ..."), naming both
    sides' Ray and Python; "" when the message is about something else."""
    found = _VERSIONS.search(message) if "Version mismatch" in message else None
    if found is None:
        return ""
    cluster_ray, cluster_py, our_ray, our_py = found.groups()
    fixes = []
    if cluster_ray != our_ray:
        extra = "client" if address.startswith("ray://") else "default"
        fixes.append(f"pip install 'ray[{extra}]=={cluster_ray}' in this kernel's environment")
    if cluster_py.split(".")[:2] != our_py.split(".")[:2]:
        fixes.append(f"use Python {'.'.join(cluster_py.split('.')[:2])} for this kernel")
    return (
        f"the Ray cluster at {address} runs Ray {cluster_ray} on Python {cluster_py}, and this "
        f"process has Ray {our_ray} on Python {our_py}: Ray connects only the same versions. "
        f"To connect, {' and '.join(fixes)} (then restart the kernel)."
    )


_AUTH_ENV = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN_PATH")

# Ray Client's server starts one server process per client; that start sometimes fails at
# once on a busy head (seen here about one connection in five), and a new connection works
CLIENT_SERVER_FAILED = ("Starting Ray client server failed", "Proxy failed to Connect")
CLIENT_ATTEMPTS = 3


def _init_with_retries(ray: Any, kwargs: dict[str, Any]) -> Any:
    """``ray.init``; through Ray Client, again when the cluster failed to start this
    client's server process (a transient failure of the head, not of the address)."""
    attempts = CLIENT_ATTEMPTS if str(kwargs.get("address") or "").startswith("ray://") else 1
    for attempt in range(1, attempts + 1):
        try:
            return ray.init(**kwargs)
        except ConnectionAbortedError as exc:
            if attempt == attempts or not any(m in str(exc) for m in CLIENT_SERVER_FAILED):
                raise
            time.sleep(attempt)
    raise AssertionError("unreachable")


def _restore_env(saved: dict[str, str | None]) -> None:
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


_PROCESS_TOKEN: str | None = None


def _process_token() -> str:
    global _PROCESS_TOKEN
    if _PROCESS_TOKEN is None:
        _PROCESS_TOKEN = record.new_token()
    return _PROCESS_TOKEN


def _use_token(token_file: str) -> None:
    """Point Ray at the token (unless the user gave one in RAY_AUTH_TOKEN)."""
    os.environ["RAY_AUTH_MODE"] = "token"
    if os.environ.get("RAY_AUTH_TOKEN"):
        return
    if token_file:
        sf.read_secret(token_file)  # refuses a file others can read
        os.environ["RAY_AUTH_TOKEN_PATH"] = token_file


def _after_shutdown(saved_env: dict[str, str | None], private_dir: Path | None) -> None:
    _restore_env(saved_env)
    if private_dir is not None:
        remove_private_dirs(private_dir)


def remove_private_dirs(private_dir: Path) -> None:
    """Remove a private local Ray's directories (its session dir, and Ray's temp dir)."""
    marker = private_dir / "ray_temp_dir"
    if marker.exists():
        sf.remove_session_dir(marker.read_text())
    sf.remove_session_dir(private_dir)


def _check_reachable(address: str) -> None:
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"a Ray address is host:port, e.g. '10.0.0.5:6379', got {address!r}")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as exc:
        raise NbrayConnectionError(
            f"no Ray cluster answers at {address} ({exc}). Is it up (`nbray up FILE`), and is "
            "the port reachable from this machine?"
        ) from None


def _gcs_address(ray: Any) -> str:
    try:
        return str(ray.get_runtime_context().gcs_address)
    except AttributeError:
        return "local"
