"""RayEngine: the Engine interface over Ray's core API.

    RemoteFunction.remote() ──▶ submit_task ──▶ ray.remote(wrapper).options(...).remote()
    ActorClass.remote()     ──▶ create_actor ──▶ ray.remote(subclass).options(...).remote()
    nbray.get/put/wait/...  ──▶ ray.get/put/wait/... ──errors──▶ errors.to_nbray_error
                                    │
                    every submission ──▶ events.EventStream (task events, node metrics)

nbray's ObjectRef and ActorHandle wrap Ray's (``RayRef``, ``RayActorHandle``): pickled into
arguments or results they travel as Ray's own, so Ray counts references across processes.
Inside Ray's workers the wrapped functions and actors first make a worker-side RayEngine
the process's engine, so tasks can call ``nbray.get`` and submit tasks themselves.
"""

from __future__ import annotations

import hashlib
import inspect
import itertools
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nbray._base.errors import ActorNotFoundError, TaskError
from nbray._base.options import ActorOptions, TaskOptions
from nbray._model import session
from nbray._model.actor import ActorHandle, actor_methods, check_concurrency_groups
from nbray._model.engine import Engine
from nbray._model.generator import DYNAMIC, STREAMING, ObjectRefGenerator
from nbray._model.object_ref import ObjectRef
from nbray._model.placement_group import PlacementGroup

from .errors import to_nbray_error
from .groups import RayPlacementGroups, ray_strategy

if TYPE_CHECKING:
    from .events import EventStream

__all__ = ["RayActorHandle", "RayEngine", "RayRef", "worker_engine"]


def ray_id(binary: bytes) -> int:
    """A 64-bit id for one of Ray's (28-byte object ids, 16-byte actor ids), as nbray's
    ids are (the magics keep them in unsigned 64-bit arrays)."""
    return int.from_bytes(hashlib.blake2b(binary, digest_size=8).digest(), "big")


class RayRef(ObjectRef):
    """An nbray ObjectRef backed by a ``ray.ObjectRef`` (which keeps the object alive)."""

    __slots__ = ("ray_ref",)

    def __init__(self, ray_ref: Any, engine: Engine) -> None:
        self.ray_ref = ray_ref
        super().__init__(ray_id(ray_ref.binary()), engine)

    def hex(self) -> str:
        return str(self.ray_ref.hex())

    def binary(self) -> bytes:
        return bytes(self.ray_ref.binary())

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_ref, (self.ray_ref,))


class RayGenerator(ObjectRefGenerator):
    """An nbray ObjectRefGenerator backed by Ray's ``ObjectRefGenerator``."""

    def __init__(self, ray_gen: Any, engine: Engine) -> None:
        self._ray_gen = ray_gen
        super().__init__(RayRef(ray_gen.completed(), engine), engine)

    def _next(self, timeout: float | None) -> ObjectRef | None:
        if self._done:
            return None
        try:
            if timeout is None:
                ray_ref = next(self._ray_gen)
            else:
                ray_ref = self._ray_gen._next_sync(timeout_s=timeout)
                if ray_ref.is_nil():
                    from nbray._base.errors import GetTimeoutError

                    raise GetTimeoutError(
                        f"the generator yielded no value within {timeout} s; it keeps running"
                    )
        except StopIteration:
            self._done = True
            return None
        self._index += 1
        return RayRef(ray_ref, self._engine)

    def is_finished(self) -> bool:
        return self._done or bool(self._ray_gen.is_finished())

    def next_ready(self) -> bool:
        if self._done:
            return True
        import ray

        ready, _ = ray.wait([self._ray_gen], timeout=0)
        return bool(ready)

    def _cancel(self, force: bool, recursive: bool) -> None:
        import ray

        ray.cancel(self._ray_gen, force=force, recursive=recursive)

    def __del__(self) -> None:
        return None  # Ray's generator releases its own objects


