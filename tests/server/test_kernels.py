"""Kernels started by the server join its cluster with a bare ``nbray.init()``; a kernel
that restarts or dies has its work cancelled while the cluster (and detached actors)
carry on. Real ipykernel kernels, started through the server's REST API."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from server_support import execute, start_kernel, until
from tornado.websocket import WebSocketClientConnection

from nbray._base.events import separate_states

pytestmark = pytest.mark.timeout(120)

SUBMIT = """
import time, nbray
nbray.init()

@nbray.remote
def sleepy(i):
    time.sleep(600)

@nbray.remote
class Keeper:
    def ping(self):
        return "pong"

keeper = Keeper.options(name="keeper", lifetime="detached").remote()
refs = [sleepy.remote(i) for i in range(2)]
print(nbray.get(keeper.ping.remote(), timeout=30))
"""


async def test_kernel_restart_cancels_its_tasks_and_cluster_carries_on(
    jp_fetch: Any, jp_serverapp: Any, jp_ws_fetch: Any, api: Any
) -> None:
    before = await api("cluster")
    ws: WebSocketClientConnection = await jp_ws_fetch("nbray", "api", "events")
    kid, kc = await start_kernel(jp_fetch, jp_serverapp)
    try:
        assert "pong" in await execute(kc, SUBMIT)

        async def two_running() -> Any:
            running = (await api("tasks", state="RUNNING", name="sleepy"))["tasks"]
            return running if len(running) == 2 else None

        running = await until(two_running)
        status = await api("cluster")
        assert status["clients"] == 1  # the kernel (the server's own connection not counted)
        # its share of the cluster, named by this server's kernel id
        pid = jp_serverapp.kernel_manager.get_kernel(kid).provisioner.pid
        assert status["kernels"] == [
            {"pid": pid, "running": 2, "queued": 0, "kernel_id": kid, "path": ""}
        ]

        await jp_fetch("api", "kernels", kid, "restart", method="POST", body="{}")

        async def cancelled() -> Any:
            ids = {t["task_id"] for t in running}
            tasks = (await api("tasks", name="sleepy"))["tasks"]
            states = {t["state"] for t in tasks if t["task_id"] in ids}
            return states == {"CANCELLED"}

        await until(cancelled)
        after = await api("cluster")
        assert after["state"] == "running"
        assert after["head_pid"] == before["head_pid"]  # the same cluster carries on
        assert after["actors"] == 1  # the detached actor survived the restart
        assert after["tasks"].get("RUNNING", 0) == 0

        # the restarted kernel joins again, with no address, and finds the actor
        await kc.wait_for_ready(timeout=60)
        out = await execute(
            kc,
            "import nbray; nbray.init()\n"
            "print(nbray.get(nbray.get_actor('keeper').ping.remote(), timeout=30))\n"
            "nbray.kill(nbray.get_actor('keeper'))",
        )
        assert "pong" in out

        # the WebSocket streamed the whole story: submitted, running, cancelled
        seen: set[str] = set()
        while not {"PENDING", "RUNNING", "CANCELLED"} <= seen:
            msg = json.loads(await asyncio.wait_for(ws.read_message(), 10))
            seen |= {
                e["state"]
                for coalesced in msg["events"]
                for e in separate_states(coalesced)
                if e.get("type") == "task"
            }
        assert msg["summary"]["counts"]
    finally:
        ws.close()
        kc.stop_channels()
        await jp_fetch("api", "kernels", kid, method="DELETE")

    async def kernel_gone() -> Any:
        return (await api("cluster"))["clients"] == 0

    await until(kernel_gone)


async def test_init_with_resources_in_a_kernel_starts_a_private_cluster(
    jp_fetch: Any, jp_serverapp: Any, api: Any
) -> None:
    """``nbray.init(num_cpus=1)`` describes a cluster of its own: the kernel gets a private
    one (as without the server) and a warning saying so, while a bare ``init()`` joins the
    server's."""
    kid, kc = await start_kernel(jp_fetch, jp_serverapp)
    try:
        out = await execute(
            kc,
            "import nbray\nctx = nbray.init(num_cpus=1)\n"
            "print(ctx.owned, nbray.cluster_resources()['CPU'])\nnbray.shutdown()\n"
            "ctx = nbray.init()\nprint(ctx.owned, nbray.cluster_resources()['CPU'])",
        )
        lines = out.split("\n")
        assert [line for line in lines if line in ("True 1.0", "False 2.0")] == [
            "True 1.0",
            "False 2.0",
        ]
        warning = "PrivateClusterWarning: nbray.init(num_cpus=1) started a private cluster"
        assert sum(warning in line for line in lines) == 1, out
        assert (await api("cluster"))["clients"] == 1
    finally:
        kc.stop_channels()
        await jp_fetch("api", "kernels", kid, method="DELETE")


