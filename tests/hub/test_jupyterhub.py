"""nbray under a real JupyterHub: two Unix users, each with a single-user server at
``/user/<name>/`` (LocalProcessSpawner, so each runs as its user) behind the Hub's login
(DummyAuthenticator) and configurable-http-proxy.

- every nbray route, the events WebSocket and the dashboard work for their user through
  the proxy, with the Hub's cookies (and a Hub API token);
- nothing of one user's is reachable by the other: not their routes (cookies, token,
  WebSocket), nor, as the other Unix user, their session directory, secret, socket or
  /dev/shm segments;
- POSTs need the XSRF token that the page holds;
- nbray's REST and WebSocket traffic counts as the server's activity, as the Hub (and so
  its idle culler) sees it.

- in Chromium, logged in through the Hub's form: the panel in JupyterLab and the
  dashboard page show the user's own cluster and control it; a cross-site POST is refused.
"""

from __future__ import annotations

import html
import json
import os
import stat
import subprocess
import textwrap
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psutil
import pytest
import requests
import websocket
from browser_support import artifact
from hub_support import USERS, Hub, HubUser, nbray_root
from nbray_testing import wait_until

pytestmark = [pytest.mark.timeout(240)]

A, B = USERS
ROUTES = ["cluster", "nodes", "tasks", "summary", "graph", "timeline", "ssh/status"]

Sessions = Callable[[str], requests.Session]


def user_url(hub: Hub, name: str, path: str) -> str:
    return f"{hub.url}user/{name}/{path}"


def cluster(hub: Hub, s: requests.Session, name: str) -> dict[str, Any]:
    r = s.get(user_url(hub, name, "nbray/api/cluster"), timeout=30)
    assert r.status_code == 200, r.text
    return dict(r.json())


def xsrf_of(s: requests.Session, name: str) -> str:
    """The single-user server's _xsrf cookie (what JupyterLab sends back as X-XSRFToken)."""
    value = s.cookies.get("_xsrf", path=f"/user/{name}/")
    assert value, f"no _xsrf cookie for /user/{name}/: {s.cookies}"
    return str(value)


def cookie_header(s: requests.Session, url: str) -> str:
    return str(s.prepare_request(requests.Request("GET", url)).headers.get("Cookie", ""))


def ws_url(hub: Hub, name: str) -> str:
    return user_url(hub, name, "nbray/api/events").replace("http://", "ws://", 1)


def open_events(hub: Hub, name: str, **headers: str) -> websocket.WebSocket:
    return websocket.create_connection(ws_url(hub, name), timeout=30, header=headers)


def test_every_route_works_for_its_user_through_the_proxy(hub: Hub, session_of: Sessions) -> None:
    seen = {}
    for name in USERS:
        s = session_of(name)
        for route in ROUTES:
            r = s.get(user_url(hub, name, f"nbray/api/{route}"), timeout=30)
            assert r.status_code == 200, f"{name} {route}: {r.status_code} {r.text[:300]}"
            r.json()
        page = s.get(user_url(hub, name, "nbray/dashboard"), timeout=30)
        assert page.status_code == 200
        # the page loads its bundle under the user's prefix and tells it the base URL
        assert f'src="/user/{name}/nbray/static/dashboard.js"' in page.text
        assert f'"baseUrl": "/user/{name}/"' in page.text
        assert s.get(user_url(hub, name, "nbray/static/dashboard.js"), timeout=30).ok
        status = cluster(hub, s, name)
        assert status["state"] == "running"
        seen[name] = status
    # each cluster is its own user's: the head runs as them, in their private directory
    for name, status in seen.items():
        user: HubUser = hub.users[name]
        assert psutil.Process(status["head_pid"]).uids().real == user.uid
        session = Path(status["session_dir"])
        assert session.parent == nbray_root(user)
        for path in (nbray_root(user), session):
            st = path.stat()
            assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (user.uid, 0o700), path
        secret = (session / "secret").stat()
        assert (secret.st_uid, stat.S_IMODE(secret.st_mode)) == (user.uid, 0o600)
    assert seen[A]["head_pid"] != seen[B]["head_pid"]


