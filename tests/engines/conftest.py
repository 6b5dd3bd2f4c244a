"""The ``engine`` fixture: the core API suite runs once per engine, one cluster per engine.

    NBRAY_TEST_ENGINES     engines to run (default "local,ray")
    NBRAY_TEST_RAY_ADDRESS where the Ray engine connects (default "local": a private local
                           Ray with token auth; "auto": the cluster `nbray up` recorded, as
                           tests/cluster/ does to run this suite on an SSH cluster)

The fixture is module-scoped and parametrised, so pytest runs every test of the module on
one engine, then on the other: each engine starts once (a Ray start takes seconds).
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from nbray_testing import assert_no_children

import nbray
from nbray._model import session

ENGINES = os.environ.get("NBRAY_TEST_ENGINES", "local,ray").split(",")
RAY_ADDRESS = os.environ.get("NBRAY_TEST_RAY_ADDRESS", "local")


@pytest.fixture(scope="module", params=ENGINES)
def engine(request: pytest.FixtureRequest) -> Iterator[str]:
    name = str(request.param)
    if name == "ray" and importlib.util.find_spec("ray") is None and not os.environ.get("CI"):
        pytest.skip("Ray is not installed: make install installs the test,ray extras")
    if name == "ray":
        ctx = nbray.init(
            engine="ray", address=RAY_ADDRESS, num_cpus=2 if RAY_ADDRESS == "local" else None
        )
    else:
        ctx = nbray.init(num_cpus=2)
    assert ctx.engine == name
    private = getattr(session.get_engine(), "private_dir", None)
    dirs = [private, Path((private / "ray_temp_dir").read_text())] if private else []
    yield name
    nbray.shutdown()
    assert_no_children(timeout=30)
    for d in dirs:  # a private local Ray: its files (and Ray's logs) go with it
        assert not d.exists(), f"{d} left behind"