def _rebuild_ref(ray_ref: Any) -> RayRef:
    return RayRef(ray_ref, worker_engine())


class RayActorHandle(ActorHandle):
    """An nbray ActorHandle backed by a Ray actor handle."""

    def __init__(
        self,
        engine: Engine,
        ray_handle: Any,
        class_name: str,
        methods: tuple[tuple[str, int], ...],
        is_async: bool = False,
    ) -> None:
        actor_id = ray_id(ray_handle._actor_id.binary())
        super().__init__(engine, actor_id, class_name, methods, is_async=is_async)
        self.ray_handle = ray_handle
        #: ``ray_handle.method.options(...)`` by (method, num_returns, concurrency group)
        self.ray_callers: dict[tuple[str, int, str], Any] = {}

    @property
    def actor_id(self) -> str:
        return str(self.ray_handle._actor_id.hex())

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            _rebuild_handle,
            (self.ray_handle, self._class_name, tuple(self._methods.items()), self._is_async),
        )


def _rebuild_handle(
    ray_handle: Any, class_name: str, methods: tuple[tuple[str, int], ...], is_async: bool
) -> RayActorHandle:
    return RayActorHandle(worker_engine(), ray_handle, class_name, methods, is_async)


_worker_lock = threading.Lock()


def worker_engine() -> Engine:
    """This process's engine; in a Ray worker, a RayEngine made on first use."""
    engine = session.get_engine()
    if engine is not None:
        return engine
    with _worker_lock:
        engine = session.get_engine()
        if engine is None:
            session.in_worker = True
            engine = RayEngine(owns_ray=False)
            session.set_engine(engine)
        return engine


def _was_reconstructed(rc: Any) -> bool:
    """Ray's ``was_current_actor_reconstructed`` (it asks the state API, which needs Ray's
    dashboard: without one, an actor counts as never restarted)."""
    try:
        return bool(rc.was_current_actor_reconstructed)
    except Exception:  # no dashboard / state API here
        return False


def _wrap_ray_handle(engine: Engine, ray_handle: Any) -> RayActorHandle:
    """An nbray handle for a Ray actor handle (``current_actor``)."""
    descriptor = ray_handle._ray_actor_creation_function_descriptor
    num_returns = getattr(ray_handle, "_ray_method_num_returns", {}) or {}
    methods = tuple(
        (name, int(num_returns.get(name) or 1)) for name in ray_handle._ray_method_signatures
    )
    return RayActorHandle(engine, ray_handle, descriptor.class_name, methods)


def _task_function(func: Any, name: str) -> Callable[..., Any]:
    """``func`` wrapped so that the worker has an nbray engine before it runs."""

    def task(*args: Any, **kwargs: Any) -> Any:
        worker_engine()
        try:
            return func(*args, **kwargs)
        except Exception as exc:  # raised as nbray's error, naming the task, as locally
            raise _task_error(exc, name) from None

    def generator_task(*args: Any, **kwargs: Any) -> Any:  # Ray streams what it yields
        worker_engine()
        try:
            # not ``yield from``: Ray's executor calls send() on this generator, which
            # ``yield from`` would pass on to the user's (a range iterator has no send)
            for value in func(*args, **kwargs):  # noqa: UP028
                yield value
        except Exception as exc:
            raise _task_error(exc, name) from None

    if inspect.isgeneratorfunction(func):
        task = generator_task
    task.__name__ = task.__qualname__ = name.rsplit(".", 1)[-1] or "task"
    task.__module__ = getattr(func, "__module__", None) or "__main__"
    task.__doc__ = getattr(func, "__doc__", None)
    return task


def _task_error(exc: Exception, name: str) -> Exception:
    from nbray._base.errors import NbrayError, RemoteError, TaskError
    from nbray._model.tracebacks import capture_frames

    if isinstance(exc, NbrayError) and not isinstance(exc, TaskError):
        return exc  # passed on as it is (a nested task's TaskError is rebuilt below: it
        # keeps its innermost class, and its traceback goes under this task's)
    import ray

    task_id = ray.get_runtime_context().get_task_id() or ""
    return RemoteError.from_exception(exc, name, task_id, capture_frames(exc)).to_exception()


