"""Shared fixtures: clusters with a finalizer that proves nothing was left behind."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from isolation import check_enabled, isolate, leaks, remove, watched
from nbray_testing import SHUTDOWN_LIMIT, assert_no_children, session_segments, wait_until

import nbray

_ROOT: Path | None = None


def pytest_configure(config: pytest.Config) -> None:
    """Jupyter's, IPython's, nbray's and Ray's per-user dirs, and TMPDIR, point into one
    private root for the whole session (see isolation.py)."""
    global _ROOT
    _ROOT = isolate()


def pytest_unconfigure(config: pytest.Config) -> None:
    if _ROOT is not None:
        remove(_ROOT)


@pytest.fixture(autouse=True)
def faulthandler_follows_the_tests_timeout(request: pytest.FixtureRequest) -> None:
    """A test's stack dump (``faulthandler_timeout``) comes 10 s before its own timeout
    (``@pytest.mark.timeout(N)``, else the ini's): a slow test that passes prints nothing,
    a hung one still shows its stacks before pytest-timeout ends it."""
    import faulthandler

    from _pytest.faulthandler import fault_handler_stderr_fd_key

    if not float(request.config.getini("faulthandler_timeout") or 0):
        return
    marker = request.node.get_closest_marker("timeout")
    timeout = float(marker.args[0]) if marker and marker.args else 0.0
    timeout = timeout or float(request.config.getini("timeout") or 0)
    stderr = request.config.stash.get(fault_handler_stderr_fd_key, None)
    if timeout > 20 and stderr is not None:
        faulthandler.dump_traceback_later(timeout - 10, file=stderr)


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
