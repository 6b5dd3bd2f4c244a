"""Helpers for tests that drive a real kernel (jupyter_client) that runs a cluster."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

import psutil
from jupyter_client.manager import KernelManager
from nbray_testing import session_segments, wait_until

# Starts a cluster in the kernel with two busy workers and a segment; prints its pids.
SETUP = """
import json, os, psutil, nbray
nbray.init(num_cpus=2)

@nbray.remote
def sleepy():
    import time
    time.sleep(60)

@nbray.remote
def ident():
    return os.getpid()

refs = [sleepy.remote() for _ in range(2)]   # busy workers
big = nbray.put(bytes(1 << 21))               # a shared-memory segment
ctx = nbray._compose.lifecycle._context
head = psutil.Process(nbray._model.session.get_engine().cluster_info()["raw"]["pid"])
import time
deadline = time.monotonic() + 30
while len(head.children(recursive=True)) < 3 and time.monotonic() < deadline:
    time.sleep(0.05)  # the fork server and both busy workers
print("NBRAY_PIDS " + json.dumps({
    "kernel": os.getpid(),
    "head": head.pid,
    "tree": [p.pid for p in head.children(recursive=True)],
    "session_dir": ctx.session_dir,
}))
"""


def run_in_kernel(km: KernelManager, code: str, timeout: float = 60) -> str:
    client = km.client()
    client.start_channels()
    try:
        client.wait_for_ready(timeout=timeout)
        out: list[str] = []
        reply = client.execute_interactive(
            code,
            timeout=timeout,
            output_hook=lambda msg: (
                out.append(msg["content"].get("text", "")) if msg["msg_type"] == "stream" else None
            ),
        )
        assert reply["content"]["status"] == "ok", reply["content"]
        return "".join(out)
    finally:
        client.stop_channels()


def start_cluster_in_kernel(km: KernelManager) -> dict[str, object]:
    out = run_in_kernel(km, SETUP)
    line = next(ln for ln in out.splitlines() if ln.startswith("NBRAY_PIDS "))
    info: dict[str, object] = json.loads(line.split(" ", 1)[1])
    return info


def assert_cluster_gone(info: dict[str, object]) -> None:
    pids = [info["head"], *info["tree"]]  # type: ignore[list-item]
    assert len(pids) >= 4  # head, fork server and two workers were alive

    def all_gone() -> bool:
        return not any(
            psutil.pid_exists(p) and psutil.Process(p).status() != "zombie" for p in pids
        )

    wait_until(all_gone, 15)
    token = Path(str(info["session_dir"])).name.rsplit("-", 1)[-1]
    wait_until(lambda: not session_segments(token), 10)
    wait_until(lambda: not Path(str(info["session_dir"])).exists(), 10)


@contextlib.contextmanager
def running_kernel() -> Iterator[KernelManager]:
    """A python3 kernel that does not inherit this process's NBRAY_ADDRESS."""
    km = KernelManager(kernel_name="python3")
    km.start_kernel(env={k: v for k, v in os.environ.items() if k != "NBRAY_ADDRESS"})
    try:
        yield km
    finally:
        if km.has_kernel:
            km.shutdown_kernel(now=True)
