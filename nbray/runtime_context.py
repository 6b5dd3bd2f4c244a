"""The runtime context, public (Ray's ``ray.runtime_context``): ``get_runtime_context()``
returns a :class:`RuntimeContext` with the job, task, actor, node and worker ids of the
calling code and the resources assigned to it.

Example::

    from nbray.runtime_context import get_runtime_context

    @nbray.remote
    def task_id():
        return get_runtime_context().get_task_id()
"""

from __future__ import annotations

from ._model.runtime_context import RuntimeContext, get_runtime_context

__all__ = ["RuntimeContext", "get_runtime_context"]
