"""The registry through which a Jupyter server finds its kernels' own clusters: records
are private, written only where the server asked, and dropped with their owner."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from nbray._wire import kernel_registry

pytestmark = pytest.mark.timeout(30)

GONE_PID = 2**31 - 2  # above any pid_max: no such process


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_nothing_is_written_unless_a_server_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(kernel_registry.ENV, raising=False)
    assert kernel_registry.register("local", "unix:/x/sock", "/x") is None


def test_a_record_is_private_and_goes_on_unregister(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = kernel_registry.create(tmp_path / "kernels-1")
    assert _mode(directory) == 0o700
    monkeypatch.setenv(kernel_registry.ENV, str(directory))
    path = kernel_registry.register("ray", "127.0.0.1:6379", "/x", nodes=[{"NodeID": "n"}])
    assert path is not None and _mode(path) == 0o600
    (record,) = kernel_registry.read_all(directory)
    assert record["engine"] == "ray" and record["pid"] == os.getpid()
    assert record["nodes"] == [{"NodeID": "n"}] and path.stem == record["id"]
    kernel_registry.unregister(path)
    assert kernel_registry.read_all(directory) == []


def test_a_directory_others_can_read_is_not_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = tmp_path / "open"
    directory.mkdir(mode=0o755)
    directory.chmod(0o755)
    monkeypatch.setenv(kernel_registry.ENV, str(directory))
    assert kernel_registry.register("local", "unix:/x/sock", "/x") is None
    assert list(directory.iterdir()) == []


def test_records_of_gone_owners_and_broken_records_are_dropped(tmp_path: Path) -> None:
    directory = kernel_registry.create(tmp_path / "kernels-2")
    dead = directory / "aaaaaaaaaaaa.json"
    dead.write_text(json.dumps({"id": "aaaaaaaaaaaa", "pid": GONE_PID}))
    broken = directory / "bbbbbbbbbbbb.json"
    broken.write_text("{not json")
    renamed = directory / "cccccccccccc.json"  # a record whose name is not its id
    renamed.write_text(json.dumps({"id": "dddddddddddd", "pid": os.getpid()}))
    assert kernel_registry.read_all(directory) == []
    assert list(directory.iterdir()) == []
