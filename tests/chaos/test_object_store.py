"""The object store past its limits: over capacity it spills to disk and reads back; a
small /dev/shm (Docker's 64 MB) warns and falls back to disk; with no room anywhere a put
fails at once with ObjectStoreFullError and the cluster carries on.

The small-/dev/shm scenarios run a script in a private mount namespace (``unshare``) with
a 64 MB tmpfs mounted over /dev/shm: the real kernel limit, as in a container.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from chaos_support import BOUNDED
from nbray_testing import wait_until

import nbray
from nbray._model import session

pytestmark = pytest.mark.timeout(180)

MB = 2**20


def store() -> dict[str, int]:
    engine = session.current_engine()
    return dict(engine.cluster_info()["raw"]["object_store"])  # type: ignore[attr-defined]


def digest(a: np.ndarray) -> str:
    return hashlib.sha256(a.tobytes()).hexdigest()


def test_three_times_the_capacity_spills_reads_back_and_returns_to_baseline(
    cluster_factory: Callable[..., Any],
) -> None:
    ctx = cluster_factory(num_cpus=2, object_store_memory=96 * MB)
    spill_dir = Path(ctx.session_dir) / "spill"
    arrays = [np.full(4 * MB, i, dtype=np.float64) for i in range(9)]  # 9 x 32 MB = 3x
    refs = [nbray.put(a) for a in arrays]
    usage = store()
    assert usage["shm_bytes"] <= 96 * MB
    assert usage["spilled_bytes"] >= 180 * MB and usage["spill_count"] >= 6
    assert len(list(spill_dir.iterdir())) == usage["spill_count"]

    # read back in the kernel...
    assert [digest(v) for v in nbray.get(refs, timeout=BOUNDED)] == [digest(a) for a in arrays]

    @nbray.remote
    def total(a: np.ndarray) -> float:
        return float(a.sum())

    # ...and in workers, and as task results that spill too
    assert nbray.get([total.remote(r) for r in refs], timeout=BOUNDED) == [
        float(a.sum()) for a in arrays
    ]

    @nbray.remote
    def make(i: int) -> np.ndarray:
        return np.full(4 * MB, i, dtype=np.float64)

    made = [make.remote(i) for i in range(6)]
    assert [float(nbray.get(m, timeout=BOUNDED)[0]) for m in made] == list(range(6))
    del refs, made
    wait_until(lambda: store()["shm_bytes"] == 0 and store()["spilled_bytes"] == 0, BOUNDED)
    # the files of large objects are unlinked on the head's unlinker thread, just after
    wait_until(lambda: list(spill_dir.iterdir()) == [], BOUNDED)


def test_object_store_memory_must_be_positive() -> None:
    with pytest.raises(ValueError, match="object_store_memory"):
        nbray.init(object_store_memory=0)
    assert not nbray.is_initialized()


def run_with_small_shm(code: str, tmp_path: Path, tmpdir_mb: int = 0) -> str:
    """Run ``code`` with /dev/shm a 64 MB tmpfs (and, with ``tmpdir_mb``, the session
    directories on a tmpfs of that size); returns its stdout."""
    if shutil.which("unshare") is None or os.geteuid() != 0:
        message = "needs root and unshare to mount a small /dev/shm"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    script = tmp_path / "scenario.py"
    script.write_text(textwrap.dedent(code))
    mounts = "mount -t tmpfs -o size=64m tmpfs /dev/shm"
    env = {**os.environ, "PYTHONWARNINGS": "default"}
    env.pop("NBRAY_ADDRESS", None)
    if tmpdir_mb:
        # short: the cluster's Unix socket path must fit in 107 bytes
        tmpdir = Path(tempfile.mkdtemp(prefix="nbray-small-"))
        mounts += f" && mount -t tmpfs -o size={tmpdir_mb}m tmpfs {tmpdir}"
        env["NBRAY_TMPDIR"] = str(tmpdir)
    try:
        proc = subprocess.run(
            [
                "unshare",
                "--mount",
                "sh",
                "-c",
                f'{mounts} && exec "$0" "$1"',
                sys.executable,
                script,
            ],
            capture_output=True,
            text=True,
            timeout=BOUNDED * 2,
            env=env,
        )
    finally:
        if tmpdir_mb:
            shutil.rmtree(tmpdir, ignore_errors=True)
    assert proc.returncode == 0, f"scenario failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout + proc.stderr


def test_a_small_dev_shm_warns_and_falls_back_to_disk(tmp_path: Path) -> None:
    out = run_with_small_shm(
        """
        import numpy as np
        import nbray

        nbray.init(num_cpus=2)
        big = np.arange(100 * 2**20 // 8, dtype=np.float64)  # 100 MB > /dev/shm
        ref = nbray.put(big)
        assert np.array_equal(nbray.get(ref), big)

        @nbray.remote
        def double(a):
            return a * 2

        assert np.array_equal(nbray.get(double.remote(ref)), big * 2)
        small = nbray.get(nbray.put(np.ones(2**20)))  # 8 MB: still in /dev/shm
        assert small.sum() == 2**20
        print("SCENARIO-OK")
        nbray.shutdown()
        """,
        tmp_path,
    )
    assert "SCENARIO-OK" in out
    assert "/dev/shm has only" in out and "--shm-size" in out


def test_no_room_anywhere_fails_the_put_at_once_and_the_cluster_carries_on(
    tmp_path: Path,
) -> None:
    out = run_with_small_shm(
        """
        import numpy as np
        import nbray
        from nbray.exceptions import ObjectStoreFullError

        nbray.init(num_cpus=2)
        block = np.ones(100 * 2**20 // 8)  # 100 MB
        held = [nbray.put(block)]  # on disk: /dev/shm is 64 MB
        try:
            held.append(nbray.put(block))  # the 160 MB disk has no room for another
        except ObjectStoreFullError as exc:
            print("FULL:", exc)
        else:
            raise SystemExit("expected ObjectStoreFullError")

        @nbray.remote
        def add(x, y):
            return x + y

        assert nbray.get(add.remote(1, 2)) == 3
        del held
        import time
        for _ in range(100):  # the freed object makes room again
            try:
                nbray.put(block)
                break
            except ObjectStoreFullError:
                time.sleep(0.1)
        else:
            raise SystemExit("room never came back")
        print("SCENARIO-OK")
        nbray.shutdown()
        """,
        tmp_path,
        tmpdir_mb=160,
    )
    assert "SCENARIO-OK" in out
    assert "FULL: cannot store a 104.9 MB object" in out and "spill directory" in out
