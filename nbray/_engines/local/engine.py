"""The local engine: the Engine interface over a Client connected to an nbray head.

    RemoteFunction / ActorClass / api ──▶ LocalEngine ──TaskSpec, Put, Fetch...──▶ Client ──▶ head

It turns Python calls into wire records: functions pickled once per fingerprint, arguments
serialised with their top-level ObjectRefs as dependencies, ids minted locally so
``.remote()`` never waits for the head.
"""

from __future__ import annotations

import hashlib
import sys
import threading
import weakref
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from nbray._base.errors import NbrayError, SerializationError
from nbray._base.options import ActorOptions, TaskOptions
from nbray._base.runtime_env import canonical
from nbray._base.runtime_env import merge as merge_runtime_env
from nbray._model.actor import (
    ActorHandle,
    actor_methods,
    check_concurrency_groups,
    is_async_class,
)
from nbray._model.engine import Engine
from nbray._model.generator import STREAMING, ObjectRefGenerator
from nbray._model.object_ref import ObjectRef
from nbray._wire import protocol as P
from nbray._wire.serialization import (
    SIMPLE_TYPES,
    Serialized,
    check_function_size,
    dumps_function,
    pack,
    pack_plain,
    packed_size,
    serialize,
)

from .client import INLINE_LIMIT
from .groups import PlacementGroups
from .leases import eligible

if TYPE_CHECKING:
    import subprocess
    from pathlib import Path

    from .client import Client


class OwnedCluster(Protocol):
    """The head this process started, stopped with the engine (what the composition
    layer's ``cluster.local.LocalCluster`` is; the engine never imports it)."""

    process: subprocess.Popen[bytes]
    session_dir: Path
    address: str

    def stop(self, timeout: float = ...) -> None: ...


