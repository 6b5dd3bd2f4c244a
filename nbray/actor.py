"""Actors, public (Ray's ``ray.actor``): the classes of actor classes, handles and methods,
``exit_actor()`` and ``method``.

    @nbray.remote class ──▶ ActorClass ──.remote()──▶ ActorHandle ──.m──▶ ActorMethod

Example::

    import nbray
    from nbray.actor import ActorHandle, exit_actor

    @nbray.remote
    class Worker:
        def stop(self):
            exit_actor()          # the caller's get raises ActorDiedError

    w = Worker.remote()
    assert isinstance(w, ActorHandle)
    nbray.get(w.__ray_ready__.remote())   # True once the actor has started
"""

from __future__ import annotations

from ._model.actor import ActorClass, ActorHandle, ActorMethod, exit_actor, method

__all__ = ["ActorClass", "ActorHandle", "ActorMethod", "exit_actor", "method"]
