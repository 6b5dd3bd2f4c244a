"""The node watcher of an `nbray up` cluster: a child process of the Jupyter server.

    python -m nbray.server_ext.ray_nodes ──connect (the recorded cluster and its token)──▶
        RayEngine.subscribe ──"node" ALIVE/DEAD──▶ one JSON line per event on stdout
        ──▶ ssh_cluster.SshCluster (the server: status, and the panel's event stream)

A Ray driver in a child process keeps Ray out of the server's own process. It exits when
the server (its parent) goes, or when the cluster does.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from typing import Any


def main() -> int:
    from nbray._engines.ray.connect import connect

    parent = os.getppid()
    try:
        engine, _ = connect("auto", namespace=None, num_cpus=None, num_gpus=None, resources=None)
    except Exception as exc:
        sys.stdout.write(json.dumps({"type": "watcher", "error": str(exc)}) + "\n")
        return 1
    lock = threading.Lock()

    def emit(event: dict[str, Any]) -> None:
        if event.get("type") == "node":
            with lock:
                sys.stdout.write(json.dumps(event) + "\n")
                sys.stdout.flush()

    unsubscribe = engine.subscribe(emit)
    try:
        while os.getppid() == parent:
            time.sleep(1)
    finally:
        unsubscribe()
        engine.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
