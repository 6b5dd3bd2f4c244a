"""The Jupyter server's cluster: started, watched and stopped here, without tornado.

    ServerApp ──load──▶ extension.py ──▶ ClusterManager.start(settings)
        ──▶ cluster/local.py start_local_cluster(owner_pid=server pid) ──▶ head + workers
        ──▶ Client(role="owner") ──subscribe──▶ events ──▶ TaskTable, latest metrics,
                                                         listeners (the WebSocket handler)
    kernels ◀── NBRAY_ADDRESS=<user root>/jupyter-<server pid> (a symlink to the session
                directory; its 0600 secret sits beside the socket), so ``nbray.init()``
                in any kernel this server starts joins the cluster with no arguments

The head belongs to the server: it stops when the server stops (``stop``), or when the
server's connection closes or its process dies (the head watches its owner). Kernels are
plain clients: when one disconnects (restart, shutdown, crash) the head cancels its tasks,
kills its actors (except detached ones) and frees its objects.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from nbray._wire import session_files as sf

from .watching import LINGER, Listener, WatchedCluster

__all__ = ["LINGER", "ClusterManager", "ClusterSettings", "ClusterStateError", "Listener"]

log = logging.getLogger("nbray.server_ext")


class ClusterStateError(RuntimeError):
    """Raised when an operation does not fit the cluster's state (e.g. start while running)."""


@dataclass
class ClusterSettings:
    """What a (re)start uses. ``num_cpus=None``: one worker per CPU of this machine;
    ``object_store_memory=None``: Ray's default share of memory for the object store,
    beyond which objects spill to disk."""

    num_cpus: float | None = None
    num_gpus: int | None = None
    object_store_memory: int | None = None
    resources: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Any, base: ClusterSettings | None = None) -> ClusterSettings:
        """Settings from a request body, starting from ``base``; ValueError on bad input."""
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ValueError('the request body must be a JSON object, e.g. {"num_cpus": 2}')
        unknown = set(data) - {"num_cpus", "num_gpus", "object_store_memory", "resources"}
        if unknown:
            raise ValueError(
                f"unknown setting(s) {sorted(unknown)}: use num_cpus, num_gpus, "
                "object_store_memory, resources"
            )
        out = ClusterSettings(**asdict(base)) if base else ClusterSettings()
        if "num_cpus" in data:
            out.num_cpus = _number(data["num_cpus"], "num_cpus", float, minimum=0.0)
        if "num_gpus" in data:
            out.num_gpus = _number(data["num_gpus"], "num_gpus", int, minimum=0)
        if "object_store_memory" in data:
            out.object_store_memory = _number(
                data["object_store_memory"], "object_store_memory", int, minimum=1
            )
        if "resources" in data:
            res = data["resources"] or {}
            if not isinstance(res, dict) or not all(
                isinstance(k, str) and isinstance(v, int | float) and not isinstance(v, bool)
                for k, v in res.items()
            ):
                raise ValueError('resources must map names to numbers, e.g. {"db": 2}')
            out.resources = {k: float(v) for k, v in res.items()}
        return out


def _number(value: Any, name: str, kind: type, minimum: float) -> Any:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number or null, not {value!r}")
    if kind is int and value != int(value):
        raise ValueError(f"{name} must be a whole number, not {value!r}")
    if value < minimum or (kind is float and name == "num_cpus" and value == 0):
        raise ValueError(f"{name} must be positive, not {value!r}")
    return kind(value)


def sweep_stale_links() -> None:
    """Remove the address links of Jupyter servers that died without cleaning up (SIGKILL):
    their heads stopped by themselves when their owner died."""
    for link in sf.user_root().glob("jupyter-*"):
        pid = link.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not sf.pid_alive(int(pid)):
            with contextlib.suppress(FileNotFoundError):
                link.unlink()


