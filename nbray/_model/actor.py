"""``@nbray.remote`` on a class: actors, their handles and method calls.

    Cls.remote(*args) ──▶ ActorClass ──▶ Engine.create_actor ──▶ ActorHandle
    handle.method.remote(*args) ──▶ ActorMethod ──▶ Engine.call_actor ──▶ ObjectRef(s)

A handle can be passed to tasks and other actors, stored in objects and returned. An
unnamed, non-detached actor ends once no handle to it is left in any process (the local
engine counts each handle's token ObjectRef like any object), after the calls already
submitted to it have finished, as in Ray.
"""

from __future__ import annotations

import functools
import inspect
import types
from typing import TYPE_CHECKING, Any

from nbray._base.options import ActorOptions, make_options

from .generator import STREAMING, is_generator_function, returns_code
from .remote_function import _returns
from .signature import ArgCheck, method_check

if TYPE_CHECKING:
    from .engine import Engine

__all__ = [
    "EXIT_OUTSIDE_ACTOR",
    "ActorClass",
    "ActorHandle",
    "ActorMethod",
    "exit_actor",
    "method",
]


def method(*, num_returns: int | str | None = None, concurrency_group: str | None = None) -> Any:
    """Set options of one actor method (Ray's ``ray.method``).

    ``num_returns``: how many ObjectRefs a call returns; ``concurrency_group``: the group
    (declared in the actor's ``concurrency_groups`` option) whose threads or async tasks
    run this method's calls.

    Example::

        @nbray.remote(concurrency_groups={"io": 2})
        class Service:
            @nbray.method(num_returns=2)
            def pair(self):
                return 1, 2

            @nbray.method(concurrency_group="io")
            def fetch(self, url):
                ...
    """
    if num_returns is not None and _bad_num_returns(num_returns):
        raise ValueError(
            f"num_returns must be an int >= 0, 'streaming' or 'dynamic', got {num_returns!r}"
        )
    if concurrency_group is not None and not isinstance(concurrency_group, str):
        raise TypeError(f"concurrency_group must be a str, got {concurrency_group!r}")

    def decorate(func: Any) -> Any:
        if num_returns is not None:
            func.__ray_num_returns__ = returns_code(num_returns)
        if concurrency_group is not None:
            func.__ray_concurrency_group__ = concurrency_group
        return func

    return decorate


def _bad_num_returns(n: Any) -> bool:
    if n in ("streaming", "dynamic"):
        return False
    return not isinstance(n, int) or isinstance(n, bool) or n < 0


#: ``exit_actor()`` outside an actor (Ray's words first: Ray programs match them)
EXIT_OUTSIDE_ACTOR = (
    "exit_actor API is called on a non-actor worker: exit_actor() ends the actor it is called "
    "in, so call it inside an actor method (nbray.kill(handle) ends an actor from outside)"
)

#: methods every actor has, as in Ray (the worker answers them itself)
SPECIAL_METHODS = ("__ray_call__", "__ray_ready__", "__ray_terminate__")


def actor_methods(cls: type) -> tuple[tuple[str, int], ...]:
    out = []
    for name, member in inspect.getmembers(cls):
        if callable(member) and (not name.startswith("__") or name == "__call__"):
            n = getattr(member, "__ray_num_returns__", None)
            if n is None:  # a generator method streams its yields, as in Ray
                n = STREAMING if is_generator_function(member) else 1
            out.append((name, int(n)))
    out.extend((name, 1) for name in SPECIAL_METHODS)
    return tuple(out)


def is_async_class(cls: type) -> bool:
    return any(
        inspect.iscoroutinefunction(m) or inspect.isasyncgenfunction(m)
        for _, m in inspect.getmembers(cls)
    )


def concurrency_group_of(cls: type, name: str) -> str:
    """The concurrency group ``@nbray.method`` gave method ``name`` ("" for the default)."""
    return str(getattr(getattr(cls, name, None), "__ray_concurrency_group__", "") or "")


