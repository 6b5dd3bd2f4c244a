"""`nbray up` / `nbray down` through real sshd servers on 127.0.0.2 and 127.0.0.3.

    hosts (module): two sshd, each in its own PID namespace, keys made for this run
    error cases: `nbray up` fails fast, naming the host and the step, and leaves nothing
    ray_cluster (module): `nbray up` a two-node Ray cluster (the "hosts" run this venv's
        Python), recorded in a private NBRAY_TMPDIR; drivers run as subprocesses with it
        ──▶ the core API suite (tests/engines) ──▶ a notebook with %%remote ──▶ a node
        killed mid-job
        ──▶ `nbray down` leaves no process and no file

Needs root and Debian's openssh-server (`make system-deps`); with CI=true it never skips.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from nbray_testing import run_core_api_suite, run_python, wait_until
from ssh_hosts import PORT, SshHosts, available, kill_all, node_processes

pytestmark = pytest.mark.skipif(
    bool(available()) and not os.environ.get("CI"), reason=available() or "ok"
)

HEAD, WORKER = "127.0.0.2", "127.0.0.3"


@pytest.fixture(scope="module")
def hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshHosts]:
    reason = available()
    if reason:
        pytest.fail(f"SSH hosts cannot run: {reason}")
    h = SshHosts(tmp_path_factory.mktemp("ssh"), [HEAD, WORKER]).start()
    yield h
    h.stop()


def cluster_file(
    hosts: SshHosts, path: Path, *, name: str = "t", head: str = HEAD, **overrides: str
) -> Path:
    fields = {
        "python": sys.executable,
        "identity_file": str(hosts.client_key),
        "known_hosts": str(hosts.known_hosts),
        **overrides,
    }
    path.write_text(
        textwrap.dedent(
            f"""\
            name = "{name}"
            python = "{fields["python"]}"
            object_store_memory = 100_000_000

            [ssh]
            user = "root"
            port = {PORT}
            identity_file = "{fields["identity_file"]}"
            known_hosts = "{fields["known_hosts"]}"
            connect_timeout = 5

            [head]
            host = "{head}"
            num_cpus = 1

            [[workers]]
            host = "{WORKER}"
            num_cpus = 1
            """
        )
    )
    return path


def nbray_cli(
    *args: str, env: dict[str, str], timeout: float = 240
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "nbray._compose.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=timeout,
        check=False,
    )
    return proc


# --- errors: each names the host and the step ---------------------------------------------


@pytest.fixture
def private_env(tmp_path: Path) -> dict[str, str]:
    d = tmp_path / "nbray-tmp"
    d.mkdir()
    return {"NBRAY_TMPDIR": str(d)}


def assert_up_fails(hosts: SshHosts, path: Path, env: dict[str, str], *expected: str) -> str:
    proc = nbray_cli("up", str(path), env=env, timeout=120)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    for text in expected:
        assert text in proc.stderr, proc.stdout + proc.stderr
    assert not node_processes(), "a failed `nbray up` left processes"
    assert not (Path(env["NBRAY_TMPDIR"]) / f"nbray-{os.getuid()}" / "ray_cluster.json").exists()
    return proc.stderr


def test_unreachable_host(hosts: SshHosts, tmp_path: Path, private_env: dict[str, str]) -> None:
    path = cluster_file(hosts, tmp_path / "c.toml", head="127.0.0.9")
    assert_up_fails(
        hosts, path, private_env, f"host 127.0.0.9:{PORT}, step 'connect'", "cannot reach"
    )


def test_refused_key(hosts: SshHosts, tmp_path: Path, private_env: dict[str, str]) -> None:
    from ssh_hosts import keygen

    keygen(tmp_path / "stranger")
    path = cluster_file(hosts, tmp_path / "c.toml", identity_file=str(tmp_path / "stranger"))
    assert_up_fails(hosts, path, private_env, "step 'connect'", "refused the SSH key")


def test_unknown_host_key_then_trust_on_first_use(
    hosts: SshHosts, tmp_path: Path, private_env: dict[str, str]
) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    path = cluster_file(
        hosts, tmp_path / "c.toml", known_hosts=str(empty), python="/nonexistent/python3"
    )
    assert_up_fails(hosts, path, private_env, "step 'connect'", "not in known_hosts")
    # trusting on first use gets past the host key (and records it), then stops at Python
    proc = nbray_cli("up", str(path), "--trust-on-first-use", env=private_env, timeout=120)
    assert proc.returncode == 1
    assert "step 'check Python and Ray'" in proc.stderr, proc.stderr
    found = subprocess.run(
        ["ssh-keygen", "-F", f"[{HEAD}]:{PORT}", "-f", str(empty)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert found.returncode == 0 and "ssh-ed25519" in found.stdout


def test_missing_python(hosts: SshHosts, tmp_path: Path, private_env: dict[str, str]) -> None:
    path = cluster_file(hosts, tmp_path / "c.toml", python="/nonexistent/python3")
    assert_up_fails(
        hosts,
        path,
        private_env,
        f"host {HEAD}:{PORT}, step 'check Python and Ray'",
        "no Python at /nonexistent/python3",
    )


def test_ray_version_mismatch(hosts: SshHosts, tmp_path: Path, private_env: dict[str, str]) -> None:
    # a real Python (a venv of this one) whose installed `ray` package is another version
    venv = tmp_path / "old-ray"
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60
    )
    site = next((venv / "lib").glob("python3*/site-packages"))
    (site / "ray").mkdir()
    (site / "ray" / "__init__.py").write_text('__version__ = "2.9.0"\n')
    path = cluster_file(hosts, tmp_path / "c.toml", python=str(venv / "bin" / "python"))
    assert_up_fails(
        hosts, path, private_env, "step 'check Python and Ray'", "Ray version mismatch", "2.9.0"
    )


# --- a two-node cluster -------------------------------------------------------------------


@pytest.fixture(scope="module")
def ray_cluster(
    hosts: SshHosts, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Path, dict[str, str]]]:
    root = tmp_path_factory.mktemp("ray-cluster")
    # short: the local engine's Unix socket lives below it
    short = tempfile.mkdtemp(prefix="nbt-")
    env = {"NBRAY_TMPDIR": short}
    path = cluster_file(hosts, root / "cluster.toml", name="e2e")
    proc = nbray_cli("up", str(path), env=env, timeout=300)
    if proc.returncode:
        nbray_cli("down", str(path), env=env)
        pytest.fail(f"nbray up failed:\n{proc.stdout}\n{proc.stderr}")
    assert f"[{HEAD}:{PORT}] start Ray head: ok" in proc.stdout
    assert "2 nodes" in proc.stdout
    yield path, env
    nbray_cli("down", str(path), env=env)  # (a no-op when the test below ran)
    shutil.rmtree(short, ignore_errors=True)


@pytest.mark.timeout(400)
def test_core_api_suite_on_the_ssh_cluster(ray_cluster: tuple[Path, dict[str, str]]) -> None:
    _, env = ray_cluster
    # the child pytest isolates itself in a private NBRAY_TMPDIR (tests/isolation.py), where
    # no record of `nbray up` is: give it the cluster's address and token explicitly
    record = json.loads(
        (Path(env["NBRAY_TMPDIR"]) / f"nbray-{os.getuid()}" / "ray_cluster.json").read_text()
    )
    run_core_api_suite(
        str(record["address"]), {**env, "NBRAY_RAY_TOKEN_FILE": str(record["token_file"])}
    )


def test_tokens_are_private_and_the_dashboard_is_on_loopback(
    ray_cluster: tuple[Path, dict[str, str]],
) -> None:
    path, env = ray_cluster
    for host in (HEAD, WORKER):
        d = Path(host_dir(path, host))
        assert stat.S_IMODE(d.stat().st_mode) == 0o700
        assert stat.S_IMODE((d / "token").stat().st_mode) == 0o600
        assert len((d / "token").read_text()) == 64
    user_dir = Path(env["NBRAY_TMPDIR"]) / f"nbray-{os.getuid()}"
    local_token = user_dir / "ray-e2e.token"
    assert stat.S_IMODE(local_token.stat().st_mode) == 0o600
    assert local_token.read_text() == (Path(host_dir(path, HEAD)) / "token").read_text()
    dashboard = [
        c.laddr.ip
        for c in psutil.net_connections(kind="tcp")
        if c.status == psutil.CONN_LISTEN and c.laddr.port == 8265
    ]
    assert dashboard and set(dashboard) == {"127.0.0.1"}


def test_status_shows_it_and_up_twice_is_refused(
    ray_cluster: tuple[Path, dict[str, str]],
) -> None:
    path, env = ray_cluster
    status = nbray_cli("status", env=env)
    assert status.returncode == 0, status.stdout + status.stderr
    assert f"Ray cluster 'e2e' (nbray up {path})" in status.stdout
    assert f"head {HEAD}:6379" in status.stdout
    proc = nbray_cli("up", str(path), env=env)
    assert proc.returncode == 1
    assert "cluster 'e2e' is already up" in proc.stderr and "nbray down" in proc.stderr


@pytest.mark.timeout(240)
def test_notebook_on_the_ssh_cluster(
    ray_cluster: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    import nbformat
    from nbclient import NotebookClient

    _, env = ray_cluster
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(src)
        for src in (
            "import nbray\nctx = nbray.init()  # the cluster `nbray up` recorded\nctx.engine",
            "@nbray.remote\ndef where():\n"
            "    import ray\n    return ray.util.get_node_ip_address()\n"
            "ips = sorted(n['NodeManagerAddress'] for n in nbray.nodes() if n['Alive'])\n"
            "nbray.get([where.options(resources={f'node:{ip}': 0.01}).remote() for ip in ips])",
            "@nbray.remote\nclass Acc:\n    def __init__(self): self.total = 0\n"
            "    def add(self, x):\n        self.total += x\n        return self.total\n"
            "acc = Acc.remote()\nnbray.get([acc.add.remote(i) for i in range(5)])[-1]",
            "%load_ext nbray\nbase = 5",
            "%%remote --resources node:127.0.0.3=0.01\nimport ray\n"
            "where = ray.util.get_node_ip_address()\ntotal = sum(range(10)) + base",
            "(total, where)",
        )
    ]
    client = NotebookClient(nb, timeout=120, startup_timeout=60, kernel_name="python3")
    client.execute(env={**os.environ, **env})
    outputs = [
        next(o["data"]["text/plain"] for o in c.outputs if o["output_type"] == "execute_result")
        for c in nb.cells
        if any(o["output_type"] == "execute_result" for o in c.outputs)
    ]
    # the %%remote cell ran on the worker node and brought its variables back
    assert outputs == ["'ray'", f"['{HEAD}', '{WORKER}']", "10", f"(50, '{WORKER}')"]


@pytest.mark.timeout(300)
def test_killing_a_node_mid_job_retries_its_tasks(ray_cluster: tuple[Path, dict[str, str]]) -> None:
    path, env = ray_cluster
    worker_dir = host_dir(path, WORKER)
    driver = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                """
                import sys, time, nbray
                nbray.init()
                events = []
                from nbray._model.session import current_engine
                current_engine().subscribe(events.append)

                @nbray.remote(scheduling_strategy="SPREAD", max_retries=3)
                def work(i):
                    import time, ray
                    time.sleep(4)
                    return i * i

                refs = [work.remote(i) for i in range(6)]
                print("SUBMITTED", flush=True)
                print("RESULTS", nbray.get(refs, timeout=200), flush=True)
                deadline = time.time() + 60
                while time.time() < deadline and not any(
                    e["type"] == "node" and e["state"] == "DEAD" for e in events
                ):
                    time.sleep(0.5)
                dead = [e["address"] for e in events
                        if e["type"] == "node" and e["state"] == "DEAD"]
                alive = sorted(n["NodeManagerAddress"] for n in nbray.nodes() if n["Alive"])
                print("DEAD", dead, "ALIVE", alive, flush=True)
                """
            ),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **env},
    )
    try:
        assert driver.stdout is not None
        lines = []
        for line in driver.stdout:
            lines.append(line)
            if line.startswith("SUBMITTED"):
                break
        # kill every Ray process of the worker "host" while its tasks run
        time.sleep(2)  # the tasks are running on both nodes now
        victims = node_processes(worker_dir)
        assert victims
        kill_all(victims)
        out, _ = driver.communicate(timeout=260)
        lines.append(out)
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
    text = "".join(lines)
    assert driver.returncode == 0, text
    assert "RESULTS [0, 1, 4, 9, 16, 25]" in text, text
    assert f"DEAD ['{WORKER}'] ALIVE ['{HEAD}']" in text, text


@pytest.mark.timeout(120)
def test_down_leaves_no_process_and_no_file(ray_cluster: tuple[Path, dict[str, str]]) -> None:
    path, env = ray_cluster
    assert node_processes(), "the cluster should be running before down"
    proc = nbray_cli("down", str(path), env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "is down" in proc.stdout
    wait_until(lambda: not node_processes(), 15)
    for host in (HEAD, WORKER):
        assert not Path(host_dir(path, host)).exists(), f"down left files on {host}"
    user_dir = Path(env["NBRAY_TMPDIR"]) / f"nbray-{os.getuid()}"
    assert not (user_dir / "ray_cluster.json").exists()
    assert not list(user_dir.glob("ray-*.token"))
    # a bare init() is the local engine again
    res = run_python(
        "import nbray; print(nbray.init().engine); nbray.shutdown()", env=env, timeout=60
    )
    assert res.stdout.strip() == "local", res.stderr


def host_dir(path: Path, host: str) -> str:
    """The directory nbray uses on ``host`` for the cluster of ``path``."""
    from nbray._compose.cluster.spec import load

    spec = load(path)
    h = next(h for h in spec.hosts if h.host == host)
    return spec.remote_dir(h).replace("$HOME", str(Path.home()))
