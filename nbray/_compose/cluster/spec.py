"""The cluster file of `nbray up` / `nbray down`: a small TOML file, checked field by field.

    cluster.toml ──load()──▶ ClusterSpec(head: HostSpec, workers: [HostSpec], ...)

Example (README "Scale out" has the full one)::

    name = "lab"
    python = "/opt/nbray/bin/python"     # a Python with nbray[ray], the same Ray as here
    # or: python = "python3" and install = true: `nbray up` makes a venv on every host and
    # installs nbray[ray] there (a wheel built here, Ray at this machine's version)

    [ssh]
    user = "ubuntu"
    identity_file = "~/.ssh/id_ed25519"

    [head]
    host = "10.0.0.5"

    [[workers]]
    host = "10.0.0.6"
"""

from __future__ import annotations

import hashlib
import json
import socket
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["ClusterFileError", "ClusterSpec", "HostSpec", "from_dict", "load"]

_TOP = {
    "name",
    "python",
    "setup_commands",
    "install",
    "venv",
    "wheel",
    "object_store_memory",
    "ray_port",
    "dashboard_port",
    "ssh",
    "head",
    "workers",
}
_SSH = {"user", "identity_file", "port", "known_hosts", "trust_on_first_use", "connect_timeout"}
_HOST = {
    "host",
    "port",
    "user",
    "python",
    "install",
    "node_ip",
    "num_cpus",
    "num_gpus",
    "resources",
}


class ClusterFileError(ValueError):
    """Raised when a cluster file cannot be read or has a wrong or missing field."""


@dataclass(frozen=True)
class HostSpec:
    """One machine of the cluster, with its SSH settings resolved."""

    host: str
    port: int
    user: str
    python: str
    node_ip: str
    num_cpus: float | None = None
    num_gpus: float | None = None
    resources: dict[str, float] = field(default_factory=dict)
    install: bool = False  # make a venv with nbray[ray] from ``python`` on `nbray up`

    @property
    def label(self) -> str:
        return self.host if self.port == 22 else f"{self.host}:{self.port}"


@dataclass(frozen=True)
class ClusterSpec:
    """A parsed cluster file."""

    name: str
    path: Path
    head: HostSpec
    workers: tuple[HostSpec, ...]
    identity_file: str
    known_hosts: str
    trust_on_first_use: bool
    connect_timeout: float
    setup_commands: tuple[str, ...]
    object_store_memory: int | None
    ray_port: int
    dashboard_port: int
    venv: str = ""  # where install = true puts the venv ("": <remote_dir>/venv)
    wheel: str = ""  # the nbray wheel to install ("": built here from nbray's source)

    @property
    def hosts(self) -> tuple[HostSpec, ...]:
        return (self.head, *self.workers)

    @property
    def address(self) -> str:
        return f"{self.head.node_ip}:{self.ray_port}"

    def remote_dir(self, host: HostSpec) -> str:
        """The directory on ``host`` that holds everything nbray writes there (short, since
        Ray's socket paths below it must stay under 108 characters)."""
        key = f"{self.name}|{host.host}|{host.port}".encode()
        return f"$HOME/.nbray/ray-{hashlib.blake2b(key, digest_size=5).hexdigest()}"

    def venv_dir(self, host: HostSpec) -> str:
        """The venv that ``install = true`` creates on ``host``."""
        return self.venv or f"{self.remote_dir(host)}/venv"

    def ray_python(self, host: HostSpec) -> str:
        """The Python that runs Ray on ``host``: the installed venv's, or ``python``."""
        return f"{self.venv_dir(host)}/bin/python" if host.install else host.python


