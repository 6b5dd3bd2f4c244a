"""The head's placement-group table: requests from clients, state from the scheduler.

    client ──Request("pg_create" | "pg_remove" | "pg_table" | "pg_get")──▶ GroupTable
        ──▶ Scheduler.create/remove_placement_group ──GroupStateChanged──▶ GroupTable
        ──▶ record state (PENDING → CREATED → REMOVED) + a "placement_group" event

An infeasible group is refused in ``pg_create`` itself, with the scheduler's reason, so
``placement_group(...)`` raises at once instead of waiting forever.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from nbray._base.errors import UnschedulableError

from .instructions import GroupStateChanged, Instruction

if TYPE_CHECKING:
    from .bus import EventBus
    from .peers import Peer
    from .scheduler import Scheduler

__all__ = ["GroupTable"]

REMOVED_HISTORY = 1000  # removed groups kept in the table, as Ray keeps them


class GroupTable:
    def __init__(
        self,
        sched: Scheduler,
        run: Callable[[list[Instruction]], None],
        bus: EventBus,
        owner_of: Callable[[Peer], tuple[int, int]],
        node_id: str,
    ) -> None:
        self.sched = sched
        self.run = run
        self.bus = bus
        self.owner_of = owner_of
        self.node_id = node_id
        self.records: dict[int, dict[str, Any]] = {}
        self.names: dict[tuple[str, str], int] = {}
        self.removed: list[int] = []

    def requests(self) -> dict[str, Any]:
        return {
            "pg_create": self.req_create,
            "pg_remove": self.req_remove,
            "pg_table": self.req_table,
            "pg_get": self.req_get,
        }

    def req_create(
        self,
        peer: Peer,
        group_id: int,
        bundles: list[dict[str, float]],
        strategy: str,
        name: str,
        namespace: str,
        detached: bool,
    ) -> None:
        problem = self.sched.placement_group_problem(bundles, strategy)
        if problem:
            raise UnschedulableError(
                f"placement group {name or f'{group_id:016x}'} can never be placed: {problem}"
            )
        if name and (namespace, name) in self.names:
            raise ValueError(
                f"a placement group named {name!r} already exists in namespace {namespace!r}; "
                f"pick another name or use get_placement_group({name!r})"
            )
        owner, _ = self.owner_of(peer)
        self.records[group_id] = {
            "placement_group_id": f"{group_id:016x}",
            "name": name,
            "namespace": namespace,
            "bundles": {i: dict(b) for i, b in enumerate(bundles)},
            "bundles_to_node_id": {i: self.node_id for i in range(len(bundles))},
            "strategy": strategy,
            "state": "PENDING",
            "detached": detached,
            "created": time.time(),
        }
        if name:
            self.names[(namespace, name)] = group_id
        self.run(
            self.sched.create_placement_group(group_id, name, bundles, strategy, owner, detached)
        )

    def req_remove(self, peer: Peer, group_id: int) -> None:
        if group_id not in self.records:
            raise ValueError(f"no placement group {group_id:016x}")
        self.run(self.sched.remove_placement_group(group_id))

    def req_table(self, peer: Peer, group_id: int | None = None) -> dict[str, Any]:
        if group_id is not None:
            record = self.records.get(group_id)
            return dict(record) if record else {}
        return {rec["placement_group_id"]: dict(rec) for rec in self.records.values()}

    def req_get(self, peer: Peer, name: str, namespace: str) -> tuple[int, list[dict[str, float]]]:
        group_id = self.names.get((namespace, name))
        if group_id is None:
            raise ValueError(
                f"Failed to look up placement group with name: {name} (namespace {namespace!r})"
            )
        record = self.records[group_id]
        return group_id, [record["bundles"][i] for i in range(len(record["bundles"]))]

    def on_state(self, ins: GroupStateChanged) -> None:
        record = self.records.get(ins.group_id)
        if record is None:
            return
        record["state"] = ins.state
        if ins.state == "REMOVED":
            record["removed_reason"] = ins.reason
            key = (record["namespace"], record["name"])
            if self.names.get(key) == ins.group_id:
                del self.names[key]
            self.removed.append(ins.group_id)
            while len(self.removed) > REMOVED_HISTORY:
                self.records.pop(self.removed.pop(0), None)
        self.bus.publish(
            {
                "type": "placement_group",
                "placement_group_id": record["placement_group_id"],
                "name": record["name"],
                "state": ins.state,
                "reason": ins.reason,
                "time": time.time(),
            }
        )
