"""runtime_env on the local engine: packaged in the submitting process, set up in workers.

    LocalEngine (kernel) ──resolve(env)──▶ working_dir / py_modules copied once into the
        user cache under their content hash ──▶ the resolved env (JSON) rides in the
        TaskSpec/ActorSpec ──▶ head: the scheduler keys workers by it (a worker that ran
        with env A never serves env B) ──▶ fork server forks a worker for the env
    worker (before it connects) ──prepare()──▶ pip/uv env: a virtualenv built once per
        requirement set under a file lock, the kernel's packages visible through a .pth;
        the worker then exec()s that venv's python ──apply()──▶ env_vars, cwd, sys.path

The cache lives in ``$NBRAY_RUNTIME_ENV_DIR``, else ``$XDG_CACHE_HOME/nbray/runtime_env``
(``~/.cache/nbray/runtime_env``). Nothing is ever installed into the kernel's environment.
"""

from __future__ import annotations

import contextlib
import fcntl
import fnmatch
import hashlib
import json
import os
import shutil
import site
import subprocess
import sys
import tempfile
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from nbray._base.errors import RuntimeEnvSetupError
from nbray._base.runtime_env import canonical

__all__ = ["apply", "cache_dir", "prepare", "resolve"]

MAX_PACKAGE_BYTES = 500 * 1024 * 1024  # Ray's limit for a working_dir or py_module
READY = ".nbray-ready"
OUTPUT_TAIL = 4000  # characters of the installer's output kept in the error


def cache_dir() -> Path:
    """Where packaged directories and virtualenvs are kept (created 0700)."""
    root = os.environ.get("NBRAY_RUNTIME_ENV_DIR")
    if root:
        path = Path(root)
    else:
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        path = Path(base) / "nbray" / "runtime_env"
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


# --- in the submitting process ----------------------------------------------------------


def resolve(env: dict[str, Any], cwd: str | None = None) -> str:
    """The env as workers need it (JSON, "" for none): local directories packaged into the
    cache, requirement files read, a key for the virtualenv. Raises ValueError or
    RuntimeEnvSetupError (a missing directory, one too large) here, at ``.remote()``."""
    if not env:
        return ""
    base = Path(cwd or os.getcwd())
    out: dict[str, Any] = {}
    if env.get("env_vars"):
        out["env_vars"] = env["env_vars"]
    excludes = env.get("excludes", [])
    if "working_dir" in env:
        out["working_dir"] = str(
            _package(_local(env["working_dir"], base, "working_dir"), excludes)
        )
    paths = []
    for module in env.get("py_modules", []):
        src = _local(module, base, "py_modules")
        dest = _package(src, excludes, keep_name=True)
        # a wheel is imported from the file itself (zipimport), a module from its folder
        paths.append(str(dest / src.name) if src.suffix == ".whl" else str(dest))
    if paths:
        out["py_paths"] = paths
    for tool in ("pip", "uv"):
        if tool in env:
            out["venv"] = _requirements(tool, env[tool], base)
    timeout = env.get("config", {}).get("setup_timeout_seconds", 600)
    if "venv" in out:
        out["setup_timeout_seconds"] = timeout
    return canonical(out) if out else ""


def _local(value: str, base: Path, field: str) -> Path:
    parsed = urllib.parse.urlparse(value)
    if parsed.scheme == "file" and parsed.netloc in ("", "localhost"):
        value = urllib.parse.unquote(parsed.path)  # file:///dir, file://localhost/dir
    if "://" in value:
        raise ValueError(
            f"runtime_env[{field!r}] {value!r} is a URI: nbray's local engine takes local "
            "directories and files only (run on engine='ray' for remote URIs)"
        )
    path = (base / value).resolve()
    if not path.exists():
        raise ValueError(
            f"runtime_env[{field!r}] {value!r} does not exist (looked in {path}); give an "
            "existing local directory"
        )
    if field == "working_dir" and not path.is_dir():
        raise ValueError(f"runtime_env['working_dir'] {value!r} must be a directory ({path})")
    return path


