"""``nbray.get_runtime_context()``: who and where the calling code runs (Ray's
``ray.runtime_context``).

    get_runtime_context() ──▶ RuntimeContext ──each read──▶ Engine.runtime_context()
        local engine: the driver's client, or (in a worker) the task or actor running now
        Ray engine: ``ray.get_runtime_context()``

Ids are hex strings as in Ray; ``get_task_id``/``get_actor_id`` are ``None`` where no task
or actor runs (the driver), and each read asks the engine again, so a context kept across
tasks reports the current one.
"""

from __future__ import annotations

from typing import Any

from .actor import ActorHandle

__all__ = ["RuntimeContext", "get_runtime_context"]


class RuntimeContext:
    """What ``get_runtime_context()`` returns: the ids and resources of the calling code.

    Example::

        @nbray.remote(num_cpus=1)
        def where():
            ctx = nbray.get_runtime_context()
            return ctx.get_task_id(), ctx.get_node_id(), ctx.get_assigned_resources()

        print(nbray.get(where.remote()))   # ('0000000200000001', '...', {'CPU': 1.0})
    """

    def _info(self) -> dict[str, Any]:
        from .session import current_engine

        return current_engine().runtime_context()

    def get_job_id(self) -> str:
        """The id of the job (the driver process) the calling code works for, in hex."""
        return str(self._info()["job_id"])

    def get_node_id(self) -> str:
        """The id of the node the calling code runs on."""
        return str(self._info()["node_id"])

    def get_worker_id(self) -> str:
        """The id of the calling process's connection to the cluster (its worker), in hex."""
        return str(self._info()["worker_id"])

    def get_task_id(self) -> str | None:
        """The id of the task or actor call running now, in hex; ``None`` in the driver."""
        value = self._info().get("task_id")
        return None if value is None else str(value)

    def get_task_name(self) -> str | None:
        """The name of the task or actor call running now; ``None`` in the driver."""
        value = self._info().get("task_name")
        return None if value is None else str(value)

    def get_actor_id(self) -> str | None:
        """The id of the actor this code runs in, in hex; ``None`` outside an actor."""
        value = self._info().get("actor_id")
        return None if value is None else str(value)

    def get_actor_name(self) -> str | None:
        """The name of the actor this code runs in (``""`` if it has none); ``None``
        outside an actor."""
        info = self._info()
        if info.get("actor_id") is None:
            return None
        return str(info.get("actor_name") or "")

    @property
    def namespace(self) -> str:
        """The namespace named actors are created in and looked up in."""
        return str(self._info()["namespace"])

    @property
    def was_current_actor_reconstructed(self) -> bool:
        """Whether the actor this code runs in was restarted after a failure."""
        info = self._info()
        assert info.get("actor_id") is not None, (
            "was_current_actor_reconstructed is only available inside an actor"
        )
        restarted = info.get("restarted")
        return bool(restarted() if callable(restarted) else restarted)

    def get_assigned_resources(self) -> dict[str, float]:
        """The resources reserved for the calling task or actor, e.g. ``{"CPU": 1.0}``
        (an actor without ``num_cpus`` holds none: ``{}``). Only in a task or actor."""
        info = self._info()
        assert info.get("in_worker"), (
            "get_assigned_resources() is only available in a task or actor, not in the driver"
        )
        return {k: float(v) for k, v in (info.get("resources") or {}).items() if v}

    def is_canceled(self) -> bool:
        """Whether ``nbray.cancel`` was called on the task running now (it raised
        ``KeyboardInterrupt`` in it, which the task may catch to clean up or return a value).
        Only in a task or actor call."""
        info = self._info()
        if not info.get("in_worker"):
            raise RuntimeError("is_canceled() is only available in a task or actor call")
        return bool(info.get("canceled"))

    def get_accelerator_ids(self) -> dict[str, list[str]]:
        """The accelerators the calling task or actor may use: ``{"GPU": ["0"]}`` (an
        empty list where none were assigned)."""
        return {"GPU": [str(g) for g in self._info().get("gpu_ids") or []]}

    @property
    def current_actor(self) -> ActorHandle:
        """A handle to the actor this code runs in (to pass to other tasks, say)."""
        from .session import current_engine

        info = self._info()
        if info.get("actor_id") is None:
            raise RuntimeError("current_actor is only available inside an actor")
        handle = info.get("actor_handle")
        if handle is not None:
            return handle
        return ActorHandle(
            current_engine(),
            int(info["actor_id_int"]),
            str(info.get("actor_class") or ""),
            tuple(info.get("actor_methods") or ()),
            is_async=bool(info.get("actor_is_async")),
        )

    def get(self) -> dict[str, Any]:
        """Ray's older dict form: ``job_id``, ``node_id``, ``namespace`` (and ``task_id``,
        ``actor_id`` in a worker)."""
        info = self._info()
        out = {"job_id": info["job_id"], "node_id": info["node_id"], "namespace": info["namespace"]}
        for key in ("task_id", "actor_id"):
            if info.get(key) is not None:
                out[key] = info[key]
        return out

    def __repr__(self) -> str:
        return f"RuntimeContext({self.get()!r})"


def get_runtime_context() -> RuntimeContext:
    """The context of the calling code: job, task, actor, node and worker ids, and the
    resources assigned to it (Ray's ``ray.get_runtime_context``).

    Example::

        ctx = nbray.get_runtime_context()
        print(ctx.get_job_id(), ctx.get_node_id())
    """
    return RuntimeContext()
