"""Ray's ``ray.runtime_env`` on nbray: ``RuntimeEnv`` and ``RuntimeEnvConfig``, dicts that
check their fields when built. Plain dicts work everywhere these do.

Example::

    from nbray.runtime_env import RuntimeEnv, RuntimeEnvConfig

    env = RuntimeEnv(env_vars={"STAGE": "dev"}, pip=["termcolor"],
                     config=RuntimeEnvConfig(setup_timeout_seconds=120))
    f.options(runtime_env=env).remote()
"""

from __future__ import annotations

from typing import Any

from ._base.runtime_env import validate

__all__ = ["RuntimeEnv", "RuntimeEnvConfig"]


class RuntimeEnvConfig(dict[str, Any]):
    """How an env is set up: ``setup_timeout_seconds`` (600; -1: no limit) bounds the
    install, ``eager_install`` (True) installs the job's env at ``init``."""

    known_fields = {"setup_timeout_seconds", "eager_install", "log_files"}

    def __init__(
        self,
        setup_timeout_seconds: int = 600,
        eager_install: bool = True,
        log_files: list[str] | None = None,
    ) -> None:
        super().__init__(setup_timeout_seconds=setup_timeout_seconds, eager_install=eager_install)
        if log_files is not None:
            self["log_files"] = log_files
        validate({"config": dict(self)})


class RuntimeEnv(dict[str, Any]):
    """A runtime environment (Ray's class): the fields of a ``runtime_env`` dict as keyword
    arguments, checked at once (``TypeError``/``ValueError`` saying what is wrong)."""

    def __init__(
        self,
        *,
        py_modules: list[Any] | None = None,
        working_dir: str | None = None,
        pip: list[str] | str | dict[str, Any] | None = None,
        uv: list[str] | str | dict[str, Any] | None = None,
        env_vars: dict[str, str] | None = None,
        config: dict[str, Any] | RuntimeEnvConfig | None = None,
        _validate: bool = True,
        **kwargs: Any,
    ) -> None:
        fields = {
            "py_modules": py_modules,
            "working_dir": working_dir,
            "pip": pip,
            "uv": uv,
            "env_vars": env_vars,
            "config": config,
            **kwargs,
        }
        super().__init__({k: v for k, v in fields.items() if v is not None})
        if _validate:
            validate(self)

    def to_dict(self) -> dict[str, Any]:
        return dict(self)

    def env_vars(self) -> dict[str, str]:
        return dict(self.get("env_vars", {}))

    def working_dir(self) -> str:
        return str(self.get("working_dir", ""))

    def py_modules(self) -> list[str]:
        return list(self.get("py_modules", []))
