"""Thin tornado handlers over the ClusterManager (REST, WebSocket, dashboard page).

    GET  <base>/nbray/api/cluster            status: state, settings, resources, counters,
                                             each kernel's share (running, queued)
    POST <base>/nbray/api/cluster/start      body: settings (optional) ─▶ manager.start
    POST <base>/nbray/api/cluster/stop                                 ─▶ manager.stop
    POST <base>/nbray/api/cluster/restart    body: settings (optional) ─▶ manager.restart
    GET  <base>/nbray/api/nodes              nodes with their latest metrics
    GET  <base>/nbray/api/tasks?state=&name=&owner=&limit=   recent tasks, newest first
    GET  <base>/nbray/api/tasks/<id>/logs    a task's latest output (while watched)
    GET  <base>/nbray/api/summary            tasks by state, rate, latest failures
    GET  <base>/nbray/api/graph?limit=       the task DAG, laid out in layers (grouped)
    GET  <base>/nbray/api/timeline?limit=    one bar per task attempt, per worker
    WS   <base>/nbray/api/events             batches of events every ~0.5 s
    GET  <base>/nbray/dashboard              the dashboard page (the frontend's bundle);
                                             ?cluster=<id>: a kernel's cluster
    GET  <base>/nbray/api/clusters           the server's cluster and its kernels' private
                                             ones: owner kernel, notebook, engine, nodes
    <base>/nbray/api/clusters/<id>[/nodes|/tasks|/tasks/<t>/logs|/summary|/graph|/timeline|
                                   /events]  the routes above, for one of those clusters
    <base>/nbray/ray-dashboard/[<id>/...]    Ray's own dashboard of a Ray cluster a kernel
                                             uses, proxied (HTTP and WS; ray_dashboard.py)

Every route is ``@tornado.web.authenticated`` and authorized against the resource
"nbray" (read for GET, write for POST), and counts as the server's activity (what
JupyterHub's idle culler reads): the REST routes as any APIHandler, the WebSocket when it
opens. Manager calls block (they talk to the head), so
they run in a thread.
"""

from __future__ import annotations

import asyncio
import html
import json
import os
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from jupyter_core.utils import ensure_async
from jupyter_server._tz import utcnow
from jupyter_server.auth.decorator import authorized, ws_authenticated
from jupyter_server.base.handlers import APIHandler, JupyterHandler
from jupyter_server.base.websocket import WebSocketMixin
from jupyter_server.utils import url_path_join
from tornado import web
from tornado.ioloop import IOLoop, PeriodicCallback
from tornado.websocket import WebSocketClosedError, WebSocketHandler

from nbray._base.errors import NbrayError

from .kernel_clusters import KernelCluster, KernelClusters
from .manager import ClusterManager, ClusterSettings, ClusterStateError
from .ray_dashboard import ray_dashboard_routes
from .watching import WatchedCluster

AUTH_RESOURCE = "nbray"
STATIC_DIR = Path(__file__).parent / "static"  # the frontend's standalone build
WS_FLUSH_MS = 500
WS_MAX_BATCH = 500  # events per message; the rest are counted as dropped