def check_concurrency_groups(cls: type, groups: dict[str, int]) -> None:
    """Every ``@nbray.method(concurrency_group=...)`` of ``cls`` names a declared group."""
    for name, _ in actor_methods(cls):
        group = concurrency_group_of(cls, name)
        if group and group not in groups:
            raise ValueError(
                f"method {cls.__name__}.{name} runs in concurrency group {group!r}, which the "
                f"actor does not declare: add concurrency_groups={{{group!r}: N}} to its options"
                f" (declared: {sorted(groups) or 'none'})"
            )


def bound_method(instance: Any, name: str) -> Any:
    """The callable that runs a call of ``name`` on ``instance`` (an actor's object in its
    process), the methods every actor has included."""
    if name == "__ray_ready__":
        return _ready
    if name == "__ray_call__":
        return functools.partial(_call_with_self, instance)
    if name == "__ray_terminate__":
        return exit_actor
    # a method of the class, bound to the instance, as Ray binds it: an instance attribute
    # of the same name (``self.collected = True`` beside ``def collected``) does not hide it
    attr = inspect.getattr_static(type(instance), name, None)
    if isinstance(attr, (types.FunctionType, classmethod, staticmethod)):
        return attr.__get__(instance, type(instance))
    return getattr(instance, name)


def _ready() -> bool:
    return True


def _call_with_self(instance: Any, fn: Any, *args: Any, **kwargs: Any) -> Any:
    return fn(instance, *args, **kwargs)


def exit_actor() -> None:
    """End the current actor from inside one of its methods (Ray's
    ``ray.actor.exit_actor``).

    The call that runs it gets ``ActorDiedError`` instead of a value, and so do the calls
    queued after it; calls already running on other threads or async tasks finish first.
    The actor's ``__ray_shutdown__`` method, if it has one, runs before the process ends;
    the actor is not restarted. Outside an actor it raises ``TypeError``.

    Example::

        @nbray.remote
        class Job:
            def done(self):
                nbray.actor.exit_actor()
    """
    from .session import current_engine

    current_engine().exit_actor()


