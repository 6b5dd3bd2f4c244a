"""Unit tests for nbray._wire.metrics (node and per-worker samples).

Uses real processes: a busy-looping child interpreter to check per-process CPU and RSS,
and the real (absent, on CI) NVML to check the no-GPU path.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator

import psutil
import pytest

from nbray._wire.metrics import MetricsSampler

BUSY_LOOP = "import time\nend = time.monotonic() + 1.5\nwhile time.monotonic() < end:\n    pass\n"
IDLE = "import time\ntime.sleep(30)\n"

NODE_KEYS = {
    "node_id": str,
    "time": float,
    "num_cpus": int,
    "cpu_percent": float,
    "cpu_percent_per_core": list,
    "memory_total": int,
    "memory_used": int,
    "memory_available": int,
    "memory_percent": float,
    "gpus": list,
    "workers": dict,
}
GPU_KEYS = {
    "index": int,
    "name": str,
    "utilization": float,
    "memory_used": int,
    "memory_total": int,
}
WORKER_KEYS = {"pid": int, "cpu_percent": float, "rss": int}


def _kill(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=10)


@pytest.fixture
def busy_proc() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen([sys.executable, "-c", BUSY_LOOP])
    try:
        yield proc
    finally:
        _kill(proc)


@pytest.fixture
def sampler() -> Iterator[MetricsSampler]:
    s = MetricsSampler("node-test")
    try:
        yield s
    finally:
        s.close()


def _dead_pid() -> int:
    """A pid that certainly does not exist (a child that has been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait(timeout=10)
    assert not psutil.pid_exists(proc.pid)
    return proc.pid


def _check_types(d: dict[str, object], spec: dict[str, type]) -> None:
    assert set(d) == set(spec)
    for key, typ in spec.items():
        assert type(d[key]) is typ, (key, type(d[key]))


def _check_shape(sample: dict[str, object]) -> None:
    _check_types(sample, NODE_KEYS)
    per_core = sample["cpu_percent_per_core"]
    assert isinstance(per_core, list) and all(type(p) is float for p in per_core)
    gpus = sample["gpus"]
    assert isinstance(gpus, list)
    for gpu in gpus:
        _check_types(gpu, GPU_KEYS)
    workers = sample["workers"]
    assert isinstance(workers, dict)
    for worker_id, info in workers.items():
        assert isinstance(worker_id, str)
        _check_types(info, WORKER_KEYS)


def test_busy_worker_cpu_and_rss(
    sampler: MetricsSampler, busy_proc: subprocess.Popen[bytes]
) -> None:
    workers = {"w-busy": busy_proc.pid}
    first = sampler.sample(workers)
    assert first["workers"]["w-busy"]["cpu_percent"] == 0.0  # first call primes psutil
    time.sleep(0.3)
    second = sampler.sample(workers)

    for sample in (first, second):
        _check_shape(sample)
        json.dumps(sample)
        assert json.loads(json.dumps(sample)) == sample

    info = second["workers"]["w-busy"]
    assert info["pid"] == busy_proc.pid
    assert info["cpu_percent"] > 0.0
    assert info["rss"] > 0
    assert second["node_id"] == "node-test"
    assert second["time"] >= first["time"]
    assert abs(second["time"] - time.time()) < 60


def test_node_fields(sampler: MetricsSampler) -> None:
    sample = sampler.sample({})
    _check_shape(sample)
    assert sample["num_cpus"] == psutil.cpu_count()
    assert len(sample["cpu_percent_per_core"]) == psutil.cpu_count()
    assert 0.0 <= sample["cpu_percent"] <= 100.0
    assert all(0.0 <= p <= 100.0 for p in sample["cpu_percent_per_core"])
    assert sample["memory_total"] > 0
    assert 0 < sample["memory_available"] <= sample["memory_total"]
    assert 0 < sample["memory_used"] <= sample["memory_total"]
    assert 0.0 <= sample["memory_percent"] <= 100.0
    assert sample["workers"] == {}


def test_missing_pid_dropped_silently(
    sampler: MetricsSampler, busy_proc: subprocess.Popen[bytes]
) -> None:
    dead = _dead_pid()
    sample = sampler.sample({"w-dead": dead, "w-live": busy_proc.pid})
    assert set(sample["workers"]) == {"w-live"}
    # Again, after the cached Process exists, and with the live one vanishing.
    _kill(busy_proc)
    sample = sampler.sample({"w-dead": dead, "w-live": busy_proc.pid})
    assert sample["workers"] == {}


def test_zombie_worker_dropped(sampler: MetricsSampler) -> None:
    proc = subprocess.Popen([sys.executable, "-c", IDLE])
    try:
        assert set(sampler.sample({"w": proc.pid})["workers"]) == {"w"}
        proc.kill()
        # Not reaped yet: the child is a zombie until wait() below.
        deadline = time.monotonic() + 5
        while psutil.Process(proc.pid).status() != psutil.STATUS_ZOMBIE:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert sampler.sample({"w": proc.pid})["workers"] == {}
    finally:
        _kill(proc)


def test_process_objects_reused_and_forgotten(sampler: MetricsSampler) -> None:
    a = subprocess.Popen([sys.executable, "-c", IDLE])
    b = subprocess.Popen([sys.executable, "-c", IDLE])
    try:
        sampler.sample({"w": a.pid})
        cached = sampler._procs["w"]
        sampler.sample({"w": a.pid})
        assert sampler._procs["w"] is cached  # reused, so cpu_percent has an interval
        sampler.sample({"w": b.pid})  # worker restarted with a new pid
        assert sampler._procs["w"].pid == b.pid
        sampler.sample({})
        assert sampler._procs == {}
    finally:
        _kill(a)
        _kill(b)


def test_no_gpu_path(sampler: MetricsSampler) -> None:
    # On machines without NVML, GPUs are [] and NVML is not retried every sample.
    first = sampler.sample({})
    if first["gpus"]:
        pytest.skip("this machine has GPUs visible through NVML")
    assert sampler._nvml is None
    assert sampler._nvml_tried
    assert sampler.sample({})["gpus"] == []


def test_with_gpus_false_never_touches_nvml() -> None:
    s = MetricsSampler("n", with_gpus=False)
    try:
        assert s.sample({})["gpus"] == []
        assert s._nvml is None
    finally:
        s.close()


def test_close_is_idempotent() -> None:
    s = MetricsSampler("n")
    s.sample({})
    s.close()
    s.close()
    assert s.sample({})["gpus"] == []


def test_repeated_samples_keep_every_worker(sampler: MetricsSampler) -> None:
    procs = [subprocess.Popen([sys.executable, "-c", IDLE]) for _ in range(4)]
    try:
        workers = {f"w{i}": p.pid for i, p in enumerate(procs)}
        for _ in range(20):
            sample = sampler.sample(workers)
        assert set(sample["workers"]) == set(workers)
        assert {w["pid"] for w in sample["workers"].values()} == set(workers.values())
    finally:
        for p in procs:
            _kill(p)
