"""pytest plugin (``-p ray_suite_plugin``): the fixtures Ray's single-node tests take from
Ray's conftest, each an ``init`` with Ray's defaults (``request.param`` overrides them
where a test parametrizes the fixture) and a ``shutdown`` after."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import nbray_as_ray  # noqa: F401  (before the test modules import ray)
import pytest

import nbray as ray


def _started(request: pytest.FixtureRequest, **defaults: Any) -> Iterator[Any]:
    params = {**defaults, **(getattr(request, "param", None) or {})}
    info = ray.init(**params)
    yield info
    ray.shutdown()


@pytest.fixture
def ray_start_regular(request: pytest.FixtureRequest) -> Iterator[Any]:
    yield from _started(request, num_cpus=1)


@pytest.fixture(scope="module")
def ray_start_regular_shared(request: pytest.FixtureRequest) -> Iterator[Any]:
    yield from _started(request, num_cpus=1)


@pytest.fixture
def ray_start_2_cpus(request: pytest.FixtureRequest) -> Iterator[Any]:
    yield from _started(request, num_cpus=2)


@pytest.fixture
def ray_start_10_cpus(request: pytest.FixtureRequest) -> Iterator[Any]:
    yield from _started(request, num_cpus=10)


@pytest.fixture
def shutdown_only() -> Iterator[None]:
    yield None
    ray.shutdown()