def test_events_websocket_streams_to_its_user(hub: Hub, session_of: Sessions) -> None:
    for name in USERS:
        s = session_of(name)
        ws = open_events(hub, name, Cookie=cookie_header(s, user_url(hub, name, "")))
        try:
            hello = json.loads(ws.recv())
            assert hello["hello"] and hello["state"] == "running"
        finally:
            ws.close()


def refused(r: requests.Response) -> bool:
    """A refusal as the Hub's single-user server gives it: 403, or a redirect to a login
    (a page asked for without credentials)."""
    if r.status_code == 403:
        return True
    return r.status_code in (302, 303) and "/hub/" in r.headers.get("Location", "")


def test_without_credentials_every_route_is_refused(hub: Hub) -> None:
    s = requests.Session()
    for name in USERS:
        for route in ROUTES:
            r = s.get(user_url(hub, name, f"nbray/api/{route}"), allow_redirects=False)
            assert refused(r), f"{route}: {r.status_code}"
        for path in ("nbray/dashboard", "nbray/static/dashboard.js"):
            r = s.get(user_url(hub, name, path), allow_redirects=False)
            assert refused(r), f"{path}: {r.status_code}"
        r = s.post(user_url(hub, name, "nbray/api/cluster/stop"), allow_redirects=False)
        assert refused(r), f"stop: {r.status_code}"
        with pytest.raises(websocket.WebSocketBadStatusException) as exc:
            open_events(hub, name)
        assert exc.value.status_code in (302, 403)


def test_a_cannot_reach_bs_server_by_any_route(hub: Hub, session_of: Sessions) -> None:
    a = session_of(A)
    before = cluster(hub, session_of(B), B)
    for route in ROUTES:
        # following the Hub's OAuth redirects ends in its refusal (A may not access B)
        r = a.get(user_url(hub, B, f"nbray/api/{route}"), timeout=30)
        assert r.status_code == 403, f"{route}: {r.status_code} {r.url}"
    r = a.get(user_url(hub, B, "nbray/dashboard"), timeout=30)
    assert r.status_code == 403 and "nbray-dashboard" not in r.text
    # A's own XSRF token, sent to B's server: still not A's to stop
    r = a.post(
        user_url(hub, B, "nbray/api/cluster/stop"),
        headers={"X-XSRFToken": xsrf_of(a, A)},
        allow_redirects=False,
    )
    assert refused(r), r.status_code
    with pytest.raises(websocket.WebSocketBadStatusException) as exc:
        open_events(hub, B, Cookie=cookie_header(a, user_url(hub, B, "")))
    assert exc.value.status_code in (302, 403)
    # a Hub API token of A's: good for A's server, refused by B's
    token = hub.api(f"users/{A}/tokens", method="POST", body={"note": "nbray test"})["token"]
    auth = {"Authorization": f"token {token}"}
    assert requests.get(user_url(hub, A, "nbray/api/cluster"), headers=auth, timeout=30).ok
    for route in ROUTES:
        r = requests.get(user_url(hub, B, f"nbray/api/{route}"), headers=auth, timeout=30)
        assert r.status_code == 403, f"{route}: {r.status_code}"
    r = requests.post(user_url(hub, B, "nbray/api/cluster/stop"), headers=auth, timeout=30)
    assert r.status_code == 403
    with pytest.raises(websocket.WebSocketBadStatusException) as exc:
        open_events(hub, B, **auth)
    assert exc.value.status_code == 403
    after = cluster(hub, session_of(B), B)
    assert (after["state"], after["head_pid"]) == ("running", before["head_pid"])


def test_posts_need_the_pages_xsrf_token(hub: Hub, session_of: Sessions) -> None:
    s = session_of(A)
    before = cluster(hub, s, A)
    url = user_url(hub, A, "nbray/api/cluster/restart")
    # the Hub's cookies alone (what a cross-site form would carry): refused, nothing done
    r = s.post(url, json={}, allow_redirects=False, timeout=30)
    assert r.status_code == 403, r.status_code
    assert cluster(hub, s, A)["head_pid"] == before["head_pid"]
    # with the token the page reads from the _xsrf cookie: done
    r = s.post(url, json={}, headers={"X-XSRFToken": xsrf_of(s, A)}, timeout=120)
    assert r.status_code == 200, r.text
    after = r.json()
    assert after["state"] == "running" and after["head_pid"] != before["head_pid"]