class LocalEngine(PlacementGroups, Engine):
    name = "local"

    def __init__(self, client: Client, cluster: OwnedCluster | None = None) -> None:
        self.client = client
        self.cluster = cluster
        self._exports: dict[tuple[Any, ...], tuple[weakref.ref[Any] | None, bytes, bytes]] = {}
        self._subscribed = False
        # in an actor's worker that runs one call at a time: its id, and the results of
        # calls it made to itself (waiting on those would deadlock)
        self.serial_actor_id = 0
        self._self_calls: set[int] = set()
        self._sub_lock = threading.Lock()
        client.output_handler = print_task_output
        client.handlers[P.ActorOutOfScope] = self._on_out_of_scope
        #: the job (the driver's client id) whose work runs here: a worker sets it per task
        self.job_id = client.client_id
        #: the task running here (a worker sets it): the parent of the tasks it submits
        self.parent_task = 0
        #: set in a worker: ends the actor it hosts (``exit_actor``), and tells what runs
        self.exit_hook: Callable[[], None] | None = None
        self.context_hook: Callable[[], dict[str, Any]] | None = None
        # runtime_env: init's (the job's), the one this worker runs in (nested tasks inherit
        # it), and resolved envs by their canonical form (directories packaged once)
        self.job_runtime_env: dict[str, Any] = {}
        self.inherited_env = ""
        self._resolved_envs: dict[str, str] = {}

    @property
    def address(self) -> str:
        return self.client.address

    # --- functions and arguments ---------------------------------------------------------

    def _export(self, func: Any, fp: tuple[Any, ...], what: str) -> tuple[bytes, bytes, bytes]:
        """(function id, pickled function or b"" if the head has it already, pickled
        function)."""
        cached = self._exports.get(fp)
        if cached is not None and (cached[0] is None or cached[0]() is func):
            func_id, blob = cached[1], cached[2]
        else:
            blob = dumps_function(func, what)
            check_function_size(blob, "remote function", what.rsplit(" ", 1)[-1])
            func_id = hashlib.blake2b(blob, digest_size=16).digest()
            try:
                ref: weakref.ref[Any] | None = weakref.ref(func)
            except TypeError:
                ref = None
            self._exports[fp] = (ref, func_id, blob)
        if func_id in self.client.known_funcs:
            return func_id, b"", blob
        self.client.known_funcs.add(func_id)
        return func_id, blob, blob

    def _args(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], what: str
    ) -> tuple[bytes, tuple[int, ...], tuple[int, ...], list[ObjectRef]]:
        """(packed arguments, ObjectRef arguments, refs nested in them, refs to keep alive
        until the task is sent). Large arguments go to shared memory first, as in Ray, so
        they are copied once and the task reads them without a copy."""
        if not kwargs and all(type(a) in SIMPLE_TYPES for a in args):
            return pack_plain(args), (), (), []  # the common case, without cloudpickle
        try:
            s = serialize((args, kwargs), f"the arguments of {what}")
        except SerializationError:
            raise _explain_bad_argument(args, kwargs, what) from None
        keep: list[ObjectRef] = []
        if packed_size(s) > INLINE_LIMIT:
            args = tuple(self._by_ref(a, keep) for a in args)
            kwargs = {k: self._by_ref(v, keep) for k, v in kwargs.items()}
            s = serialize((args, kwargs), f"the arguments of {what}")
        deps = tuple(a.id for a in (*args, *kwargs.values()) if isinstance(a, ObjectRef))
        return pack(s), deps, s.contained, keep

    def _by_ref(self, value: Any, keep: list[ObjectRef]) -> Any:
        """``value`` itself, or an ObjectRef to it in the store when it is large."""
        if isinstance(value, ObjectRef) or type(value) in SIMPLE_TYPES:
            return value
        s = serialize(value)
        if packed_size(s) <= INLINE_LIMIT:
            return value
        ref = self._put_serialized(s)
        keep.append(ref)
        return ref

    def resolved_env(self, own: dict[str, Any] | None) -> str:
        """The resolved runtime_env (JSON, "" for none) of a task or actor with ``own``."""
        if own is None and not self.job_runtime_env:
            return self.inherited_env  # the common case: no env anywhere
        merged = merge_runtime_env(self.job_runtime_env, own)
        key = canonical(merged)
        resolved = self._resolved_envs.get(key)
        if resolved is None:  # relative paths are taken from this process's cwd
            from .runtime_env import resolve  # (its imports are not needed without an env)

            resolved = self._resolved_envs[key] = resolve(merged)
        return resolved

    def install_job_env(self) -> None:
        """``init(runtime_env=...)`` with pip/uv and ``config.eager_install`` (default True,
        as in Ray): start building the env's virtualenv now, in a worker for it, instead of
        at the first task. Nothing waits for it; a failure shows at the first task."""
        env = self.job_runtime_env
        if ("pip" in env or "uv" in env) and env.get("config", {}).get("eager_install", True):
            from .runtime_env import warm_up

            options = TaskOptions(num_cpus=0, max_retries=0)
            self.submit_task(warm_up, (id(warm_up),), (), {}, options, "runtime_env.install")

    # --- tasks ---------------------------------------------------------------------------

    def submit_task(
        self,
        func: Any,
        fingerprint: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        options: TaskOptions,
        name: str,
    ) -> list[ObjectRef]:
        client = self.client
        # arguments first: if they cannot be pickled nothing is sent, and the function must
        # not be marked as known to the head (the next call would then ship it without code)
        runtime_env = self.resolved_env(options.runtime_env)
        placement = self.placement(options.scheduling_strategy)
        args_blob, deps, contained, _keep = self._args(args, kwargs, name)
        func_id, blob, code = self._export(func, fingerprint, f"remote function {name}")
        retry: bool | bytes = options.retry_exceptions  # type: ignore[assignment]
        if not isinstance(retry, bool):
            retry = dumps_function(tuple(retry), "retry_exceptions")
        task_id = client.new_id()
        num_returns = options.num_returns
        streaming = num_returns.__class__ is str  # "streaming" ("dynamic" is a wrapper)
        count = 1 if streaming else max(int(num_returns), 1)
        return_ids = tuple(client.new_id() for _ in range(count))
        spec = P.TaskSpec(
            task_id,
            name,
            func_id,
            args_blob,
            deps,
            contained,
            return_ids,
            options.resource_request(),
            options.max_retries,
            retry,
            job_namespace=client.namespace,
            max_calls=options.max_calls,
            job_id=self.job_id,
            runtime_env=runtime_env,
            placement=placement,
        )
        if streaming:
            bp = options._generator_backpressure_num_objects
            spec = spec._replace(stream=STREAMING, backpressure=bp)
            client.streams.open(return_ids[0], bp)
            refs: list[Any] = [ObjectRefGenerator(ObjectRef(return_ids[0], self), self)]
        else:
            refs = [ObjectRef(oid, self) for oid in return_ids]
        if self.submit_listener is not None:
            self.submit_listener(task_id, return_ids[0])
        submit = P.Submit(spec, blob, 0, self.parent_task)
        leases = client.leases
        if leases is None or not eligible(spec):
            client.post_call(submit, return_ids[0])
        elif not leases.send(spec, blob, code):  # (sent: straight to its leased worker)
            if client.post_call(submit, return_ids[0]):
                leases.want(spec.resources)  # its caller waits for each: lease for the next
        return refs if options.num_returns else []

    # --- actors --------------------------------------------------------------------------

    def create_actor(
        self, cls: type, args: tuple[Any, ...], kwargs: dict[str, Any], options: ActorOptions
    ) -> ActorHandle:
        client = self.client
        namespace = options.namespace or client.namespace
        if options.name and options.get_if_exists:
            try:
                return self.get_actor(options.name, namespace)
            except ValueError:
                pass
        runtime_env = self.resolved_env(options.runtime_env)
        placement = self.placement(options.scheduling_strategy)
        blob = dumps_function(cls, f"actor class {cls.__name__}")
        check_function_size(blob, "actor", cls.__name__)
        args_blob, deps, contained, _keep = self._args(args, kwargs, f"{cls.__name__}.__init__")
        is_async = is_async_class(cls)
        concurrency = options.max_concurrency or (1000 if is_async else 1)
        methods = actor_methods(cls)
        groups = tuple(options.concurrency_groups.items())
        check_concurrency_groups(cls, options.concurrency_groups)
        spec = P.ActorSpec(
            client.new_id(),
            cls.__name__,
            hashlib.blake2b(blob, digest_size=16).digest(),
            args_blob,
            deps,
            contained,
            options.resource_request(),
            options.max_restarts,
            options.max_task_retries,
            concurrency,
            options.name,
            namespace,
            options.lifetime == "detached",
            is_async,
            methods,
            job_namespace=client.namespace,
            concurrency_groups=groups,
            job_id=self.job_id,
            runtime_env=runtime_env,
            placement=placement,
        )
        if options.name:
            client.request("create_actor", spec, blob)
        else:
            client.post(P.CreateActor(spec, blob))
        counted = not options.name and options.lifetime != "detached"
        return ActorHandle(
            self,
            spec.actor_id,
            cls.__name__,
            methods,
            is_async=is_async,
            # its handles are counted by the head through this token (an object the head
            # made for the actor, held by this process): see _on_out_of_scope
            token=ObjectRef(spec.actor_id, self) if counted else None,
        )

    def call_actor(
        self,
        handle: ActorHandle,
        method: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        num_returns: int,
        concurrency_group: str = "",
    ) -> list[ObjectRef]:
        client = self.client
        what = f"{handle._class_name}.{method}"
        args_blob, deps, contained, _keep = self._args(args, kwargs, what)
        task_id = client.new_id()
        return_ids = tuple(client.new_id() for _ in range(max(num_returns, 1)))
        spec = P.TaskSpec(
            task_id,
            what,
            b"",
            args_blob,
            deps,
            contained,
            return_ids,
            {},
            0,
            False,
            actor_id=handle._actor_id,
            method=method,
            stream=min(num_returns, 0),  # STREAMING or DYNAMIC for a generator method
            concurrency_group=concurrency_group,
        )
        if num_returns == STREAMING:
            client.streams.open(return_ids[0], -1)
            refs: list[Any] = [ObjectRefGenerator(ObjectRef(return_ids[0], self), self)]
        else:
            refs = [ObjectRef(oid, self) for oid in return_ids]
        if self.submit_listener is not None:
            self.submit_listener(task_id, return_ids[0])
        if not client.direct.call(spec):  # straight to the actor's worker, when offered
            client.post_call(P.CallActor(spec), return_ids[0])
        if handle._actor_id == self.serial_actor_id:  # this actor calling itself
            self._self_calls.update(return_ids)
        return refs if num_returns else []

    def kill_actor(self, handle: ActorHandle, no_restart: bool) -> None:
        if not self.client.closed:
            self.client.direct.forget(handle._actor_id)  # later calls: after the kill
            self.client.send(P.KillActor(handle._actor_id, no_restart))

    def release_actor(self, handle: ActorHandle) -> None:
        """Nothing to do: the head counts the handles (their tokens) in every process and
        tells the owner when none is left (``_on_out_of_scope``)."""

    def _on_out_of_scope(self, msg: P.ActorOutOfScope) -> None:
        # a graceful end, as Ray's out-of-scope actors: after the calls submitted before,
        # __ray_terminate__ runs the actor's __ray_shutdown__ and ends it; the head stops
        # the actor once those calls have finished (at the latest), so
        # ``nbray.get(Actor.remote().method.remote())`` works as in Ray. On the reader
        # thread: queued (post), never a blocking send.
        client = self.client
        if client.closed:
            return
        handle = ActorHandle(self, msg.actor_id, msg.class_name, ())
        self.call_actor(handle, "__ray_terminate__", (), {}, 0)
        client.post(P.KillActor(msg.actor_id, True, when_idle=True))

    def exit_actor(self) -> None:
        if self.exit_hook is None:
            super().exit_actor()  # raises: not in an actor
            return
        self.exit_hook()

    def runtime_context(self) -> dict[str, Any]:
        client = self.client
        out: dict[str, Any] = {
            "job_id": f"{self.job_id:08x}",
            "node_id": client.node_id,
            "worker_id": f"{client.client_id:08x}",
            "namespace": client.namespace,
            "task_id": None,
            "actor_id": None,
            "resources": None,
            "gpu_ids": [],
            "in_worker": False,
        }
        if self.context_hook is not None:
            out.update(self.context_hook())
        return out

    def get_actor(self, name: str, namespace: str | None) -> ActorHandle:
        aid, class_name, methods, is_async, _ = self.client.request(
            "get_actor", name, namespace or self.client.namespace
        )
        return ActorHandle(self, aid, class_name, methods, is_async=is_async)

    # --- objects -------------------------------------------------------------------------

    def put(self, value: Any) -> ObjectRef:
        return self._put_serialized(serialize(value))

    def _put_serialized(self, s: Serialized) -> ObjectRef:
        client = self.client
        oid = client.new_id()
        payload, contained = client.store_serialized(s, oid)
        ref = ObjectRef(oid, self)
        client.post(P.Put(oid, payload, contained))
        client.stored(oid, payload)
        return ref

    def get(self, refs: list[ObjectRef], timeout: float | None) -> list[Any]:
        self._check_self_wait(refs)
        return self.client.get_values([r.id for r in refs], timeout)

    def _check_self_wait(self, refs: list[ObjectRef]) -> None:
        """An actor that runs one call at a time waiting for its own call would wait forever."""
        if self._self_calls and not self._self_calls.isdisjoint(r.id for r in refs):
            raise NbrayError(
                "an actor method waits for the result of another call to the same actor, "
                "which runs one call at a time, so it can never finish. Call the method "
                "directly (self.method(...)), or give the actor max_concurrency > 1 or "
                "async methods."
            )

    def wait(
        self, refs: list[ObjectRef], num_returns: int, timeout: float | None
    ) -> list[ObjectRef]:
        self._check_self_wait(refs)
        done = set(self.client.wait_for([r.id for r in refs], num_returns, timeout))
        return [r for r in refs if r.id in done][:num_returns]

    def cancel(self, ref: ObjectRef, force: bool, recursive: bool) -> None:
        self.client.send(P.Cancel(ref.id, force, recursive))

    def cancel_ids(self, object_ids: Sequence[int], force: bool = False) -> None:
        if object_ids and not self.client.closed:
            self.client.send(*(P.Cancel(oid, force, True) for oid in object_ids))

    def object_info(self, object_ids: Sequence[int]) -> list[dict[str, Any]]:
        return list(self.client.request("object_info", list(object_ids)))

    def actor_info(self, actor_id: int) -> dict[str, Any]:
        return dict(self.client.request("actor_info", actor_id))

    # --- generator tasks -----------------------------------------------------------------

    def stream_next(self, completed: ObjectRef, index: int, timeout: float | None) -> Any:
        found = self.client.streams.next(completed.id, index, timeout)
        if found is None:
            return None
        oid, taken_over = found
        return ObjectRef(oid, self) if taken_over else completed

    def stream_ready(self, completed: ObjectRef, index: int) -> bool:
        return self.client.streams.ready(completed.id, index)

    def stream_finished(self, completed: ObjectRef, index: int) -> bool:
        return self.client.streams.finished(completed.id, index)

    def stream_drop(self, completed: ObjectRef, index: int) -> None:
        self.client.streams.drop(completed.id)

    def incref(self, object_id: int, borrowed: bool) -> None:
        self.client.incref(object_id, borrowed)

    def decref(self, object_id: int) -> None:
        self.client.decref(object_id)

    # --- cluster -------------------------------------------------------------------------

    def cluster_info(self) -> dict[str, Any]:
        if self.client.leases is not None:  # what they hold is free: say so, as it is
            self.client.leases.return_idle(at_once=True)
        info = self.client.request("cluster_info")
        node = {
            "NodeID": info["node_id"],
            "Alive": True,
            "NodeManagerAddress": "127.0.0.1",
            "NodeManagerHostname": _hostname(),
            "NodeName": "127.0.0.1",
            "Resources": info["total"],
            "GPUIds": info["gpu_ids"],
            "ObjectStoreBytes": info["object_store"]["shm_bytes"],
        }
        return {
            "nodes": [node],
            "total": info["total"],
            "available": info["available"],
            "raw": info,
        }

    def status(self) -> dict[str, Any]:
        return dict(self.client.request("status"))

    def subscribe(self, callback: Callable[[dict[str, Any]], None]) -> Callable[[], None]:
        with self._sub_lock:
            self.client.event_handlers.append(callback)
            if not self._subscribed:
                self._subscribed = True
                self.client.send(P.Subscribe(replay=True))

        def unsubscribe() -> None:
            with self._sub_lock:
                if callback in self.client.event_handlers:
                    self.client.event_handlers.remove(callback)
                if not self.client.event_handlers and self._subscribed and not self.client.closed:
                    self._subscribed = False
                    self.client.send(P.Unsubscribe())

        return unsubscribe

    def shutdown(self) -> None:
        if self.cluster is not None and not self.client.closed:
            try:
                self.client.send(P.Shutdown())
            except Exception:  # already gone: stop() below makes sure
                pass
        self.client.close()
        if self.cluster is not None:
            self.cluster.stop()


def _hostname() -> str:
    import socket

    return socket.gethostname()


def _explain_bad_argument(
    args: tuple[Any, ...], kwargs: dict[str, Any], what: str
) -> SerializationError:
    items = [(f"argument {i}", a) for i, a in enumerate(args)]
    items += [(f"argument {k}=", v) for k, v in kwargs.items()]
    for label, value in items:
        try:
            serialize(value, f"{label} of {what}")
        except SerializationError as exc:
            return exc
    return SerializationError(f"could not serialize the arguments of {what}")


def print_task_output(msg: P.Output) -> None:
    """Default output routing: write a task's lines to this process's stdout/stderr,
    prefixed like Ray's ``(name pid=123)``."""
    stream = sys.stderr if msg.stream == "stderr" else sys.stdout
    prefix = f"({msg.name} pid={msg.pid}) "
    # a partial line (flushed at the task's end) still ends its line: the driver's own
    # output must not continue on it
    text = msg.text if msg.text.endswith("\n") else msg.text + "\n"
    lines = text.splitlines(keepends=True)
    try:
        stream.write("".join(prefix + line for line in lines))
        stream.flush()
    except (ValueError, OSError):  # the stream was closed (interpreter shutdown)
        return
