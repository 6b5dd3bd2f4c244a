"""Read-only views of the head's state: the answers to clients' requests (cluster info,
status, object and actor details for notebook reprs) and the periodic metrics sample.

    Peer ─Request("status")─▶ Head.on_request ─▶ views.status(head) ─▶ Reply
    Head.tick ─▶ views.metrics(head) ─▶ publish({"type": "metrics", ...})
    Head.on_output ─▶ views.log_event(msg) ─▶ publish({"type": "log", ...}) (subscribers only)
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

from nbray._wire import protocol as P

from .head_records import EndedTask

if TYPE_CHECKING:
    from .head import Head
    from .head_records import TaskRecord

LOG_EVENT_CHARS = 4096  # a task's output reaches watchers in pieces of at most this size


def cluster_info(head: Head) -> dict[str, Any]:
    return {
        "node_id": head.config.node_id,
        "address": head.config.session_dir,
        "total": dict(head.sched.total),
        "available": {k: max(0.0, v) for k, v in head.sched.available.items()},
        "gpu_ids": list(head.config.gpu_ids or ()),
        "pid": os.getpid(),
        "object_store": {
            "shm_bytes": head.objects.shm_bytes,
            "spilled_bytes": head.objects.spilled_bytes,
            "inline_bytes": head.objects.inline_bytes,
            "capacity_bytes": head.objects.capacity,
            "spill_count": head.objects.spill_count,
            "objects": len(head.objects),
        },
    }


def status(head: Head) -> dict[str, Any]:
    return {
        "tasks": {**head.sched.counts(), **head.finished_count},
        "workers": {str(k): v for k, v in head.sched.worker_states().items()},
        "worker_pids": {str(k): v for k, v in head.worker_pids.items()},
        "actors": len(head.actors),
        "clients": sum(1 for p in head.peers.values() if p.role != "worker"),
        "objects": len(head.objects),
    }


def object_info(head: Head, object_ids: list[int]) -> list[dict[str, Any]]:
    """State, size and producing task of objects (for notebook reprs)."""
    out = []
    for oid in object_ids[:1000]:
        payload = head.objects.ready(oid)
        tid = head.producer.get(oid)
        rec = head.tasks.get(tid) if tid is not None else None
        if payload is not None:
            state = "FAILED" if payload.kind == P.ERROR else "READY"
        elif rec is not None:
            state = rec.state
        else:
            state = "PENDING" if head.objects.known(oid) else "FREED"
        size = (payload.size or len(payload.data)) if payload is not None else None
        out.append(
            {
                "state": state,
                "size": size,
                "in_shared_memory": payload is not None and payload.kind == P.SHM,
                "task": rec.spec.name if rec is not None else "",
                "node_id": head.config.node_id,
            }
        )
    return out


def actor_info(head: Head, actor_id: int) -> dict[str, Any]:
    """State, name, resources and process of an actor (for notebook reprs)."""
    actor = head.actors.get(actor_id)
    if actor is None:
        return {"state": "DEAD", "node_id": head.config.node_id}
    wid = next((w for w, a in head.worker_actor.items() if a == actor_id), 0)
    return {
        "state": actor.state,
        "name": actor.spec.name,
        "namespace": actor.spec.namespace,
        "owner": actor.owner,
        "resources": dict(actor.spec.resources),
        "pending_calls": len(actor.calls),
        "pid": head.worker_pids.get(wid, 0),
        "node_id": head.config.node_id,
    }


def metrics(head: Head) -> dict[str, Any]:
    """The periodic node and worker sample published to subscribers."""
    if head.sampler is None:
        from nbray._wire.metrics import MetricsSampler

        head.sampler = MetricsSampler(head.config.node_id)
    sample: dict[str, Any] = head.sampler.sample(
        {str(w): pid for w, pid in head.worker_pids.items()}
    )
    states = head.sched.worker_states()
    for wid, info in sample["workers"].items():
        w = head.sched.workers.get(int(wid))
        info["state"] = states.get(int(wid), "DEAD")
        info["task_id"] = f"{w.task_id:016x}" if w is not None and w.task_id else ""
        info["actor_id"] = f"{w.actor_id:016x}" if w is not None and w.actor_id else ""
    sample["type"] = "metrics"
    sample["object_store_bytes"] = head.objects.shm_bytes + head.objects.inline_bytes
    sample["object_store_spilled_bytes"] = head.objects.spilled_bytes
    sample["object_store_capacity_bytes"] = head.objects.capacity
    sample["resources_total"] = dict(head.sched.total)
    sample["resources_available"] = {k: max(0.0, v) for k, v in head.sched.available.items()}
    return sample


def task_data(
    node_id: str,
    spec: P.TaskSpec,
    owner: int,
    parent: int,
    state: str,
    when: float,
    extra: dict[str, Any],
) -> dict[str, Any]:
    """A task lifecycle event, as subscribers (widgets, the server extension) get it."""
    data = {
        "type": "task",
        "task_id": f"{spec.task_id:016x}",
        "name": spec.name,
        "state": state,
        "time": when,
        "owner": owner,
        "node_id": node_id,
        "actor_id": f"{spec.actor_id:016x}" if spec.actor_id else "",
        "parent": f"{parent:016x}" if parent else "",
    }
    if state == "SUBMITTED":
        data["deps"] = [f"{d:016x}" for d in spec.deps]
        data["returns"] = [f"{r:016x}" for r in spec.return_ids]
        data["resources"] = spec.resources
    data.update(extra)
    return data


def _lifecycle(
    node_id: str, t: EndedTask | TaskRecord, ended: EndedTask | None
) -> list[dict[str, Any]]:
    """The events a subscriber missed for one task: SUBMITTED and RUNNING unless they were
    published, and its end if it ended."""
    if isinstance(t, EndedTask):
        spec = P.TaskSpec(
            t.task_id, t.name, b"", b"", t.deps, (), t.return_ids, t.resources, 0, False,
            t.actor_id,
        )  # fmt: skip
        owner, parent, submitted, started, wid, pid = (
            t.owner, t.parent, t.submitted, t.started, t.worker_id, t.pid,
        )  # fmt: skip
    else:
        spec, owner, parent = t.spec, t.owner, t.parent
        submitted, started, wid, pid = t.submitted, t.started, t.worker_id, t.pid
    out = []
    if not t.published:
        out.append(task_data(node_id, spec, owner, parent, "SUBMITTED", submitted, {}))
        if started:
            out.append(
                task_data(
                    node_id, spec, owner, parent, "RUNNING", started, {"worker_id": wid, "pid": pid}
                )
            )
    if ended is not None:
        extra: dict[str, Any] = {"worker_id": wid, "duration": ended.ended - submitted}
        if ended.error:
            extra["error"] = ended.error
        out.append(task_data(node_id, spec, owner, parent, ended.state, ended.ended, extra))
    return out


def replay(head: Head) -> list[dict[str, Any]]:
    """The history a new subscriber gets: the recorded events, plus the lifecycle of the
    tasks that ran (or still run) while nobody listened, in time order. What was missed
    becomes part of the recorded history."""
    node = head.config.node_id
    missed: list[dict[str, Any]] = []
    for ended in head.unwatched:
        missed += _lifecycle(node, ended, ended)
    head.unwatched.clear()
    for rec in head.tasks.values():
        if not rec.published:
            missed += _lifecycle(node, rec, None)
            rec.published = True
    if missed:
        merged = sorted([*head.events, *missed], key=lambda e: e.get("time", 0.0))
        head.events.clear()
        head.events.extend(merged)
    return list(head.events)


def log_event(msg: P.Output, pid: int) -> dict[str, Any]:
    """A piece of a task's stdout/stderr for the event bus, cut to ``LOG_EVENT_CHARS``
    (the owner still gets it whole). ``{"type": "log", "task_id", "stream", "text",
    "truncated", "pid", "time"}``."""
    text = msg.text
    truncated = len(text) > LOG_EVENT_CHARS
    if truncated:
        text = text[:LOG_EVENT_CHARS]
    return {
        "type": "log",
        "task_id": f"{msg.task_id:016x}",
        "stream": msg.stream,
        "text": text,
        "truncated": truncated,
        "pid": pid,
        "time": time.time(),
    }
