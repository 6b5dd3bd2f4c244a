"""Shared fixtures: clusters with a finalizer that proves nothing was left behind."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from nbray_testing import SHUTDOWN_LIMIT, assert_no_children, session_segments, wait_until

import nbray


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
