"""Fixtures for the server-extension tests: a real Jupyter server (pytest-jupyter) with the
nbray extension loaded, authentication required, and a two-CPU cluster."""

from __future__ import annotations

import json
from typing import Any

import pytest

# pytest-jupyter's fixtures and async-test hooks, for this directory only (pytest_plugins
# is refused outside the top-level conftest, and would put its autouse fixtures on every
# test of the suite)
from pytest_jupyter.jupyter_server import *  # noqa: F403


@pytest.fixture
def jp_server_config() -> dict[str, Any]:
    return {
        "ServerApp": {
            "jpserver_extensions": {"nbray.server_ext": True},
            "allow_unauthenticated_access": False,
        },
        "NbrayServer": {"num_cpus": 2},
    }


@pytest.fixture
def api(jp_fetch: Any) -> Any:
    """``await api("cluster")`` / ``await api("cluster/stop", body={})``: the parsed JSON."""

    async def call(path: str, body: Any = None, **params: Any) -> Any:
        kwargs: dict[str, Any] = {"params": params} if params else {}
        if body is not None:
            kwargs.update(method="POST", body=json.dumps(body))
        resp = await jp_fetch("nbray", "api", *path.split("/"), **kwargs)
        return json.loads(resp.body)

    return call
