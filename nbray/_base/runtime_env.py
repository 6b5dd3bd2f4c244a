"""``runtime_env``: checked and normalised where it is given (``init``, ``@remote``,
``.options``), merged job-over-task as Ray does, before any engine sees it.

    init(runtime_env=J) ─┐
    @remote/options(runtime_env=T) ─┴─▶ validate() each ──▶ merge(J, T) ──▶ engine
        local engine: _engines/local/runtime_env.py packages dirs, keys workers by env
        ray engine: passed to Ray as given

Only plain data here (dicts, lists, strings): no file is read and nothing is installed.
"""

from __future__ import annotations

import json
import os
import types
from collections.abc import Mapping
from typing import Any

__all__ = ["SUPPORTED_FIELDS", "canonical", "merge", "validate"]

# the fields nbray implements on the local engine
SUPPORTED_FIELDS = ("env_vars", "working_dir", "py_modules", "excludes", "pip", "uv", "config")
# Ray's other fields: accepted by Ray, refused here with a clear message
_RAY_ONLY = (
    "conda",
    "container",
    "image_uri",
    "java_jars",
    "py_executable",
    "nsight",
    "mpi",
    "worker_process_setup_hook",
)
_CONFIG_FIELDS = ("setup_timeout_seconds", "eager_install", "log_files")
_PIP_DICT_FIELDS = ("packages", "pip_check", "pip_version", "pip_install_options")
_UV_DICT_FIELDS = ("packages", "uv_check", "uv_version", "uv_pip_install_options")


def validate(runtime_env: Mapping[str, Any] | None) -> dict[str, Any]:
    """A normalised copy of ``runtime_env``; raises TypeError/ValueError on misuse.

    A ``pip``/``uv`` list becomes Ray's ``{"packages": [...]}`` (a requirements file path is
    kept, and read where the env is resolved). The result is still a valid Ray runtime_env.

    Example::

        validate({"env_vars": {"A": "1"}, "pip": ["termcolor"]})
        # {'env_vars': {'A': '1'}, 'pip': {'packages': ['termcolor']}}
    """
    if runtime_env is None:
        return {}
    if not isinstance(runtime_env, Mapping):
        raise TypeError(
            f"runtime_env must be a dict (or ray.runtime_env.RuntimeEnv), got "
            f"{type(runtime_env).__name__}"
        )
    out: dict[str, Any] = {}
    for key, value in runtime_env.items():
        if key in _RAY_ONLY:
            raise ValueError(
                f"runtime_env field {key!r} is not supported by nbray's local engine; "
                f"supported fields: {', '.join(SUPPORTED_FIELDS)}. Use engine='ray' for it."
            )
        if key not in SUPPORTED_FIELDS:
            raise ValueError(
                f"unknown runtime_env field {key!r}; valid fields are: "
                f"{', '.join(SUPPORTED_FIELDS + _RAY_ONLY)}"
            )
        if value is None:
            continue
        out[key] = _CHECKS[key](value)
    if "pip" in out and "uv" in out:
        raise ValueError(
            "The 'pip' field and 'uv' field of runtime_env cannot both be specified; use one "
            "of them to list the packages to install"
        )
    return out