def _excluded(rel: str, name: str, patterns: list[str]) -> bool:
    for pattern in patterns:
        p = pattern.rstrip("/")
        if p.startswith("/"):
            if fnmatch.fnmatch(rel, p[1:]) or rel.startswith(p[1:] + "/"):
                return True
        elif fnmatch.fnmatch(name, p) or fnmatch.fnmatch(rel, p) or rel.startswith(p + "/"):
            return True
    return False


def _files(src: Path, excludes: list[str]) -> Iterator[tuple[str, Path]]:
    """(relative path, file) under ``src`` in a stable order, without excluded ones."""
    if src.is_file():
        yield src.name, src
        return
    for root, dirs, files in os.walk(src):
        rel_root = os.path.relpath(root, src)
        rel_root = "" if rel_root == "." else rel_root + "/"
        dirs[:] = sorted(
            d
            for d in dirs
            if d not in ("__pycache__", ".git") and not _excluded(rel_root + d, d, excludes)
        )
        for name in sorted(files):
            rel = rel_root + name
            if not _excluded(rel, name, excludes):
                yield rel, Path(root) / name


def _package(src: Path, excludes: list[str], keep_name: bool = False) -> Path:
    """Copy ``src`` (minus ``excludes``) once into the cache, named by its content hash;
    returns the directory to put on sys.path / chdir into."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(src.name.encode() if keep_name else b"")
    files = list(_files(src, excludes))
    total = 0
    for rel, path in files:
        data = path.read_bytes()
        total += len(data)
        if total > MAX_PACKAGE_BYTES:
            raise ValueError(
                f"{src} holds more than {MAX_PACKAGE_BYTES >> 20} MiB of files: add large "
                "files to runtime_env['excludes'] or read them from a shared path"
            )
        digest.update(rel.encode() + b"\0" + hashlib.blake2b(data).digest())
    kind = "py_modules" if keep_name else "working_dir"
    dest = cache_dir() / kind / digest.hexdigest()
    if dest.exists():
        return dest
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=dest.parent if _mkdir(dest.parent) else None))
    prefix = f"{src.name}/" if keep_name and src.is_dir() else ""
    for rel, path in files:
        target = tmp / (prefix + rel)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    try:
        os.rename(tmp, dest)
    except OSError:  # packaged meanwhile by another process: same content
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def _mkdir(path: Path) -> bool:
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return True


def _requirements(tool: str, spec: dict[str, Any] | str, base: Path) -> dict[str, Any]:
    if isinstance(spec, str):
        spec = {"packages": spec}
    packages = spec.get("packages") or []
    if isinstance(packages, str):  # a requirements file
        path = base / packages
        try:
            text = path.read_text()
        except OSError as exc:
            raise ValueError(
                f"runtime_env[{tool!r}] names the requirements file {path}, which cannot be "
                f"read ({exc})"
            ) from None
        packages = [
            line.split(" #")[0].strip()
            for line in text.splitlines()
            if line.strip() and not line.lstrip().startswith("#")
        ]
    options = list(spec.get(f"{tool}_install_options") or [])
    check = bool(spec.get(f"{tool}_check", False))
    # the venv depends on the requirements and on the interpreter it extends
    key_src = canonical(
        {
            "tool": tool,
            "packages": packages,
            "options": options,
            "check": check,
            "python": sys.executable,
            "version": sys.version,
        }
    )
    key = hashlib.blake2b(key_src.encode(), digest_size=12).hexdigest()
    return {"tool": tool, "packages": packages, "options": options, "check": check, "key": key}


# --- in the worker, before it connects ------------------------------------------------


def prepare(env: dict[str, Any]) -> str:
    """Make sure the env's virtualenv exists (building it once, under a lock); returns its
    python, or "" when the env needs none. Raises RuntimeEnvSetupError with the
    installer's output when the install fails or times out."""
    venv = env.get("venv")
    if not venv:
        return ""
    root = cache_dir() / "venvs"
    _mkdir(root)
    target = root / f"{venv['tool']}-{venv['key']}"
    python = target / "bin" / "python"
    if (target / READY).exists():
        return str(python)
    timeout = env.get("setup_timeout_seconds", 600)
    timeout = None if timeout == -1 else float(timeout)
    with _locked(root / f"{target.name}.lock"):
        if (target / READY).exists():  # built by another worker while we waited
            return str(python)
        shutil.rmtree(target, ignore_errors=True)  # a build that died half-way
        try:
            _build(target, venv, timeout)
        except BaseException:
            shutil.rmtree(target, ignore_errors=True)
            raise
        (target / READY).write_text(json.dumps(venv))
    return str(python)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
        with contextlib.suppress(OSError):
            path.unlink()


