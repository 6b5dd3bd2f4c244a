"""Unit tests for nbray._wire.gpus (GPU discovery and CUDA_VISIBLE_DEVICES handling).

These run without a GPU: the NVML path is exercised for real (it must degrade to ``[]``
when no driver is present), and CUDA_VISIBLE_DEVICES filtering is tested through the pure
``filter_visible`` helper with hand-built ``GpuInfo`` lists.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nbray._wire.gpus import (
    GpuInfo,
    detect_gpus,
    filter_visible,
    load_nvml,
    visible_devices_env,
)

REPO_ROOT = Path(__file__).resolve().parents[2]

GPUS = [
    GpuInfo(index=0, name="NVIDIA H100", uuid="GPU-aaaa1111-0000", memory_total=80 * 2**30),
    GpuInfo(index=1, name="NVIDIA H100", uuid="GPU-bbbb2222-0000", memory_total=80 * 2**30),
    GpuInfo(index=2, name="NVIDIA H100", uuid="GPU-abcd3333-0000", memory_total=80 * 2**30),
    GpuInfo(index=3, name="NVIDIA H100", uuid="GPU-cccc4444-0000", memory_total=80 * 2**30),
]


def _indices(gpus: list[GpuInfo]) -> list[int]:
    return [g.index for g in gpus]


# -- GpuInfo --------------------------------------------------------------------------


def test_gpuinfo_is_frozen_and_hashable() -> None:
    g = GPUS[0]
    with pytest.raises(AttributeError):
        g.index = 5  # type: ignore[misc]
    assert len({g, GPUS[0], GPUS[1]}) == 2


# -- filter_visible -------------------------------------------------------------------


def test_filter_unset_keeps_all() -> None:
    out = filter_visible(GPUS, None)
    assert out == GPUS
    assert out is not GPUS


def test_filter_empty_means_none() -> None:
    assert filter_visible(GPUS, "") == []
    assert filter_visible(GPUS, " ") == []


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ("0", [0]),
        ("0,2", [0, 2]),
        ("3,1", [3, 1]),  # listed order, NVML indices kept
        (" 1 , 2 ", [1, 2]),
        ("1,1,2", [1, 2]),  # duplicates collapse
        ("1,7,2", [1]),  # like CUDA, stop at the first invalid entry
        ("-1", []),
        ("-1,0", []),
        ("9", []),
    ],
)
def test_filter_by_index(env: str, expected: list[int]) -> None:
    assert _indices(filter_visible(GPUS, env)) == expected


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ("GPU-bbbb2222-0000", [1]),  # full UUID
        ("GPU-cccc", [3]),  # unique prefix
        ("gpu-CCCC", [3]),  # case-insensitive
        ("bbbb2222", [1]),  # without the GPU- prefix
        ("GPU-abcd,0", [2, 0]),  # mixed UUID prefix and index
        ("GPU-a", []),  # ambiguous prefix (aaaa…, abcd…) is invalid
        ("GPU-ffff", []),  # unknown UUID
        ("MIG-aaaa1111", []),  # MIG instances cannot be mapped to a GpuInfo
        ("2,GPU-ffff,0", [2]),
    ],
)
def test_filter_by_uuid(env: str, expected: list[int]) -> None:
    assert _indices(filter_visible(GPUS, env)) == expected


def test_filter_keeps_gpuinfo_unchanged() -> None:
    out = filter_visible(GPUS, "3")
    assert out == [GPUS[3]]
    assert out[0].index == 3  # NVML index, not renumbered to 0


def test_filter_no_gpus() -> None:
    assert filter_visible([], None) == []
    assert filter_visible([], "0,1") == []


# -- visible_devices_env ----------------------------------------------------------------


def test_visible_devices_env() -> None:
    assert visible_devices_env([0, 2]) == {"CUDA_VISIBLE_DEVICES": "0,2"}
    assert visible_devices_env([3, 1]) == {"CUDA_VISIBLE_DEVICES": "3,1"}
    assert visible_devices_env([5]) == {"CUDA_VISIBLE_DEVICES": "5"}
    assert visible_devices_env([]) == {"CUDA_VISIBLE_DEVICES": ""}


def test_visible_devices_env_round_trips_through_filter() -> None:
    env = visible_devices_env([2, 0])["CUDA_VISIBLE_DEVICES"]
    assert _indices(filter_visible(GPUS, env)) == [2, 0]
    env = visible_devices_env([])["CUDA_VISIBLE_DEVICES"]
    assert filter_visible(GPUS, env) == []


# -- detect_gpus (real NVML; no GPU on CI) ----------------------------------------------


def _nvml_available() -> bool:
    nvml = load_nvml()
    if nvml is None:
        return False
    nvml.nvmlShutdown()
    return True


def test_detect_gpus_returns_list_of_gpuinfo() -> None:
    gpus = detect_gpus()
    assert isinstance(gpus, list)
    for g in gpus:
        assert isinstance(g, GpuInfo)
        assert isinstance(g.index, int) and g.index >= 0
        assert isinstance(g.name, str) and isinstance(g.uuid, str)
        assert isinstance(g.memory_total, int) and g.memory_total > 0
    if not _nvml_available():
        assert gpus == []


def test_detect_gpus_empty_cuda_visible_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert detect_gpus() == []


def test_detect_gpus_is_repeatable() -> None:
    # nvmlInit/nvmlShutdown must pair up so repeated calls keep working.
    assert detect_gpus() == detect_gpus()


def _run_python(code: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter that can import nbray from this checkout."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
        cwd=REPO_ROOT,
        env=env,
    )


def test_module_import_does_not_load_pynvml() -> None:
    code = "import sys, json\nimport nbray._wire.gpus\nprint(json.dumps('pynvml' in sys.modules))\n"
    out = _run_python(code)
    assert json.loads(out.stdout) is False


def test_detect_gpus_without_pynvml() -> None:
    # A None entry in sys.modules makes `import pynvml` raise ImportError.
    code = (
        "import sys\n"
        "sys.modules['pynvml'] = None\n"
        "from nbray._wire.gpus import detect_gpus\n"
        "assert detect_gpus() == []\n"
    )
    _run_python(code)
