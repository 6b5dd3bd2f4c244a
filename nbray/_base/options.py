"""Options of remote functions and actors: Ray's names and defaults, checked early.

``@nbray.remote(num_cpus=2)`` and ``.options(...)`` both land here; a misspelt or
out-of-range option raises at decoration time with the list of valid names.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ActorOptions", "TaskOptions"]

# accepted for compatibility with Ray code; the local engine ignores them, the Ray engine
# passes them on (kept in ``ray_options``)
_IGNORED = {
    "memory",
    "scheduling_strategy",
    "placement_group",
    "accelerator_type",
    "label_selector",
}


@dataclass(frozen=True)
class TaskOptions:
    """Options of a remote function (defaults as in Ray)."""

    num_cpus: float = 1
    num_gpus: float = 0
    resources: dict[str, float] = field(default_factory=dict)
    num_returns: int = 1
    max_retries: int = 3
    retry_exceptions: bool | tuple[type[BaseException], ...] = False
    name: str = ""
    ray_options: dict[str, Any] = field(default_factory=dict)

    def resource_request(self) -> dict[str, float]:
        req = {"CPU": float(self.num_cpus), "GPU": float(self.num_gpus)}
        req.update({k: float(v) for k, v in self.resources.items()})
        return {k: v for k, v in req.items() if v}


@dataclass(frozen=True)
class ActorOptions:
    """Options of an actor class (defaults as in Ray, but see ``num_cpus``).

    ``num_cpus`` defaults to 0: an actor holds no CPU while idle, as Ray's actors hold none
    once placed.
    """

    num_cpus: float = 0
    num_gpus: float = 0
    resources: dict[str, float] = field(default_factory=dict)
    max_restarts: int = 0
    max_task_retries: int = 0
    max_concurrency: int | None = None
    name: str = ""
    namespace: str | None = None
    lifetime: str | None = None
    get_if_exists: bool = False
    ray_options: dict[str, Any] = field(default_factory=dict)

    def resource_request(self) -> dict[str, float]:
        req = {"CPU": float(self.num_cpus), "GPU": float(self.num_gpus)}
        req.update({k: float(v) for k, v in self.resources.items()})
        return {k: v for k, v in req.items() if v}


def _valid_names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls) if f.name != "ray_options"]


def make_options(cls: type[Any], base: Any | None, kwargs: dict[str, Any]) -> Any:
    """``base`` updated with ``kwargs``, validated; raises ValueError/TypeError on misuse."""
    names = _valid_names(cls)
    values = dataclasses.asdict(cls() if base is None else base)
    for key, value in kwargs.items():
        if key in _IGNORED:
            values["ray_options"] = {**values["ray_options"], key: value}
            continue
        if key not in names:
            raise ValueError(
                f"invalid option {key!r} for a remote "
                f"{'function' if cls is TaskOptions else 'actor'}; valid options are: "
                f"{', '.join(sorted(names + list(_IGNORED)))}"
            )
        values[key] = value
    _check(values)
    if isinstance(values.get("retry_exceptions"), list):
        values["retry_exceptions"] = tuple(values["retry_exceptions"])
    return cls(**values)


def _check(values: dict[str, Any]) -> None:
    for key in ("num_cpus", "num_gpus"):
        v = values.get(key)
        if not isinstance(v, int | float) or isinstance(v, bool) or v < 0:
            raise ValueError(f"{key} must be a number >= 0, got {v!r}")
    if values.get("num_gpus", 0) > 1 and values["num_gpus"] != int(values["num_gpus"]):
        raise ValueError(f"num_gpus above 1 must be a whole number, got {values['num_gpus']}")
    resources = values.get("resources") or {}
    if not isinstance(resources, dict):
        raise TypeError(f"resources must be a dict of name -> amount, got {resources!r}")
    for k, v in resources.items():
        if k in ("CPU", "GPU"):
            raise ValueError(f"use num_cpus/num_gpus instead of resources={{{k!r}: ...}}")
        if not isinstance(v, int | float) or v < 0:
            raise ValueError(f"resource {k!r} must be a number >= 0, got {v!r}")
    for key in ("max_retries", "max_restarts", "max_task_retries"):
        if key in values and (not isinstance(values[key], int) or values[key] < -1):
            raise ValueError(f"{key} must be an int >= -1 (-1: unlimited), got {values[key]!r}")
    if "num_returns" in values:
        n = values["num_returns"]
        if not isinstance(n, int) or n < 0:
            raise ValueError(f"num_returns must be an int >= 0, got {n!r}")
    mc = values.get("max_concurrency")
    if mc is not None and (not isinstance(mc, int) or mc < 1):
        raise ValueError(f"max_concurrency must be an int >= 1, got {mc!r}")
    lifetime = values.get("lifetime")
    if lifetime not in (None, "detached", "non_detached"):
        raise ValueError(f"lifetime must be None, 'detached' or 'non_detached', got {lifetime!r}")
    retry = values.get("retry_exceptions", False)
    if not isinstance(retry, bool):
        items = retry if isinstance(retry, list | tuple) else None
        if items is None or not all(
            isinstance(c, type) and issubclass(c, BaseException) for c in items
        ):
            raise TypeError(
                f"retry_exceptions must be a bool or a list of exception classes, got {retry!r}"
            )
