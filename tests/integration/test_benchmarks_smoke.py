"""The benchmark suite runs, and every nbray workload's result checks pass (no timings)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(300)
def test_quick_benchmarks_check_every_workload(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.run",
            "--quick",
            "--engines",
            "nbray,serial",
            "--out",
            str(tmp_path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((tmp_path / "latest.json").read_text())
    text = json.dumps(report)
    for bad in ("FAILED", "ERROR", "TIMEOUT", "CRASHED"):
        assert bad not in text, bad
    assert (tmp_path / "latest.md").read_text().count("nbray") >= 8