def _actor_class(cls: type) -> type:
    """A subclass of ``cls`` whose constructor first gives the worker an nbray engine."""
    original_init = cls.__dict__.get("__init__") or getattr(cls, "__init__")  # noqa: B009

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        worker_engine()
        original_init(self, *args, **kwargs)

    return type(
        cls.__name__,
        (cls,),
        {"__init__": __init__, "__module__": cls.__module__, "__qualname__": cls.__qualname__},
    )


def _task_options(options: TaskOptions, name: str) -> dict[str, Any]:
    opts: dict[str, Any] = {
        "num_cpus": options.num_cpus,
        "num_gpus": options.num_gpus,
        "num_returns": options.num_returns,
        "max_retries": options.max_retries,
        "retry_exceptions": (
            options.retry_exceptions
            if isinstance(options.retry_exceptions, bool)
            else list(options.retry_exceptions)
        ),
        "name": name,
    }
    if options.resources:
        opts["resources"] = dict(options.resources)
    if options._generator_backpressure_num_objects > 0:
        opts["_generator_backpressure_num_objects"] = options._generator_backpressure_num_objects
    if options.runtime_env:
        opts["runtime_env"] = options.runtime_env
    if options.scheduling_strategy is not None:
        opts["scheduling_strategy"] = ray_strategy(options.scheduling_strategy)
    opts.update(options.ray_options)
    return opts


def _actor_options(options: ActorOptions) -> dict[str, Any]:
    opts: dict[str, Any] = {
        "num_cpus": options.num_cpus,
        "num_gpus": options.num_gpus,
        "max_restarts": options.max_restarts,
        "max_task_retries": options.max_task_retries,
    }
    if options.resources:
        opts["resources"] = dict(options.resources)
    if options.max_concurrency is not None:
        opts["max_concurrency"] = options.max_concurrency
    if options.name:
        opts["name"] = options.name
        opts["get_if_exists"] = options.get_if_exists
    if options.namespace:
        opts["namespace"] = options.namespace
    if options.lifetime:
        opts["lifetime"] = options.lifetime
    if options.runtime_env:
        opts["runtime_env"] = options.runtime_env
    if options.scheduling_strategy is not None:
        opts["scheduling_strategy"] = ray_strategy(options.scheduling_strategy)
    opts.update(options.ray_options)
    return opts


CANCELLABLE_PRUNE = 1000
#: ``rf.options(...)`` kept per remote function, by options object (then started afresh)
SUBMITTERS_PER_FUNCTION = 64


class _RemoteFunctionEntry:
    """A function's Ray remote function, and its ``.options(...)`` wrappers by options."""

    __slots__ = ("func", "remote_function", "submitters")

    def __init__(self, func: Any, remote_function: Any) -> None:
        self.func = func
        self.remote_function = remote_function
        self.submitters: dict[int, tuple[TaskOptions, Any]] = {}


