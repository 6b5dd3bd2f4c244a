"""demo_notebooks/magics.ipynb runs top to bottom in a real kernel (nbclient), and each
magic's output is what the notebook's text promises.

The expected sums are computed here independently (a sieve), not copied from the notebook.
"""

from __future__ import annotations

import random
import re
import statistics
from pathlib import Path
from pprint import pformat

import pytest
from nbformat import NotebookNode

NOTEBOOK = Path(__file__).resolve().parents[2] / "demo_notebooks" / "magics.ipynb"
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def sum_primes_below(n: int) -> int:
    sieve = bytearray([1]) * n
    sieve[:2] = b"\x00\x00"
    for i in range(2, int(n**0.5) + 1):
        if sieve[i]:
            sieve[i * i :: i] = bytearray(len(range(i * i, n, i)))
    return sum(i for i, flag in enumerate(sieve) if flag)


def cell_of(nb: NotebookNode, start: str) -> NotebookNode:
    return next(c for c in nb.cells if c.cell_type == "code" and c.source.startswith(start))


def text(cell: NotebookNode) -> str:
    parts = []
    for out in cell.outputs:
        if out.output_type == "stream":
            parts.append(out.text)
        elif "data" in out and "text/plain" in out.data:
            parts.append(out.data["text/plain"] + "\n")
        elif out.output_type == "error":
            parts.append(ANSI.sub("", "\n".join(out.traceback)))
    return "".join(parts)


@pytest.mark.timeout(180)
def test_magics_notebook(run_notebook) -> None:  # type: ignore[no-untyped-def]
    nb = run_notebook(NOTEBOOK, cell_timeout=120)
    limit, tasks = 60_000, 8
    total = sum_primes_below(limit)

    assert "nbray session" in cell_of(nb, "%load_ext nbray").outputs[0].data["text/html"]
    assert "nbray session" in cell_of(nb, "%nbray").outputs[0].data["text/html"]

    remote = text(cell_of(nb, "%%remote\nimport os"))
    assert re.match(rf"worker \d+ summed the primes below 60,000\n{total}\n$", remote), remote
    assert text(cell_of(nb, "total  #")) == f"{total}\n"

    each = [sum_primes_below(n) for n in (limit // 4, limit // 2, limit)]
    assert text(cell_of(nb, "%%remote --each limit in [LIMIT // 4")) == f"{each}\n"
    assert text(cell_of(nb, "found")) == f"{each}\n"

    # each labelled run joins one chart, and the cells that showed it earlier are updated
    for start in ('%%compare -l "8 remote tasks"', '%%compare -l "%%remote --each"'):
        cell = cell_of(nb, start)
        out = text(cell)
        assert "results equal" in out and "on 2 CPUs" in out, out
        chart = next(
            o for o in cell.outputs if "application/vnd.plotly.v1+json" in o.get("data", {})
        )
        labels = chart.data["application/vnd.plotly.v1+json"]["data"][0]["x"]
        assert labels == ["8 remote tasks", "%%remote --each", "numpy"]
    assert text(cell_of(nb, '%%compare -l "8 remote tasks"')).endswith(f"{total * tasks}\n")
    assert text(cell_of(nb, '%%compare -l "%%remote --each"')).endswith(
        pformat([total] * tasks) + "\n"
    )
    numpy_cell = cell_of(nb, "%%compare -l numpy")
    assert text(numpy_cell).endswith(f"{total * tasks}\n")
    chart = numpy_cell.outputs[0].data["application/vnd.plotly.v1+json"]
    assert chart["data"][0]["x"] == ["8 remote tasks", "%%remote --each", "numpy"]

    assert "ObjectRef" in cell_of(nb, "import random").outputs[0].data["text/html"]
    random.seed(0)  # the notebook's data, made again here
    raw = [random.gauss(100, 15) if random.random() > 0.05 else None for _ in range(40_000)]
    kept = [x for x in raw if x is not None]
    clean = text(cell_of(nb, "%%remote -o chunks"))
    assert clean == f"kept {len(kept):,} of 40,000 readings in 4 chunks\n", clean
    summaries = text(cell_of(nb, "%%remote --each chunk in chunks"))
    assert summaries.count("'mean'") == 4
    assert text(cell_of(nb, "overall")) == (
        f"{len(kept):,} readings, mean {statistics.fmean(kept):.2f}, max {max(kept):.1f}\n"
    )

    async_cell = cell_of(nb, "%%remote --async")
    assert "--async: 0/1 task(s) done" in text(async_cell)
    assert text(cell_of(nb, "%nbray wait")) == (
        f"'4 chunks summarised, mean {statistics.fmean(kept):.2f}'\n"
    )

    error = text(cell_of(nb, "@nbray.remote\ndef checked_primes"))
    assert "ValueError: limit 60,000 is too large for this demo" in error
    assert re.search(r"Cell In\[\d+\], line 4, in checked_primes\(\)", error), error
    assert "----> 4         raise ValueError" in error
