"""Options of remote functions and actors: Ray's names and defaults, checked early.

``@nbray.remote(num_cpus=2)`` and ``.options(...)`` both land here; a misspelt or
out-of-range option raises at decoration time with the list of valid names.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from .runtime_env import validate as validate_runtime_env
from .scheduling import check_strategy

__all__ = ["ActorOptions", "TaskOptions"]

# accepted for compatibility with Ray code; the local engine ignores them, the Ray engine
# passes them on (kept in ``ray_options``)
_IGNORED = {
    "memory",
    "placement_group",
    "placement_group_bundle_index",
    "placement_group_capture_child_tasks",
    "accelerator_type",
    "label_selector",
    "_metadata",  # Ray libraries' extension options (a dict)
}


def _resource_request(options: TaskOptions | ActorOptions) -> dict[str, float]:
    """The resources a task or actor asks for, zeros left out. Made once per options (they
    are frozen, and every submission asks), so callers must not change the dict."""
    cached: dict[str, float] | None = options.__dict__.get("_resource_request")
    if cached is None:
        req = {"CPU": float(options.num_cpus), "GPU": float(options.num_gpus)}
        req.update({k: float(v) for k, v in options.resources.items()})
        cached = {k: v for k, v in req.items() if v}
        object.__setattr__(options, "_resource_request", cached)
    return cached


@dataclass(frozen=True)
class TaskOptions:
    """Options of a remote function (defaults as in Ray)."""

    num_cpus: float = 1
    num_gpus: float = 0
    resources: dict[str, float] = field(default_factory=dict)
    num_returns: int | str = 1  # or "streaming" / "dynamic" (generator functions)
    max_retries: int = 3
    retry_exceptions: bool | tuple[type[BaseException], ...] = False
    name: str = ""
    #: the worker exits after running this function this many times (0: never), as in Ray
    max_calls: int = 0
    runtime_env: dict[str, Any] | None = None  # validated (``_base.runtime_env``)
    scheduling_strategy: Any = None  # None, "DEFAULT", "SPREAD" or a strategy object
    # a streaming generator pauses while this many of its yields are unconsumed (-1: never)
    _generator_backpressure_num_objects: int = -1
    ray_options: dict[str, Any] = field(default_factory=dict)

    def resource_request(self) -> dict[str, float]:
        return _resource_request(self)


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
    #: named groups of threads (or async tasks) and their sizes: ``{"io": 2}``
    concurrency_groups: dict[str, int] = field(default_factory=dict)
    runtime_env: dict[str, Any] | None = None  # applies to the actor's every call
    scheduling_strategy: Any = None  # None, "DEFAULT", "SPREAD" or a strategy object
    ray_options: dict[str, Any] = field(default_factory=dict)

    def resource_request(self) -> dict[str, float]:
        return _resource_request(self)


def _valid_names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls) if f.name != "ray_options"]


def make_options(cls: type[Any], base: Any | None, kwargs: dict[str, Any]) -> Any:
    """``base`` updated with ``kwargs``, validated; raises ValueError/TypeError on misuse."""
    names = _valid_names(cls)
    if base is not None and "max_calls" in kwargs:
        raise ValueError("Setting 'max_calls' is not supported in '.options()'.")
    current = cls() if base is None else base
    # not dataclasses.asdict: it would deep-copy a strategy's placement group
    values = {
        f.name: dict(v) if isinstance(v := getattr(current, f.name), dict) else v
        for f in dataclasses.fields(cls)
    }
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
        if value is None:  # None: the default, as in Ray
            value = getattr(cls(), key)
        elif key == "runtime_env":
            value = validate_runtime_env(value) or None
        elif key == "scheduling_strategy":
            check_strategy(value)
        values[key] = value
    _check_types(kwargs)
    _check(values)
    if isinstance(values.get("retry_exceptions"), list):
        values["retry_exceptions"] = tuple(values["retry_exceptions"])
    return cls(**values)


# the type each option takes, as Ray checks it (``ray._common.ray_option_utils``): a wrong
# type is a TypeError, a wrong value of the right type a ValueError
_NUMBER = (int, float, type(None))
_COUNT = (int, type(None))
_TYPES: dict[str, tuple[type, ...]] = {
    "_metadata": (dict, type(None)),
    "num_cpus": _NUMBER,
    "num_gpus": _NUMBER,
    "memory": _NUMBER,
    "resources": (dict, type(None)),
    "num_returns": (int, str, type(None)),
    "max_retries": _COUNT,
    "max_calls": _COUNT,
    "max_restarts": _COUNT,
    "max_task_retries": _COUNT,
    "max_concurrency": _COUNT,
    "retry_exceptions": (bool, list, tuple),
    "name": (str, type(None)),
    "namespace": (str, type(None)),
    "lifetime": (str, type(None)),
    "get_if_exists": (bool,),
    "concurrency_groups": (dict, type(None)),
    "accelerator_type": (str, type(None)),
    "label_selector": (dict, type(None)),
}


def _check_types(kwargs: dict[str, Any]) -> None:
    for key, value in kwargs.items():
        types = _TYPES.get(key)
        if types is not None and not isinstance(value, types):
            # Ray's words, which Ray programs match, then the value
            raise TypeError(
                f"The type of keyword '{key}' must be {types}, but received type "
                f"{type(value)}: {value!r}"
            )


def _check(values: dict[str, Any]) -> None:
    for key in ("num_cpus", "num_gpus"):
        v = values.get(key)
        if not isinstance(v, int | float) or isinstance(v, bool):
            raise TypeError(f"The type of keyword '{key}' must be int or float, got {v!r}")
        _check_quantity(key, v)
    if values.get("num_gpus", 0) > 1 and values["num_gpus"] != int(values["num_gpus"]):
        raise ValueError(f"num_gpus above 1 must be a whole number, got {values['num_gpus']}")
    resources = values.get("resources") or {}
    if not isinstance(resources, dict):
        raise TypeError(f"resources must be a dict of name -> amount, got {resources!r}")
    for k, v in resources.items():
        if k in ("CPU", "GPU"):
            raise ValueError(f"use num_cpus/num_gpus instead of resources={{{k!r}: ...}}")
        if not isinstance(v, int | float) or isinstance(v, bool):
            raise TypeError(f"resource {k!r} must be a number, got {v!r}")
        _check_quantity(k, v)
    for key in ("max_retries", "max_restarts", "max_task_retries"):
        if key in values and (not isinstance(values[key], int) or values[key] < -1):
            raise ValueError(
                f"The keyword '{key}' only accepts None, 0, -1 or a positive integer, where -1 "
                f"represents infinity; got {values[key]!r}"
            )
    if values.get("max_calls", 0) < 0:
        raise ValueError(
            f"The keyword 'max_calls' only accepts None, 0 or a positive integer; got "
            f"{values['max_calls']!r}"
        )
    if "num_returns" in values:
        n = values["num_returns"]
        if n not in ("streaming", "dynamic") and (not isinstance(n, int) or n < 0):
            raise ValueError(
                "The keyword 'num_returns' only accepts None, a non-negative integer, or "
                f'"dynamic" (for generators), or "streaming"; got {n!r}'
            )
    bp = values.get("_generator_backpressure_num_objects", -1)
    if not isinstance(bp, int) or isinstance(bp, bool) or bp == 0 or bp < -1:
        raise ValueError(
            f"_generator_backpressure_num_objects must be an int >= 1, or -1 (no limit), got {bp!r}"
        )
    mc = values.get("max_concurrency")
    if mc is not None and (not isinstance(mc, int) or mc < 1):
        raise ValueError(f"max_concurrency must be an int >= 1, got {mc!r}")
    for group, size in (values.get("concurrency_groups") or {}).items():
        if not isinstance(group, str) or not group:
            raise TypeError(f"concurrency group names must be non-empty str, got {group!r}")
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            raise ValueError(
                f"concurrency group {group!r} must have an int size >= 1, got {size!r}"
            )
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


def _check_quantity(name: str, quantity: float) -> None:
    if quantity < 0:
        raise ValueError(f"The quantity of resource {name} cannot be negative, got {quantity!r}")
    if isinstance(quantity, float) and quantity != 0.0 and int(quantity * 10_000) == 0:
        raise ValueError(
            f"The precision of the fractional quantity of resource {name} cannot go beyond "
            f"0.0001, got {quantity!r}"
        )
