"""A real JupyterHub with two real Unix users, for tests/hub.

    fixture ─▶ HubUsers: `useradd` nbrayhub-a, nbrayhub-b (homes 0700 under a 0711 base dir)
            ─▶ user_python(): a Python those users can run (this venv's, or a shim venv)
            ─▶ start_hub(): `python -m jupyterhub` (own process group) on loopback ports;
               it starts configurable-http-proxy (npm, `make hub-proxy` puts it in
               .venv/node) and, per user, `jupyterhub.singleuser` as that user
               (LocalProcessSpawner switches uid), with nbray's server extension enabled
               by the package's jupyter-config
            ─▶ stop_hub(): SIGTERM (the Hub stops the servers and the proxy), then SIGKILL
               whatever of its process group or the users' processes is left

Needs root (to create users and switch uid). Without it, or without jupyterhub or the
proxy, the tests skip locally and fail with CI=true (browser_support.require).
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import secrets
import shutil
import signal
import stat
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
from browser_support import REPO_ROOT, free_port, require

USERS = ("nbrayhub-a", "nbrayhub-b")
PASSWORD = secrets.token_urlsafe(12)
CHP = REPO_ROOT / ".venv" / "node" / "node_modules" / ".bin" / "configurable-http-proxy"
HUB_START_TIMEOUT = 60.0
SPAWN_TIMEOUT = 90.0


@dataclass
class HubUser:
    name: str
    uid: int
    gid: int
    home: Path


def require_hub_prerequisites() -> None:
    require("root (tests/hub create Unix users and switch uid)", os.geteuid() == 0, "run as root")
    for tool in ("useradd", "userdel"):
        require(tool, shutil.which(tool) is not None, "install Debian's passwd package")
    try:
        import jupyterhub  # noqa: F401
    except ImportError:
        require("the jupyterhub package", False, "run `make install` (the test extra)")
    require(
        f"configurable-http-proxy ({CHP})",
        CHP.exists() and shutil.which("node") is not None,
        "run `make hub-proxy` (npm installs it into .venv/node)",
    )


def _run(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


def _kill_user_processes(uid: int) -> None:
    for proc in psutil.process_iter(["uids"]):
        with contextlib.suppress(psutil.Error):
            if proc.info["uids"] and proc.info["uids"].real == uid:
                proc.kill()


def user_processes(uid: int) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["uids"]):
        with contextlib.suppress(psutil.Error):
            if proc.info["uids"] and proc.info["uids"].real == uid:
                found.append(proc)
    return found


@contextlib.contextmanager
def hub_users(base: Path) -> Iterator[dict[str, HubUser]]:
    """Create the two test users (a leftover of an interrupted run is removed first), with
    private homes under ``base``; ``userdel`` them afterwards."""
    users: dict[str, HubUser] = {}
    try:
        for name in USERS:
            with contextlib.suppress(KeyError):
                _kill_user_processes(pwd.getpwnam(name).pw_uid)
                _run(["userdel", "-f", name])
            home = base / name
            done = _run(["useradd", "-M", "-U", "-d", str(home), "-s", "/usr/sbin/nologin", name])
            assert done.returncode == 0, f"useradd {name}: {done.stderr}"
            entry = pwd.getpwnam(name)
            home.mkdir(mode=0o700)
            os.chown(home, entry.pw_uid, entry.pw_gid)
            users[name] = HubUser(name, entry.pw_uid, entry.pw_gid, home)
        yield users
    finally:
        for user in users.values():
            _kill_user_processes(user.uid)
            # the per-user root nbray made (sessions inside are checked by the fixture)
            shutil.rmtree(nbray_root(user), ignore_errors=True)
            done = _run(["userdel", "-f", user.name])
            assert done.returncode == 0, f"userdel {user.name}: {done.stderr}"


def nbray_root(user: HubUser) -> Path:
    """Where nbray keeps ``user``'s sessions (their servers have no TMPDIR or NBRAY_TMPDIR)."""
    return Path("/tmp") / f"nbray-{user.uid}"


def _runs_as(user: HubUser, python: str) -> str:
    """'' when ``user`` can run ``python`` with nbray and jupyterhub importable, else why not."""
    try:
        done = subprocess.run(
            [python, "-c", "import nbray.server_ext, jupyterhub.singleuser, jupyterlab"],
            capture_output=True,
            text=True,
            timeout=60,
            user=user.uid,
            group=user.gid,
            extra_groups=[],
            cwd="/",
            env={"PATH": "/usr/bin:/bin", "HOME": str(user.home)},
        )
    except PermissionError as exc:
        return str(exc)
    return "" if done.returncode == 0 else done.stderr.strip().splitlines()[-1]


