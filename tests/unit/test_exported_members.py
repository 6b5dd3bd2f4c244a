"""The public API is exactly what __all__ says (an accidental export or removal shows)."""

from __future__ import annotations

import nbray

EXPECTED = {
    "ActorClass",
    "ActorHandle",
    "ClusterContext",
    "ObjectID",
    "ObjectRef",
    "RemoteFunction",
    "__version__",
    "actor",
    "available_resources",
    "cancel",
    "cluster_resources",
    "errors",
    "exceptions",
    "experimental",
    "get",
    "get_actor",
    "get_gpu_ids",
    "get_runtime_context",
    "init",
    "is_initialized",
    "kill",
    "method",
    "monitor",
    "nodes",
    "put",
    "remote",
    "runtime_context",
    "runtime_env",
    "shutdown",
    "task_graph",
    "timeline",
    "util",
    "wait",
    "widgets",
}


def test_all_lists_the_public_api() -> None:
    assert set(nbray.__all__) == EXPECTED
    for name in nbray.__all__:
        assert hasattr(nbray, name), name


def test_public_names_not_in_all_are_modules_only() -> None:
    import types

    extra = {
        n
        for n in dir(nbray)
        if not n.startswith("_")
        and n not in EXPECTED
        and n != "annotations"
        and not isinstance(getattr(nbray, n), types.ModuleType)
    }
    assert extra == set()


def test_error_tree() -> None:
    e = nbray.errors
    for name in e.__all__:
        cls = getattr(e, name)
        if name in ("RemoteError", "RemoteTraceback"):
            continue
        assert issubclass(cls, e.NbrayError), name
        assert cls.__doc__ and "Raised" in cls.__doc__, name
    assert issubclass(e.GetTimeoutError, TimeoutError)
    assert issubclass(e.SerializationError, TypeError)
    assert issubclass(e.ActorNotFoundError, ValueError)
    assert set(nbray.errors.__all__) == set(nbray.exceptions.__all__)
    assert nbray.errors.TaskError is nbray.exceptions.TaskError


def test_lazy_exports_match_all() -> None:
    from nbray import _EXPORTS

    assert set(_EXPORTS) | {"__version__"} == set(nbray.__all__)