PRINTS = """
import sys, nbray
nbray.init()

@nbray.remote
def chatty(n):
    for i in range(n):
        print(f"line {i} of chatty")
    print("to stderr", file=sys.stderr)
    print("x" * 10_000)
    return n

print(nbray.get(chatty.remote(3), timeout=60))
"""


async def test_a_tasks_output_reaches_the_logs_route(
    jp_fetch: Any, jp_serverapp: Any, jp_ws_fetch: Any, api: Any
) -> None:
    """While a dashboard watches (here: the WebSocket), a task's stdout and stderr are kept
    per task and served by ``api/tasks/<id>/logs``; the kernel still gets all of it."""
    ws: WebSocketClientConnection = await jp_ws_fetch("nbray", "api", "events")
    kid, kc = await start_kernel(jp_fetch, jp_serverapp)
    try:
        await until(lambda: _subscribed(jp_serverapp))
        out = await execute(kc, PRINTS)
        assert "line 2 of chatty" in out and "x" * 10_000 in out  # the owner gets it whole
        # the head sends its events in batches (0.1 s): the server's table follows shortly
        (task,) = await until(lambda: _tasks_named("chatty", api))

        async def logged() -> Any:
            logs = await api(f"tasks/{task['task_id']}/logs")
            text = "".join(p["text"] for p in logs["lines"])
            return logs if "line 2 of chatty" in text and "x" * 100 in text else None

        logs = await until(logged)
        text = "".join(p["text"] for p in logs["lines"] if p["stream"] == "stdout")
        assert [f"line {i} of chatty" for i in range(3)] == text.splitlines()[:3]
        assert any(p["stream"] == "stderr" and "to stderr" in p["text"] for p in logs["lines"])
        # the 10 000-character line reaches watchers cut to a few KB, and says so
        long = [p for p in logs["lines"] if "xxxx" in p["text"]]
        assert long and all(len(p["text"]) <= 4096 for p in long)
        assert any(p["truncated"] for p in long)
        # and the WebSocket streamed the same output as "log" events
        seen = ""
        while "line 2 of chatty" not in seen:
            msg = json.loads(await asyncio.wait_for(ws.read_message(), 10))
            seen += "".join(e["text"] for e in msg["events"] if e.get("type") == "log")
    finally:
        ws.close()
        kc.stop_channels()
        await jp_fetch("api", "kernels", kid, method="DELETE")


async def _tasks_named(name: str, api: Any) -> list[dict[str, Any]]:
    return list((await api("tasks", name=name))["tasks"])


async def _subscribed(jp_serverapp: Any) -> bool:
    return bool(jp_serverapp.web_app.settings["nbray_manager"].subscribed)


async def test_the_stream_says_when_a_kernel_joins_and_leaves(
    jp_fetch: Any, jp_serverapp: Any, jp_ws_fetch: Any, api: Any
) -> None:
    """A kernel's ``nbray.shutdown()`` reaches the panel as a ``client`` event at once (the
    panel refreshes its kernel count on it); before, nothing was published, and the count
    stayed stale until some other event came."""
    ws: WebSocketClientConnection = await jp_ws_fetch("nbray", "api", "events")
    manager = jp_serverapp.web_app.settings["nbray_manager"]

    async def subscribed() -> bool:
        return bool(manager.subscribed)

    await until(subscribed)  # the WebSocket's subscription is made off the IOLoop
    kid, kc = await start_kernel(jp_fetch, jp_serverapp)

    async def client_event(state: str) -> dict[str, Any]:
        while True:
            msg = json.loads(await asyncio.wait_for(ws.read_message(), 20))
            for e in msg["events"]:
                if e.get("type") == "client" and e["state"] == state:
                    return dict(e)

    try:
        await execute(kc, "import nbray\nnbray.init()")
        joined = await client_event("CONNECTED")
        assert joined["role"] == "client" and joined["pid"] > 0
        assert (await api("cluster"))["clients"] == 1
        await execute(kc, "nbray.shutdown()")
        left = await client_event("DISCONNECTED")
        assert left["conn_id"] == joined["conn_id"]
        assert (await api("cluster"))["clients"] == 0
    finally:
        ws.close()
        kc.stop_channels()
        await jp_fetch("api", "kernels", kid, method="DELETE")
