"""Entry point of the head process: ``python -m nbray._compose.head_process SESSION_DIR``.

    start ──▶ read config.json ──fork()──▶ fork server (imports the worker's modules, forks
          │                                 the pool's workers: they connect and wait)
          └──▶ import the head and run it (head.run_head) ──▶ "NBRAY_READY <address>"

Only the standard library and the fork server's few modules are imported before the fork,
so the two processes start in parallel, from one interpreter start, and the pool's workers
are up by the time the head serves.
"""

from __future__ import annotations

import json
import os
import sys

from nbray._compose import forkserver
from nbray._node.resources import pool_size


def main() -> None:
    session_dir = sys.argv[1]
    with open(os.path.join(session_dir, "config.json"), "rb") as f:
        config = json.load(f)
    workers = pool_size(config["resources"])
    proc, sock = forkserver.start(session_dir, workers, config.get("listen_fds") or [])
    from nbray._node.head import run_head

    run_head(session_dir, proc, sock, prespawned=workers)


if __name__ == "__main__":
    main()
