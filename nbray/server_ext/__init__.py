"""Jupyter server extension: the server owns one nbray cluster and serves its panel data.

    jupyter server / lab ──loads──▶ app.NbrayServer (an ExtensionApp)
        ──▶ ClusterManager (manager.py) starts the cluster (NbrayServer.autostart)
        ──▶ routes (handlers.py): REST + WebSocket under <base_url>/nbray/api/,
            the dashboard at <base_url>/nbray/dashboard
    server stops ──▶ NbrayServer.stop_extension ──▶ manager.shutdown()

Enabled on install by ``jupyter-config/jupyter_server_config.d/nbray.json``. Settings
(``jupyter lab --NbrayServer.autostart=first-use --NbrayServer.num_cpus=2``)::

    c.NbrayServer.autostart = "server"   # "server" (default), "first-use" or "off"
    c.NbrayServer.num_cpus = 4           # default: one worker per CPU
"""

from __future__ import annotations

from typing import Any

from .manager import ClusterManager, ClusterSettings, ClusterStateError

__all__ = ["ClusterManager", "ClusterSettings", "ClusterStateError"]


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    from .app import NbrayServer

    return [{"module": "nbray.server_ext", "app": NbrayServer}]
