"""Fixtures for tests/hub: one JupyterHub for the module, with two users whose servers run
(``hub``), and a logged-in HTTP session per user (``session_of``). See hub_support."""

from __future__ import annotations

import contextlib
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from browser_support import REPO_ROOT, artifact, launch_chromium
from hub_support import (
    PASSWORD,
    USERS,
    Hub,
    hub_users,
    leftover_processes,
    nbray_root,
    private_base,
    require_hub_prerequisites,
    start_hub,
    start_server,
    stop_hub,
    tail,
    traversable,
    user_python,
)

SHM = Path("/dev/shm")


@pytest.fixture(scope="module")
def hub() -> Iterator[Hub]:
    """The Hub, its proxy, and both users' servers (nbray's extension starts each one's
    cluster with it). Afterwards: no process of the Hub, the proxy or the users is left,
    nor a /dev/shm segment of theirs, and the users are gone."""
    require_hub_prerequisites()
    base = private_base()
    try:
        with traversable(REPO_ROOT), hub_users(base) as users:
            python = user_python(users[USERS[0]], base)
            hub = start_hub(base, users, python)
            try:
                for name in USERS:
                    start_server(hub, name)
                yield hub
            finally:
                try:
                    stop_hub(hub)
                    deadline = time.monotonic() + 20
                    while (left := leftover_processes(hub)) and time.monotonic() < deadline:
                        time.sleep(0.2)
                finally:
                    shutil.copy(hub.log, artifact("jupyterhub.log"))
                    leftover_processes(hub, kill=True)  # whatever happened above
                uids = {u.uid for u in users.values()}
                segments = [p.name for p in SHM.glob("nbray-*") if _owner(p) in uids]
                sessions = [str(p) for u in users.values() for p in nbray_root(u).glob("session-*")]
                assert not left, "left running after the Hub stopped:\n" + "\n".join(left)
                assert not sessions, f"session directories left: {sessions}"
                assert not segments, f"/dev/shm segments left by the users: {segments}"
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _owner(path: Path) -> int | None:
    try:
        return path.stat().st_uid
    except FileNotFoundError:  # another test run's segment, freed meanwhile
        return None


def login(hub: Hub, name: str) -> requests.Session:
    """Log ``name`` in through the Hub's login form (as a browser would) and open their
    server once, so the session holds the server's own cookies (OAuth) and its _xsrf."""
    s = requests.Session()
    s.get(f"{hub.url}hub/login", timeout=30).raise_for_status()
    xsrf = s.cookies.get("_xsrf", path="/hub/")
    r = s.post(
        f"{hub.url}hub/login?next=/user/{name}/lab",
        data={"username": name, "password": PASSWORD, "_xsrf": xsrf},
        timeout=60,
    )
    assert r.status_code == 200 and r.url.startswith(f"{hub.url}user/{name}/lab"), (
        f"login of {name} ended at {r.url} ({r.status_code}):\n{tail(hub.log)}"
    )
    return s


@pytest.fixture(scope="module")
def session_of(hub: Hub) -> Iterator[Callable[[str], requests.Session]]:
    sessions: dict[str, requests.Session] = {}

    def get(name: str) -> requests.Session:
        if name not in sessions:
            sessions[name] = login(hub, name)
        return sessions[name]

    yield get
    for s in sessions.values():
        with contextlib.suppress(Exception):
            s.close()


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """A headless Chromium (playwright ``Browser``) for the module's browser tests."""
    yield from launch_chromium()


@pytest.fixture
def browser_as(
    chromium: Any, hub: Hub, request: pytest.FixtureRequest
) -> Iterator[Callable[[str], Any]]:
    """``browser_as(name)``: a page of a fresh browser context (its own cookies) where
    ``name`` logged in through the Hub's login form and JupyterLab opened at
    ``/user/<name>/lab``. A screenshot of each page is kept when the test fails."""
    contexts: list[tuple[str, Any]] = []

    def open_as(name: str) -> Any:
        context = chromium.new_context(viewport={"width": 1400, "height": 900})
        page = context.new_page()
        page.set_default_timeout(30_000)
        contexts.append((name, page))
        page.goto(f"{hub.url}hub/login?next=/user/{name}/lab")
        page.fill("#username_input", name)
        page.fill("#password_input", PASSWORD)
        page.click("#login_submit")
        page.wait_for_url(f"{hub.url}user/{name}/lab**", timeout=60_000)
        page.wait_for_selector("#jp-main-dock-panel", timeout=60_000)
        return page

    yield open_as
    failed = getattr(getattr(request.node, "rep_call", None), "failed", False)
    for name, page in contexts:
        if failed:
            with contextlib.suppress(Exception):
                page.screenshot(path=str(artifact(f"{request.node.name}-{name}-FAILED.png")))
        page.context.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.when == "call":
        item.rep_call = report  # type: ignore[attr-defined]
    return report
