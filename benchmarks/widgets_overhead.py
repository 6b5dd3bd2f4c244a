"""What the live widgets cost a run of many tiny tasks, as ratios to the same run unwatched.

    .venv/bin/python -m benchmarks.widgets_overhead [--tasks 10000] [--repeats 5] [--num-cpus 2]

The benchmark suite runs it too, as its ``watched`` workload (``python -m benchmarks.run
--workloads watched``: the plain, widgets and server modes, as ratios to plain).

Each mode runs in its own process (a fresh cluster), ``--repeats`` times after a warm-up:

- ``plain``: nobody listens to the event stream (the head builds no task events);
- ``subscribed``: one no-op subscriber (the cost of the event stream itself);
- ``state``: the widgets' shared hub and state model, nothing drawn;
- ``widgets``: a TaskGraph, a Timeline and a ClusterMonitor built and drawn (plotly
  figures included), as in a notebook;
- ``server``: a real Jupyter server with nbray's extension owns the cluster, and a
  browser-like client (another process) holds its events WebSocket open, as the side panel
  or the dashboard does; the run is a kernel's, joined through ``NBRAY_ADDRESS``.

It prints the median wall time of ``get([f.remote(i) for i in range(tasks)])`` per mode,
the ratio to ``plain``, the head's, the driver's and (``server``) the Jupyter server's plus
the WebSocket reader's CPU seconds per run, the number of
redraw rounds the widgets made, and the seconds the driver spent in full (generation 2)
garbage collections per run: importing plotly's FigureWidget imports nbformat, jsonschema
and a lark grammar (~180,000 long-lived objects), which every full collection walks.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import subprocess
import sys
import time
from typing import Any

MODES = ("plain", "subscribed", "state", "widgets", "server")


def child(mode: str, tasks: int, repeats: int, num_cpus: int = 2) -> dict[str, Any]:
    import psutil

    import nbray
    from nbray._model import session

    server = JupyterServer(num_cpus) if mode == "server" else None
    if server is not None:
        nbray.init(address=server.cluster_address())  # as a kernel of that server does
    else:
        nbray.init(num_cpus=num_cpus)

    @nbray.remote
    def inc(x: int) -> int:
        return x + 1

    engine: Any = session.current_engine()
    head = psutil.Process(server.head_pid() if server else engine.cluster.process.pid)
    me = psutil.Process()
    # the server's own process and the WebSocket reader's (the head is the server's child)
    watchers = [psutil.Process(p.pid) for p in (server.proc, server.reader)] if server else []

    def cpu(procs: list[psutil.Process]) -> float:
        return sum(sum(p.cpu_times()[:2]) for p in procs)

    def run() -> tuple[float, float, float, float]:
        h0, m0, w0 = cpu([head]), cpu([me]), cpu(watchers)
        started = time.perf_counter()
        values = nbray.get([inc.remote(i) for i in range(tasks)])
        wall = time.perf_counter() - started
        assert values == list(range(1, tasks + 1))
        return wall, cpu([head]) - h0, cpu([me]) - m0, cpu(watchers) - w0

    run()
    views: list[Any] = []
    gc_time = [0.0, 0.0]

    def on_gc(phase: str, info: dict[str, Any]) -> None:
        if info["generation"] == 2:
            now = time.perf_counter()
            if phase == "start":
                gc_time[1] = now
            else:
                gc_time[0] += now - gc_time[1]

    if mode == "subscribed":
        engine.subscribe(lambda event: None)
    elif mode == "state":
        from nbray.widgets.hub import hub_for

        hub_for().attach(lambda state, gone: state.counts())
    elif mode == "widgets":
        from nbray.widgets.cluster_monitor import ClusterMonitor
        from nbray.widgets.gantt import Timeline
        from nbray.widgets.graph import TaskGraph

        views = [TaskGraph("session", frontend=True), Timeline(frontend=True)]
        views.append(ClusterMonitor(frontend=True))
    before = views[0]._hub.redraws if views else 0
    gc.callbacks.append(on_gc)
    runs = [run() for _ in range(repeats)]
    gc.callbacks.remove(on_gc)
    out = {
        "mode": mode,
        "wall": statistics.median(r[0] for r in runs),
        "head_cpu": statistics.median(r[1] for r in runs),
        "driver_cpu": statistics.median(r[2] for r in runs),
        "server_cpu": statistics.median(r[3] for r in runs),
        "redraw_rounds": (views[0]._hub.redraws - before) if views else 0,
        "full_gc": gc_time[0] / repeats,
        "tracked": len(gc.get_objects()),
    }
    nbray.shutdown()
    if server is not None:
        server.stop()
    return out


class JupyterServer:
    """``jupyter server`` with nbray's extension (``num_cpus`` CPUs), on a free loopback port,
    and a reader of its events WebSocket in a process of its own (the browser's part)."""

    def __init__(self, num_cpus: int = 2) -> None:
        import secrets
        import socket
        import tempfile

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.token = secrets.token_hex(16)
        self.root = tempfile.mkdtemp(prefix="nbray-bench-")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jupyter_server", "--no-browser", f"--port={self.port}",
             "--ip=127.0.0.1", "--allow-root", f"--IdentityProvider.token={self.token}",
             f"--ServerApp.root_dir={self.root}", f"--NbrayServer.num_cpus={num_cpus}"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        self.reader: subprocess.Popen[str] | None = None
        self._wait_running()
        self.reader = subprocess.Popen(
            [sys.executable, "-c", _WS_READER, f"ws://127.0.0.1:{self.port}/nbray/api/events",
             self.token],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert self.reader.stdout is not None
        if self.reader.stdout.readline().strip() != "open":
            raise RuntimeError("the events WebSocket did not open")

    def _wait_running(self, timeout: float = 60.0) -> None:
        import urllib.request

        deadline = time.monotonic() + timeout
        url = f"http://127.0.0.1:{self.port}/nbray/api/cluster"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"jupyter server exited with {self.proc.returncode}")
            try:
                request = urllib.request.Request(
                    url, headers={"Authorization": f"token {self.token}"}
                )
                with urllib.request.urlopen(request, timeout=5) as response:
                    status: dict[str, Any] = json.loads(response.read())
                if status.get("state") == "running":
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError("the server's cluster did not start in time")

    def cluster_address(self) -> str:
        from nbray._wire import session_files

        return str(session_files.user_root() / f"jupyter-{self.proc.pid}")

    def head_pid(self) -> int:
        from pathlib import Path

        link = Path(self.cluster_address())
        return int((link.resolve() / "head.pid").read_text())

    def stop(self) -> None:
        import shutil
        import signal

        for proc in (self.reader, self.proc):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)  # the server stops its cluster
        for proc in (self.reader, self.proc):
            if proc is not None:
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        shutil.rmtree(self.root, ignore_errors=True)


