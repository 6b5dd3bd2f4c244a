"""demo_notebooks/quickstart.ipynb runs top to bottom in a real kernel and gets the
right answers, both serially and as nbray tasks.

The test appends one cell after the notebook's own cells (so after ``nbray.shutdown()``)
that prints the notebook's variables as a single ``NBRAY_RESULTS {json}`` line, then
checks them against a sieve computed here. Timings are only checked to be positive:
no wall-clock thresholds in tests.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import pytest
from nbformat import NotebookNode

NOTEBOOK = Path(__file__).resolve().parents[2] / "demo_notebooks" / "quickstart.ipynb"

RESULTS_TAG = "NBRAY_RESULTS "

# Runs in the notebook's kernel after its last cell. The name of the json import is
# unusual so it cannot shadow anything the notebook defined.
RESULTS_CELL = f"""\
import json as _nbray_test_json

print({RESULTS_TAG!r} + _nbray_test_json.dumps({{
    "N": N,
    "tasks": TASKS,
    "serial_results": serial_results,
    "parallel_results": parallel_results,
    "result_types": sorted(
        {{type(r).__name__ for r in [*serial_results, *parallel_results]}}
    ),
    "serial_time": serial_time,
    "parallel_time": parallel_time,
    "speedup": speedup,
    "cpus": cpus,
    "initialized_after_shutdown": nbray.is_initialized(),
}}))
"""

SPEEDUP_LINE = re.compile(r"^speedup: \d+\.\d{2}x on \d+(\.\d+)? CPUs$", re.MULTILINE)


def sum_primes_below(n: int) -> int:
    """Sum of the primes p < n, by a sieve of Eratosthenes (independent of the
    notebook's trial division)."""
    if n < 3:
        return 0
    sieve = bytearray([1]) * n
    sieve[0] = sieve[1] = 0
    for i in range(2, math.isqrt(n - 1) + 1):
        if sieve[i]:
            sieve[i * i :: i] = bytes(len(range(i * i, n, i)))
    return sum(i for i, is_prime in enumerate(sieve) if is_prime)


def stdout_of(cell: NotebookNode) -> str:
    """Everything a cell wrote to stdout, joined across stream chunks."""
    return "".join(
        out.get("text", "")
        for out in cell.get("outputs", [])
        if out.get("output_type") == "stream" and out.get("name") == "stdout"
    )


def parse_results(cell: NotebookNode) -> dict[str, Any]:
    lines = [ln for ln in stdout_of(cell).splitlines() if ln.startswith(RESULTS_TAG)]
    assert len(lines) == 1, f"expected one {RESULTS_TAG.strip()} line, got: {lines!r}"
    results: dict[str, Any] = json.loads(lines[0][len(RESULTS_TAG) :])
    return results


def test_reference_sieve() -> None:
    # Small cases by hand, and the notebook's N against a published-style constant,
    # so a bug in the reference cannot make the notebook test pass vacuously.
    assert [sum_primes_below(n) for n in (0, 2, 3, 10, 11, 12)] == [0, 0, 2, 17, 17, 28]
    assert sum_primes_below(400_000) == 6_458_901_531


@pytest.mark.timeout(300)
def test_quickstart_notebook(run_notebook: Any) -> None:
    nb = run_notebook(NOTEBOOK, extra_cells=[RESULTS_CELL], cell_timeout=120)

    r = parse_results(nb.cells[-1])
    n = r["N"]
    assert isinstance(n, int) and n > 0
    expected = sum_primes_below(n)

    assert r["tasks"] == 8
    assert len(r["serial_results"]) == 8
    assert len(r["parallel_results"]) == 8
    assert r["serial_results"] == [expected] * 8
    assert r["parallel_results"] == [expected] * 8
    assert r["result_types"] == ["int"], "nbray.get must return the values, not refs"

    assert r["serial_time"] > 0
    assert r["parallel_time"] > 0
    assert r["speedup"] > 0
    assert math.isclose(r["speedup"], r["serial_time"] / r["parallel_time"])
    assert r["cpus"] >= 1

    assert r["initialized_after_shutdown"] is False

    printed = "".join(stdout_of(cell) for cell in nb.cells if cell.cell_type == "code")
    assert SPEEDUP_LINE.search(printed), f"no speedup line in the notebook's output:\n{printed}"
