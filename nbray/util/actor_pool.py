"""``ActorPool``: spread calls over a fixed set of actors (Ray's ``ray.util.ActorPool``).

    submit(fn, v) ──▶ an idle actor? fn(actor, v) ──▶ ObjectRef, actor busy until it is read
                  └─▶ none idle: queued, submitted when get_next* hands an actor back
    get_next() ──▶ results in submission order;  get_next_unordered() ──▶ first finished

Built only on nbray's public API (``nbray.wait``/``nbray.get`` on the refs ``fn`` returns),
so it runs unchanged on the local and the Ray engine.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

import nbray
from nbray import errors

__all__ = ["ActorPool"]

V = TypeVar("V")
_TIMEOUT_MSG = "Timed out waiting for result"


def _key(future: Any) -> Any:
    # fn may return a list of refs (num_returns > 1): keyed by the tuple of them
    return tuple(future) if isinstance(future, list) else future


def _first_ref(future: Any) -> Any:
    return future[0] if isinstance(future, list | tuple) else future


class ActorPool:
    """A fixed pool of actors to which calls are handed out, one call per idle actor.

    ``fn(actor, value)`` must call one method of the actor and return its ObjectRef (or a
    list of refs); the actor counts as busy until that result has been read with
    ``get_next`` / ``get_next_unordered`` (or through ``map``).

    Example::

        @nbray.remote
        class Doubler:
            def double(self, v):
                return 2 * v

        pool = ActorPool([Doubler.remote(), Doubler.remote()])
        assert list(pool.map(lambda a, v: a.double.remote(v), [1, 2, 3, 4])) == [2, 4, 6, 8]
    """

    def __init__(self, actors: Iterable[Any]) -> None:
        self._idle_actors: list[Any] = list(actors)
        self._future_to_actor: dict[Any, tuple[int, Any]] = {}
        self._index_to_future: dict[int, Any] = {}
        self._next_task_index = 0
        self._next_return_index = 0
        self._pending_submits: deque[tuple[Callable[[Any, Any], Any], Any]] = deque()

    # --- submitting ---------------------------------------------------------------------

    def map(self, fn: Callable[[Any, V], Any], values: Iterable[V]) -> Iterator[Any]:
        """Apply ``fn`` over ``values`` on the pool's actors; an iterator of the results in
        the order of ``values`` (iterate it to drive the work). Results not read from
        earlier submissions are dropped first, as in Ray."""
        self._drop_unread(ordered=True)
        for v in values:
            self.submit(fn, v)

        def results() -> Iterator[Any]:
            while self.has_next():
                yield self.get_next()

        return results()

    def map_unordered(self, fn: Callable[[Any, V], Any], values: Iterable[V]) -> Iterator[Any]:
        """Like ``map``, but yields each result as soon as it is ready."""
        self._drop_unread(ordered=False)
        for v in values:
            self.submit(fn, v)

        def results() -> Iterator[Any]:
            while self.has_next():
                yield self.get_next_unordered()

        return results()

    def _drop_unread(self, ordered: bool) -> None:
        # as in Ray: map drops unfinished earlier calls at once (their actors come back);
        # map_unordered waits for them to finish, and drops their results
        while self.has_next():
            try:
                if ordered and self._next_return_index < self._next_task_index:
                    self.get_next(timeout=0, ignore_if_timedout=True)
                else:
                    self.get_next_unordered()
            except TimeoutError:
                continue

    def submit(self, fn: Callable[[Any, V], Any], value: V) -> None:
        """Run ``fn(actor, value)`` on an idle actor now, or as soon as one is free.

        Example::

            pool.submit(lambda a, v: a.double.remote(v), 1)
            pool.get_next()   # 2
        """
        if not self._idle_actors:
            self._pending_submits.append((fn, value))
            return
        actor = self._idle_actors.pop()
        future = fn(actor, value)
        self._future_to_actor[_key(future)] = (self._next_task_index, actor)
        self._index_to_future[self._next_task_index] = future
        self._next_task_index += 1

    # --- results ------------------------------------------------------------------------

    def has_next(self) -> bool:
        """Whether results are pending (submitted and not yet read)."""
        return bool(self._future_to_actor)

    def get_next(self, timeout: float | None = None, ignore_if_timedout: bool = False) -> Any:
        """The next result in submission order, waiting up to ``timeout`` seconds.

        Raises ``StopIteration`` when nothing is pending, ``TimeoutError`` when the result
        is not ready in time (with ``ignore_if_timedout=True`` that call is also dropped
        from the pool, its actor handed back), ``ValueError`` after ``get_next_unordered``.
        """
        if not self.has_next():
            raise StopIteration("No more results to get")
        if self._next_return_index >= self._next_task_index:
            raise ValueError("It is not allowed to call get_next() after get_next_unordered().")
        future = self._index_to_future[self._next_return_index]
        timed_out = False
        if timeout is not None:
            ready, _ = nbray.wait([_first_ref(future)], timeout=timeout)
            if not ready:
                if not ignore_if_timedout:
                    raise TimeoutError(_TIMEOUT_MSG)
                timed_out = True
        del self._index_to_future[self._next_return_index]
        self._next_return_index += 1
        _, actor = self._future_to_actor.pop(_key(future))
        if timed_out:
            self._return_actor(actor)
            raise TimeoutError(f"{_TIMEOUT_MSG}. The task {future} has been ignored.")
        return self._result(future, actor)

    def get_next_unordered(
        self, timeout: float | None = None, ignore_if_timedout: bool = False
    ) -> Any:
        """Whichever pending result is ready first, waiting up to ``timeout`` seconds.

        Raises ``StopIteration`` when nothing is pending, ``TimeoutError`` when none is
        ready in time (nothing is dropped then: there is no single call to ignore).
        """
        if not self.has_next():
            raise StopIteration("No more results to get")
        by_ref = {_first_ref(k): k for k in self._future_to_actor}
        ready, _ = nbray.wait(list(by_ref), num_returns=1, timeout=timeout)
        if not ready:
            raise TimeoutError(_TIMEOUT_MSG)
        key = by_ref[ready[0]]
        index, actor = self._future_to_actor.pop(key)
        future = self._index_to_future.pop(index)
        self._next_return_index = max(self._next_return_index, index + 1)
        return self._result(future, actor)

    def _result(self, future: Any, actor: Any) -> Any:
        alive = True
        try:
            return nbray.get(future)
        except errors.ActorDiedError:
            alive = False  # a dead actor leaves the pool
            raise
        finally:
            self._return_actor(actor, alive)

    # --- actors -------------------------------------------------------------------------

    def _return_actor(self, actor: Any, alive: bool = True) -> None:
        if alive:
            self._idle_actors.append(actor)
        if self._pending_submits and self._idle_actors:
            self.submit(*self._pending_submits.popleft())

    def has_free(self) -> bool:
        """Whether an actor is idle and no submission waits for one."""
        return bool(self._idle_actors) and not self._pending_submits

    def pop_idle(self) -> Any | None:
        """Take an idle actor out of the pool (``None`` when none is free)."""
        return self._idle_actors.pop() if self.has_free() else None

    def push(self, actor: Any) -> None:
        """Add ``actor`` to the pool (``ValueError`` if it is in the pool already); a queued
        submission starts on it at once."""
        busy = [a for _, a in self._future_to_actor.values()]
        if actor in self._idle_actors or actor in busy:
            raise ValueError("Actor already belongs to current ActorPool")
        self._return_actor(actor)
