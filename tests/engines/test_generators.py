"""Generator tasks (Ray's "Ray Generators"), held by every engine: a remote function or actor
method that yields returns an ObjectRefGenerator whose refs arrive while the task runs.

Gates are files in ``tmp_path``: the task waits for one, so "the first value arrives before
the task ends" is shown by order of events, never by timing. Timeouts only bound hangs.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from nbray_testing import wait_until

import nbray
from nbray._base import errors

GET_TIMEOUT = 60.0


@nbray.remote
def count(n: int) -> object:
    yield from range(n)


@nbray.remote
def gated(gate: str) -> object:
    """Yields 0, waits for ``gate`` to exist, yields 1."""
    import os
    import time

    yield 0
    deadline = time.monotonic() + 60
    while not os.path.exists(gate) and time.monotonic() < deadline:
        time.sleep(0.01)
    yield 1


@nbray.remote
def fails_after(n: int) -> object:
    yield from range(n)
    raise ValueError(f"failed after {n}")


@nbray.remote
def logged(n: int, log: str) -> object:
    """Appends a line to ``log`` before each yield (what the generator has produced)."""
    for i in range(n):
        with open(log, "a") as f:
            f.write(f"{i}\n")
        yield i


@nbray.remote
def until_cancelled(gate: str) -> object:
    import os
    import time

    yield "first"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if os.path.exists(gate):
            yield "gate"
            return
        time.sleep(0.01)


@nbray.remote(num_returns="dynamic")
def parts(n: int) -> object:
    yield from (i * i for i in range(n))


@nbray.remote
class Source:
    def __init__(self, base: int) -> None:
        self.base = base

    def numbers(self, n: int) -> object:
        for i in range(n):
            yield self.base + i

    def plain(self) -> int:
        return self.base


@nbray.remote
class AsyncSource:
    async def numbers(self, n: int) -> object:
        import asyncio

        for i in range(n):
            await asyncio.sleep(0)
            yield i * 10


def test_generator_function_returns_object_ref_generator(engine: str) -> None:
    gen = count.remote(3)
    assert isinstance(gen, nbray.ObjectRefGenerator)
    refs = list(gen)
    assert all(isinstance(r, nbray.ObjectRef) for r in refs)
    assert nbray.get(refs, timeout=GET_TIMEOUT) == [0, 1, 2]


def test_values_in_order_then_stop_and_completed(engine: str) -> None:
    gen = count.remote(20)
    assert [nbray.get(next(gen), timeout=GET_TIMEOUT) for _ in range(20)] == list(range(20))
    with pytest.raises(StopIteration):
        next(gen)
    with pytest.raises(StopIteration):  # stays ended
        next(gen)
    assert nbray.get(gen.completed(), timeout=GET_TIMEOUT) is None
    assert gen.is_finished()


def test_first_value_arrives_while_the_task_runs(engine: str, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    gen = gated.remote(str(gate))
    first = next(gen)  # the task is blocked on the gate: only a streamed value can come
    assert nbray.get(first, timeout=GET_TIMEOUT) == 0
    ready, _ = nbray.wait([gen.completed()], timeout=0)
    assert ready == []  # the task has not ended
    assert not gen.is_finished()
    gate.touch()
    assert nbray.get(next(gen), timeout=GET_TIMEOUT) == 1
    nbray.get(gen.completed(), timeout=GET_TIMEOUT)
    with pytest.raises(StopIteration):
        next(gen)


def test_error_mid_stream_arrives_at_the_matching_next(engine: str) -> None:
    gen = fails_after.remote(2)
    assert nbray.get([next(gen), next(gen)], timeout=GET_TIMEOUT) == [0, 1]
    failed = next(gen)
    with pytest.raises(ValueError, match="failed after 2") as info:
        nbray.get(failed, timeout=GET_TIMEOUT)
    assert isinstance(info.value, errors.TaskError)
    with pytest.raises(StopIteration):
        next(gen)


def test_async_for(engine: str) -> None:
    async def collect() -> list[int]:
        out = []
        async for ref in count.remote(4):
            out.append(await ref)
        return out

    assert asyncio.run(asyncio.wait_for(collect(), GET_TIMEOUT)) == [0, 1, 2, 3]


def test_backpressure_pauses_the_generator(engine: str, tmp_path: Path) -> None:
    log = tmp_path / "log"
    log.touch()
    threshold = 2
    gen = logged.options(_generator_backpressure_num_objects=threshold).remote(10, str(log))

    def produced() -> int:
        return len(log.read_text().splitlines())

    wait_until(lambda: produced() >= threshold, GET_TIMEOUT)
    # nothing consumed: it stays paused (a generator without backpressure would finish)
    ready, _ = nbray.wait([gen.completed()], timeout=1.0)
    assert ready == []
    assert produced() <= threshold + 1
    assert nbray.get(next(gen), timeout=GET_TIMEOUT) == 0
    wait_until(lambda: produced() >= threshold + 1, GET_TIMEOUT)
    assert nbray.get(list(gen), timeout=GET_TIMEOUT) == list(range(1, 10))
    assert produced() == 10


def test_cancel_a_streaming_task(engine: str, tmp_path: Path) -> None:
    gate = tmp_path / "never"
    gen = until_cancelled.remote(str(gate))
    assert nbray.get(next(gen), timeout=GET_TIMEOUT) == "first"
    nbray.cancel(gen)
    rest = list(gen)
    assert len(rest) <= 1  # the cancellation, never the gated value
    with pytest.raises(errors.TaskCancelledError):
        nbray.get(rest or [gen.completed()], timeout=GET_TIMEOUT)


def test_wait_on_a_generator(engine: str, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    gen = gated.remote(str(gate))
    ready, pending = nbray.wait([gen], timeout=GET_TIMEOUT)
    assert ready == [gen] and pending == []
    next(gen)
    ready, pending = nbray.wait([gen], timeout=0.2)  # blocked on the gate: nothing to take
    assert ready == [] and pending == [gen]
    gate.touch()
    ready, _ = nbray.wait([gen], timeout=GET_TIMEOUT)
    assert ready == [gen]
    assert nbray.get(next(gen), timeout=GET_TIMEOUT) == 1


def test_dynamic_returns_one_ref_to_the_yields(engine: str) -> None:
    ref = parts.remote(4)
    assert isinstance(ref, nbray.ObjectRef)
    dyn = nbray.get(ref, timeout=GET_TIMEOUT)
    assert isinstance(dyn, nbray.DynamicObjectRefGenerator)
    assert nbray.get(list(dyn), timeout=GET_TIMEOUT) == [0, 1, 4, 9]


def test_actor_method_generator(engine: str) -> None:
    actor = Source.remote(100)
    gen = actor.numbers.remote(3)
    assert isinstance(gen, nbray.ObjectRefGenerator)
    assert nbray.get(list(gen), timeout=GET_TIMEOUT) == [100, 101, 102]
    assert nbray.get(actor.plain.remote(), timeout=GET_TIMEOUT) == 100  # plain methods unchanged
    nbray.kill(actor)


def test_async_actor_generator(engine: str) -> None:
    actor = AsyncSource.remote()
    gen = actor.numbers.remote(4)
    assert nbray.get(list(gen), timeout=GET_TIMEOUT) == [0, 10, 20, 30]
    nbray.kill(actor)


def test_generator_refs_are_arguments_of_other_tasks(engine: str) -> None:
    @nbray.remote
    def double(x: int) -> int:
        return 2 * x

    doubled = [double.remote(ref) for ref in count.remote(3)]
    assert nbray.get(doubled, timeout=GET_TIMEOUT) == [0, 2, 4]


def test_num_returns_is_validated(engine: str) -> None:
    with pytest.raises(ValueError, match="num_returns"):
        count.options(num_returns="stream")
    with pytest.raises(ValueError, match="_generator_backpressure_num_objects"):
        count.options(_generator_backpressure_num_objects=0)
