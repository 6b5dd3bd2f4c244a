"""The cluster file of `nbray up`: parsed field by field, with errors that name the field."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from nbray._compose.cluster.spec import ClusterFileError, load

GOOD = """
name = "lab"
python = "/opt/nbray/bin/python"
object_store_memory = 100_000_000

[ssh]
user = "ubuntu"
identity_file = "keys/id"
port = 2222

[head]
host = "127.0.0.2"
num_cpus = 4

[[workers]]
host = "127.0.0.3"
port = 22
python = "/usr/bin/python3"
resources = { disk = 1 }
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cluster.toml"
    path.write_text(text)
    return path


def test_a_complete_file(tmp_path: Path) -> None:
    spec = load(write(tmp_path, GOOD))
    assert spec.name == "lab"
    assert spec.address == "127.0.0.2:6379"
    assert spec.identity_file == str(tmp_path / "keys" / "id")  # relative to the file
    assert not spec.trust_on_first_use
    head, worker = spec.hosts
    assert (head.host, head.port, head.user, head.python, head.num_cpus) == (
        "127.0.0.2",
        2222,
        "ubuntu",
        "/opt/nbray/bin/python",
        4,
    )
    assert (worker.port, worker.python, worker.resources) == (22, "/usr/bin/python3", {"disk": 1.0})
    assert spec.remote_dir(head) != spec.remote_dir(worker)
    assert spec.remote_dir(head).startswith("$HOME/.nbray/ray-")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name = 'x'\n", "a [head] table with host"),
        ("[head]\nhost = '127.0.0.1'\nnum_cpu = 2\n", "unknown field(s) num_cpu"),
        ("colour = 1\n[head]\nhost = '127.0.0.1'\n", "unknown field(s) colour"),
        ("[ssh]\nport = 'x'\n[head]\nhost = '127.0.0.1'\n", "port must be a port number"),
        ("name = 'a b'\n[head]\nhost = '127.0.0.1'\n", "name may hold"),
        ("[head]\nhost = '127.0.0.1'\n[[workers]]\nport = 22\n", "host = '...' is required"),
        ("[head\n", "not valid TOML"),
        ("[head]\nhost = 'no-such-host.invalid'\n", "cannot resolve host 'no-such-host.invalid'"),
    ],
)
def test_mistakes_name_the_field(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ClusterFileError, match=re.escape(message)):
        load(write(tmp_path, text))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ClusterFileError, match="does not exist"):
        load(tmp_path / "nope.toml")


def test_install_venv_and_ray_python(tmp_path: Path) -> None:
    text = GOOD.replace('name = "lab"', 'name = "lab"\ninstall = true\nvenv = "~/envs/nbray"')
    text = text.replace('host = "127.0.0.3"', 'host = "127.0.0.3"\ninstall = false')
    spec = load(write(tmp_path, text))
    head, worker = spec.hosts
    assert head.install and not worker.install  # per host overrides the cluster's
    assert spec.venv_dir(head) == "$HOME/envs/nbray"  # ~ becomes $HOME for the remote shell
    assert spec.ray_python(head) == "$HOME/envs/nbray/bin/python"
    assert spec.ray_python(worker) == "/usr/bin/python3"
    default = load(write(tmp_path, GOOD.replace('name = "lab"', 'name = "lab"\ninstall = true')))
    assert default.venv_dir(default.head) == default.remote_dir(default.head) + "/venv"


def test_install_must_be_a_boolean(tmp_path: Path) -> None:
    with pytest.raises(ClusterFileError, match="install must be true or false, got 'yes'"):
        load(write(tmp_path, GOOD.replace('name = "lab"', 'name = "lab"\ninstall = "yes"')))


def test_the_same_fields_as_json(tmp_path: Path) -> None:
    import json

    path = tmp_path / "cluster.json"
    path.write_text(json.dumps({"name": "j", "head": {"host": "127.0.0.2"}, "install": True}))
    spec = load(path)
    assert (spec.name, spec.head.host, spec.head.install) == ("j", "127.0.0.2", True)
    path.write_text("{not json")
    with pytest.raises(ClusterFileError, match="is not valid JSON"):
        load(path)
