"""Who calls an actor, and which callers may send their calls straight to its worker.

    CallActor from a caller ──▶ add(call, caller) ──▶ the caller's unfinished count + 1
    a call sent on by the head to a client's caller ──▶ want(caller)
    a call ends ──▶ remove(call) ──▶ the caller had none left and wants: offer it the
        actor's address (ActorAddress), with the last call the head saw from it

A caller switches to direct calls only when the head saw its every call finish and it sent
none since: its calls keep their order, whichever path the earlier ones took
(``nbray._engines.local.direct``).
"""

from __future__ import annotations

from collections.abc import Iterator

__all__ = ["ActorCallers"]


class ActorCallers:
    __slots__ = ("calls", "last", "unfinished", "wanting")

    def __init__(self) -> None:
        self.calls: dict[int, int] = {}  # unfinished call id -> its caller's connection
        self.unfinished: dict[int, int] = {}  # caller connection -> its unfinished calls
        self.last: dict[int, int] = {}  # caller connection -> the last call id seen
        self.wanting: set[int] = set()  # callers the head sends calls for, able to go direct

    def add(self, call_id: int, caller: int) -> None:
        self.calls[call_id] = caller
        self.unfinished[caller] = self.unfinished.get(caller, 0) + 1
        self.last[caller] = call_id

    def want(self, call_id: int) -> None:
        caller = self.calls.get(call_id)
        if caller is not None:
            self.wanting.add(caller)

    def remove(self, call_id: int) -> int | None:
        """Forget a call; returns its caller when that caller now has no unfinished call
        and wants the address."""
        caller = self.calls.pop(call_id, None)
        if caller is None:
            return None
        left = self.unfinished[caller] - 1
        if left:
            self.unfinished[caller] = left
            return None
        del self.unfinished[caller]
        return caller if caller in self.wanting else None

    def idle_wanting(self) -> list[int]:
        """Callers that want the address and have no unfinished call."""
        return [c for c in self.wanting if c not in self.unfinished]

    def offered(self, caller: int) -> int:
        """The caller is offered the address: the last call id the head saw from it."""
        self.wanting.discard(caller)
        return self.last.get(caller, 0)

    def __len__(self) -> int:
        return len(self.calls)

    def __iter__(self) -> Iterator[int]:
        return iter(self.calls)
