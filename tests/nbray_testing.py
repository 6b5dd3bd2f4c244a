"""Helpers shared by the test suites: polling, leak checks, bounded subprocesses."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

SHM = Path("/dev/shm")
SHUTDOWN_LIMIT = 15.0


def nbray_segments() -> set[str]:
    return {p.name for p in SHM.glob("nbray-*")}


def session_segments(token: str) -> set[str]:
    """The shared-memory segments of the cluster whose session token is ``token``."""
    return {p.name for p in SHM.glob(f"nbray-{token}-*")}


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05) -> Any:
    """Poll ``predicate`` until it returns a truthy value; fail with a clear message."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s: {predicate}")
        time.sleep(interval)


def assert_no_children(timeout: float = SHUTDOWN_LIMIT) -> None:
    me = psutil.Process()

    def alive(p: psutil.Process) -> bool:
        try:
            return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:  # gone, or a zombie, meanwhile
            return False

    def gone() -> bool:
        try:
            return not [p for p in me.children(recursive=True) if alive(p)]
        except psutil.Error:
            return False

    try:
        wait_until(gone, timeout)
    except AssertionError:
        kids = [p for p in me.children(recursive=True) if alive(p)]
        left = []
        for p in kids:
            with contextlib.suppress(psutil.Error):
                left.append((p.pid, p.cmdline()))
                p.kill()
        raise AssertionError(f"processes left behind: {left}") from None


def run_python(
    code: str, timeout: float = 60.0, env: dict[str, str] | None = None, cwd: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter; on timeout kill it and show what it printed."""
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=cwd,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(
            f"script timed out after {timeout} s\nstdout:\n{out}\nstderr:\n{err}"
        ) from None
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def assert_oversized_code_is_refused(monkeypatch: Any) -> None:
    """With Ray's limit at 2 MiB, a remote function and an actor class that capture 3 MiB
    are refused at ``.remote()`` with Ray's messages, every time (on the engine set now)."""
    import pytest

    import nbray

    monkeypatch.setenv("FUNCTION_SIZE_ERROR_THRESHOLD", str(2 * 1024 * 1024))
    captured = bytes(3 * 1024 * 1024)

    @nbray.remote
    def closure() -> int:
        return len(captured)

    @nbray.remote
    class Holder:
        def size(self) -> int:
            return len(captured)

    with pytest.raises(ValueError, match=r"The remote function .*closure is too large \(3 MiB"):
        closure.remote()
    with pytest.raises(ValueError, match="FUNCTION_SIZE_ERROR_THRESHOLD=2 MiB"):
        closure.remote()  # refused every time, never half-sent
    with pytest.raises(ValueError, match="The actor Holder is too large"):
        Holder.remote()
    monkeypatch.delenv("FUNCTION_SIZE_ERROR_THRESHOLD")


CORE_API_SUITE = "tests/engines/test_core_api.py"


def run_core_api_suite(address: str, env: dict[str, str], timeout: float = 380) -> None:
    """Run tests/engines/test_core_api.py on the Ray engine against the Ray cluster at
    ``address`` in a child pytest (which isolates itself: ``env`` gives it the token)."""
    proc = subprocess.run(
        # the core API suite; the other files of tests/engines (libraries, runtime_env,
        # placement groups, generators) assume the private 2-CPU Ray their fixture starts
        [sys.executable, "-m", "pytest", CORE_API_SUITE, "-q", "-p", "no:cacheprovider"],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
        env={
            **os.environ,
            **env,
            "NBRAY_TEST_ENGINES": "ray",
            "NBRAY_TEST_RAY_ADDRESS": address,
        },
        timeout=timeout,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-3000:]
    assert " passed" in proc.stdout
