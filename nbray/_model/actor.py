"""``@nbray.remote`` on a class: actors, their handles and method calls.

    Cls.remote(*args) ──▶ ActorClass ──▶ Engine.create_actor ──▶ ActorHandle
    handle.method.remote(*args) ──▶ ActorMethod ──▶ Engine.call_actor ──▶ ObjectRef(s)

A handle can be passed to tasks and other actors. An unnamed, non-detached actor whose
original handle is dropped without ever being shared is stopped once the calls already
submitted to it have finished, as in Ray.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any

from nbray._base.options import ActorOptions, make_options

from .remote_function import _returns

if TYPE_CHECKING:
    from .engine import Engine

__all__ = ["ActorClass", "ActorHandle", "ActorMethod", "method"]


def method(*, num_returns: int = 1) -> Any:
    """Set options of one actor method, e.g. ``@nbray.method(num_returns=2)``."""

    def decorate(func: Any) -> Any:
        func.__nbray_num_returns__ = num_returns
        return func

    return decorate


def actor_methods(cls: type) -> tuple[tuple[str, int], ...]:
    out = []
    for name, member in inspect.getmembers(cls):
        if callable(member) and (not name.startswith("__") or name == "__call__"):
            out.append((name, int(getattr(member, "__nbray_num_returns__", 1))))
    return tuple(out)


def is_async_class(cls: type) -> bool:
    return any(
        inspect.iscoroutinefunction(m) or inspect.isasyncgenfunction(m)
        for _, m in inspect.getmembers(cls)
    )


class ActorClass:
    """A class whose instances live in their own worker process (Ray: ``ActorClass``).

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
        self.__name__ = cls.__name__
        self.__qualname__ = cls.__qualname__
        self.__doc__ = cls.__doc__
        self.__module__ = cls.__module__

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(
            f"actor class {self.__name__} cannot be instantiated directly: use "
            f"{self.__name__}.remote(...) to start an actor"
        )

    def remote(self, *args: Any, **kwargs: Any) -> ActorHandle:
        """Start an actor; returns its handle at once (the constructor runs remotely)."""
        from nbray._base.errors import SerializationError

        from .session import current_engine

        __tracebackhide__ = True  # IPython and pytest leave this frame out
        try:
            return current_engine().create_actor(self._cls, args, kwargs, self._options)
        except SerializationError as exc:  # the message says it all: no nbray frames
            raise exc.with_traceback(None) from None

    def options(self, **options: Any) -> ActorClass:
        """A copy with some options changed, e.g. ``Cls.options(name="a").remote()``."""
        return ActorClass(self._cls, make_options(ActorOptions, self._options, options))

    def __repr__(self) -> str:
        return f"<ActorClass {self.__name__}>"


class ActorHandle:
    """A reference to a live actor; attribute access gives its methods."""

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
    ) -> None:
        self._engine = engine
        self._actor_id = actor_id
        self._class_name = class_name
        self._methods = dict(methods)
        self._is_async = is_async
        self._original = original
        self._collectable = collectable
        self._shared = False

    def __getattr__(self, name: str) -> ActorMethod:
        methods = self.__dict__.get("_methods")
        if methods is None or name.startswith("__"):
            raise AttributeError(name)
        if name not in methods:
            raise AttributeError(
                f"actor {self._class_name} has no method {name!r}; its methods are: "
                f"{', '.join(sorted(methods))}"
            )
        return ActorMethod(self, name, methods[name])

    def __reduce__(self) -> tuple[Any, ...]:
        self._shared = True
        return (
            _rebuild_handle,
            (self._actor_id, self._class_name, tuple(self._methods.items()), self._is_async),
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
    """``handle.method``: call it with ``.remote(...)``."""

    def __init__(self, handle: ActorHandle, name: str, num_returns: int = 1) -> None:
        self._handle = handle
        self._name = name
        self._num_returns = num_returns

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        h = self._handle
        refs = h._engine.call_actor(h, self._name, args, kwargs, self._num_returns)
        return _returns(refs, self._num_returns)

    def options(self, *, num_returns: int | None = None, **_: Any) -> ActorMethod:
        return ActorMethod(
            self._handle, self._name, self._num_returns if num_returns is None else num_returns
        )

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(
            f"actor method {self._name} cannot be called directly: use .{self._name}.remote(...)"
        )


def _rebuild_handle(
    actor_id: int, class_name: str, methods: tuple[tuple[str, int], ...], is_async: bool
) -> ActorHandle:
    from .session import current_engine

    return ActorHandle(current_engine(), actor_id, class_name, methods, is_async=is_async)
