"""Ray's own dashboard of a Ray cluster a kernel uses, proxied behind Jupyter's auth.

    GET  <base>/nbray/ray-dashboard/            ──302──▶ the newest such cluster's (404: none)
    *    <base>/nbray/ray-dashboard/<id>/<path> ──▶ http://<its dashboard>/<path>?<query>
    WS   <base>/nbray/ray-dashboard/<id>/<path> ──▶ ws://<its dashboard>/<path>   (both ways)

The target is only ever the dashboard the kernel's registry record names (``dashboard_url``,
"host:port" as Ray reports it; see _wire/kernel_registry.py): the request's path is
appended to it, never parsed for a host. Requests are authenticated and authorized as every
nbray route (read for GET/HEAD and WebSockets, write otherwise, with Jupyter's XSRF check);
Jupyter's cookies and token are not forwarded, and Ray's token (the kernel's 0600
``token_file``) is sent instead, so the browser never holds it. So no port of the cluster
is opened or forwarded to the browser.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable
from typing import Any
from urllib.parse import quote

from jupyter_core.utils import ensure_async
from jupyter_server.auth.decorator import ws_authenticated
from jupyter_server.base.handlers import JupyterHandler
from jupyter_server.base.websocket import WebSocketMixin
from jupyter_server.utils import url_path_join
from tornado import httpclient, web
from tornado.websocket import WebSocketClientConnection, WebSocketHandler, websocket_connect

from nbray._wire import session_files as sf

__all__ = [
    "RayDashboardHandler",
    "RayDashboardIndexHandler",
    "Target",
    "has_dashboard",
    "ray_dashboard_routes",
    "target_of",
]

AUTH_RESOURCE = "nbray"
TIMEOUT = 60.0
_HOST_PORT = re.compile(r"^(?:https?://)?(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})/?$")
# request headers passed on to Ray's dashboard; everything else (cookies, Jupyter's
# Authorization, XSRF headers, Host) stays here
_FORWARDED = {"accept", "accept-language", "content-type", "if-none-match", "if-modified-since"}
# response headers not passed back: hop-by-hop, recomputed, or Ray's own cookies
_DROPPED = {
    "connection",
    "keep-alive",
    "transfer-encoding",
    "content-length",
    "content-encoding",
    "set-cookie",
    "server",
    "date",
}


class Target:
    """Where one cluster's dashboard is, and the token it wants."""

    def __init__(self, host: str, port: int, token: str) -> None:
        self.host, self.port, self.token = host, port, token

    def url(self, path: str, query: str, scheme: str = "http") -> str:
        url = f"{scheme}://{self.host}:{self.port}/{quote(path, safe='/:@!$&()*+,;=-._~')}"
        return f"{url}?{query}" if query else url

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}


def target_of(record: dict[str, Any]) -> Target | None:
    """The dashboard a kernel's registry record names; None without one (a private Ray
    starts none) or for anything but a plain host:port."""
    found = _HOST_PORT.match(str(record.get("dashboard_url") or ""))
    if found is None or not 0 < int(found.group(2)) < 65536:
        return None
    token_file = str(record.get("token_file") or "")
    token = sf.read_secret(token_file).decode().strip() if token_file else ""  # refuses 0644 files
    return Target(found.group(1), int(found.group(2)), token)


async def _find_target(handler: JupyterHandler, cluster_id: str) -> Target:
    registry = handler.settings["nbray_kernel_clusters"]
    cluster = await asyncio.get_running_loop().run_in_executor(None, registry.get, cluster_id)
    if cluster is None:
        raise web.HTTPError(404, f"no kernel's cluster {cluster_id} (its kernel may have gone)")
    try:
        target = target_of(cluster.record)
    except (OSError, PermissionError) as exc:
        raise web.HTTPError(502, f"cannot read the cluster's Ray token: {exc}") from None
    if target is None:
        raise web.HTTPError(404, f"the cluster {cluster_id} has no Ray dashboard")
    return target


async def _check(handler: JupyterHandler, action: str) -> None:
    allowed = await ensure_async(
        handler.authorizer.is_authorized(handler, handler.current_user, action, AUTH_RESOURCE)
    )
    if not allowed:
        raise web.HTTPError(403)


class RayDashboardIndexHandler(JupyterHandler):
    """``nbray/ray-dashboard/``: to the dashboard of the newest Ray cluster a kernel uses;
    ``nbray/ray-dashboard/<id>``: to ``<id>/`` (the dashboard's page links relatively)."""

    auth_resource = AUTH_RESOURCE

    @web.authenticated
    async def get(self, cluster_id: str | None = None) -> None:
        await _check(self, "read")
        if cluster_id:
            self.redirect(url_path_join(self.base_url, "nbray", "ray-dashboard", cluster_id) + "/")
            return
        registry = self.settings["nbray_kernel_clusters"]
        clusters = await asyncio.get_running_loop().run_in_executor(None, registry.list)
        with_dashboard = [c for c in clusters if has_dashboard(c.record)]
        if not with_dashboard:
            raise web.HTTPError(
                404,
                "no kernel is connected to a Ray cluster with a dashboard: call "
                "nbray.init(address='ray://host:10001') in a notebook first",
            )
        newest = with_dashboard[-1]
        self.redirect(url_path_join(self.base_url, "nbray", "ray-dashboard", newest.id) + "/")