class ActorClass:
    """A class whose instances live in their own worker process (Ray: ``ActorClass``).

    The user's class stays visible through it, as in Ray: class attributes, class methods
    and static methods read through (``Counter.LIMIT``, ``Counter.from_config(...)``).

    Example::

        @nbray.remote
        class Counter:
            def __init__(self):
                self.n = 0
            def incr(self):
                self.n += 1
                return self.n

        c = Counter.remote()
        assert nbray.get([c.incr.remote() for _ in range(3)]) == [1, 2, 3]
    """

    def __init__(self, cls: type, options: ActorOptions) -> None:
        self._cls = cls
        self._options = options
        self._checks: dict[str, ArgCheck | None] | None = None
        self._decorators: dict[str, Any] | None = None
        self.__name__ = cls.__name__
        self.__qualname__ = cls.__qualname__
        self.__doc__ = cls.__doc__
        self.__module__ = cls.__module__

    def __getattr__(self, name: str) -> Any:
        # the user's class attributes, classmethods and staticmethods (Ray's ActorClass
        # derives from the user's class)
        cls = self.__dict__.get("_cls")
        if cls is None or name.startswith("__"):
            raise AttributeError(name)
        try:
            raw = inspect.getattr_static(cls, name)
        except AttributeError:
            raw = None
        if raw is None or inspect.isfunction(raw):
            raise AttributeError(
                f"actor class {cls.__name__} has no attribute {name!r}"
                + (
                    f": {name} is a method of its actors; start one and call it: "
                    f"{cls.__name__}.remote(...).{name}.remote(...)"
                    if raw is not None
                    else ""
                )
            )
        if isinstance(raw, staticmethod):
            # a new callable each time: pickled by value (by reference, ``Cls.name`` would
            # resolve to it in a process that cannot import the class's module)
            return functools.partial(raw.__func__)
        return getattr(cls, name)

    def __dir__(self) -> list[str]:
        return sorted(set(dir(self._cls)) | {"remote", "options", "_remote"})

    def __mro_entries__(self, bases: tuple[Any, ...]) -> tuple[type, ...]:
        raise TypeError(
            f"Inheriting from actor classes is not currently supported (as in Ray): "
            f"{self.__name__} is an actor class. Derive from the plain class instead and make "
            f"the subclass an actor class with @nbray.remote."
        )

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(
            f"actor class {self.__name__} cannot be instantiated directly: use "
            f"{self.__name__}.remote(...) to start an actor"
        )

    def _method_checks(self) -> dict[str, ArgCheck | None]:
        """Argument checks of the constructor and of every method, made once."""
        checks = self._checks
        if checks is None:
            cls = self._cls
            checks = {name: method_check(cls, name) for name, _ in actor_methods(cls)}
            checks["__init__"] = method_check(cls, "__init__")
            self._checks = checks
        return checks

    def remote(self, *args: Any, **kwargs: Any) -> ActorHandle:
        """Start an actor; returns its handle at once (the constructor runs remotely).
        Arguments that do not fit the constructor raise ``TypeError`` here, as in Ray."""
        from nbray._base.errors import SerializationError

        from .session import current_engine

        __tracebackhide__ = True  # IPython and pytest leave this frame out
        checks = self._method_checks()
        check = checks["__init__"]
        if check is not None:
            check(args, kwargs)
        try:
            handle = current_engine().create_actor(self._cls, args, kwargs, self._options)
        except SerializationError as exc:  # the message says it all: no nbray frames
            raise exc.with_traceback(None) from None
        handle._checks = checks
        handle._decorators = self._invocation_decorators()
        return handle

    def _invocation_decorators(self) -> dict[str, Any]:
        decorators = self._decorators
        if decorators is None:
            decorators = self._decorators = {
                name: deco
                for name, _ in actor_methods(self._cls)
                if (
                    deco := getattr(
                        getattr(self._cls, name, None), "__ray_invocation_decorator__", None
                    )
                )
                is not None
            }
        return decorators

    def _remote(
        self,
        args: tuple[Any, ...] | list[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        **options: Any,
    ) -> ActorHandle:
        """``Cls._remote(args=[...], kwargs={...}, **options)``, as Ray's: options and
        arguments in one call."""
        target = self.options(**options) if options else self
        return target.remote(*(args or ()), **(kwargs or {}))

    def options(self, **options: Any) -> ActorClass:
        """A copy with some options changed, e.g. ``Cls.options(name="a").remote()``."""
        copy = ActorClass(self._cls, make_options(ActorOptions, self._options, options))
        copy._checks = self._checks
        copy._decorators = self._decorators
        return copy

    def __repr__(self) -> str:
        return f"<ActorClass {self.__name__}>"


class ActorHandle:
    """A reference to a live actor; attribute access gives its methods, ``dir()`` lists
    them (tab completion)."""

    def __init__(
        self,
        engine: Engine,
        actor_id: int,
        class_name: str,
        methods: tuple[tuple[str, int], ...],
        *,
        is_async: bool = False,
        original: bool = False,
        collectable: bool = False,
        token: Any = None,
    ) -> None:
        self._engine = engine
        #: an engine that counts handles across processes gives each a token ObjectRef:
        #: it travels with the handle, and the actor ends once no token is left anywhere
        self._token = token
        self._actor_id = actor_id
        self._class_name = class_name
        self._methods = dict(methods)
        for name in SPECIAL_METHODS:
            self._methods.setdefault(name, 1)
        self._is_async = is_async
        self._original = original
        self._collectable = collectable
        self._shared = False
        #: argument checks per method (set on the handle ``Cls.remote()`` returned)
        self._checks: dict[str, ArgCheck | None] = {}
        #: methods' ``__ray_invocation_decorator__`` (rare; travel with the handle)
        self._decorators: dict[str, Any] = {}

    def __getattr__(self, name: str) -> ActorMethod:
        methods = self.__dict__.get("_methods")
        if methods is None or (name.startswith("__") and name not in SPECIAL_METHODS):
            raise AttributeError(name)
        if name not in methods:
            raise AttributeError(
                f"actor {self._class_name} has no method {name!r}; its methods are: "
                f"{', '.join(sorted(n for n in methods if not n.startswith('__')))}"
            )
        return ActorMethod(self, name, methods[name])

    def __dir__(self) -> list[str]:
        # as Ray's handle: the class's methods, its constructor and __ray_terminate__
        hidden = ("__ray_call__", "__ray_ready__")
        return sorted({"__init__", *(n for n in self._methods if n not in hidden)})

    def __reduce__(self) -> tuple[Any, ...]:
        self._shared = True
        return (
            _rebuild_handle,
            (
                self._actor_id,
                self._class_name,
                tuple(self._methods.items()),
                self._is_async,
                self._checks,
                self._decorators,
                self._token,
            ),
        )

    def __del__(self) -> None:
        if self._original and self._collectable and not self._shared:
            try:
                self._engine.release_actor(self)
            except Exception:  # the session is gone already
                return

    @property
    def actor_id(self) -> str:
        return f"{self._actor_id:016x}"

    def __repr__(self) -> str:
        return f"ActorHandle({self._class_name}, {self.actor_id})"

    def _repr_html_(self) -> str:
        from .reprs import actor_html

        return actor_html(self)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ActorHandle) and other._actor_id == self._actor_id

    def __hash__(self) -> int:
        return hash(self._actor_id)


