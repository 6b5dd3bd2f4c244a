"""nbray behind a real JupyterHub (two Unix users, LocalProcessSpawner, DummyAuthenticator)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import requests
from hub_support import USERS, Hub

pytestmark = [pytest.mark.timeout(240)]

A, B = USERS


def test_each_user_reaches_their_own_cluster(
    hub: Hub, session_of: Callable[[str], requests.Session]
) -> None:
    for name in USERS:
        s = session_of(name)
        r = s.get(f"{hub.url}user/{name}/nbray/api/cluster", timeout=30)
        assert r.status_code == 200, r.text
        print(r.json())
