"""`nbray up` / `nbray down` for the Jupyter server: the REST API's SSH cluster.

    POST ssh/up {cluster fields} ──spec.from_dict (checked here: 400 on a bad field)──▶
        <user dir>/ssh-<name>.json (0600) ──▶ child `python -m nbray._compose.cli up FILE`
        its "  [host] step: status" lines ──▶ per-host progress; exit 0 ──▶ "up", else
        "failed" with its message (host, step, remote output)
    "up" ──▶ child `python -m nbray.server_ext.ray_nodes` ──"node" events──▶ node liveness
        in status() and the panel's event stream (``on_event``)
    POST ssh/down ──▶ child `python -m nbray._compose.cli down FILE` ──▶ "down"

Provisioning runs in child processes, so neither SSH nor Ray blocks the server's event
loop or runs in its process; ``shutdown`` (server stop) ends the watcher, and leaves a
cluster that is up running (it is recorded: `nbray down FILE` stops it).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from nbray._compose.cluster.spec import ClusterSpec, from_dict
from nbray._engines.ray import record
from nbray._wire import session_files as sf

__all__ = ["SshCluster", "SshClusterError"]

_PROGRESS = re.compile(r"^  \[(?P<host>[^\]]+)\] (?P<step>[^:]+): (?P<status>.*)$")


class SshClusterError(RuntimeError):
    """Raised when an action does not fit the state (up while up, down while down)."""


class SshCluster:
    """One SSH cluster at a time, provisioned by child processes; thread-safe."""

    def __init__(self, on_event: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.on_event = on_event
        self.state = "down"  # down | starting | up | failed | stopping
        self.error = ""
        self.name = ""
        self.cluster_file = ""
        self.hosts: dict[str, dict[str, str]] = {}
        self.nodes: dict[str, dict[str, Any]] = {}
        self._proc: subprocess.Popen[str] | None = None
        self._watcher: subprocess.Popen[str] | None = None
        self._action = ""  # the last child: "up" or "down"
        self._lock = threading.RLock()

    # --- actions -------------------------------------------------------------------------

    def up(self, fields: Any) -> dict[str, Any]:
        """Check ``fields`` (raises ClusterFileError) and start `nbray up` on them."""
        with self._lock:
            self._adopt_record()
            if self.state in ("starting", "up", "stopping"):
                raise SshClusterError(f"cluster {self.name!r} is {self.state}: bring it down first")
            name = str(fields.get("name", "default")) if isinstance(fields, dict) else "x"
            path = sf.user_root() / f"ssh-{re.sub(r'[^A-Za-z0-9_-]', '_', name)}.json"
            spec: ClusterSpec = from_dict(fields, path, where="cluster description")
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as out:
                json.dump(fields, out, indent=2)
            self.name, self.cluster_file, self.error = spec.name, str(path), ""
            self.hosts = {h.label: {"step": "waiting", "status": ""} for h in spec.hosts}
            self.nodes = {}
            self._run("up", "starting", "up")
            return self.status()

    def down(self) -> dict[str, Any]:
        """Start `nbray down` on the cluster that is up (or failed half way)."""
        with self._lock:
            self._adopt_record()
            if self.state in ("down", "starting", "stopping") or not self.cluster_file:
                raise SshClusterError(f"no SSH cluster to bring down (it is {self.state})")
            if self.state == "failed" and self._action == "up":
                # a failed `nbray up` already stopped what it started: only forget it
                self.state, self.error, self.hosts = "down", "", {}
                return self.status()
            self._stop_watcher()
            self._run("down", "stopping", "down")
            return self.status()

    def wait(self, timeout: float) -> dict[str, Any]:
        """Wait until the running `nbray up`/`down` is done (for tests and the CLI)."""
        proc = self._proc
        if proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout)
        deadline = time.monotonic() + 5
        while self._proc is not None and time.monotonic() < deadline:
            time.sleep(0.05)  # the reader thread records the outcome
        return self.status()

    def status(self) -> dict[str, Any]:
        with self._lock:
            self._adopt_record()
            current = record.read()
            return {
                "state": self.state,
                "name": self.name,
                "cluster_file": self.cluster_file,
                "error": self.error,
                "hosts": [{"host": h, **p} for h, p in self.hosts.items()],
                "address": current["address"] if current and self.state == "up" else "",
                "nodes": sorted(self.nodes.values(), key=lambda n: str(n.get("address"))),
            }

    def shutdown(self) -> None:
        """The server stops: end the watcher and any `nbray up`/`down` still running."""
        with self._lock:
            self._stop_watcher()
            proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(30)

    # --- child processes -----------------------------------------------------------------

    def _adopt_record(self) -> None:
        """A cluster brought up from the command line is the server's too."""
        if self.state != "down" or self._proc is not None:
            return
        current = record.read()
        if current is None:
            return
        self.name, self.cluster_file = current["name"], current["cluster_file"]
        self.state = "up"
        self._start_watcher()

    def _run(self, action: str, busy: str, done: str) -> None:
        self.state, self._action = busy, action
        proc = subprocess.Popen(
            [sys.executable, "-m", "nbray._compose.cli", action, self.cluster_file],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._proc = proc
        threading.Thread(
            target=self._follow, args=(proc, done), name=f"nbray-ssh-{action}", daemon=True
        ).start()

    def _follow(self, proc: subprocess.Popen[str], done: str) -> None:
        assert proc.stdout is not None and proc.stderr is not None
        for line in proc.stdout:
            m = _PROGRESS.match(line.rstrip("\n"))
            if m:
                with self._lock:
                    self.hosts[m["host"]] = {"step": m["step"], "status": m["status"]}
        err = proc.stderr.read()
        rc = proc.wait()
        with self._lock:
            self._proc = None
            if rc == 0:
                self.state = done
                if done == "up":
                    self._start_watcher()
                else:
                    self.nodes = {}
            else:
                self.state = "failed"
                self.error = err.strip() or f"nbray exited with {rc}"

    def _start_watcher(self) -> None:
        self._stop_watcher()
        proc = subprocess.Popen(
            [sys.executable, "-m", "nbray.server_ext.ray_nodes"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self._watcher = proc
        threading.Thread(
            target=self._watch, args=(proc,), name="nbray-ssh-nodes", daemon=True
        ).start()

    def _watch(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("type") == "watcher":  # it could not connect to the cluster
                with self._lock:
                    self.error = f"cannot follow the cluster's nodes: {event.get('error')}"
                continue
            if event.get("type") != "node":
                continue
            with self._lock:
                self.nodes[event["node_id"]] = {
                    k: event.get(k) for k in ("node_id", "address", "state", "reason", "time")
                }
            if self.on_event is not None:
                self.on_event(event)
        proc.wait()

    def _stop_watcher(self) -> None:
        proc, self._watcher = self._watcher, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