def user_python(user: HubUser, base: Path) -> Path:
    """A Python the Hub's users can run, with this venv's packages: the venv's own when its
    interpreter is reachable by them, else a "shim" venv under ``base`` made from the
    system's Python of the same version (the venv's base interpreter can live in a private
    place, such as pyenv's under /root), whose .pth adds this venv's site-packages and whose
    share/ and etc/ point at the venv's (JupyterLab's assets, nbray's jupyter-config)."""
    own = Path(sys.executable)
    why = _runs_as(user, str(own))
    if not why:
        return own
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    system = shutil.which(version, path="/usr/local/bin:/usr/bin")
    require(
        f"a {version} that other users can run (this venv's interpreter {own} is not: {why})",
        system is not None,
        f"install Debian's {version}, or build the venv from a Python outside private dirs",
    )
    shim = base / "python"
    done = _run([str(system), "-m", "venv", "--without-pip", str(shim)])
    assert done.returncode == 0, f"{system} -m venv: {done.stderr}"
    purelib = Path(sysconfig.get_paths()["purelib"])  # this venv's site-packages
    shim_lib = shim / "lib" / version / "site-packages"
    (shim_lib / "_nbray_worktree_venv.pth").write_text(
        f"import site; site.addsitedir({str(purelib)!r})\n"
    )
    for name in ("share", "etc"):
        (shim / name).symlink_to(Path(sys.prefix) / name)
    python = shim / "bin" / "python"
    why = _runs_as(user, str(python))
    require(
        f"a Python for the Hub's users (the shim {python} failed: {why})",
        not why,
        f"make {REPO_ROOT} readable and traversable by other users",
    )
    return python


@dataclass
class Hub:
    """A running JupyterHub: ``url`` is the proxy's public URL (ends with '/')."""

    url: str
    api_url: str
    token: str  # a service token with admin scopes, for the Hub's REST API
    process: subprocess.Popen[bytes]
    log: Path
    users: dict[str, HubUser] = field(default_factory=dict)
    proxy_api_port: int = 0
    proxy_token: str = ""
    python: Path = Path(sys.executable)  # what the users' servers run

    def api(self, path: str, method: str = "GET", body: Any = None) -> Any:
        req = urllib.request.Request(
            f"{self.api_url}{path}",
            data=None if body is None else json.dumps(body).encode(),
            method=method,
            headers={"Authorization": f"token {self.token}"},
        )
        with urllib.request.urlopen(req, timeout=30) as resp:
            data = resp.read()
        return json.loads(data) if data else None

    def proxy_routes(self) -> dict[str, Any]:
        """configurable-http-proxy's routing table, with each route's last_activity (what
        the Hub polls every ``JupyterHub.last_activity_interval``)."""
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.proxy_api_port}/api/routes",
            headers={"Authorization": f"token {self.proxy_token}"},
        )
        with urllib.request.urlopen(req, timeout=30) as resp:
            return dict(json.loads(resp.read()))

    def server_ready(self, name: str) -> bool:
        model = self.api(f"users/{name}")
        server = model.get("servers", {}).get("", {})
        return bool(server.get("ready"))


HUB_CONFIG = """
c = get_config()  # noqa
c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = {proxy_port}
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = {hub_port}
c.JupyterHub.db_url = "sqlite:///{base}/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = "{base}/jupyterhub_cookie_secret"
c.JupyterHub.pid_file = "{base}/jupyterhub.pid"
c.ConfigurableHTTPProxy.command = [{chp!r}]
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{proxy_api_port}"
c.ConfigurableHTTPProxy.auth_token = {proxy_token!r}
c.JupyterHub.authenticator_class = "dummy"
c.DummyAuthenticator.password = {password!r}
c.Authenticator.allowed_users = {users!r}
c.JupyterHub.spawner_class = "localprocess"
c.Spawner.cmd = [{python!r}, "-m", "jupyterhub.singleuser"]
c.Spawner.args = [
    "--LabApp.news_url=None",
    "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    "--NbrayServer.num_cpus=1",
]
c.Spawner.default_url = "/lab"
c.Spawner.start_timeout = {spawn_timeout}
c.Spawner.http_timeout = {spawn_timeout}
c.Spawner.environment = {{
    "PATH": {path!r},
    # the single-user server tells the Hub its activity every second (default 300 s)
    "JUPYTERHUB_ACTIVITY_INTERVAL": "1",
}}
# The Hub also polls the proxy's per-route activity (every 300 s by default). Off here, so
# the Hub's last_activity comes only from the single-user server's own reports: what the
# tests check is that nbray's routes count as activity inside the server.
c.JupyterHub.last_activity_interval = 0
c.JupyterHub.services = [{{"name": "nbray-tests", "api_token": {token!r}}}]
c.JupyterHub.load_roles = [
    {{
        "name": "nbray-tests",
        "scopes": ["admin:users", "admin:servers", "tokens", "read:users:activity"],
        "services": ["nbray-tests"],
    }}
]
"""


