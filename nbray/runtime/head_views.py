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

from . import protocol as P

if TYPE_CHECKING:
    from .head import Head

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
        from .metrics import MetricsSampler

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