def _env_vars(value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise TypeError(
            f"runtime_env['env_vars'] must be a dict of str -> str, got {value!r} "
            "(convert numbers with str())"
        )
    return dict(value)


def _path(value: Any, what: str) -> str:
    if isinstance(value, types.ModuleType):  # Ray accepts an imported module in py_modules
        file = getattr(value, "__file__", None)
        if not file:
            raise TypeError(f"{what}: module {value.__name__} has no file to ship")
        name = os.path.basename(file)
        return os.path.dirname(file) if name == "__init__.py" else file
    if hasattr(value, "__fspath__"):
        value = str(value)
    if not isinstance(value, str) or not value:
        raise TypeError(f"{what} must be a path or URI string, got {value!r}")
    return value


def _working_dir(value: Any) -> str:
    return _path(value, "runtime_env['working_dir']")


def _py_modules(value: Any) -> list[str]:
    if not isinstance(value, list | tuple):
        raise TypeError(f"runtime_env['py_modules'] must be a list of paths, got {value!r}")
    return [_path(v, "each of runtime_env['py_modules']") for v in value]


def _excludes(value: Any) -> list[str]:
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise TypeError(
            f"runtime_env['excludes'] must be a list of gitignore-style patterns, got {value!r}"
        )
    return list(value)


def _packages(value: Any, field: str, dict_fields: tuple[str, ...]) -> dict[str, Any] | str:
    if hasattr(value, "__fspath__"):
        value = str(value)
    if isinstance(value, str):  # a requirements file, read where the env is resolved
        return value
    if isinstance(value, list | tuple):
        value = {"packages": list(value)}
    if not isinstance(value, Mapping):
        raise TypeError(
            f"runtime_env[{field!r}] must be a list of requirements, a requirements.txt path "
            f"or a dict with 'packages', got {value!r}"
        )
    unknown = set(value) - set(dict_fields)
    if unknown:
        raise ValueError(
            f"runtime_env[{field!r}] has unknown key(s) {sorted(unknown)}; valid keys are: "
            f"{', '.join(dict_fields)}"
        )
    packages = value.get("packages")
    if isinstance(packages, str):
        return dict(value)
    if not isinstance(packages, list | tuple) or not all(isinstance(p, str) for p in packages):
        raise TypeError(
            f"runtime_env[{field!r}]['packages'] must be a list of requirement strings, "
            f"got {packages!r}"
        )
    options = value.get(f"{field}_install_options")
    if options is not None and (
        not isinstance(options, list | tuple) or not all(isinstance(o, str) for o in options)
    ):
        raise TypeError(f"runtime_env[{field!r}]['{field}_install_options'] must be a list of str")
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in value.items()}


def _pip(value: Any) -> dict[str, Any] | str:
    return _packages(value, "pip", _PIP_DICT_FIELDS)


def _uv(value: Any) -> dict[str, Any] | str:
    return _packages(value, "uv", _UV_DICT_FIELDS)


def _config(value: Any) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise TypeError(f"runtime_env['config'] must be a dict, got {value!r}")
    unknown = set(value) - set(_CONFIG_FIELDS)
    if unknown:
        raise ValueError(
            f"runtime_env['config'] has unknown key(s) {sorted(unknown)}; valid keys are: "
            f"{', '.join(_CONFIG_FIELDS)}"
        )
    timeout = value.get("setup_timeout_seconds", 600)
    if (
        not isinstance(timeout, int)
        or isinstance(timeout, bool)
        or (timeout <= 0 and timeout != -1)
    ):
        raise ValueError(
            "runtime_env['config']['setup_timeout_seconds'] must be an int > 0 or -1 (no "
            f"limit), got {timeout!r}"
        )
    eager = value.get("eager_install", True)
    if not isinstance(eager, bool):
        raise TypeError(f"runtime_env['config']['eager_install'] must be a bool, got {eager!r}")
    return dict(value)


_CHECKS = {
    "env_vars": _env_vars,
    "working_dir": _working_dir,
    "py_modules": _py_modules,
    "excludes": _excludes,
    "pip": _pip,
    "uv": _uv,
    "config": _config,
}


def merge(job: Mapping[str, Any] | None, task: Mapping[str, Any] | None) -> dict[str, Any]:
    """The env a task or actor runs in: its own fields over the job's (``init``'s), with
    ``env_vars`` merged key by key, as Ray merges a task's runtime_env into the job's."""
    out = dict(job or {})
    for key, value in (task or {}).items():
        if key == "env_vars":
            out[key] = {**out.get(key, {}), **value}
        else:
            out[key] = value
    return out


def canonical(runtime_env: Mapping[str, Any]) -> str:
    """A stable string for an env (sorted JSON): equal envs give equal strings."""
    return json.dumps(runtime_env, sort_keys=True, separators=(",", ":"))
