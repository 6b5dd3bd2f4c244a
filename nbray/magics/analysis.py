"""What a cell reads from the notebook and what it assigns, found by reading its code.

    cell source ──ast, statement by statement──▶ names read before the cell binds them
                ──symtable──▶ globals read inside its functions, lambdas, comprehensions
                ──▶ CellNames(free, assigned, has_value)

``%%remote`` ships only the ``free`` names that exist in the notebook namespace and brings
back the ``assigned`` ones. No code runs here.
"""

from __future__ import annotations

import ast
import symtable
from typing import NamedTuple

__all__ = ["CellNames", "analyse_cell"]


class CellNames(NamedTuple):
    """The result of :func:`analyse_cell`."""

    free: tuple[str, ...]  # read from outside the cell, in order of first read
    assigned: tuple[str, ...]  # bound at the cell's top level (or declared global), in order
    has_value: bool  # the last statement is an expression whose value a cell shows


class _Pass:
    """Walks top-level statements in execution order, tracking what is bound so far."""

    def __init__(self) -> None:
        self.bound: set[str] = set()
        self.free: dict[str, None] = {}
        self.assigned: dict[str, None] = {}

    def read(self, name: str) -> None:
        if name not in self.bound:
            self.free.setdefault(name, None)

    def bind(self, name: str) -> None:
        self.bound.add(name)
        self.assigned.setdefault(name, None)

    # --- expressions: read what runs now, skip the bodies of nested scopes --------------

    def expr(self, node: ast.AST | None) -> None:
        if node is None:
            return
        if isinstance(node, ast.Name):
            if isinstance(node.ctx, ast.Load | ast.Del):
                self.read(node.id)
            else:
                self.bind(node.id)
            return
        if isinstance(node, ast.NamedExpr):
            self.expr(node.value)
            self.bind(node.target.id)
            return
        if isinstance(node, ast.Lambda):
            self.arguments(node.args)  # defaults run now; the body later (symtable)
            return
        if isinstance(node, ast.ListComp | ast.SetComp | ast.GeneratorExp | ast.DictComp):
            self.expr(node.generators[0].iter)  # the first iterable runs in this scope
            return
        for child in ast.iter_child_nodes(node):
            self.expr(child)

    def arguments(self, args: ast.arguments) -> None:
        for default in (*args.defaults, *args.kw_defaults):
            self.expr(default)

    def target(self, node: ast.AST) -> None:
        """An assignment target: names are bound, subscripts and attributes read."""
        if isinstance(node, ast.Name):
            self.bind(node.id)
        elif isinstance(node, ast.Tuple | ast.List):
            for elt in node.elts:
                self.target(elt)
        elif isinstance(node, ast.Starred):
            self.target(node.value)
        else:
            self.expr(node)

    # --- statements ---------------------------------------------------------------------

    def block(self, stmts: list[ast.stmt]) -> None:
        for stmt in stmts:
            self.stmt(stmt)

    def stmt(self, node: ast.stmt) -> None:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            for d in node.decorator_list:
                self.expr(d)
            self.arguments(node.args)
            self.bind(node.name)
        elif isinstance(node, ast.ClassDef):
            for d in (*node.decorator_list, *node.bases, *(k.value for k in node.keywords)):
                self.expr(d)
            self.bind(node.name)
        elif isinstance(node, ast.Assign):
            self.expr(node.value)
            for t in node.targets:
                self.target(t)
        elif isinstance(node, ast.AugAssign):
            if isinstance(node.target, ast.Name):
                self.read(node.target.id)
            self.expr(node.value)
            self.target(node.target)
        elif isinstance(node, ast.AnnAssign):
            self.expr(node.value)
            if node.value is not None:
                self.target(node.target)
        elif isinstance(node, ast.For | ast.AsyncFor):
            self.expr(node.iter)
            self.target(node.target)
            self.block(node.body)
            self.block(node.orelse)
        elif isinstance(node, ast.While | ast.If):
            self.expr(node.test)
            self.block(node.body)
            self.block(node.orelse)
        elif isinstance(node, ast.With | ast.AsyncWith):
            for item in node.items:
                self.expr(item.context_expr)
                if item.optional_vars is not None:
                    self.target(item.optional_vars)
            self.block(node.body)
        elif isinstance(node, ast.Try | ast.TryStar):
            self.block(node.body)
            for handler in node.handlers:
                self.expr(handler.type)
                if handler.name:
                    self.bind(handler.name)
                self.block(handler.body)
            self.block(node.orelse)
            self.block(node.finalbody)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            for alias in node.names:
                if alias.name != "*":
                    self.bind(alias.asname or alias.name.split(".")[0])
        elif isinstance(node, ast.Match):
            self.expr(node.subject)
            for case in node.cases:
                for sub in ast.walk(case.pattern):
                    if isinstance(sub, ast.MatchAs | ast.MatchStar) and sub.name:
                        self.bind(sub.name)
                    elif isinstance(sub, ast.MatchMapping) and sub.rest:
                        self.bind(sub.rest)
                    elif isinstance(sub, ast.MatchValue | ast.MatchClass):
                        self.expr(sub.value if isinstance(sub, ast.MatchValue) else sub.cls)
                self.expr(case.guard)
                self.block(case.body)
        elif not isinstance(node, ast.Global | ast.Nonlocal):
            self.expr(node)


def _nested_globals(table: symtable.SymbolTable) -> tuple[set[str], set[str]]:
    """(globals read, globals assigned) inside the nested scopes of ``table``."""
    reads: set[str] = set()
    writes: set[str] = set()
    for child in table.get_children():
        for sym in child.get_symbols():
            if sym.is_global() and sym.is_referenced():
                reads.add(sym.get_name())
            if sym.is_declared_global() and sym.is_assigned():
                writes.add(sym.get_name())
                reads.add(sym.get_name())  # ``global n; n += 1`` reads it too
        r, w = _nested_globals(child)
        reads |= r
        writes |= w
    return reads, writes


def analyse_cell(source: str, filename: str = "<cell>") -> CellNames:
    """The names a cell reads from outside and the names it binds.

    Raises ``SyntaxError`` (with ``filename``) when the cell is not valid Python.

    Example::

        >>> analyse_cell("y = x + 1\\nz = [y * k for k in range(n)]\\nz")
        CellNames(free=('x', 'range', 'n'), assigned=('y', 'z'), has_value=True)
    """
    tree = ast.parse(source, filename)
    walk = _Pass()
    walk.block(tree.body)
    reads, writes = _nested_globals(symtable.symtable(source, filename, "exec"))
    free = dict(walk.free)
    for name in sorted(reads - walk.bound):
        free.setdefault(name, None)
    assigned = dict(walk.assigned)
    for name in sorted(writes):
        assigned.setdefault(name, None)
    has_value = bool(tree.body) and isinstance(tree.body[-1], ast.Expr)
    if has_value and source.rstrip().endswith(";"):
        has_value = False  # a trailing ";" hides the value, as in a normal cell
    return CellNames(tuple(free), tuple(assigned), has_value)
