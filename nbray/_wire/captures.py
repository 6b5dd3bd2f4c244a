"""Which captured value keeps a function from pickling, and by which path.

    dumps_function(func) fails ──▶ unpicklable_captures(func)
        globals the code reads (nested functions and lambdas too) and closure cells
        ──▶ each value pickled alone; a failing one is searched further (attributes,
            items) for the innermost part that fails
        ──▶ ["write_log -> lock -> <_thread.lock>", ...] for the error message

A small walker for the error path only (Ray's ``ray.util.inspect_serializability`` does the
same job as a public API). Pure: it pickles values into memory and never runs user code
beyond what pickling itself runs.
"""

from __future__ import annotations

import io
import types
from collections.abc import Iterator
from typing import Any

__all__ = ["describe", "unpicklable_captures"]

_MAX_DEPTH = 4
_MAX_CHILDREN = 50


def _pickles(value: Any) -> bool:
    import cloudpickle

    try:
        cloudpickle.dump(value, io.BytesIO(), protocol=5)
    except Exception:
        return False
    return True


def describe(value: Any) -> str:
    """A short name for a value in a path: ``<file /tmp/log.txt (w)>``, ``<_thread.lock>``."""
    if isinstance(value, io.IOBase):
        name = getattr(value, "name", "?")
        mode = getattr(value, "mode", "")
        return f"<file {name}" + (f" ({mode})" if mode else "") + ">"
    cls = type(value)
    module = cls.__module__
    qual = (
        cls.__qualname__ if module in ("builtins", "__main__") else f"{module}.{cls.__qualname__}"
    )
    return f"<{qual}>"


def _code_globals(code: types.CodeType) -> Iterator[str]:
    yield from code.co_names
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _code_globals(const)


def _captured(func: Any) -> Iterator[tuple[str, Any]]:
    """(name, value) of the globals a function's code reads and of its closure cells; for a
    class, those of its methods."""
    if isinstance(func, type):
        for member in vars(func).values():
            target = getattr(member, "__func__", member)
            if isinstance(target, types.FunctionType):
                yield from _captured(target)
        return
    code = getattr(func, "__code__", None)
    if code is None:
        return
    glob = getattr(func, "__globals__", {})
    seen: set[str] = set()
    for name in _code_globals(code):
        if name in glob and name not in seen:
            seen.add(name)
            yield name, glob[name]
    for name, cell in zip(code.co_freevars, func.__closure__ or (), strict=False):
        try:
            yield name, cell.cell_contents
        except ValueError:  # an empty cell
            continue


def _children(value: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict):
        items = list(value.items())[:_MAX_CHILDREN]
        yield from ((f"[{k!r}]", v) for k, v in items)
    elif isinstance(value, list | tuple | set | frozenset):
        yield from ((f"[{i}]", v) for i, v in enumerate(list(value)[:_MAX_CHILDREN]))
    elif isinstance(value, types.FunctionType):
        yield from _captured(value)
    else:
        attrs = getattr(value, "__dict__", None)
        if isinstance(attrs, dict):
            yield from ((f".{k}", v) for k, v in list(attrs.items())[:_MAX_CHILDREN])


def _innermost(path: list[str], value: Any, depth: int) -> list[str]:
    """Paths to the innermost unpicklable parts of ``value`` (which fails to pickle)."""
    if depth < _MAX_DEPTH and not isinstance(value, io.IOBase):
        found = [
            p
            for key, child in _children(value)
            if not _pickles(child)
            for p in _innermost([*path, key], child, depth + 1)
        ]
        if found:
            return found
    return [" -> ".join([*path, describe(value)])]


def unpicklable_captures(func: Any, name: str) -> list[str]:
    """Paths from ``func`` (called ``name``) to each captured value that cannot be pickled,
    e.g. ``["write_log -> log -> <file /tmp/x (w)>"]``; empty when none is found."""
    paths: list[str] = []
    for var, value in _captured(func):
        if isinstance(value, types.ModuleType) or _pickles(value):
            continue
        paths += _innermost([name, var], value, 0)
    return paths