# runs as user B: holds a 32 MB object (in /dev/shm) until its stdin closes
HOLD_OBJECT = """
import sys
import nbray
import numpy as np

nbray.init()  # NBRAY_ADDRESS: B's server's cluster
ref = nbray.put(np.ones(4_000_000))
print("ready", flush=True)
sys.stdin.read()
"""

# runs as user A: tries each of B's files; prints what happened to each attempt
PROBE = """
import json, os, socket, sys

paths = json.loads(sys.argv[1])
results = {}


def attempt(what, func):
    try:
        func()
        results[what] = "OPENED"
    except PermissionError:
        results[what] = "EACCES"
    except Exception as exc:
        results[what] = f"{type(exc).__name__}: {exc}"


def connect(path):
    s = socket.socket(socket.AF_UNIX)
    try:
        s.connect(path)
    finally:
        s.close()


attempt("list B's nbray root", lambda: os.listdir(paths["root"]))
attempt("list B's session", lambda: os.listdir(paths["session"]))
attempt("read B's secret", lambda: open(paths["session"] + "/secret", "rb").read())
attempt("connect B's socket", lambda: connect(paths["session"] + "/sock"))
attempt("connect B's address", lambda: connect(paths["address"]))
for seg in paths["segments"]:
    attempt("read " + seg, lambda seg=seg: open(seg, "rb").read(1))
    attempt("write " + seg, lambda seg=seg: open(seg, "r+b").write(b"x"))
import nbray

attempt("nbray.init(B's address)", lambda: nbray.init(address=paths["address"]))
print(json.dumps(results))
"""


def as_user(hub: Hub, user: HubUser, args: list[str], **kwargs: Any) -> Any:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(user.home)}
    return dict(
        args=[str(hub.python), *args],
        user=user.uid,
        group=user.gid,
        extra_groups=[],
        cwd=str(user.home),
        env={**env, **kwargs.pop("env", {})},
        **kwargs,
    )


