"""The task a ``%%remote`` cell becomes, as it runs on a worker.

    kernel: CellSpec + the cell's free variables (ObjectRefs among them resolved by the
    worker as task arguments) ──▶ run_cell on a worker:
        import the modules the cell uses ──▶ exec the cell (its source registered in
        linecache under the kernel's cell file name, so tracebacks show its lines)
        ──▶ {"value": last expression, "names": assigned values, "skipped": why not}

Imports nothing from IPython: workers load this module to run the task.
"""

from __future__ import annotations

import ast
import builtins
import importlib
import linecache
from typing import Any, NamedTuple

__all__ = ["CellSpec", "compile_cell", "run_cell"]


class CellSpec(NamedTuple):
    """What a worker needs to run one ``%%remote`` cell (the values travel as arguments)."""

    source: str
    filename: str
    names: tuple[str, ...]  # the shipped variables, in the order of the task's arguments
    modules: tuple[tuple[str, str], ...]  # (variable, module name) imported on the worker
    outputs: tuple[str, ...]  # names to bring back
    has_value: bool


def compile_cell(source: str, filename: str, has_value: bool | None = None) -> tuple[Any, Any]:
    """(code of the cell without its last expression, code of that expression or None).

    ``has_value=None``: the last statement is the value when it is an expression and the
    cell does not end with ``;``, as in a normal cell."""
    tree = ast.parse(source, filename)
    if has_value is None:
        has_value = not source.rstrip().endswith(";")
    last = None
    final = tree.body[-1] if tree.body else None
    if has_value and isinstance(final, ast.Expr):
        tree.body.pop()
        last = compile(ast.Expression(final.value), filename, "eval")
    return compile(tree, filename, "exec"), last


def run_cell(spec: CellSpec, *values: Any) -> dict[str, Any]:
    """Run the cell in a fresh namespace holding its shipped variables; return its value
    and the values of ``spec.outputs`` (those that can be pickled)."""
    from nbray._base.errors import SerializationError
    from nbray._wire.serialization import serialize

    lines = spec.source.splitlines(keepends=True)
    linecache.cache[spec.filename] = (len(spec.source), None, lines, spec.filename)
    ns: dict[str, Any] = {"__name__": "__main__", "__builtins__": builtins}
    for name, module in spec.modules:
        ns[name] = importlib.import_module(module)
    ns.update(zip(spec.names, values, strict=True))
    body, last = compile_cell(spec.source, spec.filename, spec.has_value)
    exec(body, ns)
    value = eval(last, ns) if last is not None else None
    names: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    for name in spec.outputs:
        if name not in ns:
            continue
        try:
            serialize(ns[name], f"variable {name!r}")
        except SerializationError as exc:
            skipped[name] = str(exc).split(":", 1)[-1].strip()[:200]
            continue
        names[name] = ns[name]
    return {"value": value, "names": names, "skipped": skipped}
