"""Entry point of the head process: ``python -m nbray._compose.head_process SESSION_DIR``.

    start ──▶ spawn the fork server at once (it imports the worker's modules meanwhile)
          ──▶ import the head and run it (head.run_head) ──▶ "NBRAY_READY <address>"

Only the standard library is imported before the fork server is on its way, so the two
processes start in parallel and the first task runs sooner.
"""

from __future__ import annotations

import socket
import subprocess
import sys


def main() -> None:
    session_dir = sys.argv[1]
    parent, child = socket.socketpair()
    forkserver = subprocess.Popen(
        [sys.executable, "-m", "nbray._compose.forkserver", session_dir, str(child.fileno())],
        pass_fds=(child.fileno(),),
        stdin=subprocess.DEVNULL,
    )
    child.close()
    from nbray._node.head import run_head

    run_head(session_dir, forkserver, parent)


if __name__ == "__main__":
    main()