def test_a_cannot_open_bs_session_socket_or_segments(hub: Hub, session_of: Sessions) -> None:
    b = cluster(hub, session_of(B), B)
    user_a, user_b = hub.users[A], hub.users[B]
    token = Path(b["session_dir"]).name.rsplit("-", 1)[-1]
    holder = subprocess.Popen(
        **as_user(
            hub,
            user_b,
            ["-c", HOLD_OBJECT],
            env={"NBRAY_ADDRESS": b["address"]},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready", (
            holder.stderr.read() if holder.stderr else ""
        )
        segments = wait_until(lambda: sorted(Path("/dev/shm").glob(f"nbray-{token}-*")), 10)
        for seg in segments:
            st = seg.stat()
            assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (user_b.uid, 0o600), seg
        paths = {
            "root": str(nbray_root(user_b)),
            "session": b["session_dir"],
            "address": b["address"],
            "segments": [str(s) for s in segments],
        }
        probe = subprocess.run(
            **as_user(
                hub,
                user_a,
                ["-c", PROBE, json.dumps(paths)],
                capture_output=True,
                text=True,
                timeout=60,
            )
        )
        assert probe.returncode == 0, probe.stderr
        results = json.loads(probe.stdout.strip().splitlines()[-1])
        assert set(results.values()) == {"EACCES"}, results
    finally:
        if holder.stdin:
            holder.stdin.close()
        holder.wait(30)
    # B's object went with its owner
    wait_until(lambda: not list(Path("/dev/shm").glob(f"nbray-{token}-*")), 10)


def server_activity(hub: Hub, s: requests.Session, name: str) -> datetime:
    """The single-user server's last_activity (its /api/status does not count itself)."""
    r = s.get(user_url(hub, name, "api/status"), timeout=30)
    assert r.status_code == 200
    return datetime.fromisoformat(r.json()["last_activity"])


def hub_activity(hub: Hub, name: str) -> datetime | None:
    value = hub.api(f"users/{name}")["servers"][""]["last_activity"]
    return datetime.fromisoformat(value) if value else None


def test_nbray_traffic_counts_as_the_servers_activity_for_the_hub(
    hub: Hub, session_of: Sessions
) -> None:
    s = session_of(B)
    # REST: each nbray route moves the server's last_activity, and the Hub learns it
    for route in ["cluster", "nodes", "summary"]:
        before = server_activity(hub, s, B)
        now = datetime.now(UTC)
        sent = now.replace(microsecond=now.microsecond // 1000 * 1000)  # (the proxy's are ms)
        assert s.get(user_url(hub, B, f"nbray/api/{route}"), timeout=30).ok
        moved = wait_until(lambda b=before: (t := server_activity(hub, s, B)) > b and t, 10)
        seen = wait_until(lambda m=moved: (t := hub_activity(hub, B)) and t >= m, 30)
        assert seen
        # the proxy recorded the request on B's route too (the Hub's other source)
        route_b = hub.proxy_routes()[f"/user/{B}"]
        assert datetime.fromisoformat(route_b["last_activity"]) >= sent, route_b
    # the events WebSocket: opening it counts as activity too
    before = server_activity(hub, s, B)
    ws = open_events(hub, B, Cookie=cookie_header(s, user_url(hub, B, "")))
    try:
        json.loads(ws.recv())
    finally:
        ws.close()
    moved = wait_until(lambda: (t := server_activity(hub, s, B)) > before and t, 10)
    wait_until(lambda: (t := hub_activity(hub, B)) and t >= moved, 30)


def test_each_users_processes_run_as_that_user_and_listen_on_loopback_only(
    hub: Hub, session_of: Sessions
) -> None:
    """The head and its workers run with their user's uid (none as the other user), and no
    process of either user listens on TCP beyond loopback (the clusters use Unix sockets;
    the single-user servers listen on 127.0.0.1 behind the proxy)."""
    uids = {u.uid for u in hub.users.values()}
    pids = {
        p.pid
        for p in psutil.process_iter(["uids"])
        if p.info["uids"] and p.info["uids"].real in uids
    }
    listening = [
        (c.pid, c.laddr)
        for c in psutil.net_connections(kind="inet")
        if c.status == psutil.CONN_LISTEN and c.pid in pids
    ]
    assert listening, "the single-user servers should listen (on loopback)"
    assert all(addr.ip in ("127.0.0.1", "::1") for _, addr in listening), listening
    for name in USERS:
        status = cluster(hub, session_of(name), name)
        head = psutil.Process(status["head_pid"])
        family = [head, *head.children(recursive=True)]
        assert {p.uids().real for p in family} == {hub.users[name].uid}, textwrap.shorten(
            str([(p.pid, p.uids(), p.cmdline()) for p in family]), 2000
        )
    assert os.geteuid() == 0  # (the test itself runs as root: see hub_support)


@pytest.mark.browser
def test_panel_and_dashboard_in_lab_are_the_users_own(
    hub: Hub, session_of: Sessions, browser_as: Callable[[str], Any]
) -> None:
    """In Chromium, logged in through the Hub's form: the panel in /user/a/lab shows A's
    running cluster with live metrics (the WebSocket through the proxy), its Restart button
    restarts A's cluster with 2 CPUs (the panel's POST carries the XSRF token) and not B's;
    the dashboard page works under the prefix; B's dashboard is refused to A, and B's own
    browser shows B's one-CPU cluster, which B's dashboard stops and starts again."""
    before = {name: cluster(hub, session_of(name), name)["head_pid"] for name in USERS}
    page = browser_as(A)
    sockets: list[str] = []
    page.on("websocket", lambda ws: sockets.append(ws.url))
    page.locator('.jp-SideBar [data-id="nbray-panel"]').click()
    panel = page.locator("#nbray-panel")
    panel.wait_for(state="visible")
    panel.locator(".nbray-state", has_text="running").wait_for()
    panel.locator(".nbray-node-card .nbray-bar-row", has_text="CPU").wait_for()
    panel.locator(".nbray-live", has_text="live").wait_for()
    page.screenshot(path=str(artifact("hub-panel.png")))
    # the Hub's cookies authenticate the event stream: no token in its URL (proxies log URLs)
    events = [url for url in sockets if "/nbray/api/events" in url]
    assert events and all(url == ws_url(hub, A) for url in events), events

    restart = user_url(hub, A, "nbray/api/cluster/restart")
    # (JupyterLab's requests carry a cache-busting query)
    panel.locator("input.nbray-cpus").fill("2")  # A's cluster restarts with 2 CPUs, B's has 1
    with page.expect_response(lambda r: r.url.split("?")[0] == restart) as info:
        panel.locator("button.nbray-restart").click()
    assert info.value.status == 200, info.value.text()
    assert info.value.request.method == "POST"
    assert info.value.request.headers.get("x-xsrftoken")
    after = cluster(hub, session_of(A), A)
    assert after["state"] == "running" and after["head_pid"] != before[A]
    assert after["resources"]["CPU"] == 2
    b_status = cluster(hub, session_of(B), B)
    assert (b_status["head_pid"], b_status["resources"]["CPU"]) == (before[B], 1)
    panel.locator(".nbray-state", has_text="running").wait_for()
    panel.locator(".nbray-node-name", has_text="2 CPU").wait_for()

    page.goto(user_url(hub, A, "nbray/dashboard"))
    dash = page.locator(".nbray-dashboard")
    dash.locator(".nbray-state", has_text="running").wait_for()
    dash.locator(".nbray-node-card .nbray-bar-row", has_text="CPU").wait_for()
    dash.locator(".nbray-node-name", has_text="2 CPU").wait_for()
    page.screenshot(path=str(artifact("hub-dashboard.png")), full_page=True)
    events = [url for url in sockets if "/nbray/api/events" in url]
    assert len(events) >= 2 and all(url == ws_url(hub, A) for url in events), events

    response = page.goto(user_url(hub, B, "nbray/dashboard"))
    assert response is not None and response.status == 403
    assert page.locator(".nbray-dashboard").count() == 0

    # B, logged in in a browser of their own, sees their own one-CPU cluster
    page_b = browser_as(B)
    page_b.goto(user_url(hub, B, "nbray/dashboard"))
    dash_b = page_b.locator(".nbray-dashboard")
    dash_b.locator(".nbray-state", has_text="running").wait_for()
    dash_b.locator(".nbray-node-name", has_text="1 CPU").wait_for()
    # the dashboard page's own POSTs carry the XSRF token too: Stop, then Start
    for action, state in (("stop", "stopped"), ("start", "running")):
        url = user_url(hub, B, f"nbray/api/cluster/{action}")
        with page_b.expect_response(lambda r, u=url: r.url.split("?")[0] == u) as info:
            dash_b.locator(f"button.nbray-{action}").click()
        assert info.value.status == 200, info.value.text()
        assert info.value.request.headers.get("x-xsrftoken")
        dash_b.locator(".nbray-state", has_text=state).wait_for()
    dash_b.locator(".nbray-node-name", has_text="1 CPU").wait_for()


class _EvilPage(BaseHTTPRequestHandler):
    """Another origin (same host, other port) whose page POSTs a form to the target."""

    target = ""

    def do_GET(self) -> None:
        body = (
            f'<form id="f" method="POST" action="{html.escape(self.target)}"></form>'
            "<script>document.getElementById('f').submit()</script>"
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        """Quiet."""


@pytest.mark.browser
def test_a_cross_site_post_is_refused(
    hub: Hub, session_of: Sessions, browser_as: Callable[[str], Any]
) -> None:
    """A page of another origin, opened in A's logged-in browser, submits a form to stop
    A's cluster: the browser sends A's cookies (same site) but no XSRF token: refused."""
    before = cluster(hub, session_of(A), A)
    page = browser_as(A)
    target = user_url(hub, A, "nbray/api/cluster/stop")
    handler = type("Evil", (_EvilPage,), {"target": target})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with page.expect_response(lambda r: r.url == target) as info:
            page.goto(f"http://127.0.0.1:{server.server_address[1]}/")
        assert info.value.status == 403
        assert info.value.request.method == "POST"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
    after = cluster(hub, session_of(A), A)
    assert (after["state"], after["head_pid"]) == ("running", before["head_pid"])
