"""The suite's own harness (tests/conftest.py), run on probe tests in a child pytest."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import psutil
import pytest
from nbray_testing import wait_until

TESTS = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.timeout(120)


def run_probe(folder: Path, **env: str) -> tuple[str, int]:
    """pytest in a child on the probe tests and pytest.ini in ``folder``, with the suite's
    conftest; its output and exit status."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "conftest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-c",
            str(folder / "pytest.ini"),
            "--rootdir",
            str(folder),
            str(folder),
        ],
        capture_output=True,
        text=True,
        timeout=100,
        env={**os.environ, "PYTHONPATH": str(TESTS), **env},
        cwd=folder,
    )
    return proc.stdout + proc.stderr, proc.returncode


def test_a_slow_test_that_passes_prints_no_stack_dump(tmp_path: Path) -> None:
    (tmp_path / "pytest.ini").write_text("[pytest]\nfaulthandler_timeout = 2\n")
    (tmp_path / "test_probe.py").write_text(
        textwrap.dedent(
            """\
            import time
            import pytest

            @pytest.mark.timeout(60)
            def test_slow_with_its_own_timeout():
                time.sleep(4)

            def test_slow_without_one():  # the ini's faulthandler_timeout still applies
                time.sleep(4)
            """
        )
    )
    out, rc = run_probe(tmp_path)
    assert rc == 0, out
    assert "2 passed" in out, out
    # one dump: the test without a timeout of its own, after the ini's 2 s
    assert out.count("Timeout (0:00:02)!") == 1, out
    assert "test_slow_without_one" in out.split("Timeout (0:00:02)!")[1], out


def test_a_test_pytest_timeout_cannot_end_stops_the_run_naming_it(tmp_path: Path) -> None:
    """SIGALRM blocked: pytest-timeout never fires; the hang guard ends the run, kills the
    test's child process, removes its files and names the test in the last line."""
    pid_file = tmp_path / "child.pid"
    (tmp_path / "pytest.ini").write_text("[pytest]\nfaulthandler_timeout = 100\n")
    (tmp_path / "test_probe.py").write_text(
        textwrap.dedent(
            f"""\
            import signal, subprocess, time
            import pytest

            @pytest.mark.timeout(1)
            def test_hangs_with_alarms_blocked():
                child = subprocess.Popen(["sleep", "1000"])
                open({str(pid_file)!r}, "w").write(str(child.pid))
                signal.pthread_sigmask(signal.SIG_BLOCK, {{signal.SIGALRM}})
                time.sleep(100)
            """
        )
    )
    roots_before = set(Path("/tmp").glob("nbt*"))
    out, rc = run_probe(tmp_path, NBRAY_HANG_GRACE_S="2")
    assert rc == 3, out
    assert "in test_hangs_with_alarms_blocked" in out, out  # the stacks
    last = out.strip().splitlines()[-1]
    assert last.startswith("HUNG: test_probe.py::test_hangs_with_alarms_blocked"), out
    assert set(Path("/tmp").glob("nbt*")) <= roots_before, "the probe's private root is left"
    child = int(pid_file.read_text())
    assert wait_until(lambda: not _alive(child), timeout=10), f"the probe's child {child} lives on"


def _alive(pid: int) -> bool:
    try:  # killed, its parent gone: a zombie until whoever inherited it reaps it
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
