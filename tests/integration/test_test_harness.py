"""The suite's own harness (tests/conftest.py), run on probe tests in a child pytest."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.timeout(120)


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
    env = {**os.environ, "PYTHONPATH": str(TESTS)}
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
            str(tmp_path / "pytest.ini"),
            "--rootdir",
            str(tmp_path),
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=100,
        env=env,
        cwd=tmp_path,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "2 passed" in out, out
    # one dump: the test without a timeout of its own, after the ini's 2 s
    assert out.count("Timeout (0:00:02)!") == 1, out
    assert "test_slow_without_one" in out.split("Timeout (0:00:02)!")[1], out
