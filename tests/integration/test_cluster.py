"""The cluster as a whole: init/shutdown, resources and GPUs, teardown after the owner dies,
the headless cluster of the ``nbray`` CLI shared by several clients, and transport security.

Real processes throughout. Clusters started with ``nbray start`` get a private
``NBRAY_TMPDIR`` (short, so the Unix socket path fits) and are stopped by a finalizer even
when a test fails. Timeouts only bound hangs; nothing asserts how fast anything is.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import pickle
import re
import select
import shutil
import signal
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cloudpickle
import psutil
import pytest
from nbray_testing import run_python, wait_until

import nbray
from nbray._compose.lifecycle import PrivateClusterWarning
from nbray._wire import session_files
from nbray._wire.transport import MAGIC, NONCE_SIZE, SERVER_HELLO_SIZE, Connection
from nbray.exceptions import NbrayConnectionError, UnschedulableError

# Workers cannot import this test module: ship its functions by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

GET_TIMEOUT = 30.0  # bounds a hang; never a performance threshold
CLEANUP_TIMEOUT = 15.0
SHM = Path("/dev/shm")


# --- helpers -------------------------------------------------------------------------------


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _tree(pid: int) -> list[int]:
    """``pid`` and every live descendant of it."""
    proc = psutil.Process(pid)
    return [pid, *(p.pid for p in proc.children(recursive=True))]


def _segments(token: str) -> list[Path]:
    return sorted(SHM.glob(f"nbray-{token}-*"))


def _head_pid(session_dir: str | Path) -> int:
    return int((Path(session_dir) / "head.pid").read_text())


def _wait_for_files(paths: list[Path], timeout: float = GET_TIMEOUT) -> None:
    wait_until(lambda: all(p.exists() for p in paths), timeout)


@nbray.remote
def hold(started: str, go: str) -> int:
    """Marks itself started (with its pid), then runs until ``go`` exists."""
    Path(started).write_text(str(os.getpid()))
    deadline = time.monotonic() + GET_TIMEOUT
    while not os.path.exists(go):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{go} never appeared")
        time.sleep(0.01)
    return os.getpid()


@nbray.remote
def ping() -> str:
    return "pong"


@nbray.remote
def visible_gpus(started: str = "", others: tuple[str, ...] = ()) -> tuple[str, list[int]]:
    """(CUDA_VISIBLE_DEVICES, get_gpu_ids()), optionally once ``others`` started too."""
    if started:
        Path(started).touch()
        deadline = time.monotonic() + GET_TIMEOUT
        while not all(os.path.exists(o) for o in others):
            if time.monotonic() > deadline:
                raise TimeoutError("the other tasks never ran at the same time")
            time.sleep(0.01)
    return os.environ.get("CUDA_VISIBLE_DEVICES", "<unset>"), nbray.get_gpu_ids()


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A private NBRAY_TMPDIR short enough for Unix socket paths (pytest's tmp_path is not)."""
    path = Path(tempfile.mkdtemp(prefix="nbt-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _spawn_python(code: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _read_line(proc: subprocess.Popen[str], timeout: float = 60.0) -> str:
    """The next line ``proc`` prints; fails (killing it) if none comes in time."""
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    line = proc.stdout.readline() if ready else ""
    if not line:
        proc.kill()
        _, err = proc.communicate()
        raise AssertionError(f"the script printed nothing (rc {proc.returncode}):\n{err}")
    return line


def _finish(proc: subprocess.Popen[str], timeout: float = 90.0) -> tuple[str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"script timed out\nstdout:\n{out}\nstderr:\n{err}") from None
    assert proc.returncode == 0, f"rc {proc.returncode}\nstdout:\n{out}\nstderr:\n{err}"
    return out, err


# --- init, shutdown, resources -------------------------------------------------------------


def test_init_twice_raises_unless_reinit_errors_are_ignored(
    cluster_factory: Callable[..., nbray.ClusterContext],
) -> None:
    assert not nbray.is_initialized()
    ctx = cluster_factory(num_cpus=2)
    assert nbray.is_initialized()
    assert ctx.owned and ctx.engine == "local"
    assert Path(ctx.session_dir).is_dir()
    assert ctx["node_id"] == ctx.node_id
    with pytest.raises(RuntimeError, match="already"):
        nbray.init(num_cpus=2)
    assert nbray.init(ignore_reinit_error=True) is ctx
    assert nbray.is_initialized()
    nbray.shutdown()
    assert not nbray.is_initialized()
    nbray.shutdown()  # twice is fine
    assert not nbray.is_initialized()


def test_init_rejects_unknown_arguments(cluster_factory: Any) -> None:
    with pytest.raises(TypeError, match="not_an_option"):
        nbray.init(not_an_option=1)
    assert not nbray.is_initialized()


def test_nodes_and_resources(cluster_factory: Callable[..., nbray.ClusterContext]) -> None:
    ctx = cluster_factory(num_cpus=2, num_gpus=0, resources={"custom": 3})
    total = {"CPU": 2.0, "custom": 3.0}
    assert nbray.cluster_resources() == total
    assert nbray.available_resources() == total
    nodes = nbray.nodes()
    assert len(nodes) == 1
    node = nodes[0]
    assert node["NodeID"] == ctx.node_id
    assert node["Alive"] is True
    assert node["Resources"] == total
    assert node["NodeManagerAddress"] == "127.0.0.1"
    assert node["GPUIds"] == []


def test_default_cluster_has_the_cpus_asked_for(cluster: nbray.ClusterContext) -> None:
    assert nbray.cluster_resources()["CPU"] == 2.0
    assert cluster.resources["CPU"] == 2.0


def test_available_resources_drop_while_tasks_run(
    cluster_factory: Callable[..., nbray.ClusterContext], tmp_path: Path
) -> None:
    cluster_factory(num_cpus=2, num_gpus=0, resources={"custom": 2})
    go = str(tmp_path / "go")
    a = hold.options(resources={"custom": 1}).remote(str(tmp_path / "a"), go)
    _wait_for_files([tmp_path / "a"])
    assert nbray.available_resources() == {"CPU": 1.0, "custom": 1.0}
    b = hold.options(num_cpus=1, resources={"custom": 1}).remote(str(tmp_path / "b"), go)
    _wait_for_files([tmp_path / "b"])
    assert nbray.available_resources() == {}  # Ray leaves out what is used up
    assert nbray.cluster_resources() == {"CPU": 2.0, "custom": 2.0}
    Path(go).touch()
    nbray.get([a, b], timeout=GET_TIMEOUT)
    assert nbray.available_resources() == {"CPU": 2.0, "custom": 2.0}


def test_actor_holds_its_resources_until_it_dies(
    cluster_factory: Callable[..., nbray.ClusterContext],
) -> None:
    cluster_factory(num_cpus=2, num_gpus=0)

    @nbray.remote(num_cpus=1)
    class Busy:
        def ping(self) -> str:
            return "pong"

    b = Busy.remote()
    assert nbray.get(b.ping.remote(), timeout=GET_TIMEOUT) == "pong"
    assert nbray.available_resources() == {"CPU": 1.0}
    nbray.kill(b)
    wait_until(lambda: nbray.available_resources() == {"CPU": 2.0}, GET_TIMEOUT)


# --- GPUs (fake ids: nothing here touches a real GPU) --------------------------------------


def test_gpu_tasks_see_their_own_gpu_ids(
    cluster_factory: Callable[..., nbray.ClusterContext], tmp_path: Path
) -> None:
    cluster_factory(num_cpus=2, num_gpus=2)
    assert nbray.cluster_resources() == {"CPU": 2.0, "GPU": 2.0}
    assert nbray.nodes()[0]["GPUIds"] == [0, 1]

    env, ids = nbray.get(visible_gpus.options(num_gpus=1).remote(), timeout=GET_TIMEOUT)
    assert len(ids) == 1 and ids[0] in (0, 1)
    assert env == str(ids[0])

    # two tasks holding one GPU each at the same time see different GPUs
    one, two = tmp_path / "one", tmp_path / "two"
    refs = [
        visible_gpus.options(num_gpus=1).remote(str(one), (str(two),)),
        visible_gpus.options(num_gpus=1).remote(str(two), (str(one),)),
    ]
    results = nbray.get(refs, timeout=GET_TIMEOUT)
    assert sorted(ids[0] for _, ids in results) == [0, 1]
    assert all(env == str(ids[0]) and len(ids) == 1 for env, ids in results)
    assert nbray.available_resources() == {"CPU": 2.0, "GPU": 2.0}

    # a task without GPUs sees none, even on a worker that ran a GPU task before
    for env, ids in nbray.get([visible_gpus.remote() for _ in range(4)], timeout=GET_TIMEOUT):
        assert (env, ids) == ("", [])


def test_fractional_gpu_tasks_may_share_a_gpu(
    cluster_factory: Callable[..., nbray.ClusterContext], tmp_path: Path
) -> None:
    cluster_factory(num_cpus=2, num_gpus=1)
    one, two = tmp_path / "one", tmp_path / "two"
    refs = [
        visible_gpus.options(num_gpus=0.5).remote(str(one), (str(two),)),
        visible_gpus.options(num_gpus=0.5).remote(str(two), (str(one),)),
    ]
    # both run at once on the only GPU
    assert nbray.get(refs, timeout=GET_TIMEOUT) == [("0", [0]), ("0", [0])]


def test_gpu_actor_gets_a_gpu(cluster_factory: Callable[..., nbray.ClusterContext]) -> None:
    cluster_factory(num_cpus=2, num_gpus=2)

    @nbray.remote(num_gpus=1)
    class GpuActor:
        def ids(self) -> list[int]:
            return nbray.get_gpu_ids()

    a = GpuActor.remote()
    ids = nbray.get(a.ids.remote(), timeout=GET_TIMEOUT)
    assert len(ids) == 1 and ids[0] in (0, 1)
    assert nbray.available_resources() == {"CPU": 2.0, "GPU": 1.0}


def test_unschedulable_task_fails_fast(
    cluster_factory: Callable[..., nbray.ClusterContext],
) -> None:
    cluster_factory(num_cpus=2, num_gpus=0)
    with pytest.raises(UnschedulableError, match="GPU"):
        nbray.get(visible_gpus.options(num_gpus=1).remote(), timeout=GET_TIMEOUT)
    with pytest.raises(UnschedulableError, match="CPU"):
        nbray.get(visible_gpus.options(num_cpus=3).remote(), timeout=GET_TIMEOUT)
    with pytest.raises(UnschedulableError, match="nope"):
        nbray.get(visible_gpus.options(resources={"nope": 1}).remote(), timeout=GET_TIMEOUT)
    # the cluster is fine afterwards
    assert nbray.get(ping.remote(), timeout=GET_TIMEOUT) == "pong"
    assert nbray.available_resources() == {"CPU": 2.0}


# --- teardown and ownership ----------------------------------------------------------------

OWNER_SCRIPT = """
    import json, os, time
    from pathlib import Path
    import psutil
    import nbray

    ctx = nbray.init(num_cpus=2)
    marks = Path({marks!r})

    @nbray.remote
    def sleeper(i):
        (marks / f"started-{{i}}").write_text(str(os.getpid()))
        time.sleep(300)

    refs = [sleeper.remote(i) for i in range(2)]
    big = nbray.put(b"x" * 2_000_000)  # lives in a shared-memory segment
    deadline = time.monotonic() + 60
    while not all((marks / f"started-{{i}}").exists() for i in range(2)):
        assert time.monotonic() < deadline, "the tasks never started"
        time.sleep(0.01)
    head_pid = int((Path(ctx.session_dir) / "head.pid").read_text())
    head = psutil.Process(head_pid)
    print(json.dumps({{
        "head": head_pid,
        "children": [p.pid for p in psutil.Process().children()],
        "descendants": [p.pid for p in head.children(recursive=True)],
        "task_pids": [int((marks / f"started-{{i}}").read_text()) for i in range(2)],
        "session_dir": ctx.session_dir,
        "token": ctx.node_id,
        "segments": [p.name for p in Path("/dev/shm").glob(f"nbray-{{ctx.node_id}}-*")],
    }}), flush=True)
    time.sleep(300)
"""


def test_owner_killed_leaves_nothing_behind(short_tmp: Path, tmp_path: Path) -> None:
    env = {**os.environ, "NBRAY_TMPDIR": str(short_tmp)}
    env.pop("NBRAY_ADDRESS", None)
    owner = _spawn_python(OWNER_SCRIPT.format(marks=str(tmp_path)), env)
    try:
        info = json.loads(_read_line(owner))
    finally:
        owner.kill()  # SIGKILL: no atexit, no shutdown
        owner.communicate()
    assert owner.returncode == -signal.SIGKILL
    pids = [info["head"], *info["descendants"]]
    assert info["children"] == [info["head"]]
    assert set(info["task_pids"]) <= set(info["descendants"])
    assert len(info["descendants"]) >= 3  # fork server and the two busy workers
    assert len(info["segments"]) == 1  # the put's

    wait_until(lambda: all(_gone(p) for p in pids), CLEANUP_TIMEOUT)
    wait_until(lambda: not _segments(info["token"]), CLEANUP_TIMEOUT)
    wait_until(lambda: not Path(info["session_dir"]).exists(), CLEANUP_TIMEOUT)


def test_shutdown_while_tasks_run_leaves_nothing_behind(
    cluster_factory: Callable[..., nbray.ClusterContext], tmp_path: Path
) -> None:
    ctx = cluster_factory(num_cpus=2)
    go = str(tmp_path / "never")
    refs = [hold.remote(str(tmp_path / f"s{i}"), go) for i in range(2)]
    big = nbray.put(b"x" * 2_000_000)
    _wait_for_files([tmp_path / "s0", tmp_path / "s1"])
    pids = _tree(_head_pid(ctx.session_dir))
    task_pids = {int((tmp_path / f"s{i}").read_text()) for i in range(2)}
    assert task_pids <= set(pids)
    assert _segments(ctx.node_id)
    nbray.shutdown()
    assert not nbray.is_initialized()
    wait_until(lambda: all(_gone(p) for p in pids), CLEANUP_TIMEOUT)
    wait_until(lambda: not _segments(ctx.node_id), CLEANUP_TIMEOUT)
    wait_until(lambda: not Path(ctx.session_dir).exists(), CLEANUP_TIMEOUT)
    del refs, big


def test_head_killed_leaves_nothing_behind(
    cluster_factory: Callable[..., nbray.ClusterContext], tmp_path: Path
) -> None:
    ctx = cluster_factory(num_cpus=2)
    go = str(tmp_path / "never")
    refs = [hold.remote(str(tmp_path / f"s{i}"), go) for i in range(2)]
    big = nbray.put(b"x" * 2_000_000)
    _wait_for_files([tmp_path / "s0", tmp_path / "s1"])
    head = _head_pid(ctx.session_dir)
    pids = _tree(head)
    os.kill(head, signal.SIGKILL)
    # a get in flight learns the cluster is gone instead of hanging
    with pytest.raises(NbrayConnectionError):
        nbray.get(refs, timeout=GET_TIMEOUT)
    wait_until(lambda: all(_gone(p) for p in pids), CLEANUP_TIMEOUT)
    wait_until(lambda: not _segments(ctx.node_id), CLEANUP_TIMEOUT)
    wait_until(lambda: not Path(ctx.session_dir).exists(), CLEANUP_TIMEOUT)
    del refs, big


# --- the headless cluster of the CLI -------------------------------------------------------


def _nbray_command() -> list[str]:
    script = Path(sys.executable).with_name("nbray")
    return [str(script)] if script.exists() else [sys.executable, "-m", "nbray._compose.cli"]


@dataclass
class Headless:
    env: dict[str, str]
    start_output: str
    head_pid: int
    session_dir: Path
    token: str

    def cli(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*_nbray_command(), *args],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=timeout,
        )

    def status(self) -> dict[str, Any]:
        res = self.cli("status", "--json")
        assert res.returncode == 0, res.stdout + res.stderr
        return dict(json.loads(res.stdout))

    def python(self, code: str) -> subprocess.Popen[str]:
        return _spawn_python(code, {**self.env, "NBRAY_ADDRESS": "auto"})


@pytest.fixture
def headless(short_tmp: Path) -> Iterator[Headless]:
    """`nbray start --num-cpus 2` in a private NBRAY_TMPDIR; always stopped afterwards."""
    env = {**os.environ, "NBRAY_TMPDIR": str(short_tmp)}
    env.pop("NBRAY_ADDRESS", None)
    env.pop("NBRAY_SECRET_FILE", None)
    res = subprocess.run(
        [*_nbray_command(), "start", "--num-cpus", "2"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    current_file = short_tmp / f"nbray-{os.getuid()}" / "current.json"
    current = json.loads(current_file.read_text()) if current_file.exists() else {}
    head_pid = int(current.get("pid", 0))
    pids = _tree(head_pid) if head_pid and not _gone(head_pid) else []
    session_dir = Path(current.get("session_dir", short_tmp / "none"))
    token = session_dir.name.rsplit("-", 1)[-1]
    try:
        assert res.returncode == 0 and current, res.stdout + res.stderr
        yield Headless(env, res.stdout, head_pid, session_dir, token)
    finally:
        try:
            subprocess.run([*_nbray_command(), "stop"], capture_output=True, env=env, timeout=30)
        finally:  # whatever `nbray stop` left (it should leave nothing)
            leftovers = set(pids)
            if head_pid:
                with contextlib.suppress(psutil.NoSuchProcess):
                    leftovers.update(_tree(head_pid))
            for pid in leftovers:
                if not _gone(pid):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
            for seg in _segments(token):
                seg.unlink(missing_ok=True)


def test_cli_start_status_stop(headless: Headless) -> None:
    assert f"head pid {headless.head_pid}" in headless.start_output
    assert headless.session_dir.is_dir()
    res = headless.cli("status")
    assert res.returncode == 0, res.stderr
    assert f"head pid {headless.head_pid}" in res.stdout
    assert "resources:  {'CPU': 2.0}" in res.stdout
    status = headless.status()
    assert status["resources"] == {"CPU": 2.0}
    assert status["available"] == {"CPU": 2.0}
    assert status["cluster"]["pid"] == headless.head_pid
    assert len(status["status"]["workers"]) == 2
    # a second start finds the running cluster and refuses
    again = headless.cli("start", "--num-cpus", "1")
    assert again.returncode == 1 and "already running" in again.stdout

    pids = _tree(headless.head_pid)
    assert len(pids) >= 4  # head, fork server, two pool workers
    res = headless.cli("stop")
    assert res.returncode == 0, res.stderr
    assert f"stopped (head pid {headless.head_pid})" in res.stdout
    wait_until(lambda: all(_gone(p) for p in pids), CLEANUP_TIMEOUT)
    assert not headless.session_dir.exists()
    assert not (headless.session_dir.parent / "current.json").exists()
    assert not _segments(headless.token)
    res = headless.cli("status")
    assert res.returncode == 1 and "no nbray cluster is running" in res.stdout


MEET_SCRIPT = """
    import os, time
    import nbray

    ctx = nbray.init()  # NBRAY_ADDRESS=auto
    assert not ctx.owned

    @nbray.remote
    def meet(me, other):
        open(me, "w").close()
        deadline = time.monotonic() + 60
        while not os.path.exists(other):
            assert time.monotonic() < deadline, "the other client's task never ran"
            time.sleep(0.01)
        return "met"

    print(nbray.get(meet.remote({me!r}, {other!r}), timeout=90), nbray.cluster_resources())
    nbray.shutdown()
"""


def test_two_clients_use_the_cluster_at_once(headless: Headless, tmp_path: Path) -> None:
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    # each client's task finishes only while the other client's task runs too
    first = headless.python(MEET_SCRIPT.format(me=a, other=b))
    second = headless.python(MEET_SCRIPT.format(me=b, other=a))
    for proc in (first, second):
        out, _ = _finish(proc)
        assert out.strip() == "met {'CPU': 2.0}"
    assert not _gone(headless.head_pid)
    # both clients left: only the status command itself is connected
    status = wait_until(
        lambda: (s := headless.status()["status"])["clients"] == 1 and s, GET_TIMEOUT, 0.2
    )
    assert status["tasks"]["FINISHED"] == 2


HOG_SCRIPT = """
    import os, time
    from pathlib import Path
    import nbray

    nbray.init()  # NBRAY_ADDRESS=auto
    marks = Path({marks!r})

    @nbray.remote
    def hog(i):
        (marks / f"hog-{{i}}").write_text(str(os.getpid()))
        time.sleep(300)

    refs = [hog.remote(i) for i in range(2)]
    deadline = time.monotonic() + 60
    while not all((marks / f"hog-{{i}}").exists() for i in range(2)):
        assert time.monotonic() < deadline, "the tasks never started"
        time.sleep(0.01)
    print("running", flush=True)
    time.sleep(300)
"""

DOUBLE_SCRIPT = """
    import nbray

    nbray.init()  # NBRAY_ADDRESS=auto

    @nbray.remote
    def double(x):
        return 2 * x

    print(nbray.get([double.remote(i) for i in range(4)], timeout=90))
    nbray.shutdown()
"""


def test_disconnected_client_has_its_tasks_cancelled(headless: Headless, tmp_path: Path) -> None:
    hog = headless.python(HOG_SCRIPT.format(marks=str(tmp_path)))
    other = None
    try:
        assert _read_line(hog).strip() == "running"
        hog_pids = [int((tmp_path / f"hog-{i}").read_text()) for i in range(2)]
        status = headless.status()
        assert status["status"]["tasks"]["RUNNING"] == 2
        assert status["available"] == {"CPU": 0.0}
        # another client's tasks queue behind the hog's
        other = headless.python(DOUBLE_SCRIPT)
        wait_until(lambda: headless.status()["status"]["tasks"]["READY"] == 4, GET_TIMEOUT, 0.2)
    finally:
        hog.kill()  # the client dies mid-job
        hog.communicate()
    out, _ = _finish(other)
    assert out.strip() == "[0, 2, 4, 6]"
    wait_until(lambda: all(_gone(p) for p in hog_pids), CLEANUP_TIMEOUT)

    def settled() -> dict[str, Any] | None:
        status = headless.status()
        return status if status["available"] == {"CPU": 2.0} else None

    status = wait_until(settled, CLEANUP_TIMEOUT, 0.2)
    tasks = status["status"]["tasks"]
    assert (tasks["RUNNING"], tasks["READY"], tasks["WAITING"]) == (0, 0, 0)
    assert tasks["CANCELLED"] == 2
    assert tasks["FINISHED"] == 4
    assert not _gone(headless.head_pid)


DETACHED_CREATOR = """
    import nbray

    nbray.init()  # NBRAY_ADDRESS=auto

    @nbray.remote
    class Counter:
        def __init__(self):
            self.n = 0
        def incr(self):
            self.n += 1
            return self.n

    keeper = Counter.options(name="keeper", lifetime="detached").remote()
    temp = Counter.options(name="temp").remote()
    print(nbray.get([keeper.incr.remote(), temp.incr.remote()]))
    nbray.shutdown()
"""

DETACHED_USER = """
    import time
    import nbray

    nbray.init()  # NBRAY_ADDRESS=auto
    deadline = time.monotonic() + 30
    while True:  # the creator's non-detached actor goes with its creator
        try:
            nbray.get_actor("temp")
        except ValueError:
            break
        assert time.monotonic() < deadline, "temp outlived its creator"
        time.sleep(0.05)
    keeper = nbray.get_actor("keeper")
    print(nbray.get(keeper.incr.remote()))
    nbray.kill(keeper)
    deadline = time.monotonic() + 30
    while True:
        try:
            nbray.get_actor("keeper")
        except ValueError:
            break
        assert time.monotonic() < deadline, "keeper outlived kill"
        time.sleep(0.05)
    print("killed")
    nbray.shutdown()
"""


def test_detached_actor_outlives_its_creator(headless: Headless) -> None:
    out, _ = _finish(headless.python(DETACHED_CREATOR))
    assert out.strip() == "[1, 1]"
    out, _ = _finish(headless.python(DETACHED_USER))
    assert out.split() == ["2", "killed"]
    assert headless.status()["status"]["actors"] == 0


NAMESPACE_SCRIPT = """
    import nbray

    nbray.init(namespace="team")  # NBRAY_ADDRESS=auto

    @nbray.remote
    class Service:
        def hello(self):
            return "hello"

    svc = Service.options(name="svc").remote()

    @nbray.remote
    def call_by_name():
        return nbray.get(nbray.get_actor("svc").hello.remote())

    print(nbray.get(call_by_name.remote(), timeout=60))
    try:
        nbray.get_actor("svc", namespace="default")
        print("found in the wrong namespace")
    except ValueError:
        print("not in default")
    nbray.shutdown()
"""


def test_tasks_run_in_their_clients_namespace(headless: Headless) -> None:
    # a client that joined a shared cluster with its own namespace: its tasks look up
    # named actors in that namespace (Ray: tasks and actors inherit the job's namespace)
    out, _ = _finish(headless.python(NAMESPACE_SCRIPT))
    assert out.split("\n")[:2] == ["hello", "not in default"]


# --- transport security --------------------------------------------------------------------


class _SystemPayload:
    """Unpickling this runs a shell command."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


class _OpenPayload:
    """Unpickling this creates a file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.marker), "w"))


