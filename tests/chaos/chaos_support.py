"""Shared pieces of the fault-injection suite: sizes (CI or soak), worker pids, killing.

``make soak`` sets NBRAY_SOAK=1: every scenario runs with its soak size instead of the CI
size. Tasks coordinate with the tests through files, never through sleeps that matter.
"""

from __future__ import annotations

import os
import signal

import psutil

SOAK = os.environ.get("NBRAY_SOAK", "") == "1"
# Every get in this suite must return or raise within this bound, fault or not.
BOUNDED = 60.0


def size(ci: int, soak: int) -> int:
    """How many iterations a scenario runs: ``ci`` in make test, ``soak`` in make soak."""
    return soak if SOAK else ci


def worker_pids(head_pid: int) -> list[int]:
    """The live worker processes of the cluster whose head is ``head_pid`` (the fork
    server's children)."""
    head = psutil.Process(head_pid)
    out: list[int] = []
    for fs in head.children():
        for w in fs.children():
            if w.status() != psutil.STATUS_ZOMBIE:
                out.append(w.pid)
    return out


def kill(pid: int, sig: signal.Signals = signal.SIGKILL) -> bool:
    try:
        os.kill(pid, sig)
        return True
    except ProcessLookupError:
        return False


def head_pid(session_dir: str) -> int:
    from pathlib import Path

    return int((Path(session_dir) / "head.pid").read_text())
