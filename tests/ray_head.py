"""A real Ray head on loopback, as a user's existing cluster: `ray start --head` with token
authentication, a Ray Client server port and Ray's dashboard, its processes in one process
group that the fixture kills (no `ray stop`, which would stop every Ray on the machine).

    with RayHead.start(tmp) as head:
        head.client_address      # "ray://127.0.0.1:PORT"
        head.dashboard_url       # "http://127.0.0.1:PORT"
        head.env                 # RAY_AUTH_MODE / NBRAY_RAY_TOKEN_FILE for a client process
"""

from __future__ import annotations

import importlib.util
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from ssh_hosts import kill_all, node_processes

START_TIMEOUT = 180  # Ray's start takes ~10-30 s here; more on a loaded machine
# Ray Client's proxier forks a server process per client while its gRPC threads run; with
# gRPC's fork handlers on, that child sometimes died at once here ("Starting Ray client
# server failed", 1 connection in 10); with them off, 32 of 32 connected
HEAD_ENV = {"GRPC_ENABLE_FORK_SUPPORT": "0"}


def running_head() -> Iterator[RayHead]:
    """A module fixture's body: a head for the module's tests, nothing of it left after
    (skipped where Ray is not installed; under CI=true that fails instead)."""
    if importlib.util.find_spec("ray") is None:
        if os.environ.get("CI"):
            pytest.fail("Ray is not installed: make install installs the test,ray extras")
        pytest.skip("Ray is not installed")
    try:
        head = RayHead.start()
    except RuntimeError:  # `ray start` gave up waiting for its own raylet (a loaded machine)
        head = RayHead.start()
    with head:
        yield head
    assert not head.processes(), "the Ray head left processes"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RayHead:
    root: Path  # short: Ray's socket paths below it must stay under 108 characters
    token_file: Path
    gcs_port: int
    client_port: int
    dashboard_port: int
    proc: subprocess.Popen[bytes] | None = None
    log: Any = field(default=None, repr=False)

    @classmethod
    def start(cls, num_cpus: int = 2) -> RayHead:
        root = Path(tempfile.mkdtemp(prefix="nbrh-"))
        token = root / "token"
        token.write_text(secrets.token_hex(32))
        token.chmod(0o600)
        head = cls(root, token, free_port(), free_port(), free_port())
        ray = str(Path(sys.executable).with_name("ray"))
        head.log = (root / "ray-start.log").open("wb")
        head.proc = subprocess.Popen(
            [
                ray,
                "start",
                "--head",
                "--block",
                "--node-ip-address=127.0.0.1",
                f"--port={head.gcs_port}",
                f"--ray-client-server-port={head.client_port}",
                "--dashboard-host=127.0.0.1",
                f"--dashboard-port={head.dashboard_port}",
                "--include-dashboard=true",
                f"--num-cpus={num_cpus}",
                f"--temp-dir={root / 'r'}",
                "--disable-usage-stats",
            ],
            cwd=root,
            env={
                **os.environ,
                **HEAD_ENV,
                "RAY_AUTH_MODE": "token",
                "RAY_AUTH_TOKEN_PATH": str(token),
            },
            stdout=head.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            head._wait_until_serving()
        except BaseException:
            head.stop()
            raise
        return head

    def _wait_until_serving(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"ray start exited {self.proc.returncode}:\n{self.output()}")
            if self._answers(self.client_port) and self.dashboard_get("api/version") is not None:
                return
            time.sleep(0.5)
        raise TimeoutError(f"the Ray head did not serve in {START_TIMEOUT} s:\n{self.output()}")

    @staticmethod
    def _answers(port: int) -> bool:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            return False

    def dashboard_get(self, path: str) -> bytes | None:
        """GET a path of Ray's dashboard with the token; None until it answers 200."""
        request = urllib.request.Request(
            f"{self.dashboard_url}/{path}",
            headers={"Authorization": f"Bearer {self.token_file.read_text()}"},
        )
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return bytes(response.read())
        except (OSError, urllib.error.HTTPError):
            return None

    def output(self) -> str:
        """The end of `ray start`'s output and of the Ray Client servers' error logs."""
        text = (self.root / "ray-start.log").read_text(errors="replace")[-3000:]
        for log in sorted((self.root / "r").glob("session_latest/logs/ray_client_server*")):
            text += f"\n--- {log.name}\n" + log.read_text(errors="replace")[-8000:]
        return text

    @property
    def client_address(self) -> str:
        return f"ray://127.0.0.1:{self.client_port}"

    @property
    def dashboard_url(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    @property
    def env(self) -> dict[str, str]:
        """What a client process needs: token mode and the token (nbray reads the file)."""
        return {"RAY_AUTH_MODE": "token", "NBRAY_RAY_TOKEN_FILE": str(self.token_file)}

    def processes(self) -> list[Any]:
        return node_processes(str(self.root))

    def stop(self) -> None:
        """Kill every process of the head (its process group, and any that left it)."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(timeout=30)
        deadline = time.monotonic() + 30
        while (left := self.processes()) and time.monotonic() < deadline:
            kill_all(left)
            time.sleep(0.2)
        if self.log is not None:
            self.log.close()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> RayHead:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
