"""The head's record of who calls an actor: a caller is offered the actor's address only
once every call it made has finished, with the last call id the head saw from it."""

from __future__ import annotations

from nbray._node.actor_callers import ActorCallers


def test_a_caller_is_offered_the_address_only_when_its_calls_are_done() -> None:
    callers = ActorCallers()
    callers.add(11, caller=1)
    callers.add(12, caller=1)
    callers.add(21, caller=2)
    callers.want(11)  # the head sent caller 1's call on itself
    assert callers.remove(11) is None  # caller 1 still has call 12 out
    assert callers.remove(21) is None  # caller 2 never asked
    assert callers.idle_wanting() == []
    assert callers.remove(12) == 1
    assert callers.idle_wanting() == [1]
    assert callers.offered(1) == 12  # the last call the head saw from it
    assert callers.idle_wanting() == []
    assert len(callers) == 0


def test_an_unknown_or_repeated_end_changes_nothing() -> None:
    callers = ActorCallers()
    callers.add(5, caller=3)
    callers.want(5)
    callers.want(99)  # not a call of this actor
    assert callers.remove(99) is None
    assert callers.remove(5) == 3
    assert callers.remove(5) is None
    assert list(callers) == []
