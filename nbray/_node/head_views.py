"""Read-only views of the head's state: the answers to clients' requests (cluster info,
status, object details for notebook reprs) and the periodic metrics sample.

    Peer ─Request("status")─▶ Router ─▶ Head ─▶ views.status(scheduler, ...) ─▶ Reply
    Head.tick ─▶ views.metrics(sampler, scheduler, ...) ─▶ bus.publish({"type": "metrics"})

Each view takes the parts it reads (the scheduler, the object directory, the task table's
records, the workers' pids), never the head.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from nbray._wire import protocol as P

from .head_records import HeadConfig, TaskRecord
from .objects import ObjectDirectory
from .scheduler import Scheduler
from .states import DEAD

if TYPE_CHECKING:  # imported when first sampled (psutil costs start-up time)
    from nbray._wire.metrics import MetricsSampler


def cluster_info(config: HeadConfig, sched: Scheduler, objects: ObjectDirectory) -> dict[str, Any]:
    return {
        "node_id": config.node_id,
        "address": config.session_dir,
        "total": dict(sched.pool.total),
        "available": sched.pool.free(),
        "gpu_ids": list(config.gpu_ids or ()),
        "pid": os.getpid(),
        "object_store": {
            "shm_bytes": objects.shm_bytes,
            "spilled_bytes": objects.spilled_bytes,
            "inline_bytes": objects.inline_bytes,
            "capacity_bytes": objects.capacity,
            "spill_count": objects.spill_count,
            "objects": len(objects),
        },
    }


def status(
    sched: Scheduler,
    finished: Mapping[str, int],
    pids: Mapping[int, int],
    actors: int,
    clients: Mapping[int, int],
    objects: ObjectDirectory,
) -> dict[str, Any]:
    """``clients``: each client connection's id and process id. ``owners`` says, per client
    (kernel) with work here, how many of its tasks run and wait: its share."""
    running = sched.running_by_owner()
    queued = sched.ready.lengths()
    return {
        "tasks": {**sched.counts(), **finished},
        "workers": {str(k): v for k, v in sched.worker_states().items()},
        "worker_pids": {str(k): v for k, v in pids.items()},
        "actors": actors,
        "clients": len(clients),
        "owners": [
            {"pid": pid, "running": running.get(conn, 0), "queued": queued.get(conn, 0)}
            for conn, pid in sorted(clients.items())
            if conn in running or conn in queued
        ],
        "objects": len(objects),
    }


def object_info(
    node_id: str,
    objects: ObjectDirectory,
    producer: Mapping[int, int],
    tasks: Mapping[int, TaskRecord],
    object_ids: list[int],
) -> list[dict[str, Any]]:
    """State, size and producing task of objects (for notebook reprs)."""
    out = []
    for oid in object_ids[:1000]:
        payload = objects.ready(oid)
        tid = producer.get(oid)
        rec = tasks.get(tid) if tid is not None else None
        if payload is not None:
            state = "FAILED" if payload.kind == P.ERROR else "READY"
        elif rec is not None:
            state = rec.state
        else:
            state = "PENDING" if objects.known(oid) else "FREED"
        size = (payload.size or len(payload.data)) if payload is not None else None
        out.append(
            {
                "state": state,
                "size": size,
                "in_shared_memory": payload is not None and payload.kind == P.SHM,
                "task": rec.spec.name if rec is not None else "",
                "node_id": node_id,
            }
        )
    return out


def metrics(
    sampler: MetricsSampler, sched: Scheduler, pids: Mapping[int, int], objects: ObjectDirectory
) -> dict[str, Any]:
    """The periodic node and worker sample published to subscribers."""
    sample: dict[str, Any] = sampler.sample({str(w): pid for w, pid in pids.items()})
    states = sched.worker_states()
    for wid, info in sample["workers"].items():
        w = sched.workers.get(int(wid))
        info["state"] = states.get(int(wid), DEAD)
        info["task_id"] = f"{w.task_id:016x}" if w is not None and w.task_id else ""
        info["actor_id"] = f"{w.actor_id:016x}" if w is not None and w.actor_id else ""
    sample["type"] = "metrics"
    sample["object_store_bytes"] = objects.shm_bytes + objects.inline_bytes
    sample["object_store_spilled_bytes"] = objects.spilled_bytes
    sample["object_store_capacity_bytes"] = objects.capacity
    sample["resources_total"] = dict(sched.pool.total)
    sample["resources_available"] = sched.pool.free()
    return sample
