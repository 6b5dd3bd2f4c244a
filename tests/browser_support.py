"""Browser-test support: a JupyterLab subprocess and Debian's Chromium through playwright.

    test ─▶ playwright (Python) ─▶ Debian's /usr/bin/chromium (headless)
                                        │ http://127.0.0.1:PORT/lab?token=…
    start_lab() ─▶ `jupyter lab` subprocess (this venv, own process group)

`playwright install` cannot download browsers here, so the tests use the system Chromium
that `make system-deps` installs. Without it the tests skip locally; with CI=true they fail.
Screenshots go to test-artifacts/browser/. Fixtures live in tests/browser/conftest.py.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS_DIR = REPO_ROOT / "test-artifacts" / "browser"
CHROMIUM = "/usr/bin/chromium"
# Flags verified here: without the networking ones Chromium keeps dialling Google's hosts,
# which this machine's closed network refuses.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LAB_START_TIMEOUT = 60.0


def require(
    what: str, ok: bool, fix: str = "run `make system-deps` (installs Debian's chromium)"
) -> None:
    if ok:
        return
    message = f"{what} is missing: {fix}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_notebook(path: Path, cells: list[str]) -> None:
    """A notebook of these code cells, for the Python 3 kernel, at ``path``."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source) for source in cells]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    nbformat.write(nb, path)


def artifact(name: str) -> Path:
    """Where a browser test keeps a file it produced (screenshots)."""
    ARTIFACTS_DIR.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS_DIR / name


@dataclass
class Lab:
    """A running JupyterLab: ``url("lab/tree/x.ipynb")`` gives an authenticated URL."""

    base: str
    token: str
    root_dir: Path
    process: subprocess.Popen[bytes]

    def url(self, path: str = "lab") -> str:
        sep = "&" if "?" in path else "?"
        return f"{self.base}{path}{sep}token={self.token}"

    def api(self, path: str, method: str = "GET", body: bytes | None = None) -> Any:
        req = urllib.request.Request(
            f"{self.base}{path}",
            data=body,
            method=method,
            headers={"Authorization": f"token {self.token}"},
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.read()


def start_lab(
    root_dir: Path,
    log_path: Path,
    extra_args: list[str] | None = None,
    *,
    port: int = 0,
    token: str = "",
    app: str = "jupyterlab",
) -> Lab:
    """Start ``jupyter lab`` (``app="notebook"``: Jupyter Notebook 7) on a loopback port (a
    free one unless given), in its own process group, and wait until its API answers. Pass
    the ``port`` and ``token`` of a stopped Lab to bring "the same" server back (pages keep
    their URLs)."""
    port = port or free_port()
    token = token or secrets.token_hex(24)
    cmd = [
        sys.executable,
        "-m",
        app,
        "--no-browser",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.root_dir={root_dir}",
        f"--IdentityProvider.token={token}",
        *(extra_args or []),
    ]
    if app == "jupyterlab":
        cmd += [
            "--LabApp.news_url=None",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        ]
    if os.geteuid() == 0:
        cmd.append("--allow-root")
    env = {k: v for k, v in os.environ.items() if k != "NBRAY_ADDRESS"}
    log = open(log_path, "ab")
    proc = subprocess.Popen(
        cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
    )
    lab = Lab(f"http://127.0.0.1:{port}/", token, root_dir, proc)
    deadline = time.monotonic() + LAB_START_TIMEOUT
    while True:
        if proc.poll() is not None:
            raise AssertionError(f"jupyter lab exited ({proc.returncode}); see {log_path}")
        try:
            lab.api("api/status")
            return lab
        except OSError:
            if time.monotonic() > deadline:
                stop_lab(lab)
                raise AssertionError(f"jupyter lab did not answer; see {log_path}") from None
            time.sleep(0.2)


def stop_lab(lab: Lab, timeout: float = 20.0) -> None:
    """SIGTERM the server (it shuts its kernels and extensions down), then SIGKILL its
    process group if it lingers."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(lab.process.pid, signal.SIGTERM)
    try:
        lab.process.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(lab.process.pid, signal.SIGKILL)
        lab.process.wait(5)
        raise AssertionError("jupyter lab did not stop on SIGTERM") from None


def open_lab(page: Any, lab: Lab, path: str = "lab") -> None:
    """Open JupyterLab at ``path`` and wait until its shell is drawn."""
    page.goto(lab.url(path))
    page.wait_for_selector("#jp-main-dock-panel", timeout=60_000)


@contextlib.contextmanager
def lab_serving(nb: Any, name: str, tmp_path: Path) -> Iterator[Lab]:
    """A JupyterLab (its app exposed as ``window.jupyterapp``) serving the notebook ``nb``
    as ``name``; its log is kept as test-artifacts/browser/jupyter-lab-<name>.log."""
    import nbformat

    root = tmp_path / "root"
    root.mkdir()
    nbformat.write(nb, root / name)
    with _lab_logged(root, name, ["--LabApp.expose_app_in_browser=True"]) as lab:
        yield lab


@contextlib.contextmanager
def lab_with_cells(
    tmp_path: Path, name: str, cells: list[str], extra_args: list[str]
) -> Iterator[Lab]:
    """A JupyterLab (``extra_args`` on its command line) serving a notebook ``name`` of
    these code cells; its log is kept as test-artifacts/browser/jupyter-lab-<name>.log."""
    root = tmp_path / "root"
    root.mkdir()
    write_notebook(root / name, cells)
    with _lab_logged(root, name, extra_args) as lab:
        yield lab


@contextlib.contextmanager
def _lab_logged(root: Path, name: str, extra_args: list[str]) -> Iterator[Lab]:
    log = root.parent / "lab.log"
    lab = start_lab(root, log, extra_args)
    try:
        yield lab
    finally:
        stop_lab(lab)
        if log.exists():
            artifact(f"jupyter-lab-{Path(name).stem}.log").write_bytes(log.read_bytes())


def launch_chromium() -> Iterator[Any]:
    """The body of a ``chromium`` fixture: Debian's headless Chromium (a playwright
    ``Browser``), closed after."""
    require(CHROMIUM, Path(CHROMIUM).exists())
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        require("the playwright package", False, "run `make install` (the browser extra)")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def run_all_cells(page: Any, lab: Lab, name: str) -> None:
    """Open the notebook ``name`` and start running all its cells (returns at once)."""
    open_lab(page, lab, f"lab/tree/{name}")
    page.wait_for_selector(".jp-NotebookPanel .jp-Notebook .jp-Cell", timeout=60_000)
    page.wait_for_function(
        "() => window.jupyterapp && document.querySelector('.jp-Notebook-ExecutionIndicator')",
        timeout=60_000,
    )
    # a fresh workspace may ask which kernel to start: the notebook's own (Python 3)
    dialog = page.locator(".jp-Dialog .jp-mod-accept")
    with contextlib.suppress(Exception):
        dialog.click(timeout=5000)
    page.wait_for_timeout(2000)  # let the kernel start
    # not awaited: the command's promise resolves only when every cell has run
    page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")


def notebook_cell(page: Any, index: int) -> Any:
    """The ``index``-th cell of the open notebook (a playwright Locator)."""
    return page.locator(".jp-NotebookPanel .jp-Notebook .jp-Cell").nth(index)