class ActorMethod:
    """``handle.method``: call it with ``.remote(...)``; ``.options(num_returns=...,
    concurrency_group=...)`` changes one call's options."""

    def __init__(
        self, handle: ActorHandle, name: str, num_returns: int = 1, concurrency_group: str = ""
    ) -> None:
        self._handle = handle
        self._name = name
        self._num_returns = num_returns
        self._concurrency_group = concurrency_group

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        decorators = self._handle._decorators
        if decorators and self._name in decorators:
            # Ray's ``__ray_invocation_decorator__``: the method's decorator wraps the call
            return decorators[self._name](self._invoke)(args, kwargs)
        return self._invoke(args, kwargs)

    def _invoke(self, args: tuple[Any, ...] | list[Any], kwargs: dict[str, Any]) -> Any:
        h = self._handle
        args = tuple(args)
        check = h._checks.get(self._name)
        if check is not None:
            check(args, kwargs)
        if self._concurrency_group:
            refs = h._engine.call_actor(
                h,
                self._name,
                args,
                kwargs,
                self._num_returns,
                concurrency_group=self._concurrency_group,
            )
        else:
            refs = h._engine.call_actor(h, self._name, args, kwargs, self._num_returns)
        return _returns(refs, self._num_returns)

    def _remote(
        self,
        args: tuple[Any, ...] | list[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        **options: Any,
    ) -> Any:
        """``handle.method._remote(args=[...], kwargs={...}, num_returns=...)``, as Ray's."""
        target = self.options(**options) if options else self
        return target.remote(*(args or ()), **(kwargs or {}))

    def options(
        self,
        *,
        num_returns: int | str | None = None,
        concurrency_group: str | None = None,
        name: str | None = None,
        **_: Any,
    ) -> ActorMethod:
        if num_returns is not None and _bad_num_returns(num_returns):
            raise ValueError(
                f"num_returns must be an int >= 0, 'streaming' or 'dynamic', got {num_returns!r}"
            )
        if concurrency_group is not None and not isinstance(concurrency_group, str):
            raise TypeError(f"concurrency_group must be a str, got {concurrency_group!r}")
        return ActorMethod(
            self._handle,
            self._name,
            self._num_returns if num_returns is None else returns_code(num_returns),
            self._concurrency_group if concurrency_group is None else concurrency_group,
        )

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(
            f"actor method {self._name} cannot be called directly: use .{self._name}.remote(...)"
        )


def _rebuild_handle(
    actor_id: int,
    class_name: str,
    methods: tuple[tuple[str, int], ...],
    is_async: bool,
    checks: dict[str, ArgCheck | None] | None = None,
    decorators: dict[str, Any] | None = None,
    token: Any = None,
) -> ActorHandle:
    from .session import current_engine

    handle = ActorHandle(
        current_engine(), actor_id, class_name, methods, is_async=is_async, token=token
    )
    if checks:  # the argument checks travel with the handle, so calls here check them too
        handle._checks = checks
    if decorators:
        handle._decorators = decorators
    return handle
