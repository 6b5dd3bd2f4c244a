"""Shared fixtures: clusters with a finalizer that proves nothing was left behind."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hang_guard import HangGuard
from isolation import check_enabled, isolate, leaks, remove, watched
from nbray_testing import SHUTDOWN_LIMIT, assert_no_children, session_segments, wait_until

import nbray

_ROOT: Path | None = None
_GUARD: HangGuard | None = None


def pytest_configure(config: pytest.Config) -> None:
    """Jupyter's, IPython's, nbray's and Ray's per-user dirs, and TMPDIR, point into one
    private root for the whole session (see isolation.py)."""
    global _ROOT
    _ROOT = isolate()


def pytest_unconfigure(config: pytest.Config) -> None:
    if _ROOT is not None:
        remove(_ROOT)


def _timeout_of(item: pytest.Item) -> float:
    """The test's own ``@pytest.mark.timeout(N)``, else the ini's."""
    marker = item.get_closest_marker("timeout")
    timeout = float(marker.args[0]) if marker and marker.args else 0.0
    return timeout or float(item.config.getini("timeout") or 0)


# trylast: innermost, so its faulthandler timer replaces the one pytest's plugin arms
@pytest.hookimpl(hookwrapper=True, trylast=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    """Every test runs under the hang guard (hang_guard.py): one that pytest-timeout cannot
    end stops the run with its stacks and its name instead of holding it forever."""
    global _GUARD
    from _pytest.faulthandler import fault_handler_stderr_fd_key

    stderr = item.config.stash.get(fault_handler_stderr_fd_key, None)
    timeout = _timeout_of(item)
    if stderr is None or not timeout:  # faulthandler or timeouts turned off
        yield
        return
    if _GUARD is None:
        _GUARD = HangGuard(stderr, cleanup=lambda: _ROOT and remove(_ROOT))
    _GUARD.arm(item.nodeid, timeout)
    try:
        yield
    finally:
        _GUARD.disarm()


@pytest.fixture(scope="session", autouse=True)
def no_files_left_in_home_or_tmp() -> Iterator[None]:
    """Fails the session when its tests left files in $HOME's Jupyter or IPython dirs,
    or /tmp/nbray-<uid> (NBRAY_LEAK_CHECK=0 turns it off)."""
    before = watched()
    yield
    if check_enabled():
        left = leaks(before)
        assert not left, (
            "the tests left files outside their private dirs (isolation.py):\n  "
            + "\n  ".join(left[:40])
        )


@pytest.fixture
def cluster_factory() -> Iterator[Callable[..., nbray.ClusterContext]]:
    """Start clusters with ``nbray.init(**kwargs)``; on teardown shut down within a bounded
    time and assert no child process, segment or session directory remains."""
    contexts: list[nbray.ClusterContext] = []

    def start(**kwargs: Any) -> nbray.ClusterContext:
        ctx = nbray.init(**kwargs)
        contexts.append(ctx)
        return ctx

    yield start
    started = time.monotonic()
    nbray.shutdown()
    elapsed = time.monotonic() - started
    assert elapsed < SHUTDOWN_LIMIT, f"shutdown took {elapsed:.1f} s"
    assert_no_children()
    for ctx in contexts:
        if ctx.session_dir:
            # this cluster's own segments only: other processes on the machine may have theirs
            token = Path(ctx.session_dir).name.rsplit("-", 1)[-1]
            wait_until(lambda t=token: not session_segments(t), 5.0)
            wait_until(lambda d=ctx.session_dir: not Path(d).exists(), 5.0)


@pytest.fixture
def cluster(cluster_factory: Callable[..., nbray.ClusterContext]) -> nbray.ClusterContext:
    """A private two-CPU cluster for one test."""
    return cluster_factory(num_cpus=2)
