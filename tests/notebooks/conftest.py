"""Fixtures for tests that execute notebooks in a real Jupyter kernel.

    test ─▶ run_notebook(path) ─▶ nbclient ─▶ ipykernel "python3" (this venv's Python)
                                                   │ cwd = the notebook's folder
    test ◀── executed NotebookNode (outputs) ◀─────┘

The notebook file on disk is never modified. Each executed copy is written to
test-artifacts/notebooks/ (also when a cell fails), so a CI failure can be read cell by
cell.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbformat import NotebookNode

REPO_ROOT = Path(__file__).resolve().parents[2]
DEMO_DIR = REPO_ROOT / "demo_notebooks"
ARTIFACTS_DIR = REPO_ROOT / "test-artifacts" / "notebooks"

# Settings that would point a notebook at someone else's cluster instead of its own.
_SCRUBBED_ENV = ("NBRAY_ADDRESS",)

RunNotebook = Callable[..., NotebookNode]


def _kernel_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in _SCRUBBED_ENV}


@pytest.fixture(scope="session")  # stateless: module-scoped fixtures may use it too
def run_notebook() -> RunNotebook:
    """Execute a notebook in a fresh kernel and return the executed copy.

    ``run_notebook(path, extra_cells=(...), cell_timeout=120)`` appends ``extra_cells``
    (code sources) after the notebook's own cells, runs everything top to bottom with
    the notebook's folder as the kernel's working directory, and raises nbclient's
    ``CellExecutionError`` / ``CellTimeoutError`` / ``DeadKernelError`` on failure. On a
    cell timeout nbclient interrupts, then shuts the kernel down. With
    ``store_widget_state=True`` the widgets' state, as a frontend gets it, is saved in the
    executed copy's metadata.
    """

    def run(
        path: Path,
        *,
        extra_cells: Iterable[str] = (),
        cell_timeout: int = 120,
        startup_timeout: int = 60,
        store_widget_state: bool = False,
    ) -> NotebookNode:
        nb = nbformat.read(path, as_version=4)
        for source in extra_cells:
            nb.cells.append(nbformat.v4.new_code_cell(source))
        client = NotebookClient(
            nb,
            timeout=cell_timeout,
            startup_timeout=startup_timeout,
            kernel_name="python3",
            store_widget_state=store_widget_state,
            resources={"metadata": {"path": str(path.parent)}},
        )
        try:
            return client.execute(env=_kernel_env())
        finally:
            ARTIFACTS_DIR.mkdir(parents=True, exist_ok=True)
            nbformat.write(nb, ARTIFACTS_DIR / path.name)

    return run