def has_dashboard(record: dict[str, Any]) -> bool:
    return _HOST_PORT.match(str(record.get("dashboard_url") or "")) is not None


class RayDashboardHandler(WebSocketMixin, WebSocketHandler, JupyterHandler):
    """One cluster's Ray dashboard: HTTP requests are relayed, a WebSocket upgrade is
    bridged to the dashboard's WebSocket."""

    auth_resource = AUTH_RESOURCE
    _upstream: WebSocketClientConnection | None = None

    def _is_websocket(self) -> bool:
        return self.request.headers.get("Upgrade", "").lower() == "websocket"

    def set_default_headers(self) -> None:
        if not self._is_websocket():  # JupyterHandler's headers, not on a WebSocket
            JupyterHandler.set_default_headers(self)

    async def get(self, *args: Any, **kwargs: Any) -> None:
        if self._is_websocket():
            await self._bridge(kwargs["cluster_id"], kwargs["path"])
            return
        relayed = self._http(kwargs["cluster_id"], kwargs["path"])
        if relayed is not None:  # None: redirected to the login page
            await relayed

    @web.authenticated
    def _http(self, cluster_id: str, path: str) -> Awaitable[None]:
        return self._relay(cluster_id, path)

    head = post = put = patch = delete = _http

    # --- HTTP ----------------------------------------------------------------------------

    async def _relay(self, cluster_id: str, path: str) -> None:
        method = self.request.method or "GET"
        await _check(self, "read" if method in ("GET", "HEAD") else "write")
        target = await _find_target(self, cluster_id)
        headers = {
            k: v for k, v in self.request.headers.get_all() if k.lower() in _FORWARDED
        } | target.headers()
        request = httpclient.HTTPRequest(
            target.url(path, self.request.query),
            method=method,
            headers=headers,
            body=self.request.body if method in ("POST", "PUT", "PATCH") else None,
            follow_redirects=False,
            decompress_response=True,
            request_timeout=TIMEOUT,
            allow_nonstandard_methods=True,
        )
        response = await httpclient.AsyncHTTPClient().fetch(request, raise_error=False)
        if response.code == 599:  # no answer at all
            raise web.HTTPError(
                502, f"Ray's dashboard at {target.host}:{target.port} does not answer"
            )
        self.set_status(response.code, response.reason)
        self.clear_header("Content-Type")
        for name, value in response.headers.get_all():
            lower = name.lower()
            if lower in _DROPPED:
                continue
            if lower == "location":
                value = self._local_location(cluster_id, target, value)
            self.add_header(name, value)
        if response.code in (204, 304) or method == "HEAD":
            await self.finish()
        else:
            await self.finish(response.body or b"")

    def _local_location(self, cluster_id: str, target: Target, location: str) -> str:
        """A redirect of Ray's dashboard, to the same place behind this proxy."""
        prefix = url_path_join(self.base_url, "nbray", "ray-dashboard", cluster_id) + "/"
        origin = f"http://{target.host}:{target.port}/"
        if location.startswith(origin):
            return prefix + location[len(origin) :]
        if location.startswith("/"):
            return prefix + location.lstrip("/")
        return location  # relative: stays below the prefix

    # --- WebSocket -----------------------------------------------------------------------

    @ws_authenticated
    async def _bridge(self, cluster_id: str, path: str) -> None:
        await _check(self, "read")
        target = await _find_target(self, cluster_id)
        request = httpclient.HTTPRequest(
            target.url(path, self.request.query, scheme="ws"),
            headers=target.headers(),
            request_timeout=TIMEOUT,
        )
        try:
            self._upstream = await websocket_connect(
                request, on_message_callback=self._from_upstream
            )
        except Exception as exc:
            raise web.HTTPError(502, f"Ray's dashboard refused the WebSocket: {exc}") from None
        await WebSocketHandler.get(self, cluster_id, path)

    def on_message(self, message: str | bytes) -> None:
        if self._upstream is not None:
            self._upstream.write_message(message, binary=isinstance(message, bytes))

    def _from_upstream(self, message: str | bytes | None) -> None:
        if message is None:  # Ray's side closed
            if self.ws_connection is not None:
                self.close()
            return
        if self.ws_connection is not None:
            self.write_message(message, binary=isinstance(message, bytes))

    def on_close(self) -> None:
        if self._upstream is not None:
            self._upstream.close()
            self._upstream = None


def ray_dashboard_routes(url: Any) -> list[tuple[str, type]]:
    """The proxy's routes (``url`` prefixes a path with the server's base URL)."""
    return [
        (url("ray-dashboard/?"), RayDashboardIndexHandler),
        (url("ray-dashboard/(?P<cluster_id>[0-9a-f]{1,32})"), RayDashboardIndexHandler),
        (url("ray-dashboard/(?P<cluster_id>[0-9a-f]{1,32})/(?P<path>.*)"), RayDashboardHandler),
    ]