def load(path: str | Path) -> ClusterSpec:
    """Read and check a cluster file (TOML, or JSON when it ends in .json); raises
    ClusterFileError naming the field."""
    path = Path(path).expanduser()
    try:
        text = path.read_text()
        data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except FileNotFoundError:
        raise ClusterFileError(f"cluster file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ClusterFileError(f"cluster file {path} is not valid TOML: {exc}") from None
    except json.JSONDecodeError as exc:
        raise ClusterFileError(f"cluster file {path} is not valid JSON: {exc}") from None
    return from_dict(data, path)


def from_dict(data: Any, path: Path, where: str = "") -> ClusterSpec:
    """Check the fields of a cluster file given as a dict (a TOML file's tables, or the
    same as JSON from the REST API); relative paths are taken from ``path``'s folder."""
    where = where or f"cluster file {path}"
    if not isinstance(data, dict):
        raise ClusterFileError(f"{where}: the cluster description must be a table/object")
    _no_unknown(data, _TOP, where)
    ssh = _table(data, "ssh", where)
    _no_unknown(ssh, _SSH, f"{where} [ssh]")
    head = _table(data, "head", where)
    if not head:
        raise ClusterFileError(f"{where}: a [head] table with host = '...' is required")
    workers = data.get("workers", [])
    if not isinstance(workers, list) or not all(isinstance(w, dict) for w in workers):
        raise ClusterFileError(f"{where}: workers must be [[workers]] tables")
    python = _str(data, "python", where, "python3")
    defaults = {
        "port": _int(ssh, "port", f"{where} [ssh]", 22),
        "user": _str(ssh, "user", f"{where} [ssh]", ""),
        "python": python,
        "install": _bool(data, "install", where, False),
    }
    store = data.get("object_store_memory")
    if store is not None and (not isinstance(store, int) or store < 75 * 1024 * 1024):
        raise ClusterFileError(f"{where}: object_store_memory is bytes, at least 78643200")
    commands = data.get("setup_commands", [])
    if not isinstance(commands, list) or not all(isinstance(c, str) for c in commands):
        raise ClusterFileError(f"{where}: setup_commands must be a list of strings")
    return ClusterSpec(
        name=_name(data, where),
        path=path.resolve(),
        head=_host(head, defaults, f"{where} [head]"),
        workers=tuple(
            _host(w, defaults, f"{where} [[workers]] #{i + 1}") for i, w in enumerate(workers)
        ),
        identity_file=_path(_str(ssh, "identity_file", f"{where} [ssh]", ""), path),
        known_hosts=_path(_str(ssh, "known_hosts", f"{where} [ssh]", ""), path),
        trust_on_first_use=bool(ssh.get("trust_on_first_use", False)),
        connect_timeout=float(ssh.get("connect_timeout", 10)),
        setup_commands=tuple(commands),
        object_store_memory=store,
        ray_port=_int(data, "ray_port", where, 6379),
        dashboard_port=_int(data, "dashboard_port", where, 8265),
        venv=_remote_path(_str(data, "venv", where, "")),
        wheel=_path(_str(data, "wheel", where, ""), path),
    )


def _host(table: dict[str, Any], defaults: dict[str, Any], where: str) -> HostSpec:
    _no_unknown(table, _HOST, where)
    host = _str(table, "host", where, "")
    if not host:
        raise ClusterFileError(f"{where}: host = '...' is required")
    node_ip = _str(table, "node_ip", where, "")
    if not node_ip:
        try:
            node_ip = socket.gethostbyname(host)
        except OSError as exc:
            raise ClusterFileError(f"{where}: cannot resolve host {host!r}: {exc}") from None
    resources = table.get("resources", {})
    if not isinstance(resources, dict):
        raise ClusterFileError(f"{where}: resources must be a table of name = amount")
    return HostSpec(
        host=host,
        port=_int(table, "port", where, defaults["port"]),
        user=_str(table, "user", where, defaults["user"]),
        python=_str(table, "python", where, defaults["python"]),
        node_ip=node_ip,
        num_cpus=table.get("num_cpus"),
        num_gpus=table.get("num_gpus"),
        resources={str(k): float(v) for k, v in resources.items()},
        install=_bool(table, "install", where, defaults["install"]),
    )


def _name(data: dict[str, Any], where: str) -> str:
    name = _str(data, "name", where, "default")
    if not name.replace("-", "").replace("_", "").isalnum():
        raise ClusterFileError(f"{where}: name may hold letters, digits, - and _ only")
    return name


def _no_unknown(table: dict[str, Any], known: set[str], where: str) -> None:
    unknown = set(table) - known
    if unknown:
        raise ClusterFileError(
            f"{where}: unknown field(s) {', '.join(sorted(unknown))}; "
            f"known: {', '.join(sorted(known))}"
        )


def _table(data: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise ClusterFileError(f"{where}: {key} must be a [{key}] table")
    return value


def _str(data: dict[str, Any], key: str, where: str, default: str) -> str:
    value = data.get(key, default)
    if not isinstance(value, str):
        raise ClusterFileError(f"{where}: {key} must be a string, got {value!r}")
    return value


def _bool(data: dict[str, Any], key: str, where: str, default: bool) -> bool:
    value = data.get(key, default)
    if not isinstance(value, bool):
        raise ClusterFileError(f"{where}: {key} must be true or false, got {value!r}")
    return value


def _int(data: dict[str, Any], key: str, where: str, default: int) -> int:
    value = data.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 < value < 65536:
        raise ClusterFileError(f"{where}: {key} must be a port number, got {value!r}")
    return value


def _remote_path(value: str) -> str:
    """A path on the hosts, for a double-quoted shell word: ``~/x`` becomes ``$HOME/x``."""
    return "$HOME" + value[1:] if value == "~" or value.startswith("~/") else value


def _path(value: str, cluster_file: Path) -> str:
    if not value:
        return ""
    p = Path(value).expanduser()
    return str(p if p.is_absolute() else (cluster_file.parent / p).resolve())
