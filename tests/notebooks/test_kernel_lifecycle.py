"""A kernel's private cluster dies with the kernel: killed or restarted, nothing remains."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest
from jupyter_client.manager import KernelManager
from kernel_support import assert_cluster_gone, running_kernel, start_cluster_in_kernel


@pytest.fixture
def kernel() -> Iterator[KernelManager]:
    with running_kernel() as km:
        yield km


@pytest.mark.timeout(120)
def test_killed_kernel_leaves_nothing_behind(kernel: KernelManager) -> None:
    info = start_cluster_in_kernel(kernel)
    os.kill(int(info["kernel"]), signal.SIGKILL)  # type: ignore[call-overload]  # no atexit
    assert_cluster_gone(info)


@pytest.mark.timeout(120)
def test_restarted_kernel_leaves_nothing_behind_and_starts_afresh(kernel: KernelManager) -> None:
    info = start_cluster_in_kernel(kernel)
    kernel.restart_kernel(now=True)
    assert_cluster_gone(info)
    again = start_cluster_in_kernel(kernel)  # the new kernel gets a new cluster of its own
    assert again["head"] != info["head"]
    kernel.shutdown_kernel(now=True)
    assert_cluster_gone(again)
