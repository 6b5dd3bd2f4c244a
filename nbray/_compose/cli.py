"""The ``nbray`` command: run a headless cluster that several kernels share.

    nbray start [--num-cpus N] [--num-gpus N] [--port P [--host H]]
        ──▶ start_local_cluster(owner_pid=0) ──▶ current.json (0600) ──▶ prints the address
    nbray status ──▶ connects ("auto") ──▶ resources, workers, tasks by state
    nbray stop   ──▶ Shutdown to the head ──▶ waits for it to exit ──▶ removes current.json

Kernels join with ``nbray.init(address="auto")`` or ``NBRAY_ADDRESS=auto``.

    nbray up FILE   ──▶ cluster/provision.py: a Ray cluster over SSH, recorded so that a bare
                        nbray.init() in kernels on this machine uses it (the Ray engine)
    nbray down FILE ──▶ stops it and removes what up wrote
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from typing import Any

from nbray._base.errors import NbrayConnectionError
from nbray._wire import session_files as sf


def _running() -> dict[str, Any] | None:
    current = sf.read_current()
    if current is None:
        return None
    if not sf.pid_alive(int(current["pid"])):
        sf.current_cluster_file().unlink(missing_ok=True)
        return None
    return current


def cmd_start(args: argparse.Namespace) -> int:
    from nbray._compose.cluster.local import start_local_cluster

    current = _running()
    if current is not None:
        print(f"a cluster is already running at {current['address']} (stop it with `nbray stop`)")
        return 1
    resources = json.loads(args.resources) if args.resources else None
    cluster = start_local_cluster(
        num_cpus=args.num_cpus,
        num_gpus=args.num_gpus,
        resources=resources,
        tcp_host=args.host or ("127.0.0.1" if args.port is not None else ""),
        tcp_port=args.port or 0,
        object_store_memory=args.object_store_memory,
    )
    tcp_file = cluster.session_dir / "tcp_address"
    tcp = tcp_file.read_text() if tcp_file.exists() else ""
    sf.write_json_private(
        sf.current_cluster_file(),
        {
            "address": f"unix:{cluster.session_dir / 'sock'}",
            "tcp_address": tcp,
            "secret_file": str(cluster.session_dir / "secret"),
            "session_dir": str(cluster.session_dir),
            "pid": cluster.process.pid,
        },
    )
    print(f"nbray cluster started (head pid {cluster.process.pid})")
    print(f"  address:     {cluster.address}")
    print(f"  secret file: {cluster.session_dir / 'secret'}")
    print('  connect with nbray.init(address="auto"), or NBRAY_ADDRESS=auto')
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from nbray._engines.ray import record

    from . import lifecycle

    ray_cluster = record.read()
    if ray_cluster is not None and not args.json:
        print(
            f"Ray cluster {ray_cluster['name']!r} (nbray up {ray_cluster['cluster_file']}): "
            f"{len(ray_cluster['nodes'])} nodes at start, head {ray_cluster['address']}; "
            "kernels' nbray.init() use it"
        )
    current = _running()
    if current is None:
        if ray_cluster is None:
            print("no nbray cluster is running (start one with `nbray start`)")
        return 0 if ray_cluster is not None else 1
    try:
        lifecycle.init(address="auto")
    except NbrayConnectionError as exc:
        print(f"cannot reach the cluster: {exc}")
        return 1
    try:
        from nbray._engines.local.engine import LocalEngine
        from nbray._model.session import get_engine

        engine = get_engine()
        assert isinstance(engine, LocalEngine)
        status = engine.status()
        info = engine.cluster_info()
        if args.json:
            print(
                json.dumps(
                    {
                        "cluster": current,
                        "resources": info["total"],
                        "available": info["available"],
                        "status": status,
                    },
                    indent=2,
                )
            )
            return 0
        print(f"nbray cluster at {current['address']} (head pid {current['pid']})")
        if current.get("tcp_address"):
            print(f"  tcp:        {current['tcp_address']}")
        print(f"  resources:  {info['total']}")
        print(f"  available:  {info['available']}")
        print(f"  workers:    {len(status['workers'])} {sorted(status['workers'].values())}")
        print(f"  clients:    {status['clients'] - 1} (besides this command)")
        print(f"  tasks:      {status['tasks']}")
        print(f"  actors:     {status['actors']}, objects: {status['objects']}")
    finally:
        lifecycle.shutdown()
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    current = _running()
    if current is None:
        print("no nbray cluster is running")
        return 0
    pid = int(current["pid"])
    from nbray._engines.local.client import Client
    from nbray._wire import protocol as P

    try:
        client = Client(current["address"], sf.read_secret(current["secret_file"]))
        client.send(P.Shutdown())
        client.close()
    except NbrayConnectionError:
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + args.timeout
    while sf.pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if sf.pid_alive(pid):
        os.kill(pid, signal.SIGKILL)
    sf.current_cluster_file().unlink(missing_ok=True)
    sf.remove_session_dir(current["session_dir"])
    print(f"nbray cluster stopped (head pid {pid})")
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    from nbray._compose.cluster import provision

    spec = _cluster_spec(args)
    if spec is None:
        return 2
    print(f"nbray up: cluster {spec.name!r}, head {spec.head.label}, {len(spec.workers)} worker(s)")
    try:
        data = provision.up(spec, _progress)
    except provision.StepError as exc:
        print(f"nbray up failed: {exc}", file=sys.stderr)
        return 1
    print(f"Ray cluster {spec.name!r} is up: {len(data['nodes'])} nodes, address {data['address']}")
    print(f"  dashboard: {data['dashboard']}")
    print("  kernels on this machine connect with nbray.init() (the Ray engine)")
    if not data["on_this_machine"]:
        print(
            "  warning: no node of the cluster runs on this machine, and Ray drivers attach "
            "through a Ray node on their own machine: run Jupyter on the head (or a node)",
            file=sys.stderr,
        )
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    from nbray._compose.cluster import provision

    spec = _cluster_spec(args)
    if spec is None:
        return 2
    errors = provision.down(spec, _progress)
    for exc in errors:
        print(f"nbray down: {exc}", file=sys.stderr)
    if errors:
        return 1
    print(f"Ray cluster {spec.name!r} is down")
    return 0


def _cluster_spec(args: argparse.Namespace) -> Any:
    from nbray._compose.cluster.spec import ClusterFileError, load

    try:
        spec = load(args.file)
    except ClusterFileError as exc:
        print(f"nbray {args.command}: {exc}", file=sys.stderr)
        return None
    if args.trust_on_first_use:
        import dataclasses

        spec = dataclasses.replace(spec, trust_on_first_use=True)
    return spec


def _progress(host: str, step: str, status: str) -> None:
    print(f"  [{host}] {step}: {status}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nbray", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    start = sub.add_parser("start", help="start a headless cluster that kernels can share")
    start.add_argument("--num-cpus", type=float, default=None)
    start.add_argument("--num-gpus", type=int, default=None)
    start.add_argument("--resources", default=None, help="custom resources as JSON: '{\"x\": 2}'")
    start.add_argument("--port", type=int, default=None, help="also listen on TCP (0: any port)")
    start.add_argument("--host", default=None, help="TCP interface (default 127.0.0.1)")
    start.add_argument(
        "--object-store-memory",
        type=int,
        default=None,
        help="bytes of /dev/shm for objects before they spill to disk (default: 30%% of memory)",
    )
    start.set_defaults(func=cmd_start)
    status = sub.add_parser("status", help="show the running cluster")
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=cmd_status)
    stop = sub.add_parser("stop", help="stop the running cluster")
    stop.add_argument("--timeout", type=float, default=10.0)
    stop.set_defaults(func=cmd_stop)
    for name, func, what in (
        ("up", cmd_up, "start a Ray cluster over SSH from a cluster file (README: Scale out)"),
        ("down", cmd_down, "stop the Ray cluster of a cluster file, remove what up wrote"),
    ):
        cmd = sub.add_parser(name, help=what)
        cmd.add_argument("file", help="the cluster file (TOML)")
        cmd.add_argument(
            "--trust-on-first-use",
            action="store_true",
            help="accept host keys not yet in known_hosts (a changed key is still refused)",
        )
        cmd.set_defaults(func=func)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
