"""Helpers for the server-extension tests (async polling, leak checks, real kernels started
through the server's kernel API)."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import psutil
from nbray_testing import session_segments


async def until(predicate: Any, within: float = 30.0) -> Any:
    """Await ``predicate()`` every 0.1 s until it returns something truthy; return that."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        value = await predicate()
        if value:
            return value
        assert loop.time() < deadline, f"condition not met within {within} s"
        await asyncio.sleep(0.1)


def gone(pid: int) -> bool:
    """Whether the process ``pid`` has exited (a zombie counts as exited)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def left_behind(status: dict[str, Any]) -> list[str]:
    """What a stopped cluster (described by its last status) left: processes, files,
    shared-memory segments. Empty when it cleaned up."""
    left = []
    if not gone(status["head_pid"]):
        left.append(f"head process {status['head_pid']}")
    for key in ("session_dir", "address"):
        if os.path.lexists(status[key]):  # a dangling address link counts too
            left.append(f"{key} {status[key]}")
    token = Path(status["session_dir"]).name.rsplit("-", 1)[-1]
    left.extend(f"segment {s}" for s in session_segments(token))
    return left


def address_matches(status: dict[str, Any], address: str) -> bool:
    """``address`` (NBRAY_ADDRESS) is a link to the running cluster's session directory,
    whose secret is private."""
    link = Path(address)
    return (
        link == Path(status["address"])
        and link.resolve() == Path(status["session_dir"]).resolve()
        and (link / "secret").stat().st_mode & 0o077 == 0
    )


async def execute(kc: Any, code: str) -> str:
    """Run ``code`` in the kernel; its stdout, or fail with the kernel's error."""
    out: list[str] = []

    def hook(msg: dict[str, Any]) -> None:
        if msg["msg_type"] == "stream":
            out.append(msg["content"]["text"])
        elif msg["msg_type"] == "error":
            out.append("\n".join(msg["content"]["traceback"]))

    reply = await kc.execute_interactive(code, output_hook=hook, timeout=60)
    assert reply["content"]["status"] == "ok", "".join(out)
    return "".join(out)


async def start_kernel(jp_fetch: Any, jp_serverapp: Any) -> tuple[str, Any]:
    resp = await jp_fetch("api", "kernels", method="POST", body=json.dumps({"name": "python3"}))
    kid = json.loads(resp.body)["id"]
    kc = jp_serverapp.kernel_manager.get_kernel(kid).client()
    kc.start_channels()
    await kc.wait_for_ready(timeout=60)
    return kid, kc
