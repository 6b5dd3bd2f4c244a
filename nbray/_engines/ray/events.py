"""The Ray engine's event stream, in the local engine's shapes (see runtime/head.py).

    RayEngine.submitted() ──"task" PENDING──▶ subscribers
        ray ObjectRef done (future callback) ──"task" FINISHED/FAILED/CANCELLED──▶ subscribers
    poller thread, about once a second:
        ray.nodes() ──"node" ALIVE/DEAD on change──▶ subscribers
        one NodeMetrics actor per alive node (0 CPU, pinned) ──sample()──▶ "metrics"

Task events come from the driver's own view of its submissions: Ray does not tell a driver
when a task starts, so there is no RUNNING event. Everything is produced only while
someone subscribes; earlier events of this process are replayed to a new subscriber.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from nbray._model.object_ref import ObjectRef

__all__ = ["EventStream", "NodeMetrics"]

log = logging.getLogger(__name__)
HISTORY = 10_000
POLL_INTERVAL = 1.0
METRICS_NAMESPACE = "nbray-metrics"


class NodeMetrics:
    """A Ray actor pinned to one node: samples it with nbray's MetricsSampler."""

    def __init__(self, node_id: str) -> None:
        from nbray._wire.metrics import MetricsSampler

        self.sampler = MetricsSampler(node_id)

    def sample(self) -> dict[str, Any]:
        import psutil

        workers: dict[str, int] = {}
        for proc in psutil.process_iter(["pid", "name"]):
            name = proc.info["name"] or ""
            if name.startswith("ray::") and "NodeMetrics" not in name:
                workers[str(proc.info["pid"])] = int(proc.info["pid"])
        return self.sampler.sample(workers)


