"""The extension app: settings, routes, and the cluster's life with the server.

ServerApp loads ──▶ NbrayServer.initialize_settings ──▶ ClusterManager (+ autostart),
                    SshCluster (`nbray up` over the REST API; its node events join the stream),
                    KernelClusters (the private clusters kernels start; "clusters" events)
                ──▶ initialize_handlers ──▶ handlers.route_table(), ssh_handlers.ssh_routes()
ServerApp stops ──▶ NbrayServer.stop_extension ──▶ manager.shutdown(), kernels.shutdown()
"""

from __future__ import annotations

import atexit
from typing import Any

from jupyter_server.extension.application import ExtensionApp
from traitlets import Enum, Float, Int

from .kernel_clusters import KernelClusters
from .manager import ClusterManager, ClusterSettings
from .ssh_cluster import SshCluster

KERNEL_ACTIONS = "https://events.jupyter.org/jupyter_server/kernel_actions/v1"


class NbrayServer(ExtensionApp):
    """Settings of the nbray server extension, e.g. ``--NbrayServer.num_cpus=2``."""

    name = "nbray"
    load_other_extensions = True

    autostart = Enum(
        ["server", "first-use", "off"],
        default_value="server",
        help="When to start the cluster: with the server, on first use (the first request "
        "of the panel or dashboard, or the first kernel started), or only through the API.",
    ).tag(config=True)
    num_cpus = Float(None, allow_none=True, help="CPUs of the cluster (default: all).").tag(
        config=True
    )
    num_gpus = Int(None, allow_none=True, help="GPUs of the cluster (default: NVML's).").tag(
        config=True
    )
    object_store_memory = Int(
        None, allow_none=True, help="Object store size in bytes (default: Ray's share of memory)."
    ).tag(config=True)
    task_history = Int(5000, help="How many recent tasks the server keeps for the API.").tag(
        config=True
    )

    manager: ClusterManager
    ssh: SshCluster
    kernel_clusters: KernelClusters

    def initialize_settings(self) -> None:
        settings = ClusterSettings(
            num_cpus=self.num_cpus,
            num_gpus=self.num_gpus,
            object_store_memory=self.object_store_memory,
        )
        self.manager = ClusterManager(settings, task_capacity=self.task_history)
        self.settings["nbray_manager"] = self.manager
        self.ssh = SshCluster(on_event=self.manager.forward)
        self.settings["nbray_ssh"] = self.ssh
        self.kernel_clusters = KernelClusters(
            on_change=self.manager.forward, task_capacity=self.task_history
        )
        self.settings["nbray_kernel_clusters"] = self.kernel_clusters
        atexit.register(self.manager.shutdown)  # a server that exits without stopping us
        atexit.register(self.ssh.shutdown)
        atexit.register(self.kernel_clusters.shutdown)
        if self.autostart == "server":
            try:
                self.manager.start()
            except Exception as exc:
                self.log.error("nbray: the cluster did not start: %s", exc)
        elif self.autostart == "first-use":
            self.manager.start_on_first_use()
            self._start_with_first_kernel()
        self.log.info(
            "nbray: cluster %s; dashboard at <base_url>nbray/dashboard", self.manager.state
        )

    def initialize_handlers(self) -> None:
        from .handlers import route_table
        from .ssh_handlers import ssh_routes

        self.handlers.extend(route_table())
        self.handlers.extend(ssh_routes())

    def _start_with_first_kernel(self) -> None:
        """In "first-use" mode, a kernel start counts as use (jupyter_server's events)."""
        logger = getattr(self.serverapp, "event_logger", None)
        if logger is None:
            return
        manager = self.manager

        async def on_kernel_action(logger: Any, schema_id: str, data: dict[str, Any]) -> None:
            if data.get("action") == "start":
                manager.ensure_started()

        try:
            logger.add_listener(schema_id=KERNEL_ACTIONS, listener=on_kernel_action)
        except Exception as exc:  # a server without that event schema
            self.log.warning("nbray: cannot watch kernel starts (%s)", exc)

    async def stop_extension(self) -> None:
        self.ssh.shutdown()
        self.kernel_clusters.shutdown()
        self.manager.shutdown()
