"""Ray's own dashboard of a Ray cluster a kernel connects to, proxied by the Jupyter server
under ``nbray/ray-dashboard/<id>/`` behind Jupyter's auth (HTTP and WebSocket).

    tests/ray_head.py: a real Ray head (token auth, client port, dashboard on loopback)
    a real kernel (the server's kernel API): nbray.init(address="ray://...")
        ──▶ GET nbray/api/clusters lists it (engine ray, connected, ray_dashboard)
        ──▶ the dashboard's page and API through the proxy (Ray's token added by the server)
        ──▶ a job submitted by POST, its log tailed over the proxied WebSocket
        ──▶ refused: no login, an unknown cluster; the target is never the request's
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
from collections.abc import Iterator
from typing import Any

import pytest
from ray_head import RayHead, running_head
from server_support import execute, start_kernel, until
from tornado.httpclient import HTTPClientError

from nbray.server_ext.ray_dashboard import target_of


@pytest.fixture(scope="module")
def head() -> Iterator[RayHead]:
    yield from running_head()


async def _connected_cluster(api: Any, kid: str) -> dict[str, Any] | None:
    listed = (await api("clusters"))["clusters"]
    return next((c for c in listed if c.get("kernel_id") == kid), None)


@pytest.mark.timeout(300)
async def test_the_dashboard_of_a_connected_ray_cluster_is_proxied(
    head: RayHead,
    jp_fetch: Any,
    jp_ws_fetch: Any,
    jp_serverapp: Any,
    jp_base_url: str,
    jp_auth_header: dict[str, str],
    http_server_client: Any,
    api: Any,
) -> None:
    # Ray's version without importing Ray here: Ray reads its auth mode once, at import,
    # and later tests of this process start a private Ray with token auth
    ray_version = importlib.metadata.version("ray")

    kid, kc = await start_kernel(jp_fetch, jp_serverapp)
    try:
        out = await _execute_or_show(
            head,
            kc,
            f"import os\nos.environ['NBRAY_RAY_TOKEN_FILE'] = {str(head.token_file)!r}\n"
            f"import nbray\nctx = nbray.init(address={head.client_address!r})\n"
            "print(ctx.engine, ctx.dashboard_url)",
        )
        assert f"ray 127.0.0.1:{head.dashboard_port}\n" in out, out
        cluster = await until(lambda: _connected_cluster(api, kid), within=30)
        assert cluster["engine"] == "ray" and cluster["owned"] is False
        assert cluster["ray_dashboard"] is True and cluster["address"] == head.client_address
        cid = cluster["id"]

        # the index goes to the newest connected cluster's dashboard
        with pytest.raises(HTTPClientError) as moved:
            await jp_fetch("nbray", "ray-dashboard", "", follow_redirects=False)
        assert moved.value.code == 302
        assert (
            moved.value.response.headers["Location"] == f"{jp_base_url}nbray/ray-dashboard/{cid}/"
        )

        # (jp_fetch drops a trailing slash: <id> without one is redirected to <id>/)
        with pytest.raises(HTTPClientError) as moved:
            await jp_fetch("nbray", "ray-dashboard", cid, follow_redirects=False)
        assert (
            moved.value.response.headers["Location"] == f"{jp_base_url}nbray/ray-dashboard/{cid}/"
        )
        page = await http_server_client.fetch(
            f"{jp_base_url}nbray/ray-dashboard/{cid}/", headers=jp_auth_header
        )
        assert b"<title>Ray Dashboard</title>" in page.body
        assert b'src="./static/js/' in page.body  # its links stay below the proxy's prefix
        # Ray's API answers: the server sent Ray's token (Ray refuses a request without it)
        assert head.dashboard_get("api/version") is not None
        version = json.loads((await jp_fetch("nbray", "ray-dashboard", cid, "api", "version")).body)
        assert version["ray_version"] == ray_version

        # a POST (a job), and its log over the proxied WebSocket
        submitted = await http_server_client.fetch(
            f"{jp_base_url}nbray/ray-dashboard/{cid}/api/jobs/",
            method="POST",
            body=json.dumps({"entrypoint": "echo proxied-job-says-hi"}),
            headers={**jp_auth_header, "Content-Type": "application/json"},
        )
        job = json.loads(submitted.body)["submission_id"]
        ws = await jp_ws_fetch("nbray", "ray-dashboard", cid, "api", "jobs", job, "logs", "tail")
        try:
            seen = ""
            while "proxied-job-says-hi" not in seen:
                message = await asyncio.wait_for(ws.read_message(), 60)
                assert message is not None, f"the log stream closed; it said {seen!r}"
                seen += message if isinstance(message, str) else message.decode()
        finally:
            ws.close()

        # refused without Jupyter's login: no Ray content, nor Ray's token, gets out
        for parts in ((), ("api", "version")):
            with pytest.raises(HTTPClientError) as refused:
                await jp_fetch(
                    "nbray",
                    "ray-dashboard",
                    cid,
                    *parts,
                    headers={"Authorization": ""},
                    follow_redirects=False,
                )
            assert refused.value.code in (302, 401, 403)
            assert b"ray_version" not in (refused.value.response.body or b"")
        with pytest.raises(HTTPClientError) as refused:
            await jp_ws_fetch(
                "nbray",
                "ray-dashboard",
                cid,
                "api",
                "jobs",
                job,
                "logs",
                "tail",
                headers={"Authorization": ""},
            )
        assert refused.value.code in (401, 403)
        # a path that names another host still goes to the dashboard (Ray's 404)
        with pytest.raises(HTTPClientError) as elsewhere:
            await jp_fetch("nbray", "ray-dashboard", cid, "/127.0.0.1:1/api/version")
        assert elsewhere.value.code == 404
        # an unknown cluster
        with pytest.raises(HTTPClientError) as unknown:
            await jp_fetch("nbray", "ray-dashboard", "0123456789ab", "api", "version")
        assert unknown.value.code == 404

        # the kernel disconnects: the cluster leaves the list and the proxy
        await execute(kc, "nbray.shutdown()")
        await until(lambda: _gone(api, kid), within=30)
        with pytest.raises(HTTPClientError) as after:
            await jp_fetch("nbray", "ray-dashboard", cid, "api", "version")
        assert after.value.code == 404
    finally:
        kc.stop_channels()
        await jp_fetch("api", "kernels", kid, method="DELETE")


async def _execute_or_show(head: RayHead, kc: Any, code: str) -> str:
    """``execute``, with the Ray head's logs in the failure's message."""
    try:
        return await execute(kc, code)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n--- the Ray head's logs:\n{head.output()}") from None


async def _gone(api: Any, kid: str) -> bool:
    return await _connected_cluster(api, kid) is None


def test_a_record_names_only_a_host_and_port(tmp_path: Any) -> None:
    token = tmp_path / "token"
    token.write_text("ab" * 32 + "\n")
    token.chmod(0o600)
    ok = target_of({"dashboard_url": "127.0.0.1:8265", "token_file": str(token)})
    assert ok is not None
    assert ok.url("api/version", "a=1") == "http://127.0.0.1:8265/api/version?a=1"
    assert ok.url("//evil.example/x", "") == "http://127.0.0.1:8265///evil.example/x"
    assert ok.headers() == {"Authorization": "Bearer " + "ab" * 32}
    for bad in ("", "127.0.0.1", "http://user@evil:80", "127.0.0.1:8265/path", "a:99999"):
        assert target_of({"dashboard_url": bad}) is None, bad
    token.chmod(0o644)  # a token others can read is refused, as every nbray secret
    with pytest.raises(PermissionError):
        target_of({"dashboard_url": "127.0.0.1:8265", "token_file": str(token)})
