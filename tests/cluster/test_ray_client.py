"""A Ray cluster the user already has, reached through Ray Client (``ray://host:port``).

tests/ray_head.py: `ray start --head` on loopback (token auth, client port, dashboard)
    ──▶ the core API suite with address="ray://..."
    ──▶ RAY_ADDRESS / address="auto" as Ray reads them
    ──▶ a client of another Ray version: the error names both and what to install
    ──▶ a real kernel: output routing, %%remote, the widgets, an interrupt
"""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator

import pytest
from kernel_session import KernelSession
from nbray_testing import run_core_api_suite
from ray_head import RayHead, running_head


@pytest.fixture(scope="module")
def head() -> Iterator[RayHead]:
    yield from running_head()


def run_client(head: RayHead, code: str, env: dict[str, str] | None = None) -> str:
    """Run ``code`` in a fresh Python process (Ray Client state is per process)."""
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env={**os.environ, **head.env, **(env or {})},
        timeout=180,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:] + head.output()
    return proc.stdout


@pytest.mark.timeout(400)
def test_core_api_suite_over_ray_client(head: RayHead) -> None:
    try:
        run_core_api_suite(head.client_address, head.env)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{head.output()}") from None


@pytest.mark.timeout(200)
def test_ray_address_and_auto_pick_the_cluster_as_ray_does(head: RayHead) -> None:
    out = run_client(
        head,
        """
        import nbray as ray

        for how in ({}, {"address": "auto"}):
            ctx = ray.init(**how)           # RAY_ADDRESS names the cluster, as for Ray
            print(ctx.engine, ctx.address, bool(ctx.dashboard_url))

            @ray.remote
            def double(x):
                return 2 * x

            print(ray.get([double.remote(i) for i in range(3)]))
            ray.shutdown()
        """,
        env={"RAY_ADDRESS": head.client_address},
    )
    line = f"ray {head.client_address} True\n[0, 2, 4]\n"
    assert out == line * 2


@pytest.mark.timeout(200)
def test_a_ray_address_picks_the_ray_engine_and_get_actor_works(head: RayHead) -> None:
    out = run_client(
        head,
        f"""
        import nbray

        ctx = nbray.init(address="{head.client_address}")
        print(ctx.engine)

        @nbray.remote
        class Counter:
            def __init__(self):
                self.n = 0

            def incr(self):
                self.n += 1
                return self.n

        c = Counter.options(name="rc-counter").remote()
        nbray.get(c.incr.remote())
        same = nbray.get_actor("rc-counter")  # a Ray Client handle: methods asked of the cluster
        print(nbray.get(same.incr.remote()), repr(same).split("(")[0])
        nbray.shutdown()
        """,
    )
    assert out.splitlines() == ["ray", "2 ActorHandle"]


@pytest.mark.timeout(200)
def test_another_ray_version_is_refused_naming_both_versions(head: RayHead) -> None:
    # Ray's version without importing Ray here: Ray reads its auth mode once, at import,
    # and later tests of this process start a private Ray with token auth
    ray_version = importlib.metadata.version("ray")

    out = run_client(
        head,
        f"""
        import ray
        ray.__version__ = "2.9.0"   # this process claims another Ray release to the cluster
        import nbray

        try:
            nbray.init(address="{head.client_address}")
        except ConnectionError as exc:
            print(exc)
        else:
            print("connected")
        """,
    )
    py = ".".join(map(str, sys.version_info[:3]))
    cluster = f"runs Ray {ray_version} on Python {py}"
    assert f"the Ray cluster at {head.client_address} {cluster}" in out
    assert f"this process has Ray 2.9.0 on Python {py}" in out
    assert f"pip install 'ray[client]=={ray_version}'" in out


@pytest.mark.timeout(300)
def test_a_kernel_on_ray_client_routes_output_draws_widgets_and_interrupts(
    head: RayHead,
) -> None:
    kernel = KernelSession(env={**head.env, "RAY_ADDRESS": head.client_address}, timeout=90)
    try:
        assert kernel.execute("import nbray\nnbray.init().engine", timeout=120).ok().data() == [
            "'ray'"
        ]
        # a task's print shows in the cell that started it
        printed = kernel.execute(
            "@nbray.remote\ndef shout(x):\n    print('from the cluster', x)\n    return x\n"
            "nbray.get([shout.remote(i) for i in range(3)])",
            timeout=120,
        ).ok()
        assert printed.data() == ["[0, 1, 2]"]
        kernel.wait_for(lambda: printed.stream().count("from the cluster") == 3, timeout=60)
        # %%remote runs the cell on the cluster and brings its variables back
        kernel.execute("%load_ext nbray\nbase = 5").ok()
        kernel.execute("%%remote\ntotal = sum(range(10)) + base", timeout=120).ok()
        assert kernel.execute("total").ok().data() == ["50"]
        # the widgets draw from the Ray engine's events (a kernel with no widget frontend,
        # as here, gets their pictures, redrawn in place)
        shown = kernel.execute(
            "graph = nbray.task_graph()\nmonitor = nbray.monitor()\n"
            "display(graph, monitor)\nnbray.get([shout.remote(i) for i in range(4)])",
            timeout=120,
        ).ok()
        kernel.wait_for(
            lambda: any("TaskGraph: 4 tasks (4 FINISHED)" in d for d in shown.data()), timeout=60
        )
        assert any(d.startswith("ClusterMonitor") for d in shown.data())
        # the stop button cancels the cell's tasks on the cluster
        msg_id = kernel.submit(
            # short sleeps: Ray delivers a cancel between bytecodes, not inside a C call
            "@nbray.remote\ndef forever():\n    import time\n"
            "    for _ in range(6000):\n        time.sleep(0.1)\n"
            "stuck = [forever.remote() for _ in range(2)]\nnbray.get(stuck)"
        )
        kernel.wait_for(
            lambda: any(m["msg_type"] == "execute_input" for m in kernel.messages_of(msg_id))
        )
        time.sleep(3)  # the tasks are running on the cluster now
        kernel.interrupt()
        stopped = kernel.finish(msg_id, timeout=60)
        assert stopped.reply["content"]["ename"] == "KeyboardInterrupt"
        assert "cancelled the 2 task(s) this cell started" in stopped.stream()
        free = kernel.execute(
            "import time\nfor _ in range(300):\n"
            "    if nbray.available_resources().get('CPU') == 2.0:\n        break\n"
            "    time.sleep(0.1)\nprint(nbray.available_resources().get('CPU'))",
            timeout=60,
        ).ok()
        assert free.stream().strip() == "2.0"
        kernel.execute("nbray.shutdown()", timeout=60).ok()
    finally:
        kernel.close()
