"""REST routes of the SSH cluster (``nbray up`` from the server; see ssh_cluster.py).

    POST <base>/nbray/api/ssh/up      body: the cluster file's fields as JSON ─▶ 202 + status
    POST <base>/nbray/api/ssh/down                                           ─▶ 202 + status
    GET  <base>/nbray/api/ssh/status  state, per-host progress, error, node liveness

Authenticated and authorized like every nbray route (resource "nbray"). The work runs in
child processes; these handlers only start them and read their progress.
"""

from __future__ import annotations

import json

from jupyter_server.auth.decorator import authorized
from jupyter_server.utils import url_path_join
from tornado import web

from nbray._compose.cluster.spec import ClusterFileError

from .handlers import _Base
from .ssh_cluster import SshCluster, SshClusterError

__all__ = ["ssh_routes"]


class _SshBase(_Base):
    @property
    def ssh(self) -> SshCluster:
        return self.settings["nbray_ssh"]


class SshStatusHandler(_SshBase):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        self.reply(await self.call(self.ssh.status))


class SshUpHandler(_SshBase):
    @web.authenticated
    @authorized
    async def post(self) -> None:
        try:
            fields = json.loads(self.request.body or b"null")
        except ValueError as exc:
            raise web.HTTPError(400, f"the body must be the cluster fields as JSON: {exc}") from (
                None
            )
        try:
            status = await self.call(self.ssh.up, fields)
        except ClusterFileError as exc:
            raise web.HTTPError(400, str(exc)) from None
        except SshClusterError as exc:
            raise web.HTTPError(409, str(exc)) from None
        self.reply(status, 202)


class SshDownHandler(_SshBase):
    @web.authenticated
    @authorized
    async def post(self) -> None:
        try:
            status = await self.call(self.ssh.down)
        except SshClusterError as exc:
            raise web.HTTPError(409, str(exc)) from None
        self.reply(status, 202)


def ssh_routes() -> list[tuple[str, type]]:
    return [
        (url_path_join("/nbray", "api/ssh/status"), SshStatusHandler),
        (url_path_join("/nbray", "api/ssh/up"), SshUpHandler),
        (url_path_join("/nbray", "api/ssh/down"), SshDownHandler),
    ]
