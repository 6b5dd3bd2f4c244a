"""The head's per-task cost in-process, without sockets: CPU time and function calls.

    .venv/bin/python -m benchmarks.head_path [--tasks 20000] [--burst 100] [--repeats 5]

A real ``Head`` (routing table, task table, object directory, scheduler, event bus with
nobody subscribed) on 2 CPUs takes ``--burst`` Submits from one client at a time, sends
each RunTask to one of its two workers, and gets a TaskDone back for each, then the
client releases the results. Connections are stand-ins that keep what they are sent (no
socket, no frames: the transport's cost is not in these numbers).

It prints tasks per CPU second (best of ``--repeats``; CPU time still varies with the
machine's load) and the Python function calls per task (cProfile), which do not vary
from run to run: the figure to compare when the head's code changes. Run it on two trees
with ``PYTHONPATH=<tree>`` to compare them.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import tempfile
import time
from typing import Any

from nbray._node.head import Head
from nbray._node.head_records import HeadConfig
from nbray._wire import protocol as P


class Conn:
    """A stand-in connection: the attributes the head reads, and what it was sent."""

    def __init__(self, conn_id: int, role: str, worker_id: int = 0) -> None:
        self.conn_id, self.role, self.worker_id, self.pid = conn_id, role, worker_id, 0
        self.holds: set[int] = set()
        self.known_funcs: set[bytes] = set()
        self.job: P.Job | None = None
        self.outbox: list[Any] = []

    def send(self, msg: Any) -> None:
        self.outbox.append(msg)

    def abort(self) -> None:
        pass


def run(tasks: int, burst: int) -> float:
    """CPU seconds for ``tasks`` tasks through a fresh head."""
    session = tempfile.mkdtemp(prefix="nbray-head-path-")
    fd = os.open(f"{session}/secret", os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, os.urandom(32))
    os.close(fd)
    head = Head(HeadConfig(session, "headpath", "node", {"CPU": 2.0}, []))
    route: Any = head.router.route  # takes these stand-ins for peers.Peer
    peers: dict[int, Any] = head.conns.peers
    worker_peers: dict[int, Any] = head.conns.workers
    client = peers[1] = Conn(1, "client")
    workers: list[Conn] = []
    head.run(head.sched.start())  # the pool's workers: spawned, then say Hello
    for wid in sorted(head.sched.workers):
        w = peers[1 + wid] = worker_peers[wid] = Conn(1 + wid, "worker", wid)
        workers.append(w)
        head.run(head.sched.worker_started(wid))
    result = P.Payload(P.INLINE, b"x")
    task_id = done = 0
    start = time.process_time()
    while done < tasks:
        for _ in range(burst):
            task_id += 1
            spec = P.TaskSpec(
                task_id, "f", b"fid", b"", (), (), (task_id << 8,), {"CPU": 1.0}, 3, False
            )
            route(client, P.Submit(spec, b"code" if task_id == 1 else b""))
        while True:
            sent = [(w, m) for w in workers for m in w.outbox if type(m) is P.RunTask]
            for w in workers:
                w.outbox.clear()
            if not sent:
                break
            for w, m in sent:
                tid = m.spec.task_id
                route(w, P.TaskDone(tid, ((tid << 8, result, ()),), 0.01))
                done += 1
        client.outbox.clear()
        first = task_id - burst + 1
        route(client, P.Release(tuple(t << 8 for t in range(first, task_id + 1))))
    cpu = time.process_time() - start
    head.reactor.sel.close()
    return cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--burst", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    best = min(run(args.tasks, args.burst) for _ in range(args.repeats))
    profile = cProfile.Profile()
    profile.enable()
    run(2000, args.burst)
    profile.disable()
    calls = pstats.Stats(profile).total_calls / 2000  # type: ignore[attr-defined]
    print(f"{args.tasks / best:,.0f} tasks per CPU second (best of {args.repeats})")
    print(f"{calls:.1f} Python function calls per task")


if __name__ == "__main__":
    main()
