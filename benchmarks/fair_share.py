"""Two kernels on one cluster: does one kernel's batch starve the other?

    .venv/bin/python -m benchmarks.fair_share [--tasks 5000] [--ms 2] [--probes 20]

A cluster of 2 CPUs (this process's). Three figures, each from driver processes of their
own that connect to it, as notebooks sharing the server's cluster do:

- ``alone``: a single no-op task's round trip on the idle cluster (median of ``--probes``);
- ``beside a flood``: the same while another kernel floods the cluster with ``--tasks``
  tasks of ``--ms`` ms each (median and max of ``--probes``, one every 50 ms);
- ``two floods``: a kernel floods, and half a second later a second one; each one's share
  of the tasks started while both had tasks queued (a fair scheduler gives each half;
  first come, first served gives the second kernel nothing until the first is done).

Issue 17's targets: the single task back in 50 ms or less beside a flood, and each of two
flooding kernels getting half the CPUs (within 10%).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

FLOOD = """
import json, sys, time
import nbray
nbray.init(address=sys.argv[1])

@nbray.remote
def work(ms):
    import time
    start = time.time()
    time.sleep(ms / 1000)
    return start

print("ready", flush=True)
sys.stdin.readline()  # go
starts = nbray.get([work.remote(float(sys.argv[3])) for _ in range(int(sys.argv[2]))])
print(json.dumps(starts), flush=True)
nbray.shutdown()
"""

PROBE = """
import json, sys, time
import nbray
nbray.init(address=sys.argv[1])
noop = nbray.remote(lambda: None)
nbray.get(noop.remote())  # warm: the function is known, a worker has it
print("ready", flush=True)
sys.stdin.readline()  # go
times = []
for _ in range(int(sys.argv[2])):
    started = time.perf_counter()
    nbray.get(noop.remote())
    times.append(time.perf_counter() - started)
    time.sleep(0.05)
print(json.dumps(times), flush=True)
nbray.shutdown()
"""


def _start(code: str, *args: Any) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *map(str, args)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    return proc


def _go(*procs: subprocess.Popen[str]) -> None:
    for p in procs:
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()


def _result(proc: subprocess.Popen[str]) -> Any:
    assert proc.stdout is not None
    out = json.loads(proc.stdout.readline())
    proc.wait(timeout=60)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=5000)
    parser.add_argument("--ms", type=float, default=2.0)
    parser.add_argument("--probes", type=int, default=20)
    args = parser.parse_args()

    import os

    import nbray

    ctx = nbray.init(num_cpus=2)
    os.environ["NBRAY_SECRET_FILE"] = str(Path(ctx.session_dir) / "secret")
    os.environ.pop("NBRAY_ADDRESS", None)
    address = ctx.address

    probe = _start(PROBE, address, args.probes)
    _go(probe)
    alone = _result(probe)

    flood = _start(FLOOD, address, args.tasks, args.ms)
    probe = _start(PROBE, address, args.probes)
    _go(flood)
    time.sleep(0.2)  # the flood is queued
    _go(probe)
    beside = _result(probe)
    _result(flood)

    floods = [_start(FLOOD, address, args.tasks, args.ms) for _ in range(2)]
    _go(floods[0])
    time.sleep(0.5)  # the first kernel's batch is queued when the second one's comes
    second_from = time.time()
    _go(floods[1])
    a, b = (_result(p) for p in floods)
    both_until = min(max(a), max(b))  # while both still had tasks to start
    ran_a = sum(1 for t in a if second_from <= t <= both_until)
    ran_b = sum(1 for t in b if second_from <= t <= both_until)
    nbray.shutdown()

    ms = 1000.0
    print(f"cluster: 2 CPUs; flood: {args.tasks} tasks of {args.ms:g} ms")
    print(f"single task, idle cluster:     median {statistics.median(alone) * ms:.2f} ms")
    print(
        f"single task beside a flood:    median {statistics.median(beside) * ms:.2f} ms, "
        f"max {max(beside) * ms:.2f} ms (target <= 50 ms)"
    )
    share = ran_a / max(1, ran_a + ran_b)
    print(
        f"two floods, while both queued: {ran_a} vs {ran_b} tasks started "
        f"({share:.1%} / {1 - share:.1%}; target 50% +- 10%)"
    )


if __name__ == "__main__":
    main()
