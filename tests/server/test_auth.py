"""Every route and method of the extension needs Jupyter's login and authorization."""

from __future__ import annotations

import json
from typing import Any

import pytest
from jupyter_server.auth.authorizer import Authorizer
from tornado.httpclient import HTTPClientError
from tornado.websocket import WebSocketClientConnection

UNKNOWN_TASK = "00000000000000ff"
ROUTES = [
    ("GET", "api/cluster"),
    ("POST", "api/cluster/start"),
    ("POST", "api/cluster/stop"),
    ("POST", "api/cluster/restart"),
    ("GET", "api/nodes"),
    ("GET", "api/tasks"),
    ("GET", f"api/tasks/{UNKNOWN_TASK}/logs"),
    ("GET", "api/summary"),
    ("GET", "api/graph"),
    ("GET", "api/timeline"),
    ("GET", "api/clusters"),
    ("GET", "api/clusters/server"),
    ("GET", "api/clusters/server/nodes"),
    ("GET", "api/clusters/server/tasks"),
    ("GET", f"api/clusters/server/tasks/{UNKNOWN_TASK}/logs"),
    ("GET", "api/clusters/server/summary"),
    ("GET", "api/clusters/server/graph"),
    ("GET", "api/clusters/server/timeline"),
    ("GET", "api/ssh/status"),
    ("POST", "api/ssh/up"),
    ("POST", "api/ssh/down"),
    ("GET", "static/dashboard.js"),
    ("GET", "static/dashboard.css"),
]
METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH"]
NO_TOKEN = {"Authorization": ""}


class DenyNbray(Authorizer):
    """A real jupyter_server authorizer that refuses everything on the "nbray" resource."""

    def is_authorized(self, handler: Any, user: Any, action: str, resource: str) -> bool:
        return resource != "nbray"


async def _status(jp_fetch: Any, method: str, path: str, **kwargs: Any) -> int:
    body = "{}" if method in ("POST", "PUT", "PATCH") else None
    try:
        resp = await jp_fetch(
            "nbray", *path.split("/"), method=method, body=body, follow_redirects=False, **kwargs
        )
    except HTTPClientError as exc:
        return exc.code
    return int(resp.code)


async def test_every_route_and_method_needs_login(jp_fetch: Any) -> None:
    answers = {
        (method, path): await _status(jp_fetch, method, path, headers=dict(NO_TOKEN))
        for _, path in ROUTES
        for method in METHODS
    }
    # 401/403 only: even a method a route does not have (405) must not answer before login
    wrong = {k: v for k, v in answers.items() if v not in (401, 403)}
    assert not wrong, f"answered without a token: {wrong}"
    assert len(answers) == len(ROUTES) * len(METHODS)


async def test_dashboard_page_redirects_to_login(jp_fetch: Any) -> None:
    code = await _status(jp_fetch, "GET", "dashboard", headers=dict(NO_TOKEN))
    assert code == 302  # a browser is sent to Jupyter's login page
    for method in ("POST", "PUT", "DELETE"):
        assert await _status(jp_fetch, method, "dashboard", headers=dict(NO_TOKEN)) in (401, 403)


async def test_with_token_the_routes_answer(jp_fetch: Any) -> None:
    for method, path in ROUTES:
        if method == "GET" and UNKNOWN_TASK not in path:
            assert await _status(jp_fetch, method, path) == 200, path
    # logged in, a task the server does not know is a 404, not a login problem
    assert await _status(jp_fetch, "GET", f"api/tasks/{UNKNOWN_TASK}/logs") == 404
    # and a kernel's cluster that is not (or no longer) there
    assert await _status(jp_fetch, "GET", "api/clusters/0123456789ab/nodes") == 404
    resp = await jp_fetch("nbray", "dashboard")
    # the page loads the frontend's standalone bundle, with the base URL for its requests
    assert b'nbray/static/dashboard.js"' in resp.body
    assert b'"baseUrl": "/a%40b/"' in resp.body
    assert "_xsrf" in resp.headers.get("Set-Cookie", "")


async def test_websocket_needs_login(jp_ws_fetch: Any) -> None:
    with pytest.raises(HTTPClientError) as err:
        await jp_ws_fetch("nbray", "api", "events", headers=dict(NO_TOKEN))
    assert err.value.code in (401, 403)
    ws: WebSocketClientConnection = await jp_ws_fetch("nbray", "api", "events")
    hello = json.loads(await ws.read_message())
    assert hello["hello"] is True
    assert hello["state"] == "running"
    ws.close()


async def test_routes_and_the_websocket_count_as_the_servers_activity(
    jp_fetch: Any, jp_ws_fetch: Any, jp_serverapp: Any
) -> None:
    """What JupyterHub's single-user server reports to the Hub (its idle culler): an nbray
    request, and a panel or dashboard opening the event stream, move last_activity()."""
    web_app = jp_serverapp.web_app
    before = web_app.last_activity()
    await jp_fetch("nbray", "api", "summary")
    after_rest = web_app.last_activity()
    assert after_rest > before
    ws: WebSocketClientConnection = await jp_ws_fetch("nbray", "api", "events")
    try:
        await ws.read_message()
        assert web_app.last_activity() > after_rest
    finally:
        ws.close()


class TestAuthorization:
    """Logged in, but the authorizer says no: 403 everywhere, the WebSocket included."""

    @pytest.fixture
    def jp_server_config(self) -> dict[str, Any]:
        return {
            "ServerApp": {
                "jpserver_extensions": {"nbray.server_ext": True},
                "allow_unauthenticated_access": False,
                "authorizer_class": DenyNbray,
            },
            "NbrayServer": {"autostart": "off"},
        }

    async def test_authorizer_refusal_is_a_403(self, jp_fetch: Any, jp_ws_fetch: Any) -> None:
        for method, path in [*ROUTES, ("GET", "dashboard")]:
            assert await _status(jp_fetch, method, path) == 403, f"{method} {path}"
        # and the server's own API still works: only nbray is refused
        resp = await jp_fetch("api", "status")
        assert resp.code == 200
        with pytest.raises(HTTPClientError) as err:
            await jp_ws_fetch("nbray", "api", "events")
        assert err.value.code == 403