class RayEngine(RayPlacementGroups, Engine):
    """Runs the nbray API on the Ray cluster this process is connected to (``ray.init``)."""

    name = "ray"

    def __init__(self, owns_ray: bool, address: str = "") -> None:
        import ray

        self._ray = ray
        self.owns_ray = owns_ray
        self.address = address
        self._functions: dict[tuple[Any, ...], _RemoteFunctionEntry] = {}
        self._actor_classes: dict[tuple[type, Any], Any] = {}
        self._lock = threading.Lock()
        self._events: EventStream | None = None
        # while the magics listen: submissions they may cancel by id (Ray cancels only
        # through an ObjectRef it still counts), pruned of finished ones as it grows
        self._task_ids = itertools.count(1)
        self._cancellable: dict[int, Any] = {}
        self._prune_at = CANCELLABLE_PRUNE
        # the session directory of a private local Ray started for this engine
        #: a private local Ray's directory, removed by ``on_shutdown`` (set by ``connect``)
        self.private_dir: Path | None = None
        self.token_file = ""  # the Ray token file this process connected with, if any
        self.on_shutdown: Callable[[], None] | None = None

    # --- tasks ---------------------------------------------------------------------------

    def _function_entry(
        self, func: Any, fingerprint: Any, name: str, max_calls: int
    ) -> _RemoteFunctionEntry:
        key = (fingerprint, name, max_calls)
        cached = self._functions.get(key)
        if cached is not None and cached.func is func:
            return cached
        wrapped = _task_function(func, name)
        # Ray takes max_calls only in @ray.remote, not in .options()
        if max_calls:
            rf = self._ray.remote(max_calls=max_calls)(wrapped)
        else:
            rf = self._ray.remote(wrapped)
        entry = _RemoteFunctionEntry(func, rf)
        with self._lock:
            self._functions[key] = entry
        return entry

    def _submitter(self, entry: _RemoteFunctionEntry, options: TaskOptions, name: str) -> Any:
        """``rf.options(...)`` of this function with these options, made once per options
        object (Ray's ``options`` validates them and builds a wrapper at every call)."""
        cached = entry.submitters.get(id(options))
        if cached is not None and cached[0] is options:
            return cached[1]
        submitter = entry.remote_function.options(**_task_options(options, name))
        with self._lock:
            if len(entry.submitters) >= SUBMITTERS_PER_FUNCTION:
                entry.submitters.clear()  # options made per call (f.options(...).remote())
            # the options object is kept with its submitter, so its id is not reused
            entry.submitters[id(options)] = (options, submitter)
        return submitter

    def submit_task(
        self,
        func: Any,
        fingerprint: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        options: TaskOptions,
        name: str,
    ) -> list[ObjectRef]:
        entry = self._function_entry(func, fingerprint, name, options.max_calls)
        ray_args, ray_kwargs = _to_ray_args(args, kwargs)
        try:
            out = self._submitter(entry, options, name).remote(*ray_args, **ray_kwargs)
        except Exception as exc:
            raise _submit_error(exc, f"remote function {name}") from exc
        if options.num_returns == "streaming":
            gen = RayGenerator(out, self)
            if self._events is not None:
                self._events.submitted(
                    name, [out.completed()], options.resource_request(), args, kwargs
                )
            self._notify([gen.completed()])
            return [gen]  # type: ignore[list-item]
        ray_refs = _as_list(out, options.num_returns)  # type: ignore[arg-type]
        refs: list[ObjectRef] = [RayRef(r, self) for r in ray_refs]
        if self._events is not None:
            self._events.submitted(name, ray_refs, options.resource_request(), args, kwargs)
        self._notify(refs)
        return refs

    def placement_group_ready(self, group: PlacementGroup) -> ObjectRef:
        """Ray's own ``pg.ready()`` (its value is Ray's PlacementGroup)."""
        return RayRef(group._ray.ready(), self)

    # --- actors --------------------------------------------------------------------------

    def create_actor(
        self, cls: type, args: tuple[Any, ...], kwargs: dict[str, Any], options: ActorOptions
    ) -> ActorHandle:
        check_concurrency_groups(cls, options.concurrency_groups)
        groups = tuple(sorted(options.concurrency_groups.items()))
        ray_cls = self._actor_classes.get((cls, groups))
        if ray_cls is None:
            # Ray takes concurrency_groups only in @ray.remote, not in .options()
            remote: Any = self._ray.remote
            ray_cls = (
                remote(concurrency_groups=dict(groups))(_actor_class(cls))
                if groups
                else remote(_actor_class(cls))
            )
            self._actor_classes[(cls, groups)] = ray_cls
        ray_args, ray_kwargs = _to_ray_args(args, kwargs)
        try:
            ray_handle = ray_cls.options(**_actor_options(options)).remote(*ray_args, **ray_kwargs)
        except ValueError as exc:
            raise to_nbray_error(exc) from None
        except Exception as exc:
            raise _submit_error(exc, f"actor class {cls.__name__}") from exc
        handle = RayActorHandle(self, ray_handle, cls.__name__, actor_methods(cls))
        if self._events is not None:
            self._events.actor_created(handle, cls.__name__, options.name)
        return handle

    def call_actor(
        self,
        handle: ActorHandle,
        method: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        num_returns: int,
        concurrency_group: str = "",
    ) -> list[ObjectRef]:
        caller = _actor_caller(handle, method, num_returns, concurrency_group)
        ray_args, ray_kwargs = _to_ray_args(args, kwargs)
        try:
            out = caller.remote(*ray_args, **ray_kwargs)
        except Exception as exc:
            raise _submit_error(exc, f"actor method {handle._class_name}.{method}") from exc
        if num_returns == STREAMING:
            gen = RayGenerator(out, self)
            self._notify([gen.completed()])
            return [gen]  # type: ignore[list-item]
        ray_refs = _as_list(out, max(num_returns, 1))
        if self._events is not None:
            what = f"{handle._class_name}.{method}"
            self._events.submitted(what, ray_refs, {}, args, kwargs, actor_id=handle.actor_id)
        refs: list[ObjectRef] = [RayRef(r, self) for r in ray_refs]
        self._notify(refs)
        return refs

    def _notify(self, refs: list[ObjectRef]) -> None:
        """Tell the submit listener (the magics) about a submission, and keep it
        cancellable by id."""
        listener = self.submit_listener
        if listener is None or not refs:
            return
        first = refs[0]
        assert isinstance(first, RayRef)
        with self._lock:
            self._cancellable[first.id] = first.ray_ref
            if len(self._cancellable) >= self._prune_at:
                self._prune()
        listener(next(self._task_ids), first.id)

    def _prune(self) -> None:
        ids = list(self._cancellable)
        ready, _ = self._ray.wait(
            [self._cancellable[i] for i in ids], num_returns=len(ids), timeout=0
        )
        done = {ray_id(r.binary()) for r in ready}
        for i in done:
            self._cancellable.pop(i, None)
        self._prune_at = max(CANCELLABLE_PRUNE, 2 * len(self._cancellable))

    def cancel_ids(self, object_ids: Sequence[int], force: bool = False) -> None:
        with self._lock:
            refs = [self._cancellable.pop(i, None) for i in object_ids]
        for ref in refs:
            if ref is not None:
                self._ray.cancel(ref, force=force, recursive=True)

    def exit_actor(self) -> None:
        if not session.in_worker or self._ray.get_runtime_context().get_actor_id() is None:
            super().exit_actor()  # raises: not in an actor
        self._ray.actor.exit_actor()

    def runtime_context(self) -> dict[str, Any]:
        rc = self._ray.get_runtime_context()
        in_worker = session.in_worker
        actor_id = rc.get_actor_id() if in_worker else None
        out: dict[str, Any] = {
            "job_id": rc.get_job_id(),
            "node_id": rc.get_node_id(),
            "worker_id": rc.get_worker_id(),
            "namespace": rc.namespace,
            "task_id": rc.get_task_id() if in_worker else None,
            "task_name": rc.get_task_name() if in_worker else None,
            "actor_id": actor_id,
            "actor_name": rc.get_actor_name() if actor_id else None,
            "in_worker": in_worker,
            "resources": rc.get_assigned_resources() if in_worker else None,
            "gpu_ids": rc.get_accelerator_ids().get("GPU", []) if in_worker else [],
            "canceled": rc.is_canceled() if in_worker and rc.get_task_id() else False,
        }
        if actor_id:
            out["restarted"] = _was_reconstructed(rc)
            out["actor_handle"] = _wrap_ray_handle(self, rc.current_actor)
        return out

    def kill_actor(self, handle: ActorHandle, no_restart: bool) -> None:
        ray_handle = _ray_handle(handle)
        self._ray.kill(ray_handle, no_restart=no_restart)
        if no_restart:
            _wait_dead(self._ray, ray_handle)

    def release_actor(self, handle: ActorHandle) -> None:
        """Nothing to do: Ray stops an actor once every handle to it is gone."""

    def get_actor(self, name: str, namespace: str | None) -> ActorHandle:
        try:
            ray_handle = self._ray.get_actor(name, namespace=namespace)
        except ValueError as exc:
            raise ActorNotFoundError(
                f"no live actor is named {name!r} in namespace "
                f"{namespace or self._namespace()!r} (Ray: {exc})"
            ) from None
        if hasattr(ray_handle, "_init_class_info"):  # Ray Client's handle: ask the cluster
            describe = self._ray.remote(num_cpus=0)(_describe_handle)
            class_name, methods = self._ray.get(describe.remote(ray_handle))
        else:
            class_name, methods = _describe_handle(ray_handle)
        return RayActorHandle(self, ray_handle, class_name, methods)

    def _namespace(self) -> str:
        return str(self._ray.get_runtime_context().namespace)

    # --- objects -------------------------------------------------------------------------

    def put(self, value: Any) -> ObjectRef:
        try:
            return RayRef(self._ray.put(value), self)
        except Exception as exc:
            raise _submit_error(exc, "the value given to put") from exc

    def get(self, refs: list[ObjectRef], timeout: float | None) -> list[Any]:
        try:
            return list(self._ray.get([_ray_ref(r) for r in refs], timeout=timeout))
        except Exception as exc:
            err = to_nbray_error(exc)
            if err is exc:
                raise
            # Ray's exception is not shown; a task's remote traceback (its __cause__) is,
            # so that a task that fails on it shows both (nested tasks)
            raise err from err.__cause__ if isinstance(err, TaskError) else None

    def wait(
        self, refs: list[ObjectRef], num_returns: int, timeout: float | None
    ) -> list[ObjectRef]:
        by_id = {r.id: r for r in refs}
        ready, _ = self._ray.wait(
            [_ray_ref(r) for r in refs], num_returns=num_returns, timeout=timeout
        )
        return [by_id[ray_id(r.binary())] for r in ready]

    def cancel(self, ref: ObjectRef, force: bool, recursive: bool) -> None:
        self._ray.cancel(_ray_ref(ref), force=force, recursive=recursive)

    def incref(self, object_id: int, borrowed: bool) -> None:
        """Nothing to do: the wrapped ``ray.ObjectRef`` holds Ray's reference."""

    def decref(self, object_id: int) -> None:
        """Nothing to do: Ray releases the object with the wrapped ``ray.ObjectRef``."""

    # --- cluster -------------------------------------------------------------------------

    def cluster_info(self) -> dict[str, Any]:
        ray = self._ray
        return {
            "nodes": ray.nodes(),
            "total": {k: float(v) for k, v in ray.cluster_resources().items()},
            "available": {k: float(v) for k, v in ray.available_resources().items()},
        }

    def subscribe(self, callback: Callable[[dict[str, Any]], None]) -> Callable[[], None]:
        with self._lock:
            if self._events is None:
                from .events import EventStream

                self._events = EventStream(self._ray)
            events = self._events
        return events.subscribe(callback)

    def shutdown(self) -> None:
        if self._events is not None:
            self._events.close()
            self._events = None
        self._functions.clear()
        self._actor_classes.clear()
        if self.owns_ray:
            self._ray.shutdown()
        if self.on_shutdown is not None:
            self.on_shutdown()
            self.on_shutdown = None