def start_hub(base: Path, users: dict[str, HubUser], python: Path) -> Hub:
    """Write the Hub's config (0600) under ``base`` and start it; returns once its API
    answers. The proxy's public port is the Hub's URL."""
    proxy_port, hub_port, proxy_api_port = free_port(), free_port(), free_port()
    token, proxy_token = secrets.token_hex(32), secrets.token_hex(32)
    hub_dir = base / "hub"
    hub_dir.mkdir(mode=0o700)
    config = hub_dir / "jupyterhub_config.py"
    fd = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(
            HUB_CONFIG.format(
                proxy_port=proxy_port,
                hub_port=hub_port,
                proxy_api_port=proxy_api_port,
                base=hub_dir,
                chp=str(CHP),
                proxy_token=proxy_token,
                password=PASSWORD,
                users=set(users),
                python=str(python),
                spawn_timeout=int(SPAWN_TIMEOUT),
                path=f"{python.parent}:/usr/local/bin:/usr/bin:/bin",
                token=token,
            )
        )
    log = hub_dir / "jupyterhub.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NBRAY_", "JUPYTERHUB_"))}
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyterhub", "-f", str(config)],
        cwd=hub_dir,
        stdout=open(log, "ab"),  # the child keeps it
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    hub = Hub(
        f"http://127.0.0.1:{proxy_port}/",
        f"http://127.0.0.1:{proxy_port}/hub/api/",
        token,
        proc,
        log,
        users,
        proxy_api_port,
        proxy_token,
        python,
    )
    deadline = time.monotonic() + HUB_START_TIMEOUT
    while True:
        if proc.poll() is not None:
            raise AssertionError(f"jupyterhub exited ({proc.returncode}):\n{tail(log)}")
        with contextlib.suppress(OSError, urllib.error.HTTPError):
            hub.api("")
            return hub
        if time.monotonic() > deadline:
            stop_hub(hub)
            raise AssertionError(f"jupyterhub did not answer:\n{tail(log)}")
        time.sleep(0.3)


def tail(path: Path, lines: int = 60) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return f"(no log: {exc})"


def start_server(hub: Hub, name: str) -> None:
    """Spawn ``name``'s single-user server through the Hub's API and wait until it is ready."""
    with contextlib.suppress(urllib.error.HTTPError):  # 400: already running
        hub.api(f"users/{name}/server", method="POST", body={})
    deadline = time.monotonic() + SPAWN_TIMEOUT
    while not hub.server_ready(name):
        if time.monotonic() > deadline:
            raise AssertionError(f"{name}'s server did not start:\n{tail(hub.log)}")
        time.sleep(0.3)


def stop_hub(hub: Hub, timeout: float = 30.0) -> None:
    """SIGTERM the Hub (it stops the users' servers and the proxy it started), then
    SIGKILL its process group and the users' processes if anything lingers."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(hub.process.pid, signal.SIGTERM)
    try:
        hub.process.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(hub.process.pid, signal.SIGKILL)
        hub.process.wait(5)
        raise AssertionError(f"jupyterhub did not stop on SIGTERM:\n{tail(hub.log)}") from None


def leftover_processes(hub: Hub, kill: bool = False) -> list[str]:
    """Processes of the Hub's process group, of its proxy (a session of its own) or of its
    users that still run; ``kill``: SIGKILL them too (the last sweep of a teardown)."""
    left = []
    for proc in psutil.process_iter(["pid", "uids", "cmdline"]):
        with contextlib.suppress(psutil.Error):
            mine = os.getpgid(proc.info["pid"]) == hub.process.pid
            theirs = proc.info["uids"] and proc.info["uids"].real in {
                u.uid for u in hub.users.values()
            }
            cmdline = " ".join(proc.info["cmdline"] or [])
            proxy = "configurable-http-proxy" in cmdline and str(hub.proxy_api_port) in cmdline
            if (mine or theirs or proxy) and proc.status() != psutil.STATUS_ZOMBIE:
                left.append(f"{proc.info['pid']}: {cmdline}")
                if kill:
                    proc.kill()
    return left


@contextlib.contextmanager
def traversable(path: Path) -> Iterator[None]:
    """Let other users pass through (o+x, not list) each directory above and at ``path``
    that they cannot pass now, for the Hub's users to run this checkout's venv (a CI clone
    may live below a root-only directory); the modes are put back after."""
    changed: list[tuple[Path, int]] = []
    try:
        for directory in [*reversed(path.resolve().parents), path.resolve()]:
            mode = stat.S_IMODE(directory.stat().st_mode)
            if not mode & stat.S_IXOTH:
                directory.chmod(mode | stat.S_IXOTH)
                changed.append((directory, mode))
        yield
    finally:
        for directory, mode in reversed(changed):
            directory.chmod(mode)


def private_base() -> Path:
    """A directory for the Hub's files and the users' homes: traversable by the users
    (0711), not listable; removed by the caller."""
    base = Path(tempfile.mkdtemp(prefix="nbhub", dir="/tmp"))
    base.chmod(0o711)
    assert stat.S_IMODE(base.stat().st_mode) == 0o711
    return base
