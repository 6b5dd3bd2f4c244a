"""Fault-injection suite fixtures. ``figures`` keeps what a scenario measured (kills,
attempts, rounds) in test-artifacts/chaos/figures.jsonl, one JSON line per test, so
``make soak`` leaves the numbers the README quotes."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from chaos_support import SOAK

FIGURES = Path(__file__).resolve().parents[2] / "test-artifacts" / "chaos" / "figures.jsonl"


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    record: dict[str, Any] = {}
    started = time.monotonic()
    yield record
    FIGURES.parent.mkdir(parents=True, exist_ok=True)
    line = {
        "test": request.node.name,
        "soak": SOAK,
        "seconds": round(time.monotonic() - started, 1),
        **record,
    }
    with FIGURES.open("a") as f:
        f.write(json.dumps(line) + "\n")
