"""Keep the test session's files out of $HOME and /tmp, and prove it.

    pytest_configure ──▶ isolate(): one private root (/tmp/nbtXXXXXXXX, short: Unix sockets
                         live under it) that TMPDIR, NBRAY_TMPDIR, RAY_TMPDIR, IPYTHONDIR and
                         Jupyter's config, data, runtime, settings and workspaces dirs point to;
                         every child process (kernels, JupyterLab, clusters) inherits them
    session end      ──▶ leaks(): files that appeared during the session in the places tests
                         used to write to ($HOME's Jupyter and IPython dirs, /tmp/nbray-<uid>)
                         fail the run; then the private root is removed

``NBRAY_LEAK_CHECK=0`` turns the check off (on a machine where other test runs write to the
same places at the same time). ``NBRAY_KEEP_TEST_TMP=1`` keeps the private root.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path

# the places tests used to leave files in (issue 13 item 9), relative to $HOME. Not ~/.nbray:
# the SSH "hosts" of tests/cluster share this machine's $HOME by design, and their tests
# check that `nbray down` removed what `nbray up` wrote there.
WATCHED_HOME = (".jupyter", ".local/share/jupyter", ".ipython")


LAB_SETTINGS = {
    "@jupyterlab/docmanager-extension/plugin": {"autoStartDefaultKernel": True},
    "@jupyterlab/apputils-extension/notification": {"fetchNews": "false"},
}


def watched_tmp() -> tuple[Path, ...]:
    # not /tmp/ray: Ray keeps its session folders after its processes end, so those of
    # other runs on a shared machine would be blamed on this one (RAY_TMPDIR still points
    # this session's Ray into the private root)
    return (Path("/tmp") / f"nbray-{os.getuid()}",)


def isolate() -> Path:
    """Point every per-user directory the suite touches at a fresh private root; returns it."""
    root = Path(tempfile.mkdtemp(prefix="nbt", dir="/tmp"))
    dirs = {
        "JUPYTER_CONFIG_DIR": root / "jupyter-config",
        "JUPYTER_DATA_DIR": root / "jupyter-data",
        "JUPYTER_RUNTIME_DIR": root / "jupyter-runtime",
        "JUPYTERLAB_SETTINGS_DIR": root / "lab-settings",
        "JUPYTERLAB_WORKSPACES_DIR": root / "lab-workspaces",
        "IPYTHONDIR": root / "ipython",
        "TMPDIR": root / "tmp",
        "NBRAY_TMPDIR": root,
        "RAY_TMPDIR": root,
    }
    for name, path in dirs.items():
        path.mkdir(parents=True, exist_ok=True)
        os.environ[name] = str(path)
    tempfile.tempdir = None  # computed again from TMPDIR
    # JupyterLab as the browser tests expect it: a notebook's kernel starts without asking
    # (as ~/.jupyter's settings had it once someone ticked "Always start the preferred
    # kernel"), and no "Jupyter news?" toast over the page
    for plugin, settings in LAB_SETTINGS.items():
        path = dirs["JUPYTERLAB_SETTINGS_DIR"] / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(settings))
    return root


def watched(home: Path | None = None) -> set[str]:
    """Every file and folder under the watched places now."""
    home = home or Path.home()
    found: set[str] = set()
    for place in [home / p for p in WATCHED_HOME] + list(watched_tmp()):
        for dirpath, dirnames, filenames in os.walk(place):
            found.update(str(Path(dirpath) / name) for name in dirnames + filenames)
    return found


def leaks(before: set[str], home: Path | None = None) -> list[str]:
    """What appeared in the watched places since ``before`` (from ``watched``), less what
    belongs to a live process of another run on the same machine."""
    new = sorted(watched(home) - before)
    if not new:
        return []
    others = _other_processes()
    return [p for p in new if not _belongs_to(p, others)]


_PID_IN_NAME = re.compile(r"^(?:jpserver|jupyter|nbserver)-(\d+)|^session-\d+-\d+-(\d+)-")


def _other_processes() -> dict[int, str]:
    """Live processes other than this one (the session's children are gone by now), with
    their command lines."""
    import psutil

    found: dict[int, str] = {}
    for p in psutil.process_iter(["pid", "cmdline"]):
        if p.info["pid"] != os.getpid():
            found[p.info["pid"]] = " ".join(p.info["cmdline"] or ())
    return found


def _belongs_to(path: str, others: dict[int, str]) -> bool:
    """A server's or cluster's file whose process (named in the file name) lives, or a
    file named on a live process's command line (a kernel's connection file)."""
    for part in Path(path).parts:
        m = _PID_IN_NAME.match(part)
        if m and int(m.group(1) or m.group(2)) in others:
            return True
    return any(path in cmdline for cmdline in others.values())


def check_enabled() -> bool:
    return os.environ.get("NBRAY_LEAK_CHECK", "1") != "0"


def remove(root: Path) -> None:
    if os.environ.get("NBRAY_KEEP_TEST_TMP") == "1":
        return
    shutil.rmtree(root, ignore_errors=True)
