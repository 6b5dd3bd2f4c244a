"""``install = true``: a venv with nbray[ray] on a host, made by `nbray up`.

    here, once:  pip wheel --no-deps <nbray's source> ──▶ nbray-X-py3-none-any.whl
                 (or the cluster file's ``wheel``; nbray is not on PyPI)
    each host:   copy the wheel over SSH ──▶ <python> -m venv VENV (marked as nbray's)
                 ──▶ VENV/bin/python -m pip install 'nbray-X.whl[ray]' 'ray[default]==<Ray here>'
    down:        the stop script removes VENV when it holds nbray's mark (REMOVE_VENV)

A failed install removes the venv it was making, so a host is left as it was.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path

from .spec import ClusterSpec, HostSpec
from .ssh import StepError, copy_file, run_script

__all__ = ["MARK", "REMOVE_VENV", "build_wheel", "install_host"]

MARK = ".nbray-created"
INSTALL_TIMEOUT = 900.0

_INSTALL = r"""
V="__VENV__"
W="__WHEEL__"
if [ -x "$V/bin/python" ] && [ ! -f "$V/__MARK__" ]; then
    echo "$V exists and was not made by nbray: remove it, or set venv = '...' elsewhere"
    exit 5
fi
rm -rf "$V"
mkdir -p "$(dirname "$V")"
if ! __PY__ -m venv "$V" >"$W.log" 2>&1; then
    cat "$W.log"; rm -rf "$V"
    echo "cannot make a venv with __PY__ (on Debian/Ubuntu: apt install python3-venv)"
    exit 6
fi
touch "$V/__MARK__"
if ! "$V/bin/python" -m pip install --disable-pip-version-check -q "$W[ray]" __RAY__ \
        >>"$W.log" 2>&1; then
    tail -n 30 "$W.log"; rm -rf "$V"; exit 7
fi
"$V/bin/python" -c 'import nbray, ray; print("nbray", nbray.__file__, "ray", ray.__version__)'
"""

# appended to the stop script of `nbray down`: only a venv nbray made goes
REMOVE_VENV = r"""
V="__VENV__"
if [ -f "$V/__MARK__" ]; then rm -rf "$V"; echo "removed $V"; fi
"""


def _source_dir() -> Path | None:
    """nbray's source checkout, when nbray runs from one (an editable install)."""
    for root in Path(__file__).resolve().parents:
        if (root / "pyproject.toml").is_file() and (root / "nbray").is_dir():
            return root
    return None


def build_wheel(spec: ClusterSpec, out_dir: str) -> Path:
    """The nbray wheel to install on the hosts: the cluster file's ``wheel``, or one built
    from nbray's source with ``pip wheel --no-deps``."""
    step = "build the nbray wheel"
    if spec.wheel:
        wheel = Path(spec.wheel)
        if not wheel.is_file() or wheel.suffix != ".whl":
            raise StepError("localhost", step, f"wheel = {spec.wheel!r} is not a .whl file")
        return wheel
    source = _source_dir()
    if source is None:
        raise StepError(
            "localhost",
            step,
            "nbray is not installed from a source checkout here, so no wheel can be built: "
            "set wheel = '/path/to/nbray-X-py3-none-any.whl' in the cluster file",
        )
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", out_dir, str(source)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        timeout=600,
        check=False,
    )
    wheels = sorted(Path(out_dir).glob("nbray-*.whl"))
    if proc.returncode or not wheels:
        raise StepError("localhost", step, "pip wheel failed", proc.stdout.decode(errors="replace"))
    return wheels[-1]


def install_host(spec: ClusterSpec, host: HostSpec, wheel: Path) -> None:
    """Make the venv of ``host`` with nbray[ray] and this machine's Ray version."""
    ray_version = metadata.version("ray")
    remote_wheel = f"{spec.remote_dir(host)}/wheels/{wheel.name}"
    copy_file(spec, host, "copy the nbray wheel", str(wheel), remote_wheel)
    script = (
        _INSTALL.replace("__VENV__", spec.venv_dir(host))
        .replace("__WHEEL__", remote_wheel)
        .replace("__MARK__", MARK)
        .replace("__PY__", shlex.quote(host.python))
        .replace("__RAY__", shlex.quote(f"ray[default]=={ray_version}"))
    )
    step = "install nbray[ray]"
    res = run_script(spec, host, step, script, timeout=INSTALL_TIMEOUT)
    if res.returncode:
        raise StepError(host.label, step, f"exited with {res.returncode}", res.output)


def temp_wheel_dir() -> tempfile.TemporaryDirectory[str]:
    return tempfile.TemporaryDirectory(prefix="nbray-wheel-")