def _wait_dead(ray: Any, ray_handle: Any, timeout: float = 10.0) -> None:
    """Return once the killed actor is dead, as the local engine's kill does: Ray kills
    asynchronously, and a call sent right after ``ray.kill`` could still run."""
    import time

    from ray.exceptions import RayActorError

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            ray.get(
                ray_handle.__ray_ready__.remote(), timeout=max(0.1, deadline - time.monotonic())
            )
        except RayActorError:
            return
        except Exception:  # (a get timeout: the actor is busy or being killed)
            return
        time.sleep(0.05)


def _ray_ref(ref: ObjectRef) -> Any:
    if not isinstance(ref, RayRef):
        raise TypeError(
            f"{ref!r} belongs to another engine (it was made before nbray.init(engine='ray')); "
            "make it again with the Ray engine"
        )
    return ref.ray_ref


def _actor_caller(
    handle: ActorHandle, method: str, num_returns: int, concurrency_group: str
) -> Any:
    """``ray_handle.method.options(...)`` for these options, made once per handle (Ray
    builds a bound method, and checks the options, at every call)."""
    if not isinstance(handle, RayActorHandle):
        raise TypeError(f"{handle!r} belongs to another engine, not the Ray engine")
    key = (method, num_returns, concurrency_group)
    caller = handle.ray_callers.get(key)
    if caller is not None:
        return caller
    ray_method = getattr(handle.ray_handle, method)
    if getattr(ray_method, "_decorator", None) is not None:
        raise NotImplementedError(
            f"{handle._class_name}.{method} has a __ray_invocation_decorator__, which the Ray "
            "engine does not support (Ray's handle would apply it a second time): use the local "
            "engine, or Ray directly"
        )
    ray_returns: int | str = {STREAMING: "streaming", DYNAMIC: "dynamic"}.get(
        num_returns, num_returns
    )
    method_options: dict[str, Any] = {"num_returns": ray_returns}
    if concurrency_group:
        method_options["concurrency_group"] = concurrency_group
    try:
        caller = ray_method.options(**method_options)
    except Exception as exc:
        raise _submit_error(exc, f"actor method {handle._class_name}.{method}") from exc
    handle.ray_callers[key] = caller
    return caller


