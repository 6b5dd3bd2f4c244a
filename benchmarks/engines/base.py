"""The adapter interface that every engine implements, and the one the workloads use.

    workloads.py ──start / submit / gather / put / get / actors / shutdown──▶ Engine
                                                                               │
                      nbray, Ray, Dask, ipyparallel, loky, pools, serial ◀─────┘

An adapter stays thin: it translates these few calls into the engine's own API and does no
timing or checking itself. What an engine does not have (objects, actors) raises
``NotSupported`` and is reported "n/a", never emulated.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar


class NotSupported(Exception):
    """Raised when a workload asks an engine for something it does not have (e.g. ``put``
    on a process pool); the metric is reported as "n/a"."""


class Engine(ABC):
    """One engine, started in the benchmark's child process."""

    #: Name used on the command line and in the tables.
    name: ClassVar[str]
    #: Import names that must be installed for this engine (checked before it is run).
    requires: ClassVar[tuple[str, ...]] = ()
    #: Distribution whose version is reported for this engine.
    distribution: ClassVar[str | None] = None
    #: Whether ``put``/``get`` exist (a store of objects that tasks can take by reference).
    has_objects: ClassVar[bool] = False
    #: Whether ``create_actor``/``call`` exist (stateful workers).
    has_actors: ClassVar[bool] = False
    #: Whether ``start_pool``/``pool_map`` exist (a ``multiprocessing.Pool``-style API).
    has_pool: ClassVar[bool] = False
    #: Whether ``joblib_backend`` exists (a joblib backend to run ``Parallel`` on).
    has_joblib: ClassVar[bool] = False
    #: Whether nbray's watchers (widgets, the server extension's event stream) watch it.
    has_watching: ClassVar[bool] = False
    #: What the engine's "start" is, in words, for the report.
    description: ClassVar[str] = ""
    #: The worker processes asked of ``start`` (set by the child before it starts).
    num_cpus: int = 2

    def load(self) -> None:  # noqa: B027 - optional hook
        """Import the engine's modules (timed separately from ``start``)."""

    @abstractmethod
    def start(self, num_cpus: int) -> None:
        """Start the engine with ``num_cpus`` worker processes (or slots)."""

    @abstractmethod
    def submit(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Submit ``fn(*args)`` as a task; returns a handle for ``gather``."""

    @abstractmethod
    def gather(self, handles: list[Any]) -> list[Any]:
        """Block until every handle's task finished; their results, in order."""

    def put(self, value: Any) -> Any:
        """Store ``value`` once; returns a handle that tasks accept in place of the value."""
        raise NotSupported(f"{self.name} has no object store")

    def get(self, handle: Any) -> Any:
        """The value behind a ``put`` handle."""
        raise NotSupported(f"{self.name} has no object store")

    def create_actor(self, cls: type) -> Any:
        """Create an instance of ``cls`` living in a worker; returns its handle."""
        raise NotSupported(f"{self.name} has no actors")

    def call(self, actor: Any, method: str, *args: Any) -> Any:
        """Call ``actor.method(*args)``; returns a handle for ``gather``."""
        raise NotSupported(f"{self.name} has no actors")

    def destroy_actor(self, actor: Any) -> None:  # noqa: B027 - optional hook
        """Stop an actor made by ``create_actor``."""

    def start_pool(self, num_cpus: int) -> None:
        """Start the engine's ``multiprocessing.Pool``-style pool of ``num_cpus`` processes."""
        raise NotSupported(f"{self.name} has no multiprocessing-style Pool")

    def pool_map(self, fn: Callable[..., Any], items: list[Any]) -> list[Any]:
        """``pool.map(fn, items)`` with the default chunksize, on the pool of ``start_pool``."""
        raise NotSupported(f"{self.name} has no multiprocessing-style Pool")

    def stop_pool(self) -> None:  # noqa: B027 - optional hook
        """Stop the pool of ``start_pool``."""

    def joblib_backend(self) -> str:
        """The name of a joblib backend (registered by this call) that runs on the engine."""
        raise NotSupported(f"{self.name} has no joblib backend")

    @abstractmethod
    def shutdown(self) -> None:
        """Stop everything ``start`` started."""