class EventStream:
    """Task, node and metrics events of one RayEngine, delivered to callbacks."""

    def __init__(self, ray: Any) -> None:
        self._ray = ray
        self._callbacks: list[Callable[[dict[str, Any]], None]] = []
        # the first ref of each task whose end is awaited: held until its done callback
        # runs (through Ray Client, a ref the program dropped may never call back)
        self._awaited: dict[str, Any] = {}
        self._history: collections.deque[dict[str, Any]] = collections.deque(maxlen=HISTORY)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._actors: dict[str, Any] = {}
        self._alive: set[str] = set()
        self._actor_cls: Any = None

    # --- subscribers ---------------------------------------------------------------------

    def subscribe(self, callback: Callable[[dict[str, Any]], None]) -> Callable[[], None]:
        with self._lock:
            history = list(self._history)
            self._callbacks.append(callback)
            if self._thread is None:
                self._stop.clear()
                self._thread = threading.Thread(
                    target=self._poll, name="nbray-ray-events", daemon=True
                )
                self._thread.start()
        for event in history:
            _deliver(callback, event)

        def unsubscribe() -> None:
            with self._lock:
                if callback in self._callbacks:
                    self._callbacks.remove(callback)

        return unsubscribe

    def publish(self, event: dict[str, Any]) -> None:
        with self._lock:
            if event["type"] != "metrics":
                self._history.append(event)
            callbacks = list(self._callbacks)
        for cb in callbacks:
            _deliver(cb, event)

    # --- tasks ---------------------------------------------------------------------------

    def submitted(
        self,
        name: str,
        ray_refs: list[Any],
        resources: dict[str, float],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        actor_id: str = "",
    ) -> None:
        if not self._callbacks or not ray_refs:
            return

        task_id = ray_refs[0].task_id().hex()
        start = time.time()
        deps = [a.hex() for a in (*args, *kwargs.values()) if isinstance(a, ObjectRef)]
        base = {
            "type": "task",
            "task_id": task_id,
            "name": name,
            "owner": 0,
            "node_id": "",
            "actor_id": actor_id,
            "parent": "",
        }
        self.publish(
            {
                **base,
                "state": "PENDING",
                "time": start,
                "deps": deps,
                "returns": [r.hex() for r in ray_refs],
                "resources": resources,
            }
        )

        def done(fut: Any) -> None:
            exc = fut.exception()
            state = "FINISHED"
            extra: dict[str, Any] = {}
            if exc is not None:
                import ray.exceptions as R

                state = "CANCELLED" if isinstance(exc, R.TaskCancelledError) else "FAILED"
                extra["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
            now = time.time()
            self.publish({**base, "state": state, "time": now, "duration": now - start, **extra})
            self._awaited.pop(task_id, None)

        self._awaited[task_id] = ray_refs[0]
        ray_refs[0].future().add_done_callback(done)

    def actor_created(self, handle: Any, class_name: str, name: str) -> None:
        if self._callbacks:
            self.publish(
                {
                    "type": "actor",
                    "actor_id": handle.actor_id,
                    "class_name": class_name,
                    "name": name,
                    "state": "PENDING",  # Ray: PENDING_CREATION
                    "reason": "",
                    "time": time.time(),
                }
            )

    # --- nodes and metrics ---------------------------------------------------------------

    def _poll(self) -> None:
        while not self._stop.is_set():
            try:
                self._poll_once()
            except Exception as exc:  # the cluster went away: say so, keep trying
                log.warning("nbray: polling the Ray cluster failed: %s", exc)
            self._stop.wait(POLL_INTERVAL)

    def _poll_once(self) -> None:
        ray = self._ray
        nodes = {n["NodeID"]: n for n in ray.nodes()}
        alive = {nid for nid, n in nodes.items() if n.get("Alive")}
        for nid in sorted(alive - self._alive):
            self.publish(_node_event(nodes[nid], "ALIVE"))
        for nid in sorted(self._alive - alive):
            self.publish(_node_event(nodes.get(nid, {"NodeID": nid}), "DEAD"))
            self._actors.pop(nid, None)
        self._alive = alive
        pending = {}
        for nid in alive:
            actor = self._actors.get(nid) or self._start_actor(nid)
            pending[nid] = actor.sample.remote()
        if not pending:
            return
        ready, _ = ray.wait(list(pending.values()), num_returns=len(pending), timeout=2.0)
        ready_set = set(ready)
        for nid, ref in pending.items():
            if ref not in ready_set:
                continue
            try:
                sample = ray.get(ref)
            except Exception:  # the node (or its actor) died: start another next time
                self._actors.pop(nid, None)
                continue
            node = nodes[nid]
            sample["type"] = "metrics"
            sample["node_name"] = node.get("NodeManagerAddress", "")
            sample["resources_total"] = {k: float(v) for k, v in node["Resources"].items()}
            self.publish(sample)

    def _start_actor(self, node_id: str) -> Any:
        ray = self._ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        if self._actor_cls is None:
            self._actor_cls = ray.remote(NodeMetrics)
        actor = self._actor_cls.options(
            num_cpus=0,
            name=f"nbray-metrics-{node_id[:16]}",
            namespace=METRICS_NAMESPACE,
            get_if_exists=True,
            scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False),
        ).remote(node_id)
        self._actors[node_id] = actor
        return actor

    def close(self) -> None:
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)
        self._thread = None
        self._actors.clear()
        with self._lock:
            self._callbacks.clear()


def _node_event(node: dict[str, Any], state: str) -> dict[str, Any]:
    return {
        "type": "node",
        "node_id": node["NodeID"],
        "address": node.get("NodeManagerAddress", ""),
        "state": state,
        "reason": node.get("DeathReasonMessage", ""),
        "resources": {k: float(v) for k, v in (node.get("Resources") or {}).items()},
        "time": time.time(),
    }


def _deliver(callback: Callable[[dict[str, Any]], None], event: dict[str, Any]) -> None:
    try:
        callback(event)
    except Exception:  # a broken widget must not stop the stream for the others
        log.exception("nbray: an event callback failed")
