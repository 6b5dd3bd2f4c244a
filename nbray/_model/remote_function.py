"""``@nbray.remote`` on a function: ``f.remote(...)`` submits a task to the current engine.

    f.remote(*args) ──▶ RemoteFunction ──fingerprint (code + globals it uses)──▶
    Engine.submit_task ──▶ ObjectRef(s)

The fingerprint changes when the function, or a notebook global it reads, is redefined, so
the engine ships the new code instead of reusing a stale pickled copy.
"""

from __future__ import annotations

import functools
import types
from typing import Any, Generic, ParamSpec, TypeVar

from nbray._base.options import TaskOptions, make_options

from .generator import DYNAMIC, STREAMING, dynamic, is_generator_function, returns_code
from .object_ref import ObjectRef
from .signature import ArgCheck, signature_check

__all__ = ["RemoteFunction"]

P = ParamSpec("P")
R = TypeVar("R")


def fingerprint(func: Any) -> tuple[Any, ...]:
    """Identity of the code and of the module-level objects it names (cheap to compute)."""
    code = getattr(func, "__code__", None)
    if code is None:
        return (id(func),)
    if getattr(func, "__module__", None) != "__main__":
        return (id(func), id(code))
    g = func.__globals__
    # the globals named anywhere in its code (comprehensions and lambdas are nested code
    # objects), and, through the notebook functions it calls, the globals those read
    ids = [id(func), id(code)]
    seen = {id(func)}
    codes = [code]
    while codes:
        c = codes.pop()
        codes.extend(k for k in c.co_consts if isinstance(k, types.CodeType))
        for n in c.co_names:
            value = g.get(n)
            ids.append(id(value))
            if isinstance(value, types.FunctionType) and value.__globals__ is g:
                if id(value) not in seen:
                    seen.add(id(value))
                    codes.append(value.__code__)
    return tuple(ids)


class RemoteFunction(Generic[P, R]):
    """A function that runs as a task (Ray: ``ray.remote_function.RemoteFunction``).

    Example::

        @nbray.remote(num_cpus=1, max_retries=2)
        def square(x):
            return x * x

        assert nbray.get([square.remote(i) for i in range(4)]) == [0, 1, 4, 9]
    """

    def __init__(self, func: Any, options: TaskOptions) -> None:
        self._function = func
        if options.num_returns == 1 and is_generator_function(func):
            options = make_options(TaskOptions, options, {"num_returns": "streaming"})
        self._options = options
        self._name = options.name or getattr(func, "__qualname__", repr(func))
        # the argument check, made on the first call (shared by .options() copies)
        self._check: list[ArgCheck | None] = []
        functools.update_wrapper(self, func)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(
            f"remote function {self._name} cannot be called directly: use "
            f"{self._name}.remote(...) to run it as a task, or {self._name}._function(...) "
            "to call it here"
        )

    def remote(self, *args: P.args, **kwargs: P.kwargs) -> Any:
        """Submit a task; returns an ObjectRef (a list of them if ``num_returns`` > 1)."""
        from nbray._base.errors import SerializationError

        from .session import current_engine

        __tracebackhide__ = True  # IPython and pytest leave this frame out
        checks = self._check
        if not checks:
            checks.append(signature_check(self._function, self._name))
        check = checks[0]
        if check is not None:
            check(args, kwargs)  # TypeError here, as in Ray, before anything is sent
        func, options = self._function, self._options
        if options.num_returns == "dynamic":  # one ref to a DynamicObjectRefGenerator
            func = self.__dict__.get("_dynamic")
            if func is None:
                func = self.__dict__["_dynamic"] = dynamic(self._function)
            options = make_options(TaskOptions, options, {"num_returns": 1})
        try:
            refs = current_engine().submit_task(
                func, fingerprint(func), args, kwargs, options, self._name
            )
        except SerializationError as exc:  # the message says it all: no nbray frames
            raise exc.with_traceback(None) from None
        return _returns(refs, options.num_returns)

    def _remote(
        self,
        args: tuple[Any, ...] | list[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        **options: Any,
    ) -> Any:
        """``f._remote(args=[...], kwargs={...}, **options)``, as Ray's: the options and the
        arguments in one call."""
        target = self.options(**options) if options else self
        return target.remote(*(args or ()), **(kwargs or {}))

    def options(self, **options: Any) -> RemoteFunction[P, R]:
        """A copy with some options changed, e.g. ``f.options(num_cpus=2).remote(x)``."""
        copy: RemoteFunction[P, R] = RemoteFunction(
            self._function, make_options(TaskOptions, self._options, options)
        )
        copy._check = self._check
        return copy

    def __repr__(self) -> str:
        return f"<RemoteFunction {self._name}>"


def _returns(refs: list[ObjectRef], num_returns: int | str) -> Any:
    """What ``.remote()`` returns: a ref, a list of them, None or an ObjectRefGenerator
    (which the engine made, as ``refs[0]``)."""
    if num_returns == 1 or returns_code(num_returns) in (STREAMING, DYNAMIC):
        return refs[0]
    if num_returns == 0:
        return None
    return refs