def _ray_handle(handle: ActorHandle) -> Any:
    if not isinstance(handle, RayActorHandle):
        raise TypeError(f"{handle!r} belongs to another engine, not the Ray engine")
    return handle.ray_handle


def _to_ray_args(
    args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Top-level ObjectRefs become Ray's, so Ray resolves them to values (as in Ray)."""
    ray_args = tuple(a.ray_ref if isinstance(a, RayRef) else a for a in args)
    ray_kwargs = {k: v.ray_ref if isinstance(v, RayRef) else v for k, v in kwargs.items()}
    return ray_args, ray_kwargs


def _as_list(out: Any, num_returns: int) -> list[Any]:
    if num_returns == 0 or out is None:
        return []
    if num_returns == 1:
        return [out]
    return list(out)


def _submit_error(exc: Exception, what: str) -> Exception:
    """A pickling failure at submission as nbray's SerializationError (a TypeError)."""
    from nbray._base.errors import SerializationError

    text = str(exc)
    if "pickle" in text.lower() or "serializ" in text.lower():
        return SerializationError(f"could not serialize {what}: {text.splitlines()[0]}")
    return exc


def _describe_handle(ray_handle: Any) -> tuple[str, tuple[tuple[str, int], ...]]:
    """(class name, (method, num_returns) pairs) of a handle found by name."""
    descriptor = getattr(ray_handle, "_ray_actor_creation_function_descriptor", None)
    class_name = str(getattr(descriptor, "class_name", "") or "Actor").rsplit(".", 1)[-1]
    returns = getattr(ray_handle, "_ray_method_num_returns", {}) or {}
    methods = tuple(
        (m, 1 if n is None else int(n) if isinstance(n, int) else 1)
        for m, n in returns.items()
        if not m.startswith("__") or m == "__call__"
    )
    return class_name, methods
