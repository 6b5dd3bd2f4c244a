"""A kernel's private cluster dies with the kernel: killed or restarted, nothing remains."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from jupyter_client.manager import KernelManager
from nbray_testing import session_segments, wait_until

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
ctx = nbray.lifecycle._context
head = psutil.Process(nbray.session.get_engine().cluster_info()["raw"]["pid"])
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


def _run(km: KernelManager, code: str, timeout: float = 60) -> str:
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


@pytest.fixture
def kernel() -> Iterator[KernelManager]:
    km = KernelManager(kernel_name="python3")
    km.start_kernel(env={k: v for k, v in os.environ.items() if k != "NBRAY_ADDRESS"})
    try:
        yield km
    finally:
        if km.has_kernel:
            km.shutdown_kernel(now=True)


def _cluster_of(km: KernelManager) -> dict[str, object]:
    out = _run(km, SETUP)
    line = next(ln for ln in out.splitlines() if ln.startswith("NBRAY_PIDS "))
    info: dict[str, object] = json.loads(line.split(" ", 1)[1])
    return info


def _assert_gone(info: dict[str, object]) -> None:
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


@pytest.mark.timeout(120)
def test_killed_kernel_leaves_nothing_behind(kernel: KernelManager) -> None:
    info = _cluster_of(kernel)
    os.kill(int(info["kernel"]), signal.SIGKILL)  # type: ignore[call-overload]  # no atexit
    _assert_gone(info)


@pytest.mark.timeout(120)
def test_restarted_kernel_leaves_nothing_behind_and_starts_afresh(kernel: KernelManager) -> None:
    info = _cluster_of(kernel)
    kernel.restart_kernel(now=True)
    _assert_gone(info)
    again = _cluster_of(kernel)  # the new kernel gets a new cluster of its own
    assert again["head"] != info["head"]
    kernel.shutdown_kernel(now=True)
    _assert_gone(again)
