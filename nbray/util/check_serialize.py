"""``inspect_serializability``: find what inside an object cannot be pickled (Ray's
``ray.util.inspect_serializability``).

    obj ──cloudpickle──▶ fails? ──▶ walk its members (a function: the globals and
        nonlocals it uses; a container: its items; anything else: its attributes), depth
        levels down ──▶ the innermost members that still fail, as FailureTuples

Each ``FailureTuple`` carries the failing object, the ``path`` of names from the top
(``("model", "conn")`` for ``model.conn``) and its parent. A report is printed to
``print_file`` (default: stdout) as Ray prints it.
"""

from __future__ import annotations

import inspect
import sys
from typing import Any, TextIO

import cloudpickle

__all__ = ["FailureTuple", "inspect_serializability"]

_DOCS = "https://docs.ray.io/en/master/ray-core/objects/serialization.html#troubleshooting"


class FailureTuple:
    """One object that failed to serialize: ``obj``, the ``path`` of names that leads to
    it from the inspected object, and the ``parent`` that holds it. ``name`` is the last
    name of the path (``None`` when the path is empty)."""

    __slots__ = ("obj", "parent", "path")

    def __init__(self, obj: Any, path: tuple[str, ...], parent: Any) -> None:
        self.obj = obj
        self.path = tuple(path)
        self.parent = parent

    @property
    def name(self) -> str | None:
        return self.path[-1] if self.path else None

    def dotted(self) -> str:
        """The path as one expression, e.g. ``model.conn`` or ``cfg['db'].lock``."""
        out = ""
        for part in self.path:
            out += part if part.startswith("[") or not out else f".{part}"
        return out

    def __repr__(self) -> str:
        parts = [str(p) if p is not None else "unknown" for p in self.path]
        name = parts[-1] if parts else "unknown"
        return (
            f"FailTuple({name} [path={' -> '.join(parts)}, obj={self.obj}, parent={self.parent}])"
        )


class _Printer:
    def __init__(self, file: TextIO | None) -> None:
        self.file = file
        self.level = 0

    def __call__(self, msg: str) -> None:
        print("    " * self.level + msg, file=self.file or sys.stdout)


def _serializes(obj: Any) -> Exception | None:
    try:
        cloudpickle.dumps(obj)
    except Exception as exc:  # any failure of pickling counts: that is what we look for
        return exc
    return None


def _children(obj: Any) -> list[tuple[str, Any]]:
    """The members to try, in the order Ray tries them."""
    if inspect.isfunction(obj):
        closure = inspect.getclosurevars(obj)
        return [*closure.globals.items(), *closure.nonlocals.items()]
    if isinstance(obj, dict):
        return [(f"[{k!r}]", v) for k, v in obj.items()]
    if isinstance(obj, list | tuple | set | frozenset):
        return [(f"[{i}]", v) for i, v in enumerate(obj)]
    try:
        members = inspect.getmembers(obj)
    except Exception:  # a broken __getattr__ / property: nothing to walk
        return []
    functions = [(n, m) for n, m in members if inspect.isfunction(m)]
    others = [
        (n, m)
        for n, m in members
        if not (n.startswith("__") and n.endswith("__"))
        and not inspect.isbuiltin(m)
        and not inspect.isfunction(m)
    ]
    return functions + others


def _walk(
    obj: Any,
    path: tuple[str, ...],
    depth: int,
    parent: Any,
    failures: set[FailureTuple],
    say: _Printer,
) -> bool:
    """Whether ``obj`` serializes; records the innermost failures under it."""
    error = _serializes(obj)
    if error is None:
        return True
    say(f"!!! FAIL serialization: {error}")
    if depth <= 0:
        failures.add(FailureTuple(obj, path, parent))
        return False
    before = len(failures)
    say.level += 1
    try:
        for name, child in _children(obj):
            say(f"Serializing '{name}' {_short(child)}...")
            if not _walk(child, (*path, name), depth - 1, obj, failures, say):
                break  # as Ray: the first failing member is enough at each level
    finally:
        say.level -= 1
    if len(failures) == before:
        say(
            f"WARNING: Did not find non-serializable object in {_short(obj)}. This may be "
            "because it is only non-serializable in combination with other objects."
        )
        failures.add(FailureTuple(obj, path, parent))
    return False


def _short(obj: Any, limit: int = 120) -> str:
    try:
        text = repr(obj)
    except Exception:
        text = f"<{type(obj).__name__} object>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def inspect_serializability(
    base_obj: Any,
    name: str | None = None,
    depth: int = 3,
    print_file: TextIO | None = None,
) -> tuple[bool, set[FailureTuple]]:
    """Whether ``base_obj`` can be pickled, and the set of innermost members that cannot.

    Walks up to ``depth`` levels of members (a function's globals and closure variables,
    an object's attributes, a container's items) and prints what it tries to
    ``print_file`` (default: stdout).

    Example::

        import threading
        from nbray.util import inspect_serializability

        class Holder:
            def __init__(self):
                self.lock = threading.Lock()

        ok, failures = inspect_serializability(Holder(), name="holder")
        assert not ok
        assert [f.dotted() for f in failures] == ["holder.lock"]
    """
    if not isinstance(depth, int) or depth < 0:
        raise ValueError(f"depth must be an int >= 0, got {depth!r}")
    say = _Printer(print_file)
    declaration = f"Checking Serializability of {_short(base_obj)}"
    rule = "=" * min(len(declaration), 80)
    say(rule)
    say(declaration)
    say(rule)
    failures: set[FailureTuple] = set()
    path = (name,) if name is not None else ()
    ok = _walk(base_obj, path, depth, None, failures, say)
    if ok:
        return True, failures
    say(rule)
    listed = "\n".join(f"\t{f!r}" for f in failures)
    say(
        f"Variable: \n\n{listed}\n\nwas found to be non-serializable. There may be "
        "multiple other undetected variables that were non-serializable."
    )
    say(
        "Consider either removing the instantiation/imports of these variables or moving "
        "the instantiation into the scope of the function/class."
    )
    say(rule)
    say(f"Check {_DOCS} for more information.")
    return False, failures
