"""Periodic node and per-worker resource samples.

Data comes from the operating system through ``psutil`` (node CPU and memory, and CPU /
RSS of each worker process) and from the NVIDIA driver through NVML (GPU utilisation and
memory, via :mod:`nbray._wire.gpus`). The head calls :meth:`MetricsSampler.sample`
about once a second and publishes the returned dict on its event bus, where widgets and
dashboards read it; the dict therefore only holds JSON types (str, int, float, bool,
list, dict, None).

A sampler is meant to be driven from one thread. It keeps ``psutil.Process`` objects
between calls so that per-process ``cpu_percent`` measures the interval since the
previous sample (the first sample of a process reports ``0.0``).
"""

from __future__ import annotations

import os
import time
from types import ModuleType
from typing import Any

import psutil

from .gpus import (
    CUDA_VISIBLE_DEVICES,
    enumerate_nvml_devices,
    filter_visible,
    load_nvml,
)

__all__ = ["MetricsSampler"]

_VANISHED = (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess)


class MetricsSampler:
    """Produce node and per-worker resource samples for one node.

    ``node_id`` is copied into every sample. With ``with_gpus=False`` NVML is never
    touched and ``gpus`` is always ``[]``. Call :meth:`close` when done to release NVML.
    """

    def __init__(self, node_id: str, *, with_gpus: bool = True) -> None:
        self.node_id = node_id
        self._with_gpus = with_gpus
        self._procs: dict[str, psutil.Process] = {}
        # NVML is initialised at most once, lazily; _nvml stays None if that failed.
        self._nvml_tried = not with_gpus
        self._nvml: ModuleType | None = None
        self._gpu_handles: list[tuple[int, str, Any]] = []
        self._num_cpus = psutil.cpu_count() or os.cpu_count() or 1
        # Prime psutil's node-wide counters so the first sample is not a meaningless 0.0.
        psutil.cpu_percent(interval=None)
        psutil.cpu_percent(interval=None, percpu=True)

    # -- public API -------------------------------------------------------------------

    def sample(self, workers: dict[str, int]) -> dict[str, Any]:
        """Take one sample.

        ``workers`` maps worker id -> pid. Workers whose process is gone, a zombie or
        not readable are silently left out of ``"workers"``; processes of workers that
        are no longer listed are forgotten.
        """
        mem = psutil.virtual_memory()
        return {
            "node_id": self.node_id,
            "time": time.time(),
            "num_cpus": int(self._num_cpus),
            "cpu_percent": float(psutil.cpu_percent(interval=None)),
            "cpu_percent_per_core": [
                float(p) for p in psutil.cpu_percent(interval=None, percpu=True)
            ],
            "memory_total": int(mem.total),
            "memory_used": int(mem.used),
            "memory_available": int(mem.available),
            "memory_percent": float(mem.percent),
            "gpus": self._sample_gpus(),
            "workers": self._sample_workers(workers),
        }

    def close(self) -> None:
        """Shut NVML down if this sampler initialised it; later samples report no GPUs."""
        nvml, self._nvml = self._nvml, None
        self._nvml_tried = True
        self._gpu_handles = []
        self._procs.clear()
        if nvml is not None:
            try:
                nvml.nvmlShutdown()
            except nvml.NVMLError:
                pass

    # -- internals --------------------------------------------------------------------

    def _process_for(self, worker_id: str, pid: int) -> psutil.Process:
        """Cached ``Process`` for the worker, replaced when its pid changed or was reused."""
        proc = self._procs.get(worker_id)
        if proc is None or proc.pid != pid or not proc.is_running():
            proc = psutil.Process(pid)
            self._procs[worker_id] = proc
        return proc

    def _sample_workers(self, workers: dict[str, int]) -> dict[str, dict[str, Any]]:
        for gone in self._procs.keys() - workers.keys():
            del self._procs[gone]
        out: dict[str, dict[str, Any]] = {}
        for worker_id, pid in workers.items():
            try:
                proc = self._process_for(worker_id, pid)
                with proc.oneshot():
                    if proc.status() == psutil.STATUS_ZOMBIE:
                        raise psutil.ZombieProcess(pid)
                    cpu = proc.cpu_percent(interval=None)
                    rss = proc.memory_info().rss
            except _VANISHED:
                self._procs.pop(worker_id, None)
                continue
            out[worker_id] = {"pid": int(pid), "cpu_percent": float(cpu), "rss": int(rss)}
        return out

    def _init_nvml(self) -> None:
        """First-sample NVML setup; on failure GPUs stay ``[]`` without retrying."""
        self._nvml_tried = True
        nvml = load_nvml()
        if nvml is None:
            return
        devices = enumerate_nvml_devices(nvml)
        visible = filter_visible(
            [info for info, _ in devices], os.environ.get(CUDA_VISIBLE_DEVICES)
        )
        keep = {info.index for info in visible}
        self._gpu_handles = [
            (info.index, info.name, handle) for info, handle in devices if info.index in keep
        ]
        self._nvml = nvml

    def _sample_gpus(self) -> list[dict[str, Any]]:
        if not self._nvml_tried:
            self._init_nvml()
        nvml = self._nvml
        if nvml is None:
            return []
        gpus: list[dict[str, Any]] = []
        for index, name, handle in self._gpu_handles:
            try:
                util = nvml.nvmlDeviceGetUtilizationRates(handle)
                mem = nvml.nvmlDeviceGetMemoryInfo(handle)
            except nvml.NVMLError:
                continue
            gpus.append(
                {
                    "index": int(index),
                    "name": str(name),
                    "utilization": float(util.gpu),
                    "memory_used": int(mem.used),
                    "memory_total": int(mem.total),
                }
            )
        return gpus
