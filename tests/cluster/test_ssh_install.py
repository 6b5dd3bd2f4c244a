"""`install = true`: `nbray up` makes a venv with nbray[ray] on a host, `nbray down` removes it.

    one sshd "host" (127.0.0.4) ──▶ nbray up (wheel built here, copied over SSH, pip install
    'nbray-X.whl[ray]' 'ray[default]==<Ray here>' into a venv from this Python) ──▶ a task
    runs in that venv ──▶ nbray down ──▶ no process, no venv, no directory

Needs root and Debian's openssh-server (`make system-deps`); with CI=true it never skips.
The Ray install comes from pip's cache (or the index) and takes a while: one host only.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import pytest
from nbray_testing import run_python, wait_until
from ssh_hosts import PORT, SshHosts, available, node_processes
from test_ssh_cluster import host_dir, nbray_cli

pytestmark = pytest.mark.skipif(
    bool(available()) and not os.environ.get("CI"), reason=available() or "ok"
)

HOST = "127.0.0.4"


@pytest.fixture
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshHosts]:
    reason = available()
    if reason:
        pytest.fail(f"SSH hosts cannot run: {reason}")
    h = SshHosts(tmp_path_factory.mktemp("ssh-install"), [HOST]).start()
    yield h
    h.stop()


@pytest.mark.timeout(600)
def test_up_installs_nbray_into_a_venv_and_down_removes_it(host: SshHosts, tmp_path: Path) -> None:
    venv = tmp_path / "remote-venv"
    path = tmp_path / "install.toml"
    path.write_text(
        textwrap.dedent(
            f"""\
            name = "inst"
            python = "{sys.executable}"
            install = true
            venv = "{venv}"
            object_store_memory = 100_000_000
            ray_port = 6391
            dashboard_port = 8276

            [ssh]
            user = "root"
            port = {PORT}
            identity_file = "{host.client_key}"
            known_hosts = "{host.known_hosts}"
            connect_timeout = 5

            [head]
            host = "{HOST}"
            num_cpus = 1
            """
        )
    )
    short = tempfile.mkdtemp(prefix="nbi-")
    env = {"NBRAY_TMPDIR": short}
    try:
        proc = nbray_cli("up", str(path), env=env, timeout=560)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        out = proc.stdout
        assert "[localhost] build the nbray wheel: ok (nbray-" in out, out
        assert f"[{HOST}:{PORT}] install nbray[ray]: ok" in out, out
        assert (venv / ".nbray-created").is_file()
        # a task of this driver runs in the venv made on the host
        res = run_python(
            """
            import sys, nbray
            nbray.init()

            @nbray.remote
            def where():
                import importlib.util, sys, ray
                return sys.executable, ray.__version__

            @nbray.remote
            def notebook_parts():  # nbray[ray] on a host: no JupyterLab, widgets or kernel
                import importlib.util
                names = ("jupyterlab", "jupyter_server", "ipykernel", "ipywidgets", "plotly")
                return [m for m in names if importlib.util.find_spec(m)]

            print("WHERE", *nbray.get(where.remote()))
            print("NOTEBOOK PARTS", nbray.get(notebook_parts.remote()))
            nbray.shutdown()
            """,
            env=env,
            timeout=120,
        )
        assert res.returncode == 0, res.stdout + res.stderr
        # (not `import ray` here: Ray reads its auth settings at import, for the whole run)
        ray_version = metadata.version("ray")
        assert f"WHERE {venv}/bin/python {ray_version}" in res.stdout, res.stdout
        assert "NOTEBOOK PARTS []" in res.stdout, res.stdout
    finally:
        down = nbray_cli("down", str(path), env=env)
        shutil.rmtree(short, ignore_errors=True)
    assert down.returncode == 0, down.stdout + down.stderr
    here = host_dir(path, HOST)  # (other clusters may run on this machine: only ours counts)
    try:
        wait_until(lambda: not node_processes(here) and not node_processes(str(venv)), 15)
    except AssertionError:
        left = node_processes(here) + node_processes(str(venv))
        raise AssertionError(f"down left {[p.cmdline()[:3] for p in left]}") from None
    assert not venv.exists()
    assert not Path(here).exists()


def test_install_refuses_a_venv_nbray_did_not_make(host: SshHosts, tmp_path: Path) -> None:
    theirs = tmp_path / "their-venv"
    (theirs / "bin").mkdir(parents=True)
    (theirs / "bin" / "python").write_text("#!/bin/sh\n")
    (theirs / "bin" / "python").chmod(0o755)
    path = tmp_path / "install.toml"
    path.write_text(
        textwrap.dedent(
            f"""\
            name = "inst2"
            python = "{sys.executable}"
            venv = "{theirs}"
            ray_port = 6392

            [ssh]
            user = "root"
            port = {PORT}
            identity_file = "{host.client_key}"
            known_hosts = "{host.known_hosts}"

            [head]
            host = "{HOST}"
            install = true
            """
        )
    )
    env = {"NBRAY_TMPDIR": str(tmp_path / "t")}
    proc = nbray_cli("up", str(path), env=env, timeout=110)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f"host {HOST}:{PORT}, step 'install nbray[ray]'" in proc.stderr, proc.stderr
    assert "was not made by nbray" in proc.stderr, proc.stderr
    # their venv is untouched, and what up wrote on the host is gone
    assert (theirs / "bin" / "python").is_file()
    assert not Path(host_dir(path, HOST)).exists()
