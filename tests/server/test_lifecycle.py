"""The server extension owns the cluster: it starts with the server, is exported to
kernels, is stopped/started/restarted through REST, and leaves nothing when unloaded."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import psutil
import pytest
from nbray_testing import session_segments
from server_support import address_matches, left_behind, until
from tornado.httpclient import HTTPClientError

import nbray
from nbray.server_ext.app import NbrayServer

pytestmark = pytest.mark.timeout(90)


async def test_cluster_starts_with_server_and_is_exported(api: Any, jp_serverapp: Any) -> None:
    status = await api("cluster")
    assert status["state"] == "running"
    assert status["resources"]["CPU"] == 2.0
    assert psutil.pid_exists(status["head_pid"])
    # kernels started by this server inherit the address; it names the running cluster
    assert address_matches(status, os.environ["NBRAY_ADDRESS"])

    nodes = (await api("nodes"))["nodes"]
    assert len(nodes) == 1
    assert nodes[0]["Resources"]["CPU"] == 2.0
    # the first metrics sample arrives within about a second
    node = await until(
        lambda: _node_with_metrics(api),
    )
    assert node["metrics"]["memory_total"] > 0


async def _node_with_metrics(api: Any) -> Any:
    nodes = (await api("nodes"))["nodes"]
    return nodes[0] if nodes and "metrics" in nodes[0] else None


async def test_stop_start_restart_with_settings(api: Any, jp_serverapp: Any) -> None:
    first = await api("cluster")
    stopped = await api("cluster/stop", body={})
    assert stopped["state"] == "stopped"
    assert left_behind(first) == []  # the address link went with it
    assert (await api("nodes"))["nodes"] == []

    started = await api("cluster/start", body={"num_cpus": 1, "object_store_memory": 10**8})
    assert started["state"] == "running"
    assert started["resources"]["CPU"] == 1.0
    assert started["settings"]["object_store_memory"] == 10**8
    assert started["object_store"]["capacity_bytes"] == 10**8

    restarted = await api("cluster/restart", body={"num_cpus": 2})
    assert restarted["resources"]["CPU"] == 2.0
    assert restarted["head_pid"] != started["head_pid"]
    # the old cluster is gone (its address link now names the new one)
    assert left_behind(started) == [f"address {started['address']}"]
    # the address kernels use stays the same across restarts
    assert restarted["address"] == first["address"]


@pytest.mark.parametrize(
    ("path", "body", "code", "words"),
    [
        ("cluster/start", {}, 409, "already running"),
        ("cluster/restart", {"num_cpus": -1}, 400, "num_cpus must be positive"),
        ("cluster/restart", {"cpus": 2}, 400, "unknown setting"),
        ("cluster/start", [1], 400, "JSON object"),
        ("cluster/restart", {"num_gpus": 1.5}, 400, "whole number"),
    ],
)
async def test_bad_requests_say_what_is_wrong(
    jp_fetch: Any, path: str, body: Any, code: int, words: str
) -> None:
    with pytest.raises(HTTPClientError) as err:
        await jp_fetch("nbray", "api", *path.split("/"), method="POST", body=json.dumps(body))
    assert err.value.code == code
    assert err.value.response is not None
    assert words in err.value.response.body.decode()


async def test_not_json_is_a_400(jp_fetch: Any) -> None:
    with pytest.raises(HTTPClientError) as err:
        await jp_fetch("nbray", "api", "cluster", "restart", method="POST", body="{nope")
    assert err.value.code == 400


async def test_head_killed_from_outside_is_reported(api: Any) -> None:
    status = await api("cluster")
    psutil.Process(status["head_pid"]).kill()
    after = await until(lambda: _stopped(api))
    assert "exited unexpectedly" in after["error"]
    again = await api("cluster/start", body={})
    assert again["state"] == "running"


async def _stopped(api: Any) -> Any:
    status = await api("cluster")
    return status if status["state"] == "stopped" else None


async def test_unload_leaves_nothing_behind(api: Any, jp_serverapp: Any) -> None:
    status = await api("cluster")
    token = Path(status["session_dir"]).name.rsplit("-", 1)[-1]
    # a client with work in flight, as a kernel would have
    nbray.init()  # NBRAY_ADDRESS: joins the server's cluster
    try:
        ref = nbray.put(b"x" * 2_000_000)  # a shared-memory segment
        assert session_segments(token)
        await _extension(jp_serverapp).stop_extension()
        assert left_behind(status) == []
        assert "NBRAY_ADDRESS" not in os.environ
        del ref
    finally:
        nbray.shutdown()
    kids = [p for p in psutil.Process().children(recursive=True) if p.is_running()]
    assert all(p.status() == psutil.STATUS_ZOMBIE for p in kids), kids


def _extension(serverapp: Any) -> NbrayServer:
    app = serverapp.web_app.settings["nbray"]
    assert isinstance(app, NbrayServer)
    return app


class TestFirstUse:
    """``autostart = "first-use"``: nothing runs until the panel/dashboard asks."""

    @pytest.fixture
    def jp_server_config(self) -> dict[str, Any]:
        return {
            "ServerApp": {
                "jpserver_extensions": {"nbray.server_ext": True},
                "allow_unauthenticated_access": False,
            },
            "NbrayServer": {"autostart": "first-use", "num_cpus": 1},
        }

    async def test_starts_on_first_request(self, api: Any, jp_serverapp: Any) -> None:
        manager = _extension(jp_serverapp).manager
        assert manager.state == "stopped"  # the server is up, the cluster is not
        assert os.environ["NBRAY_ADDRESS"] == str(manager.address_link)
        first = await api("cluster")
        assert first["state"] in ("stopped", "starting", "running")

        async def running() -> Any:
            status = await api("cluster")
            return status if status["state"] == "running" else None

        status = await until(running)
        assert status["resources"]["CPU"] == 1.0