def _evil_frame(marker: Path) -> bytes:
    body = pickle.dumps([_SystemPayload(marker), _OpenPayload(marker.with_suffix(".open"))])
    return struct.pack("<I", len(body)) + body


def _connect(address: str) -> socket.socket:
    if address.startswith("unix:"):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(GET_TIMEOUT)
        sock.connect(address[5:])
    else:
        host, port = address.rsplit(":", 1)
        sock = socket.create_connection((host, int(port)), timeout=GET_TIMEOUT)
    return sock


def _closed_by_peer(sock: socket.socket) -> bool:
    """Read until the server closes the connection (a hang fails on the socket timeout)."""
    try:
        while sock.recv(4096):
            pass
    except ConnectionResetError:
        pass
    return True


def _tcp_listeners(pid: int) -> list[tuple[str, int]]:
    return [
        (c.laddr.ip, c.laddr.port)
        for c in psutil.Process(pid).net_connections(kind="inet")
        if c.status == psutil.CONN_LISTEN
    ]


def test_tcp_only_when_asked_and_only_on_loopback(
    cluster_factory: Callable[..., nbray.ClusterContext],
) -> None:
    ctx = cluster_factory(num_cpus=2)
    assert _tcp_listeners(_head_pid(ctx.session_dir)) == []
    assert ctx.address.startswith("unix:")
    nbray.shutdown()

    ctx = cluster_factory(num_cpus=2, port=0)
    match = re.fullmatch(r"127\.0\.0\.1:(\d+)", ctx.address)
    assert match, ctx.address
    assert _tcp_listeners(_head_pid(ctx.session_dir)) == [("127.0.0.1", int(match.group(1)))]
    # a client holding the secret connects over TCP
    secret_file = Path(ctx.session_dir) / "secret"
    res = run_python(
        f"""
        import nbray
        nbray.init(address={ctx.address!r})
        print(nbray.get(nbray.put(21)) * 2, nbray.cluster_resources())
        nbray.shutdown()
        """,
        env={"NBRAY_SECRET_FILE": str(secret_file), "NBRAY_ADDRESS": ""},
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "42 {'CPU': 2.0}"


def test_unauthenticated_pickles_are_never_loaded(
    cluster_factory: Callable[..., nbray.ClusterContext], tmp_path: Path
) -> None:
    ctx = cluster_factory(num_cpus=2, port=0)
    unix = f"unix:{Path(ctx.session_dir) / 'sock'}"
    markers = []
    for n, address in enumerate([ctx.address, unix]):
        # 1: a pickle frame instead of the handshake
        marker = tmp_path / f"pwned-raw-{n}"
        markers += [marker, marker.with_suffix(".open")]
        with _connect(address) as sock:
            sock.sendall(_evil_frame(marker))
            assert _closed_by_peer(sock)
        # 2: a well-formed handshake with a made-up MAC, then a pickle frame
        marker = tmp_path / f"pwned-mac-{n}"
        markers += [marker, marker.with_suffix(".open")]
        with _connect(address) as sock:
            hello = sock.recv(SERVER_HELLO_SIZE, socket.MSG_WAITALL)
            assert hello.startswith(MAGIC)
            forged = MAGIC + os.urandom(NONCE_SIZE) + os.urandom(32)
            sock.sendall(forged + _evil_frame(marker))
            assert _closed_by_peer(sock)
    # the cluster still works, and nothing was ever unpickled
    assert nbray.get(ping.remote(), timeout=GET_TIMEOUT) == "pong"
    assert [m for m in markers if m.exists()] == []


def test_wrong_secret_is_refused(
    cluster_factory: Callable[..., nbray.ClusterContext], tmp_path: Path
) -> None:
    ctx = cluster_factory(num_cpus=2, port=0)
    wrong = tmp_path / "wrong-secret"
    fd = os.open(wrong, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, os.urandom(32))
    os.close(fd)
    with pytest.raises(NbrayConnectionError):
        Connection(ctx.address, wrong.read_bytes())
    with pytest.raises(NbrayConnectionError):
        Connection(f"unix:{Path(ctx.session_dir) / 'sock'}", wrong.read_bytes())

    res = run_python(
        f"""
        import nbray
        from nbray.exceptions import NbrayConnectionError
        try:
            nbray.init(address={ctx.address!r})
        except NbrayConnectionError as exc:
            print("refused:", type(exc).__name__)
        else:
            print("connected")
        """,
        env={"NBRAY_SECRET_FILE": str(wrong), "NBRAY_ADDRESS": ""},
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "refused: NbrayConnectionError"

    # a client speaking the protocol with the wrong secret, then sending a pickle anyway
    marker = tmp_path / "pwned"
    with _connect(ctx.address) as sock:
        hello = sock.recv(SERVER_HELLO_SIZE, socket.MSG_WAITALL)
        nonce_s, nonce_c = hello[len(MAGIC) :], os.urandom(NONCE_SIZE)
        mac = hmac.new(wrong.read_bytes(), b"c" + nonce_s + nonce_c, hashlib.sha256).digest()
        sock.sendall(MAGIC + nonce_c + mac + _evil_frame(marker))
        assert _closed_by_peer(sock)
    assert not marker.exists() and not marker.with_suffix(".open").exists()
    assert nbray.get(nbray.put("still serving"), timeout=GET_TIMEOUT) == "still serving"


def test_session_files_are_private(cluster: nbray.ClusterContext) -> None:
    session_dir = Path(cluster.session_dir)

    def mode(p: Path) -> int:
        st = p.stat()
        assert st.st_uid == os.getuid()
        return stat.S_IMODE(st.st_mode)

    assert mode(session_dir) == 0o700
    assert mode(session_dir.parent) == 0o700
    assert mode(session_dir / "secret") == 0o600
    assert len((session_dir / "secret").read_bytes()) == 32
    assert mode(session_dir / "config.json") == 0o600
    assert mode(session_dir / "sock") == 0o600
    secret = (session_dir / "secret").read_bytes()
    head = psutil.Process(_head_pid(session_dir))
    for proc in [head, *head.children(recursive=True)]:
        assert secret.hex() not in " ".join(proc.cmdline())
        assert secret.hex() not in json.dumps(proc.environ())


def test_secret_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_bytes(os.urandom(32))
    for loose in (0o644, 0o640, 0o604):
        path.chmod(loose)
        with pytest.raises(PermissionError, match="chmod 600"):
            session_files.read_secret(path)
    path.chmod(0o600)
    assert session_files.read_secret(path) == path.read_bytes()


def test_shared_memory_segments_are_private(cluster: nbray.ClusterContext) -> None:
    @nbray.remote
    def make_big() -> bytes:
        return b"y" * 1_000_000

    put_ref = nbray.put(b"x" * 1_000_000)
    task_ref = make_big.remote()
    assert nbray.get(task_ref, timeout=GET_TIMEOUT) == b"y" * 1_000_000
    segments = _segments(cluster.node_id)
    assert len(segments) == 2
    for seg in segments:
        st = seg.stat()
        assert stat.S_IMODE(st.st_mode) == 0o600, seg
        assert st.st_uid == os.getuid()
    del put_ref, task_ref
    wait_until(lambda: not _segments(cluster.node_id), GET_TIMEOUT)


def test_spill_directory_is_private(cluster: nbray.ClusterContext) -> None:
    spill = Path(cluster.session_dir) / "spill"
    assert stat.S_IMODE(spill.stat().st_mode) == 0o700


def test_a_tmpdir_too_long_for_a_unix_socket_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    deep = tmp_path / ("d" * 100)
    deep.mkdir()
    monkeypatch.setenv("NBRAY_TMPDIR", str(deep))
    with pytest.raises(ValueError, match="NBRAY_TMPDIR to a shorter directory"):
        nbray.init(num_cpus=1)
    assert not nbray.is_initialized()
    assert list((deep / f"nbray-{os.getuid()}").iterdir()) == []


def test_init_with_arguments_says_it_did_not_join_the_shared_cluster(
    cluster_factory: Callable[..., nbray.ClusterContext], monkeypatch: pytest.MonkeyPatch
) -> None:
    # as in a kernel of a Jupyter server running nbray's extension
    monkeypatch.setenv("NBRAY_ADDRESS", "/nonexistent/shared-cluster")
    with pytest.warns(PrivateClusterWarning, match=r"init\(num_cpus=1\) started a private"):
        ctx = cluster_factory(num_cpus=1)
    assert ctx.owned and nbray.cluster_resources()["CPU"] == 1


def test_a_kernels_single_task_does_not_wait_behind_anothers_batch(
    cluster_factory: Callable[..., nbray.ClusterContext], tmp_path: Path
) -> None:
    # two kernels share one cluster: this process floods it, another asks for one task
    ctx = cluster_factory(num_cpus=2)
    flag = tmp_path / "served"

    @nbray.remote
    def work(flag: str) -> bool:
        import os
        import time

        served_before = os.path.exists(flag)  # did the other kernel's task run already?
        time.sleep(0.005)
        return served_before

    batch = [work.remote(str(flag)) for _ in range(2000)]  # about 5 s of work on 2 CPUs
    res = run_python(
        f"""
        import nbray
        from pathlib import Path
        nbray.init(address={ctx.address!r})
        serve = nbray.remote(lambda: Path({str(flag)!r}).write_text("yes"))
        nbray.get(serve.remote(), timeout=120)
        print("served")
        nbray.shutdown()
        """,
        env={"NBRAY_SECRET_FILE": str(Path(ctx.session_dir) / "secret"), "NBRAY_ADDRESS": ""},
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "served"
    # first come, first served runs it after the whole batch; it ran while most of the
    # batch still waited
    started_after = sum(nbray.get(batch, timeout=120))
    assert started_after > len(batch) // 2, started_after
