"""The engine interface: what the API, magics and widgets need from whatever runs the work.

    api / RemoteFunction / ActorClass ──▶ Engine ──▶ LocalEngine (nbray._engines.local, default)
                                                 ├─▶ RayEngine (nbray._engines.ray)
                                                 └─▶ InlineEngine (nbray._engines.inline)

An engine turns functions, classes and values into ObjectRefs and ActorHandles, and
produces the one event stream (task lifecycle and node metrics) that widgets read.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nbray._base.options import ActorOptions, TaskOptions

    from .actor import ActorHandle
    from .object_ref import ObjectRef
    from .placement_group import PlacementGroup

__all__ = ["Engine"]


class Engine(ABC):
    """One connected cluster, behind the public API."""

    name: str = "engine"
    #: Called as ``submit_listener(task_id, first_return_id)`` for each task and actor call
    #: this process submits; the magics route output and cancel a cell's work with it.
    submit_listener: Callable[[int, int], None] | None = None

    @abstractmethod
    def submit_task(
        self,
        func: Any,
        fingerprint: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        options: TaskOptions,
        name: str,
    ) -> list[ObjectRef]:
        """Run ``func(*args, **kwargs)`` as a task; one ref per return value."""

    @abstractmethod
    def create_actor(
        self, cls: type, args: tuple[Any, ...], kwargs: dict[str, Any], options: ActorOptions
    ) -> ActorHandle: ...

    @abstractmethod
    def call_actor(
        self,
        handle: ActorHandle,
        method: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        num_returns: int,
        concurrency_group: str = "",
    ) -> list[ObjectRef]:
        """Call ``method`` of the actor; ``concurrency_group`` overrides the method's."""

    def exit_actor(self) -> None:
        """End the actor this code runs in (``nbray.actor.exit_actor``); never returns.
        Raises ``TypeError`` outside an actor."""
        from .actor import EXIT_OUTSIDE_ACTOR

        raise TypeError(EXIT_OUTSIDE_ACTOR)

    def runtime_context(self) -> dict[str, Any]:
        """What ``nbray.get_runtime_context()`` reports here: ``job_id``, ``task_id``,
        ``actor_id``, ``actor_name``, ``node_id``, ``worker_id``, ``namespace``,
        ``resources`` (assigned to the task or actor), ``gpu_ids``, ``restarted``
        (``None`` for what this process is not running)."""
        return {}

    @abstractmethod
    def put(self, value: Any) -> ObjectRef: ...

    @abstractmethod
    def get(self, refs: list[ObjectRef], timeout: float | None) -> list[Any]: ...

    @abstractmethod
    def wait(
        self, refs: list[ObjectRef], num_returns: int, timeout: float | None
    ) -> list[ObjectRef]:
        """The refs among ``refs`` that are ready once ``num_returns`` are (or on timeout)."""

    @abstractmethod
    def cancel(self, ref: ObjectRef, force: bool, recursive: bool) -> None: ...

    def cancel_ids(self, object_ids: Sequence[int], force: bool = False) -> None:
        """Cancel the tasks producing these objects, whether or not ObjectRefs to them are
        still alive (a kernel interrupt cancels the interrupted cell's work this way)."""
        raise NotImplementedError(f"the {self.name} engine cannot cancel by object id")

    def object_info(self, object_ids: Sequence[int]) -> list[dict[str, Any]]:
        """``{"state", "size", "task", "node_id", ...}`` per object, for notebook reprs."""
        return [{"state": "UNKNOWN"} for _ in object_ids]

    def actor_info(self, actor_id: int) -> dict[str, Any]:
        """``{"state", "name", "pid", "node_id", ...}`` of an actor, for notebook reprs."""
        return {"state": "UNKNOWN"}

    @abstractmethod
    def kill_actor(self, handle: ActorHandle, no_restart: bool) -> None: ...

    def release_actor(self, handle: ActorHandle) -> None:
        """The original handle of an unnamed actor was dropped without being shared: stop
        the actor (as Ray does once its handles are out of scope). Engines that can should
        let the calls already submitted finish first; this default kills at once."""
        self.kill_actor(handle, no_restart=True)

    @abstractmethod
    def get_actor(self, name: str, namespace: str | None) -> ActorHandle: ...

    @abstractmethod
    def cluster_info(self) -> dict[str, Any]:
        """``{"nodes": [...], "total": {...}, "available": {...}}`` in Ray's shapes."""

    @abstractmethod
    def subscribe(self, callback: Callable[[dict[str, Any]], None]) -> Callable[[], None]:
        """Call ``callback`` with each event dict; returns a function that unsubscribes."""

    @abstractmethod
    def incref(self, object_id: int, borrowed: bool) -> None: ...

    @abstractmethod
    def decref(self, object_id: int) -> None: ...

    # --- generator tasks (ObjectRefGenerator) -------------------------------------------------

    def stream_next(self, completed: ObjectRef, index: int, timeout: float | None) -> Any:
        """The ref of yield ``index`` of the generator task whose completion ref is
        ``completed`` once it exists; None when the task ended with fewer yields (after one
        ref holding its error, if it failed before yielding its own); TimeoutError after
        ``timeout`` seconds."""
        raise NotImplementedError(f"the {self.name} engine does not run generator tasks")

    def stream_ready(self, completed: ObjectRef, index: int) -> bool:
        """Whether ``stream_next(completed, index, ...)`` would return at once."""
        raise NotImplementedError(f"the {self.name} engine does not run generator tasks")

    def stream_finished(self, completed: ObjectRef, index: int) -> bool:
        """Whether the task has ended and ``index`` is past its last yield."""
        raise NotImplementedError(f"the {self.name} engine does not run generator tasks")

    def stream_drop(self, completed: ObjectRef, index: int) -> None:
        """The generator is gone: release the yields it never handed out."""
        return None

    # --- placement groups (nbray.util.placement_group) -------------------------------------

    def create_placement_group(
        self, bundles: list[dict[str, float]], strategy: str, name: str, lifetime: str | None
    ) -> PlacementGroup:
        """Reserve ``bundles``; raises when they can never be placed."""
        raise NotImplementedError(f"the {self.name} engine has no placement groups")

    def remove_placement_group(self, group: PlacementGroup) -> None:
        raise NotImplementedError(f"the {self.name} engine has no placement groups")

    def get_placement_group(self, name: str) -> PlacementGroup:
        raise NotImplementedError(f"the {self.name} engine has no placement groups")

    def placement_group_table(self, group: PlacementGroup | None) -> dict[str, Any]:
        raise NotImplementedError(f"the {self.name} engine has no placement groups")

    def placement_group_ready(self, group: PlacementGroup) -> ObjectRef:
        raise NotImplementedError(f"the {self.name} engine has no placement groups")

    def current_placement_group(self) -> PlacementGroup | None:
        """The group the running task or actor captures its children into (None here)."""
        return None

    @abstractmethod
    def shutdown(self) -> None: ...