class ClusterManager(WatchedCluster):
    """Owns at most one local cluster at a time and tells listeners what happens on it.

    Example::

        manager = ClusterManager()
        manager.start(ClusterSettings(num_cpus=2))
        print(manager.status()["state"])   # "running"
        manager.stop()
    """

    def __init__(self, settings: ClusterSettings | None = None, task_capacity: int = 5000) -> None:
        super().__init__(task_capacity)
        self.settings = settings or ClusterSettings()
        self.started_at: float | None = None
        self._start_on_first_use = False
        sweep_stale_links()
        self.address_link = sf.user_root() / f"jupyter-{os.getpid()}"
        self._env_before: str | None = os.environ.get("NBRAY_ADDRESS")

    # --- lifecycle -----------------------------------------------------------------------

    def start(self, settings: ClusterSettings | None = None) -> dict[str, Any]:
        """Start the cluster (with ``settings``, else the last ones); returns ``status()``."""
        from nbray._compose.cluster.local import START_TIMEOUT, start_local_cluster
        from nbray._engines.local.client import Client
        from nbray._engines.local.engine import LocalEngine

        with self._lock:
            self._forget_dead_head()
            self._start_on_first_use = False
            if self._engine is not None:
                raise ClusterStateError("the cluster is already running: stop or restart it")
            if settings is not None:
                self.settings = settings
            self._set_state("starting")
            s = self.settings
            try:
                cluster = start_local_cluster(
                    num_cpus=s.num_cpus,
                    num_gpus=s.num_gpus,
                    resources=s.resources or None,
                    object_store_memory=s.object_store_memory,
                    owner_pid=os.getpid(),
                )
                try:
                    client = Client(
                        f"unix:{cluster.session_dir / 'sock'}",
                        cluster.secret,
                        role="owner",
                        timeout=START_TIMEOUT,
                    )
                except BaseException:
                    cluster.process.kill()
                    cluster.stop()
                    raise
            except Exception as exc:
                self.error = f"the cluster did not start: {exc}"
                self._set_state("stopped")
                raise
            self._engine = LocalEngine(client, cluster)
            client.output_handler = None  # the server submits no tasks
            self.tasks.clear()
            self.logs.clear()  # logs are not replayed on a re-subscribe: kept until a start
            self.latest_metrics = None
            self.error = ""
            self.started_at = time.time()
            if self._watchers:
                self._subscribe()
            self._export_address(cluster.session_dir)
            self._set_state("running")
            return self.status()

    def start_on_first_use(self) -> None:
        """Start the cluster in the background on the next ``ensure_started`` (the first
        request of the panel or dashboard, or the first kernel this server starts)."""
        self._start_on_first_use = True
        # kernels started before then find the address (and a clear error until it runs)
        os.environ["NBRAY_ADDRESS"] = str(self.address_link)

    def ensure_started(self) -> None:
        """Start in the background if ``start_on_first_use`` asked for it and nothing was
        started yet; returns at once."""
        if not self._start_on_first_use:
            return
        self._start_on_first_use = False
        threading.Thread(target=self._start_logged, name="nbray-start", daemon=True).start()

    def _start_logged(self) -> None:
        try:
            self.start()
        except Exception:
            log.exception("nbray: the cluster did not start")

    def stop(self) -> dict[str, Any]:
        """Stop the cluster and wait until its processes are gone. Safe when stopped."""
        with self._lock:
            engine, self._engine = self._engine, None
            if engine is None:
                return self.status()
            self._set_state("stopping")
            self._unsubscribe = None
            self._cancel_linger()
            self._unexport_address()
            try:
                engine.shutdown()
            finally:
                self.started_at = None
                self.latest_metrics = None
                self._set_state("stopped")
            return self.status()

    def restart(self, settings: ClusterSettings | None = None) -> dict[str, Any]:
        with self._lock:
            self.stop()
            return self.start(settings)

    def _forget_dead_head(self, force: bool = False) -> None:
        """The head went away by itself (killed, crashed): reap it and say why."""
        dropped = self._drop_connection(force)
        if dropped is None:
            return
        engine, reason = dropped
        self._unexport_address()
        with contextlib.suppress(Exception):
            engine.cluster.stop(timeout=2)
        self.error = (
            f"the cluster's head exited unexpectedly ({reason}); start it again, and see "
            "the server's log for the head's last words"
        )
        self.started_at = None
        self._set_state("stopped")

    # --- the address kernels use ---------------------------------------------------------

    def _export_address(self, session_dir: Path) -> None:
        link = self.address_link
        with contextlib.suppress(FileNotFoundError):
            link.unlink()
        link.symlink_to(session_dir, target_is_directory=True)
        os.environ["NBRAY_ADDRESS"] = str(link)

    def _unexport_address(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.address_link.unlink()

    # --- queries -------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """State, settings, address and (while running) resources and head counters."""
        with self._lock:
            self._forget_dead_head()
            out: dict[str, Any] = {
                "state": self.state,
                "error": self.error,
                "settings": asdict(self.settings),
                "address": str(self.address_link) if self._engine is not None else "",
                "started_at": self.started_at,
                # open event streams (side panels and dashboards that are visible)
                "watchers": self._watchers,
            }
            engine = self._engine
        if engine is None:
            return out
        info = self._ask(engine, engine.cluster_info)
        head = self._ask(engine, engine.status)
        if info is None or head is None:
            return self.status()
        out.update(
            head_pid=engine.cluster.process.pid,
            session_dir=str(engine.cluster.session_dir),
            resources=info["total"],
            available=info["available"],
            object_store=info["raw"].get("object_store", {}),
            tasks=head["tasks"],
            workers=head["workers"],
            actors=head["actors"],
            objects=head["objects"],
            # the server's own connection is not a kernel
            clients=max(0, head["clients"] - 1),
            # each kernel's share: its tasks running and queued (pid; the handler adds
            # which kernel and notebook that is)
            kernels=head.get("owners", []),
        )
        return out

    def shutdown(self) -> None:
        """Stop the cluster for good (the server is stopping)."""
        with contextlib.suppress(Exception):
            self.stop()
        self._unexport_address()
        if os.environ.get("NBRAY_ADDRESS") == str(self.address_link):
            if self._env_before is None:
                os.environ.pop("NBRAY_ADDRESS", None)
            else:
                os.environ["NBRAY_ADDRESS"] = self._env_before