# the browser's part: open the events WebSocket, say so, then read until killed
_WS_READER = """
import sys
from tornado.httpclient import HTTPRequest
from tornado.ioloop import IOLoop
from tornado.websocket import websocket_connect

async def main():
    url, token = sys.argv[1], sys.argv[2]
    conn = await websocket_connect(HTTPRequest(url, headers={"Authorization": "token " + token}))
    print("open", flush=True)
    while await conn.read_message() is not None:
        pass

IOLoop.current().run_sync(main)
"""


def measure(
    modes: tuple[str, ...] = MODES,
    tasks: int = 10_000,
    repeats: int = 5,
    num_cpus: int = 2,
    timeout: float = 600.0,
) -> list[dict[str, Any]]:
    """Run each mode in a child process of its own; their results, in ``modes``' order (the
    benchmark suite's ``watched`` workload calls this too)."""
    results = []
    for mode in modes:
        proc = subprocess.run(
            [sys.executable, "-m", "benchmarks.widgets_overhead", "--child", mode,
             "--tasks", str(tasks), "--repeats", str(repeats), "--num-cpus", str(num_cpus)],
            capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip
        if proc.returncode != 0:
            raise RuntimeError(f"the {mode} run failed ({proc.returncode}): {proc.stderr[-2000:]}")
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--num-cpus", type=int, default=2)
    parser.add_argument("--child", choices=MODES)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.tasks, args.repeats, args.num_cpus)))
        return
    results = measure(MODES, args.tasks, args.repeats, args.num_cpus)
    base = results[0]["wall"]
    print(f"{args.tasks} tasks, median of {args.repeats} runs, {args.num_cpus} CPUs")
    print("| mode | wall s | x plain | head CPU s | driver CPU s | server CPU s | full GC s "
          "| GC-tracked objects | redraw rounds |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['mode']} | {r['wall']:.2f} | {r['wall'] / base:.2f} | {r['head_cpu']:.2f} "
            f"| {r['driver_cpu']:.2f} | {r['server_cpu']:.2f} | {r['full_gc']:.2f} "
            f"| {r['tracked']} | {r['redraw_rounds']} |"
        )


if __name__ == "__main__":
    main()