class _Base(APIHandler):
    auth_resource = AUTH_RESOURCE

    @property
    def manager(self) -> ClusterManager:
        return self.settings["nbray_manager"]

    async def cluster(self, cluster_id: str | None) -> WatchedCluster:
        """The cluster a route names: the server's (no id, or "server"), else a kernel's
        (404 when no kernel's cluster has that id, e.g. its kernel went)."""
        return await _find_cluster(self, cluster_id)

    async def call(self, func: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(None, func, *args)

    def reply(self, data: Any, status: int = 200) -> None:
        self.set_status(status)
        self.finish(json.dumps(data))


async def _find_cluster(handler: JupyterHandler, cluster_id: str | None) -> WatchedCluster:
    if not cluster_id or cluster_id == "server":
        manager: ClusterManager = handler.settings["nbray_manager"]
        return manager
    registry: KernelClusters = handler.settings["nbray_kernel_clusters"]
    found = await asyncio.get_running_loop().run_in_executor(None, registry.get, cluster_id)
    if found is None:
        raise web.HTTPError(404, f"no kernel's cluster {cluster_id} (its kernel may have gone)")
    return found


class ClusterHandler(_Base):
    @web.authenticated
    @authorized
    async def get(self, cluster_id: str | None = None) -> None:
        cluster = await self.cluster(cluster_id)
        await self.call(cluster.ensure_started)
        if isinstance(cluster, KernelCluster):
            await self.call(cluster.touch)
            status = await self.call(cluster.status)
            await self._name_owners([status])
            self.reply(status)
            return
        status = await self.call(self.manager.status)
        if status.get("kernels"):
            await self._name_owners(status["kernels"])
        self.reply(status)

    async def _name_owners(self, entries: list[dict[str, Any]]) -> None:
        """Add this server's kernel id and notebook path to each entry (a kernel's share of
        the cluster, a kernel's own cluster), found by its kernel id or its process id (a
        script or another server's kernel keeps only its pid)."""
        km = self.kernel_manager
        by_pid: dict[int, str] = {}
        for kid in km.list_kernel_ids():
            pid = getattr(getattr(km.get_kernel(kid), "provisioner", None), "pid", None)
            if pid:
                by_pid[int(pid)] = kid
        sessions: list[dict[str, Any]] = await ensure_async(self.session_manager.list_sessions())
        paths = {(s.get("kernel") or {}).get("id", ""): s.get("path", "") for s in sessions}
        for entry in entries:
            found = entry.get("kernel_id") or by_pid.get(int(entry.get("pid") or 0))
            if found:
                entry["kernel_id"] = found
                entry["path"] = paths.get(found, "")


class ClustersHandler(ClusterHandler):
    """The server's own cluster, then each kernel's private one, with their nodes."""

    @web.authenticated
    @authorized
    async def get(self, cluster_id: str | None = None) -> None:
        registry: KernelClusters = self.settings["nbray_kernel_clusters"]
        manager = self.manager
        manager.ensure_started()
        own = {
            "id": "server",
            "engine": "local",
            "kernel_id": "",
            "path": "",
            "pid": os.getpid(),
            "address": str(manager.address_link) if manager.state == "running" else "",
            "started_at": manager.started_at or 0.0,
            "state": manager.state,
            "error": manager.error,
            "nodes": await self.call(manager.nodes),
        }
        clusters = await self.call(registry.list)
        out = []
        for cluster in clusters:
            await self.call(cluster.touch)  # live node metrics come with the subscription
            out.append({**cluster.describe(), "nodes": await self.call(cluster.nodes)})
        await self._name_owners(out)
        for cluster, entry in zip(clusters, out, strict=True):
            cluster.path = entry.get("path", "")  # for the "clusters" events to come
        self.reply({"clusters": [own, *out]})


class ClusterActionHandler(_Base):
    @web.authenticated
    @authorized
    async def post(self, action: str) -> None:
        manager = self.manager
        try:
            body = json.loads(self.request.body) if self.request.body.strip() else None
            settings = ClusterSettings.from_json(body, manager.settings)
        except ValueError as exc:  # json.JSONDecodeError is a ValueError
            raise web.HTTPError(400, f"bad settings: {exc}") from None
        func = {"start": manager.start, "restart": manager.restart}.get(action)
        try:
            if func is not None:
                status = await self.call(func, settings)
            else:
                status = await self.call(manager.stop)
        except ClusterStateError as exc:
            raise web.HTTPError(409, str(exc)) from None
        except NbrayError as exc:  # the head did not start: the message carries its log
            raise web.HTTPError(500, f"the cluster did not {action}: {exc}") from None
        self.reply(status)


class NodesHandler(_Base):
    @web.authenticated
    @authorized
    async def get(self, cluster_id: str | None = None) -> None:
        cluster = await self.cluster(cluster_id)
        await self.call(cluster.ensure_started)
        await self.call(cluster.touch)  # metrics come with the event subscription
        self.reply({"nodes": await self.call(cluster.nodes)})


class TasksHandler(_Base):
    @web.authenticated
    @authorized
    async def get(self, cluster_id: str | None = None) -> None:
        cluster = await self.cluster(cluster_id)
        await self.call(cluster.ensure_started)
        await self.call(cluster.touch)
        try:
            owner_arg = self.get_argument("owner", None)
            owner = int(owner_arg) if owner_arg else None
            limit = int(self.get_argument("limit", "200"))
        except ValueError as exc:
            raise web.HTTPError(400, f"owner and limit must be whole numbers ({exc})") from None
        try:
            tasks = cluster.tasks.query(
                state=self.get_argument("state", None),
                name=self.get_argument("name", None),
                owner=owner,
                limit=max(1, min(limit, 5000)),
            )
        except ValueError as exc:  # an unknown state: the message lists the known ones
            raise web.HTTPError(400, str(exc)) from None
        self.reply({"tasks": tasks})


def _limit(handler: _Base, default: int) -> int:
    try:
        return max(1, min(int(handler.get_argument("limit", str(default))), 20_000))
    except ValueError as exc:
        raise web.HTTPError(400, f"limit must be a whole number ({exc})") from None


class GraphHandler(_Base):
    @web.authenticated
    @authorized
    async def get(self, cluster_id: str | None = None) -> None:
        cluster = await self.cluster(cluster_id)
        await self.call(cluster.touch)
        limit = _limit(self, 2000)
        self.reply(await self.call(cluster.tasks.graph_record, limit))


class TimelineHandler(_Base):
    @web.authenticated
    @authorized
    async def get(self, cluster_id: str | None = None) -> None:
        cluster = await self.cluster(cluster_id)
        await self.call(cluster.touch)
        limit = _limit(self, 2000)
        self.reply({"segments": await self.call(cluster.tasks.timeline_records, limit)})


class TaskLogsHandler(_Base):
    @web.authenticated
    @authorized
    async def get(self, task_id: str, cluster_id: str | None = None) -> None:
        cluster = await self.cluster(cluster_id)
        await self.call(cluster.ensure_started)
        await self.call(cluster.touch)
        logs = cluster.logs.get(task_id)
        if logs is None:
            if cluster.tasks.get(task_id) is None:
                raise web.HTTPError(404, f"no task {task_id} is kept (unknown, or too old)")
            logs = {"lines": [], "dropped": 0}
        self.reply({"task_id": task_id, **logs})


class SummaryHandler(_Base):
    @web.authenticated
    @authorized
    async def get(self, cluster_id: str | None = None) -> None:
        cluster = await self.cluster(cluster_id)
        await self.call(cluster.touch)
        self.reply(cluster.tasks.summary())


class EventsHandler(WebSocketMixin, WebSocketHandler, JupyterHandler):
    """Streams ``{"events": [...], "dropped": n, "summary": {...}, "state": ...}`` every
    half second (only when something happened). Events come from the manager's listener
    thread into a deque, which the IOLoop drains at each flush."""

    auth_resource = AUTH_RESOURCE

    def set_default_headers(self) -> None:
        """No JupyterHandler default headers on a WebSocket."""

    @ws_authenticated
    async def get(self, *args: Any, **kwargs: Any) -> None:
        allowed = await ensure_async(
            self.authorizer.is_authorized(self, self.current_user, "read", AUTH_RESOURCE)
        )
        if not allowed:
            raise web.HTTPError(403)
        self._cluster = await _find_cluster(self, kwargs.get("cluster_id"))
        await IOLoop.current().run_in_executor(None, self._cluster.ensure_started)
        await super().get(*args, **kwargs)

    def open(self, *args: Any, **kwargs: Any) -> None:
        super().open()
        # a panel or dashboard connecting is the user's doing: it counts as the server's
        # activity (jupyter_server's last_activity() reads every "*_last_activity" setting;
        # JupyterHub's single-user server reports it to the Hub and its idle culler). The
        # REST routes count through APIHandler; the events pushed afterwards do not.
        self.settings["nbray_last_activity"] = utcnow()
        manager = self._cluster
        self._pending: list[dict[str, Any]] = []
        self._dropped = 0
        # events arrive on the cluster connection's thread; the IOLoop takes them in at
        # each flush (no wake-up of the loop per event: a busy cluster sends thousands)
        self._incoming: deque[dict[str, Any]] = deque()
        self._remove: Callable[[], None] | None = manager.add_listener(self._on_event)
        # subscribing talks to the head and may wait on a (re)start: not on the IOLoop
        self._watching: asyncio.Future[Callable[[], None]] | None = asyncio.ensure_future(
            IOLoop.current().run_in_executor(None, manager.watch)
        )
        self._flusher = PeriodicCallback(self._flush, WS_FLUSH_MS)
        self._flusher.start()
        self._send({"events": [], "dropped": 0, "hello": True})

    def _on_event(self, event: dict[str, Any]) -> None:
        self._incoming.append(event)

    def _queue(self, event: dict[str, Any]) -> None:
        if len(self._pending) < WS_MAX_BATCH or event.get("type") not in ("task", "log"):
            self._pending.append(event)
        else:
            self._dropped += 1

    def _flush(self) -> None:
        incoming = self._incoming
        while incoming:
            self._queue(incoming.popleft())
        if not self._pending and not self._dropped:
            return
        events, self._pending = self._pending, []
        dropped, self._dropped = self._dropped, 0
        self._send({"events": events, "dropped": dropped})

    def _send(self, message: dict[str, Any]) -> None:
        manager = self._cluster
        message["summary"] = manager.tasks.summary()
        message["state"] = manager.state
        try:
            self.write_message(json.dumps(message))
        except WebSocketClosedError:
            self._close_down()

    def on_message(self, message: str | bytes) -> None:
        """The stream is one-way; messages from the browser are ignored."""

    def on_close(self) -> None:
        self._close_down()

    def _close_down(self) -> None:
        remove = getattr(self, "_remove", None)
        if remove is not None:
            remove()
            self._remove = None
        watching = getattr(self, "_watching", None)
        if watching is not None:
            self._watching = None
            watching.add_done_callback(lambda done: done.result()())
        flusher = getattr(self, "_flusher", None)
        if flusher is not None:
            flusher.stop()


DASHBOARD_PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>nbray dashboard</title>
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <link rel="stylesheet" href="{base}nbray/static/dashboard.css">
  <script id="jupyter-config-data" type="application/json">{config}</script>
</head>
<body>
  <noscript>The nbray dashboard needs JavaScript.</noscript>
  <script src="{base}nbray/static/dashboard.js"></script>
</body>
</html>
"""


class DashboardHandler(JupyterHandler):
    """The dashboard page: a shell for the frontend's standalone bundle (the same widget as
    JupyterLab's dashboard tab), with the server's base URL where ServerConnection reads it."""

    auth_resource = AUTH_RESOURCE

    @web.authenticated
    @authorized
    def get(self) -> None:
        self.settings["nbray_manager"].ensure_started()
        if not (STATIC_DIR / "dashboard.js").exists():
            raise web.HTTPError(
                500,
                "the dashboard is not built: run `make install` (or `jlpm build:prod` in "
                "frontend/), which writes nbray/server_ext/static/",
            )
        self.xsrf_token  # noqa: B018 (sets the _xsrf cookie the page's POSTs send back)
        config = json.dumps({"baseUrl": self.base_url, "appName": "nbray dashboard"})
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.set_header("Cache-Control", "no-store")
        self.finish(
            DASHBOARD_PAGE.format(
                base=html.escape(self.base_url, quote=True),
                config=config.replace("</", "<\\/"),
            )
        )


class StaticHandler(JupyterHandler):
    """The dashboard's script and style sheet (built from frontend/), behind the same login."""

    auth_resource = AUTH_RESOURCE
    FILES = {"dashboard.js": "text/javascript", "dashboard.css": "text/css"}

    def get_login_url(self) -> str:
        raise web.HTTPError(403)  # a script, not a page: no redirect to the login page

    @web.authenticated
    @authorized
    def get(self, name: str) -> None:
        kind = self.FILES.get(name)
        path = STATIC_DIR / name
        if kind is None or not path.exists():
            raise web.HTTPError(404)
        self.set_header("Content-Type", f"{kind}; charset=utf-8")
        self.set_header("Cache-Control", "no-cache")
        self.finish(path.read_bytes())


def route_table() -> list[tuple[str, type]]:
    """The extension's routes (the ExtensionApp puts the server's base URL in front)."""

    def url(path: str) -> str:
        return url_path_join("/nbray", path)

    cid = r"(?P<cluster_id>server|[0-9a-f]{12})"
    per_cluster: list[tuple[str, type]] = [
        (url(f"api/clusters/{cid}"), ClusterHandler),
        (url(f"api/clusters/{cid}/nodes"), NodesHandler),
        (url(f"api/clusters/{cid}/tasks"), TasksHandler),
        (url(f"api/clusters/{cid}/tasks/(?P<task_id>[0-9a-f]{{1,32}})/logs"), TaskLogsHandler),
        (url(f"api/clusters/{cid}/summary"), SummaryHandler),
        (url(f"api/clusters/{cid}/graph"), GraphHandler),
        (url(f"api/clusters/{cid}/timeline"), TimelineHandler),
        (url(f"api/clusters/{cid}/events"), EventsHandler),
    ]
    return [
        (url("api/clusters"), ClustersHandler),
        *per_cluster,
        (url("api/cluster"), ClusterHandler),
        (url(r"api/cluster/(start|stop|restart)"), ClusterActionHandler),
        (url("api/nodes"), NodesHandler),
        (url("api/tasks"), TasksHandler),
        (url(r"api/tasks/(?P<task_id>[0-9a-f]{1,32})/logs"), TaskLogsHandler),
        (url("api/summary"), SummaryHandler),
        (url("api/graph"), GraphHandler),
        (url("api/timeline"), TimelineHandler),
        (url("api/events"), EventsHandler),
        (url("dashboard"), DashboardHandler),
        (url(r"static/([a-z.]+)"), StaticHandler),
        *ray_dashboard_routes(url),
    ]
