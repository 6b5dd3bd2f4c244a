"""GPU discovery through NVML.

Data comes from the NVIDIA driver via NVML (the ``pynvml`` module shipped by the
``nvidia-ml-py`` package) and from the ``CUDA_VISIBLE_DEVICES`` environment variable of
the calling process. It goes to the node's resource accounting (how many GPUs a node
advertises to the scheduler) and, through :func:`visible_devices_env`, into the
environment of the worker processes that run GPU tasks.

``pynvml`` is imported lazily inside functions, so importing this module is cheap and
works on machines without the package or without an NVIDIA driver: in that case
:func:`detect_gpus` simply returns ``[]``.
"""

from __future__ import annotations

import os
from types import ModuleType
from typing import Any, NamedTuple

__all__ = [
    "GpuInfo",
    "detect_gpus",
    "enumerate_nvml_devices",
    "filter_visible",
    "load_nvml",
    "visible_devices_env",
]

CUDA_VISIBLE_DEVICES = "CUDA_VISIBLE_DEVICES"
# NVML reaches the driver through one of these (Linux; WSL 2): without either it cannot load
DRIVER_DEVICES = ("/dev/nvidiactl", "/dev/dxg")


class GpuInfo(NamedTuple):
    """One physical GPU as NVML reports it (a NamedTuple: immutable, and no dataclasses
    import in the head, which detects the GPUs at start-up).

    ``index`` is NVML's device index (not renumbered by ``CUDA_VISIBLE_DEVICES``),
    ``memory_total`` is in bytes.
    """

    index: int  # type: ignore[assignment]  # (hides tuple.index, which nothing here calls)
    name: str
    uuid: str
    memory_total: int


def _to_str(value: str | bytes) -> str:
    """Older NVML bindings return ``bytes`` for names and UUIDs; newer ones ``str``."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return value


def load_nvml() -> ModuleType | None:
    """Import ``pynvml`` and call ``nvmlInit``.

    Returns the initialised module, or ``None`` when the package is missing or the NVML
    library / driver cannot be loaded. The caller owns the matching ``nvmlShutdown``.
    """
    if not any(os.path.exists(dev) for dev in DRIVER_DEVICES):
        return None  # no NVIDIA driver to talk to: skip pynvml's import (the head's start-up)
    try:
        import pynvml  # lazy on purpose: keeps importing this module cheap
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except (pynvml.NVMLError, OSError):
        return None
    return pynvml


def enumerate_nvml_devices(nvml: ModuleType) -> list[tuple[GpuInfo, Any]]:
    """List every device of an *initialised* NVML module as ``(GpuInfo, handle)`` pairs.

    Devices whose queries fail (e.g. a GPU that fell off the bus) are skipped. No
    ``CUDA_VISIBLE_DEVICES`` filtering happens here; see :func:`filter_visible`.
    """
    try:
        count = int(nvml.nvmlDeviceGetCount())
    except nvml.NVMLError:
        return []
    devices: list[tuple[GpuInfo, Any]] = []
    for index in range(count):
        try:
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            info = GpuInfo(
                index=index,
                name=_to_str(nvml.nvmlDeviceGetName(handle)),
                uuid=_to_str(nvml.nvmlDeviceGetUUID(handle)),
                memory_total=int(nvml.nvmlDeviceGetMemoryInfo(handle).total),
            )
        except nvml.NVMLError:
            continue
        devices.append((info, handle))
    return devices


def _match_token(gpus: list[GpuInfo], token: str) -> GpuInfo | None:
    """Resolve one ``CUDA_VISIBLE_DEVICES`` entry to a GPU, or ``None`` if invalid.

    An entry is either a non-negative integer (NVML index) or a UUID / unique UUID
    prefix, with or without the ``GPU-`` prefix.
    """
    if not token:
        return None
    if token.lstrip("+-").isdigit():
        wanted = int(token)
        return next((g for g in gpus if g.index == wanted), None)
    lowered = token.lower()
    matches = [
        g
        for g in gpus
        if g.uuid.lower().startswith(lowered)
        or g.uuid.lower().removeprefix("gpu-").startswith(lowered)
    ]
    return matches[0] if len(matches) == 1 else None


def filter_visible(gpus: list[GpuInfo], cuda_visible_devices: str | None) -> list[GpuInfo]:
    """Keep only the GPUs that ``cuda_visible_devices`` exposes.

    Pure function, follows CUDA's rules as closely as NVML data allows:

    * ``None`` (variable unset): every GPU, unchanged.
    * ``""`` (set but empty): no GPU.
    * Otherwise a comma-separated list of NVML indices or UUIDs / unique UUID prefixes
      (``"0,2"``, ``"GPU-8f3a"``). GPUs are returned in the listed order, each once; as
      in CUDA, parsing stops at the first entry that matches no GPU (unknown index,
      negative number, ambiguous prefix, MIG UUID, ...), so only the entries before it
      count. Each returned :class:`GpuInfo` keeps NVML's ``index``.
    """
    if cuda_visible_devices is None:
        return list(gpus)
    selected: list[GpuInfo] = []
    for raw in cuda_visible_devices.split(","):
        gpu = _match_token(gpus, raw.strip())
        if gpu is None:
            break
        if gpu not in selected:
            selected.append(gpu)
    return selected


def detect_gpus() -> list[GpuInfo]:
    """Return the GPUs this process may use.

    Queries NVML, then applies the calling process's ``CUDA_VISIBLE_DEVICES`` with
    :func:`filter_visible`. Returns ``[]`` when ``pynvml`` is not installed, the NVML
    library or driver is absent, or there are no devices. NVML is shut down before
    returning.
    """
    nvml = load_nvml()
    if nvml is None:
        return []
    try:
        gpus = [info for info, _handle in enumerate_nvml_devices(nvml)]
    finally:
        try:
            nvml.nvmlShutdown()
        except nvml.NVMLError:
            pass
    return filter_visible(gpus, os.environ.get(CUDA_VISIBLE_DEVICES))


def visible_devices_env(gpu_ids: list[int]) -> dict[str, str]:
    """Environment for a task assigned the NVML GPU indices ``gpu_ids``.

    ``[0, 2]`` -> ``{"CUDA_VISIBLE_DEVICES": "0,2"}`` (given order kept);
    ``[]`` -> ``{"CUDA_VISIBLE_DEVICES": ""}`` so the task sees no GPU at all.
    """
    return {CUDA_VISIBLE_DEVICES: ",".join(str(int(i)) for i in gpu_ids)}
