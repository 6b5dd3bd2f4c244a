"""The SSH cluster through the server's REST API, on real sshd hosts (127.0.0.5, .6).

    POST ssh/up (bad fields) ──▶ 400 naming the field
    POST ssh/up (an unreachable head) ──▶ GET ssh/status: "failed", naming host and step
    POST ssh/up (two hosts) ──▶ per-host progress ──▶ "up", both nodes ALIVE
        ──▶ the worker's Ray processes killed ──▶ status and the event stream say DEAD
        ──▶ POST ssh/down ──▶ "down", no process left

Needs root and Debian's openssh-server (`make system-deps`); with CI=true it never skips.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import sys
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest
from server_support import until
from ssh_hosts import PORT, SshHosts, available, kill_all, node_processes
from tornado.httpclient import HTTPClientError
from tornado.websocket import WebSocketClientConnection

HEAD, WORKER = "127.0.0.5", "127.0.0.6"


@pytest.fixture
def private_tmp(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The record of `nbray up` and the server's files in a private, short directory."""
    short = tempfile.mkdtemp(prefix="nbs-")
    monkeypatch.setenv("NBRAY_TMPDIR", short)
    yield short
    shutil.rmtree(short, ignore_errors=True)


@pytest.fixture
def jp_server_config(private_tmp: str) -> dict[str, Any]:
    return {
        "ServerApp": {
            "jpserver_extensions": {"nbray.server_ext": True},
            "allow_unauthenticated_access": False,
        },
        "NbrayServer": {"autostart": "off"},
    }


def fields(hosts: SshHosts | None, head: str = HEAD, workers: tuple[str, ...] = ()) -> Any:
    return {
        "name": "rest",
        "python": sys.executable,
        "object_store_memory": 100_000_000,
        "ray_port": 6393,
        "dashboard_port": 8277,
        "ssh": {
            "user": "root",
            "port": PORT,
            "identity_file": str(hosts.client_key) if hosts else "/nonexistent",
            "known_hosts": str(hosts.known_hosts) if hosts else "/nonexistent",
            "connect_timeout": 5,
        },
        "head": {"host": head, "num_cpus": 1},
        "workers": [{"host": w, "num_cpus": 1} for w in workers],
    }


async def _post(jp_fetch: Any, path: str, body: Any) -> tuple[int, Any]:
    try:
        resp = await jp_fetch("nbray", "api", "ssh", path, method="POST", body=json.dumps(body))
    except HTTPClientError as exc:
        assert exc.response is not None
        return exc.code, json.loads(exc.response.body)
    return int(resp.code), json.loads(resp.body)


async def test_bad_fields_are_a_400_naming_the_field(jp_fetch: Any) -> None:
    code, body = await _post(jp_fetch, "up", {"head": {"host": HEAD}, "pyton": "x"})
    assert code == 400
    assert "unknown field(s) pyton" in body["message"]
    code, body = await _post(jp_fetch, "up", [1, 2])
    assert code == 400 and "must be a table/object" in body["message"]
    code, body = await _post(jp_fetch, "down", {})
    assert code == 409 and "no SSH cluster to bring down" in body["message"]


@pytest.mark.timeout(60)
async def test_a_failed_up_names_the_host_and_the_step(jp_fetch: Any, api: Any) -> None:
    code, body = await _post(jp_fetch, "up", fields(None, head="127.0.0.9"))
    assert code == 202 and body["state"] == "starting"
    status = await until(lambda: _settled(api), within=50)
    assert status["state"] == "failed", status
    assert f"host 127.0.0.9:{PORT}, step 'connect'" in status["error"]
    assert status["hosts"] == [{"host": f"127.0.0.9:{PORT}", "step": "connect", "status": "FAILED"}]


async def _settled(api: Any) -> Any:
    status = await api("ssh/status")
    return status if status["state"] not in ("starting", "stopping") else None


@pytest.fixture
def hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshHosts]:
    reason = available()
    if reason:
        if not os.environ.get("CI"):
            pytest.skip(reason)
        pytest.fail(f"SSH hosts cannot run: {reason}")
    h = SshHosts(tmp_path_factory.mktemp("ssh-api"), [HEAD, WORKER]).start()
    yield h
    h.stop()


@pytest.mark.timeout(300)
async def test_up_a_node_dies_down(
    hosts: SshHosts, jp_fetch: Any, jp_ws_fetch: Any, api: Any, private_tmp: str
) -> None:
    ws: WebSocketClientConnection = await jp_ws_fetch("nbray", "api", "events")
    try:
        code, body = await _post(jp_fetch, "up", fields(hosts, workers=(WORKER,)))
        assert code == 202, body
        assert {h["host"] for h in body["hosts"]} == {f"{HEAD}:{PORT}", f"{WORKER}:{PORT}"}
        status = await until(lambda: _settled(api), within=200)
        assert status["state"] == "up", status
        progress = {h["host"]: (h["step"], h["status"]) for h in status["hosts"]}
        assert progress[f"{HEAD}:{PORT}"][0] == "wait for every node"
        assert progress[f"{WORKER}:{PORT}"][0] == "start Ray worker"
        assert progress[f"{WORKER}:{PORT}"][1].startswith("ok")
        assert status["address"] == f"{HEAD}:6393"
        alive = await until(lambda: _nodes(api, "ALIVE", 2), within=60)
        assert {n["address"] for n in alive} == {HEAD, WORKER}

        # the worker "host" dies: its Ray processes killed
        marker = _host_dir(private_tmp, WORKER)
        victims = node_processes(marker)
        assert victims
        kill_all(victims)
        dead = await until(lambda: _nodes(api, "DEAD", 1), within=90)
        assert [n["address"] for n in dead] == [WORKER]
        # and the panel's event stream carried it
        seen = []
        while not any(e.get("state") == "DEAD" for e in seen):
            message = json.loads(await ws.read_message())
            seen += [e for e in message["events"] if e.get("type") == "node"]
        assert any(e["address"] == WORKER and e["state"] == "DEAD" for e in seen)
    finally:
        ws.close()
        if (await api("ssh/status"))["state"] in ("up", "failed"):
            await _post(jp_fetch, "down", {})
        status = await until(lambda: _settled(api), within=90)
    assert status["state"] == "down", status
    assert status["nodes"] == []
    assert not node_processes(_host_dir(private_tmp, HEAD))
    assert not node_processes(_host_dir(private_tmp, WORKER))


async def _nodes(api: Any, state: str, count: int) -> Any:
    nodes = [n for n in (await api("ssh/status"))["nodes"] if n["state"] == state]
    return nodes if len(nodes) >= count else None


def _host_dir(private_tmp: str, host: str) -> str:
    from pathlib import Path

    from nbray._compose.cluster.spec import load

    spec = load(Path(private_tmp) / f"nbray-{os.getuid()}" / "ssh-rest.json")
    h = next(h for h in spec.hosts if h.host == host)
    # the hosts' $HOME is root's real one (pytest-jupyter points HOME elsewhere here)
    return spec.remote_dir(h).replace("$HOME", pwd.getpwuid(os.getuid()).pw_dir)
