"""The clusters a kernel starts for itself (``nbray.init(num_cpus=1)``, ``init(engine=
"ray")``) are listed by ``GET nbray/api/clusters`` beside the server's own, served under
``nbray/api/clusters/<id>/...``, and go when their kernel shuts them down, exits or is
killed. Real kernels, started through the server's kernel API."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import stat
from pathlib import Path
from typing import Any

import pytest
from server_support import execute, gone, start_kernel, until
from tornado.httpclient import HTTPClientError
from tornado.websocket import WebSocketClientConnection

from nbray._wire import kernel_registry

PRIVATE = """
import nbray
nbray.init(num_cpus=1)

@nbray.remote
def square(x):
    return x * x

print(nbray.get([square.remote(i) for i in range(3)], timeout=60))
"""


def _registry(jp_serverapp: Any) -> Path:
    return Path(jp_serverapp.web_app.settings["nbray_kernel_clusters"].directory)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def _kernel_cluster(api: Any, kid: str) -> dict[str, Any] | None:
    listed = (await api("clusters"))["clusters"]
    return next((c for c in listed if c["kernel_id"] == kid), None)


async def _kernel_pid(jp_serverapp: Any, kid: str) -> int:
    return int(jp_serverapp.kernel_manager.get_kernel(kid).provisioner.pid)


async def _next_clusters_event(ws: WebSocketClientConnection) -> dict[str, Any]:
    while True:
        msg = json.loads(await asyncio.wait_for(ws.read_message(), 20))
        for event in msg["events"]:
            if event.get("type") == "clusters":
                return dict(event)


@pytest.mark.timeout(180)
async def test_a_kernels_private_cluster_is_listed_watched_and_gone_on_shutdown(
    jp_fetch: Any, jp_serverapp: Any, jp_ws_fetch: Any, api: Any
) -> None:
    assert os.environ[kernel_registry.ENV] == str(_registry(jp_serverapp))
    assert _mode(_registry(jp_serverapp)) == 0o700
    assert [c["id"] for c in (await api("clusters"))["clusters"]] == ["server"]
    stream: WebSocketClientConnection = await jp_ws_fetch("nbray", "api", "events")
    kid, kc = await start_kernel(jp_fetch, jp_serverapp)
    try:
        assert "[0, 1, 4]" in await execute(kc, PRIVATE)
        pid = await _kernel_pid(jp_serverapp, kid)
        appeared = await _next_clusters_event(stream)
        assert [(c["kernel_id"], c["engine"]) for c in appeared["clusters"]] == [(kid, "local")]

        listed = (await api("clusters"))["clusters"]
        assert listed[0]["id"] == "server"  # the server's own comes first
        assert listed[0]["nodes"] and listed[0]["state"] == "running"
        (mine,) = [c for c in listed if c["id"] != "server"]
        assert mine["kernel_id"] == kid and mine["pid"] == pid
        assert mine["engine"] == "local" and mine["state"] == "running"
        (node,) = mine["nodes"]
        assert node["Resources"]["CPU"] == 1.0
        cid = mine["id"]

        # the record: private, naming the kernel; no secret in it
        record_file = _registry(jp_serverapp) / f"{cid}.json"
        assert _mode(record_file) == 0o600
        record = json.loads(record_file.read_text())
        assert record["pid"] == pid and record["kernel_id"] == kid
        assert "secret" not in json.dumps(record).replace(record["session_dir"], "")

        # its own routes: its status, its tasks (not the server's), its nodes' live samples
        status = await api(f"clusters/{cid}")
        assert status["resources"]["CPU"] == 1.0 and status["kernel_id"] == kid

        async def squares() -> Any:
            tasks = (await api(f"clusters/{cid}/tasks", name="square"))["tasks"]
            return tasks if len(tasks) == 3 else None

        tasks = await until(squares)
        assert {t["state"] for t in tasks} == {"FINISHED"}
        assert (await api("tasks", name="square"))["tasks"] == []  # not on the server's
        summary = await api(f"clusters/{cid}/summary")
        assert summary["counts"]["FINISHED"] == 3

        async def sampled() -> Any:
            (n,) = (await api(f"clusters/{cid}/nodes"))["nodes"]
            return n.get("metrics")

        assert (await until(sampled))["num_cpus"] >= 1

        # its event stream: the kernel's next tasks, live
        ws: WebSocketClientConnection = await jp_ws_fetch("nbray", "api", "clusters", cid, "events")
        try:
            assert json.loads(await ws.read_message())["hello"] is True
            await execute(kc, "print(nbray.get(square.remote(7), timeout=60))")
            seen: set[str] = set()
            while "FINISHED" not in seen:
                msg = json.loads(await asyncio.wait_for(ws.read_message(), 20))
                seen |= {
                    e["state"]
                    for e in msg["events"]
                    if e.get("type") == "task" and e.get("name") == "square"
                }
        finally:
            ws.close()

        # shutdown: the record goes at once, the listing follows, its routes answer 404
        await execute(kc, "nbray.shutdown()")
        assert not record_file.exists()
        went = await _next_clusters_event(stream)
        assert went["clusters"] == []
        assert [c["id"] for c in (await api("clusters"))["clusters"]] == ["server"]
        with pytest.raises(HTTPClientError) as err:
            await api(f"clusters/{cid}/nodes")
        assert err.value.code == 404
    finally:
        stream.close()
        kc.stop_channels()
        await jp_fetch("api", "kernels", kid, method="DELETE")


@pytest.mark.timeout(180)
async def test_a_killed_kernels_cluster_is_dropped(
    jp_fetch: Any, jp_serverapp: Any, api: Any
) -> None:
    """SIGKILL leaves the record behind; the server sees its owner is gone and drops it
    (and the cluster's head stops by itself, as its owner died)."""
    kid, kc = await start_kernel(jp_fetch, jp_serverapp)
    try:
        await execute(kc, "import nbray\nnbray.init(num_cpus=1)")
        listed = await until(lambda: _kernel_cluster(api, kid))
        record = json.loads((_registry(jp_serverapp) / f"{listed['id']}.json").read_text())
        session_dir = Path(record["session_dir"])
        head_pid = int((session_dir / "head.pid").read_text())
        pid = await _kernel_pid(jp_serverapp, kid)
        kc.stop_channels()
        os.kill(pid, signal.SIGKILL)

        async def dropped() -> bool:
            return await _kernel_cluster(api, kid) is None

        await until(dropped)
        assert list(_registry(jp_serverapp).glob("*.json")) == []

        async def head_gone() -> bool:
            return gone(head_pid)

        await until(head_gone)
    finally:
        kc.stop_channels()
        # (jupyter_server restarted the killed kernel: this shuts the new one down)
        await jp_fetch("api", "kernels", kid, method="DELETE")


@pytest.mark.timeout(240)
async def test_a_kernels_private_ray_is_listed_with_engine_ray(
    jp_fetch: Any, jp_serverapp: Any, api: Any
) -> None:
    """``init(engine="ray")`` in a kernel (whose NBRAY_ADDRESS names the server's cluster)
    starts a private Ray, listed with its engine, address and nodes, gone on shutdown."""
    kid, kc = await start_kernel(jp_fetch, jp_serverapp)
    try:
        out = await execute(
            kc,
            'import nbray\nctx = nbray.init(engine="ray", num_cpus=1)\n'
            "print(ctx.engine, ctx.owned)",
        )
        assert "ray True" in out
        mine = await until(lambda: _kernel_cluster(api, kid))
        assert mine["engine"] == "ray" and mine["address"]
        (node,) = mine["nodes"]
        assert node["Alive"] is True and node["Resources"]["CPU"] == 1.0
        status = await api(f"clusters/{mine['id']}")
        assert status["engine"] == "ray" and status["resources"]["CPU"] == 1.0
        assert _mode(_registry(jp_serverapp) / f"{mine['id']}.json") == 0o600
        await execute(kc, "nbray.shutdown()")

        async def dropped() -> bool:
            return await _kernel_cluster(api, kid) is None

        await until(dropped)
    finally:
        kc.stop_channels()
        await jp_fetch("api", "kernels", kid, method="DELETE")


@pytest.mark.timeout(60)
async def test_a_kernels_cluster_needs_login(jp_fetch: Any, jp_ws_fetch: Any) -> None:
    for path in ("clusters", "clusters/server", "clusters/0123456789ab/tasks"):
        with pytest.raises(HTTPClientError) as err:
            await jp_fetch("nbray", "api", *path.split("/"), headers={"Authorization": ""})
        assert err.value.code in (401, 403), path
    with pytest.raises(HTTPClientError) as err:
        await jp_ws_fetch(
            "nbray", "api", "clusters", "server", "events", headers={"Authorization": ""}
        )
    assert err.value.code in (401, 403)
