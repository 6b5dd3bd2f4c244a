"""Arguments checked against the signature at ``.remote()``, as Ray binds them there.

    RemoteFunction / ActorClass / ActorMethod .remote(*args, **kwargs)
        ──▶ ArgCheck(args, kwargs) ──TypeError──▶ the caller, before anything is sent

The ``inspect.Signature`` is computed once per function (on the first call). Most calls
pass positional arguments to a function without ``*args``/keyword-only parameters: those
are checked by counting, so the check costs a comparison on the per-task path; any other
call is bound with ``Signature.bind``, whose message Ray shows too.
"""

from __future__ import annotations

import inspect
from typing import Any

__all__ = ["ArgCheck", "method_check", "signature_check"]

_SIMPLE_KINDS = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
_KINDS = {
    int(kind): kind
    for kind in (
        *_SIMPLE_KINDS,
        inspect.Parameter.VAR_POSITIONAL,
        inspect.Parameter.KEYWORD_ONLY,
        inspect.Parameter.VAR_KEYWORD,
    )
}


class ArgCheck:
    """Checks that ``(args, kwargs)`` bind to one function's parameters."""

    __slots__ = ("keywords", "least", "most", "name", "names", "required", "shapes", "signature")

    def __init__(self, signature: inspect.Signature, name: str) -> None:
        self.signature = signature
        self.name = name
        params = list(signature.parameters.values())
        if all(p.kind in _SIMPLE_KINDS for p in params):
            self.most = len(params)
            self.least = sum(p.default is inspect.Parameter.empty for p in params)
        else:  # *args, **kwargs or keyword-only: always bind
            self.most, self.least = -1, 0
        self.names = tuple(p.name for p in params)
        self.keywords = frozenset(
            p.name for p in params if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
        )
        self.required = frozenset(p.name for p in params if p.default is inspect.Parameter.empty)
        # call shapes (number of positional arguments, keyword names) found to bind
        self.shapes: set[tuple[Any, ...]] = set()

    def __call__(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        n = len(args)
        if not kwargs:
            if self.least <= n <= self.most:
                return
        else:
            shape = (n, *kwargs)
            if shape in self.shapes:
                return
            if n <= self.most and self.keywords.issuperset(kwargs):
                given = self.names[:n]
                if not any(k in given for k in kwargs) and self.required.issubset(
                    (*given, *kwargs)
                ):
                    self._remember(shape)
                    return
        try:
            self.signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise TypeError(f"{self.name}(): {exc}") from None
        if kwargs:
            self._remember((n, *kwargs))

    def __reduce__(self) -> tuple[Any, ...]:
        # travels with an actor handle to other processes: the parameters' names, kinds and
        # whether they have a default are all binding needs (defaults and annotations may
        # not pickle, and would cost bytes on every handle passed)
        params = tuple(
            (p.name, int(p.kind), p.default is not inspect.Parameter.empty)
            for p in self.signature.parameters.values()
        )
        return (_rebuild, (params, self.name))

    def _remember(self, shape: tuple[Any, ...]) -> None:
        if len(self.shapes) < 64:  # a few shapes per function; a bound set, all the same
            self.shapes.add(shape)


def _rebuild(params: tuple[tuple[str, int, bool], ...], name: str) -> ArgCheck:
    empty = inspect.Parameter.empty
    signature = inspect.Signature(
        [
            inspect.Parameter(
                n,
                _KINDS[kind],
                default=None if has_default else empty,
            )
            for n, kind, has_default in params
        ]
    )
    return ArgCheck(signature, name)


def signature_check(func: Any, name: str, ignore_first: bool = False) -> ArgCheck | None:
    """The check for ``func``'s arguments (without its first, ``self``, when
    ``ignore_first``), or None when Python cannot tell its signature (some builtins)."""
    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError):
        return None
    if ignore_first:
        params = list(signature.parameters.values())
        if not params or params[0].kind not in _SIMPLE_KINDS:
            return None  # no ``self`` to drop (``*args``): the call will tell
        signature = signature.replace(parameters=params[1:])
    return ArgCheck(signature, name)


def method_check(cls: type, name: str) -> ArgCheck | None:
    """The check for calls of method ``name`` of an actor class: ``self`` dropped, as Ray
    does, except for static and class methods."""
    if name == "__init__" and "__init__" not in _defined(cls):  # no constructor: no arguments
        return ArgCheck(inspect.Signature(), f"{cls.__name__}.__init__")
    static = inspect.getattr_static(cls, name, None)
    member = getattr(cls, name, None)
    if member is None:
        return None
    bound = isinstance(static, staticmethod | classmethod)
    return signature_check(member, f"{cls.__name__}.{name}", ignore_first=not bound)


def _defined(cls: type) -> set[str]:
    """The names defined by ``cls`` or its bases other than ``object``."""
    return {name for klass in cls.__mro__ if klass is not object for name in vars(klass)}