def _build(target: Path, venv: dict[str, Any], timeout: float | None) -> None:
    _run([sys.executable, "-m", "venv", "--without-pip", str(target)], "venv", timeout)
    python = str(target / "bin" / "python")
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.strip()
    # the kernel's packages (nbray, cloudpickle, pip itself...) after the venv's own: a
    # requirement the venv installs wins, everything else comes from the kernel
    sites = [p for p in [*site.getsitepackages(), site.getusersitepackages()] if os.path.isdir(p)]
    lines = [f"import site; site.addsitedir({p!r})" for p in sites]
    Path(purelib, "_nbray_kernel_packages.pth").write_text("\n".join(lines) + "\n")
    packages = venv["packages"]
    if not packages:
        return
    if venv["tool"] == "uv":
        uv = shutil.which("uv") or str(Path(sys.executable).parent / "uv")
        if not os.access(uv, os.X_OK):
            raise RuntimeEnvSetupError(
                "runtime_env['uv'] needs the uv installer, which is not on PATH nor next to "
                f"{sys.executable}: pip install uv (in the kernel's environment), or use 'pip'"
            )
        cmd = [uv, "pip", "install", "--python", python, *venv["options"], *packages]
    else:
        cmd = [
            python,
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            *venv["options"],
            *packages,
        ]
    _run(cmd, venv["tool"], timeout)
    if venv["check"]:
        check = (
            [python, "-m", "pip", "check"]
            if venv["tool"] == "pip"
            else [cmd[0], "pip", "check", "--python", python]
        )
        _run(check, f"{venv['tool']} check", timeout)


def _run(cmd: list[str], what: str, timeout: float | None) -> None:
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired as exc:
        out = (exc.stdout or "") if isinstance(exc.stdout, str) else ""
        raise RuntimeEnvSetupError(
            f"runtime_env setup timed out: `{what}` ran longer than setup_timeout_seconds="
            f"{timeout:g}. Raise runtime_env['config']['setup_timeout_seconds'].\n"
            f"{out[-OUTPUT_TAIL:]}"
        ) from None
    if proc.returncode != 0:
        output = (proc.stdout + proc.stderr).strip()
        shown = " ".join([Path(cmd[0]).name, *cmd[1:]])
        raise RuntimeEnvSetupError(
            f"runtime_env setup failed: `{shown}` exited with code "
            f"{proc.returncode}:\n{output[-OUTPUT_TAIL:]}"
        )


def warm_up() -> None:
    """The task ``init`` submits to build the job's env eagerly: starting is the work."""


def apply(env: dict[str, Any]) -> None:
    """Set the env in this (worker) process: variables, working directory, import path."""
    os.environ.update(env.get("env_vars", {}))
    paths = list(env.get("py_paths", []))
    working_dir = env.get("working_dir")
    if working_dir:
        os.chdir(working_dir)
        paths.insert(0, working_dir)
    for path in reversed(paths):
        if path not in sys.path:
            sys.path.insert(0, path)
