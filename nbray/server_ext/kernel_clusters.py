"""The private clusters this server's kernels start, listed beside the server's own.

    KernelClusters() ──▶ <nbray user dir>/kernels-<server pid>/ (0700)
                         NBRAY_KERNEL_REGISTRY=<that dir> in the environment kernels inherit
    kernel: nbray.init(num_cpus=1) / init(engine="ray") ──▶ a 0600 record there
            (_wire/kernel_registry.py), removed by nbray.shutdown() or the kernel's exit
    poller thread, every POLL s: read_all() (drops the records of dead owners)
        ──▶ a KernelCluster per record: local engine ──attach (session dir's socket and
            0600 secret, the authenticated handshake)──▶ a WatchedCluster like the server's
            own (nodes, tasks, summary, output, events); Ray engine ──▶ the nodes recorded
            at its start
        ──▶ on any change: {"type": "clusters", "clusters": [...]} to the server's stream

The server never starts or stops these clusters: each belongs to its kernel, and goes
with it (the head watches its owner).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nbray._wire import kernel_registry
from nbray._wire import session_files as sf

from .ray_dashboard import has_dashboard
from .watching import WatchedCluster

__all__ = ["KernelCluster", "KernelClusters"]

log = logging.getLogger("nbray.server_ext")
POLL = 1.0  # seconds between two looks at the registry
ATTACH_TIMEOUT = 10.0


class KernelCluster(WatchedCluster):
    """One kernel's private cluster, as its record describes it; the server attaches to a
    local-engine head as a plain client (lazily: on the first question or watcher)."""

    def __init__(self, record: dict[str, Any], task_capacity: int = 5000) -> None:
        super().__init__(task_capacity)
        self.record = record
        self.id = str(record["id"])
        self.engine_name = str(record.get("engine") or "local")
        self.state = "running"
        self.path = ""  # the notebook, once the server's sessions name it
        self._attach_failed = False

    def ensure_started(self) -> None:
        """Attach to the head (a local-engine cluster); at most one try."""
        with self._lock:
            if self._engine is not None or self._attach_failed or self.engine_name != "local":
                return
            try:
                self._engine = self._connect()
            except Exception as exc:
                self._attach_failed = True
                self.error = f"cannot attach to the kernel's cluster: {exc}"
                log.warning("nbray: %s", self.error)
                return
            if self._watchers:
                self._subscribe()

    def _connect(self) -> Any:
        from nbray._engines.local.client import Client
        from nbray._engines.local.engine import LocalEngine

        session_dir = Path(str(self.record.get("session_dir") or "")).resolve()
        # only a session directory of this user's nbray directory (a record is the same
        # user's, but the server takes no path it would not make itself)
        if session_dir.parent != sf.user_root().resolve():
            raise ValueError(f"{session_dir} is not an nbray session directory")
        secret = sf.read_secret(session_dir / "secret")  # refuses a file others can read
        client = Client(
            f"unix:{session_dir / 'sock'}", secret, role="client", timeout=ATTACH_TIMEOUT
        )
        engine = LocalEngine(client, None)
        client.output_handler = None  # the server submits no tasks
        return engine

    def watch(self) -> Callable[[], None]:
        self.ensure_started()
        return super().watch()

    def nodes(self) -> list[dict[str, Any]]:
        if self.engine_name != "local":
            return [dict(n) for n in self.record.get("nodes") or []]
        self.ensure_started()
        return super().nodes()

    def describe(self) -> dict[str, Any]:
        """The cluster as ``GET nbray/api/clusters`` lists it (nodes not included)."""
        r = self.record
        return {
            "id": self.id,
            "engine": self.engine_name,
            "kernel_id": str(r.get("kernel_id") or ""),
            "path": self.path,
            "pid": int(r.get("pid") or 0),
            "address": str(r.get("address") or ""),
            "started_at": float(r.get("started_at") or 0.0),
            "state": self.state,
            "error": self.error,
            "owned": bool(r.get("owned", True)),  # False: a Ray cluster it connected to
            "ray_dashboard": has_dashboard(r),
        }

    def status(self) -> dict[str, Any]:
        """``GET nbray/api/clusters/<id>``: the listing, plus resources and head counters."""
        out = self.describe()
        self.ensure_started()
        engine = self._engine
        if engine is None:
            nodes = self.record.get("nodes") or []
            out["resources"] = _sum_resources(nodes)
            return out
        info = self._ask(engine, engine.cluster_info)
        head = self._ask(engine, engine.status)
        if info is None or head is None:
            return self.describe()
        out.update(
            resources=info["total"],
            available=info["available"],
            tasks=head["tasks"],
            workers=head["workers"],
            actors=head["actors"],
            # the server's watching connection is not a kernel
            clients=max(0, head["clients"] - 1),
        )
        return out

    def close(self) -> None:
        """The cluster went with its kernel: drop the connection, and tell its watchers
        (a dashboard view of it then says it is gone)."""
        with self._lock:
            engine, self._engine = self._engine, None
            self._unsubscribe = None
            self._cancel_linger()
        if engine is not None:
            with contextlib.suppress(Exception):
                engine.client.close()
        self._set_state("stopped")


def _sum_resources(nodes: list[dict[str, Any]]) -> dict[str, float]:
    total: dict[str, float] = {}
    for node in nodes:
        for key, value in (node.get("Resources") or {}).items():
            total[key] = total.get(key, 0.0) + float(value)
    return total


def sweep_stale_registries() -> None:
    """Remove the registries of Jupyter servers that died without cleaning up."""
    for directory in sf.user_root().glob("kernels-*"):
        pid = directory.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not sf.pid_alive(int(pid)):
            sf.remove_session_dir(directory)


class KernelClusters:
    """The registry of this server's kernels' clusters, kept current by a poller thread.

    ``on_change(event)`` gets ``{"type": "clusters", "clusters": [...], "time": t}`` each
    time one appears or goes (from the poller thread).
    """

    def __init__(
        self, on_change: Callable[[dict[str, Any]], None], task_capacity: int = 5000
    ) -> None:
        sweep_stale_registries()
        self.directory = kernel_registry.create(sf.user_root() / f"kernels-{os.getpid()}")
        self._env_before = os.environ.get(kernel_registry.ENV)
        os.environ[kernel_registry.ENV] = str(self.directory)
        self._on_change = on_change
        self._capacity = task_capacity
        self._clusters: dict[str, KernelCluster] = {}
        self._lock = threading.Lock()
        self._polling = threading.Lock()  # one look at the registry at a time
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll_loop, name="nbray-kernels", daemon=True)
        self._thread.start()

    def get(self, cluster_id: str) -> KernelCluster | None:
        self.poll()  # a cluster that went a moment ago is not served
        with self._lock:
            return self._clusters.get(cluster_id)

    def list(self) -> list[KernelCluster]:
        self.poll()
        with self._lock:
            return list(self._clusters.values())

    def poll(self) -> bool:
        """Take in the registry's records now; True when the list changed."""
        with self._polling:
            return self._poll()

    def _poll(self) -> bool:
        records = {r["id"]: r for r in kernel_registry.read_all(self.directory)}
        with self._lock:
            gone = [c for cid, c in self._clusters.items() if cid not in records]
            new = [
                KernelCluster(r, self._capacity)
                for cid, r in records.items()
                if cid not in self._clusters
            ]
            for c in gone:
                del self._clusters[c.id]
            for c in new:
                self._clusters[c.id] = c
            listing = [c.describe() for c in self._clusters.values()]
        for c in gone:
            c.close()
        if gone or new:
            self._on_change({"type": "clusters", "clusters": listing, "time": time.time()})
        return bool(gone or new)

    def _poll_loop(self) -> None:
        while not self._stop.wait(POLL):
            try:
                self.poll()
            except Exception:
                log.exception("nbray: reading the kernels' cluster registry failed")

    def shutdown(self) -> None:
        self._stop.set()
        with self._lock:
            clusters, self._clusters = list(self._clusters.values()), {}
        for c in clusters:
            c.close()
        sf.remove_session_dir(self.directory)
        if os.environ.get(kernel_registry.ENV) == str(self.directory):
            if self._env_before is None:
                os.environ.pop(kernel_registry.ENV, None)
            else:
                os.environ[kernel_registry.ENV] = self._env_before
