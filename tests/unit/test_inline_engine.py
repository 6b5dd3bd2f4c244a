"""The engine %%compare's serial run uses: every .remote() call runs at once, in-process."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from nbray_testing import assert_oversized_code_is_refused

import nbray
from nbray._engines.inline import InlineEngine
from nbray._model import session


@pytest.fixture
def inline() -> Iterator[InlineEngine]:
    assert session.get_engine() is None
    engine = InlineEngine()
    session.set_engine(engine)
    try:
        yield engine
    finally:
        session.set_engine(None)


def test_tasks_run_at_once_in_this_process(inline: InlineEngine) -> None:
    calls: list[int] = []

    @nbray.remote
    def where(x: int) -> tuple[int, int]:
        calls.append(x)
        return x * 2, os.getpid()

    ref = where.remote(21)
    assert calls == [21]  # already ran, before any get
    assert nbray.get(ref) == (42, os.getpid())
    assert nbray.get(where.remote(nbray.put(5)))[0] == 10  # refs as arguments resolve


def test_errors_are_raised_by_get_with_their_own_class(inline: InlineEngine) -> None:
    @nbray.remote
    def fail() -> None:
        raise KeyError("missing")

    ref = fail.remote()
    with pytest.raises(KeyError, match="missing"):
        nbray.get(ref)


def test_actors_and_multiple_returns(inline: InlineEngine) -> None:
    @nbray.remote
    class Counter:
        def __init__(self, start: int) -> None:
            self.n = start

        def incr(self) -> int:
            self.n += 1
            return self.n

    @nbray.remote(num_returns=2)
    def pair() -> tuple[int, int]:
        return 1, 2

    c = Counter.remote(10)
    assert nbray.get([c.incr.remote() for _ in range(3)]) == [11, 12, 13]
    assert nbray.get(pair.remote()) == [1, 2]
    ready, pending = nbray.wait([c.incr.remote()], num_returns=1)
    assert len(ready) == 1 and pending == []
    nbray.kill(c)
    with pytest.raises(nbray.exceptions.ActorDiedError):
        nbray.get(c.incr.remote())
    assert nbray.cluster_resources() == {"CPU": 1.0}


def test_values_are_freed_with_their_refs(inline: InlineEngine) -> None:
    ref = nbray.put(list(range(10)))
    oid = ref.id
    assert oid in inline._values
    del ref
    assert oid not in inline._values


def test_local_mode_init_runs_inline_and_shuts_down() -> None:
    ctx = nbray.init(local_mode=True)
    try:
        assert ctx.engine == "inline" and nbray.is_initialized()

        @nbray.remote
        def pid() -> int:
            return os.getpid()

        assert nbray.get(pid.remote()) == os.getpid()
    finally:
        nbray.shutdown()
    assert not nbray.is_initialized()
    with pytest.raises(ValueError, match="local_mode"):
        nbray.init(local_mode=True, address="auto")
    assert not nbray.is_initialized()


def test_actor_lifecycle_and_context_inline(inline: InlineEngine) -> None:
    log: list[str] = []

    @nbray.remote
    class Unit:
        def __init__(self, tag: str) -> None:
            self.tag = tag

        def ctx(self) -> tuple[str | None, str | None, dict[str, float]]:
            c = nbray.get_runtime_context()
            return c.get_actor_id(), c.get_actor_name(), c.get_assigned_resources()

        def stop(self) -> None:
            nbray.actor.exit_actor()

        def __ray_shutdown__(self) -> None:
            log.append(self.tag)

    a = Unit.options(name="unit", num_cpus=1).remote("a")
    actor_id, name, resources = nbray.get(a.ctx.remote())
    assert actor_id == a.actor_id and name == "unit" and resources == {"CPU": 1.0}
    assert nbray.get(a.__ray_ready__.remote()) is True
    with pytest.raises(nbray.exceptions.ActorDiedError, match="exit_actor"):
        nbray.get(a.stop.remote())
    assert log == ["a"]
    with pytest.raises(nbray.exceptions.ActorDiedError):
        nbray.get(a.ctx.remote())
    with pytest.raises(ValueError):
        nbray.get_actor("unit")  # its name is free again

    b = Unit.remote("b")
    nbray.kill(b)  # a kill runs no clean-up hook, as in Ray
    assert log == ["a"]
    c = Unit.remote("c")
    del c  # out of scope: a graceful end
    assert log == ["a", "c"]
    with pytest.raises(TypeError, match="exit_actor"):
        nbray.actor.exit_actor()
    ctx = nbray.get_runtime_context()
    assert ctx.get_task_id() is None and ctx.get_actor_id() is None


def test_generators_run_lazily_one_yield_per_next(inline: InlineEngine) -> None:
    produced: list[int] = []

    @nbray.remote
    def numbers(n: int):  # type: ignore[no-untyped-def]
        for i in range(n):
            produced.append(i)
            yield i
        raise ValueError("after the last")

    gen = numbers.remote(3)
    assert isinstance(gen, nbray.ObjectRefGenerator)
    assert produced == []  # nothing ran yet
    assert nbray.get(next(gen)) == 0
    assert produced == [0]
    assert [nbray.get(next(gen)) for _ in range(2)] == [1, 2]
    with pytest.raises(ValueError, match="after the last"):
        nbray.get(next(gen))  # the error is the matching next's value
    with pytest.raises(StopIteration):
        next(gen)
    assert gen.is_finished()


def test_generator_completed_runs_the_rest(inline: InlineEngine) -> None:
    @nbray.remote
    def numbers(n: int):  # type: ignore[no-untyped-def]
        yield from range(n)

    gen = numbers.remote(3)
    assert nbray.get(gen.completed()) is None  # runs it to the end; the yields are kept
    assert [nbray.get(r) for r in gen] == [0, 1, 2]

    @nbray.remote
    class Source:
        async def numbers(self, n: int):  # type: ignore[no-untyped-def]
            for i in range(n):
                yield i * 10

    assert [nbray.get(r) for r in Source.remote().numbers.remote(2)] == [0, 10]

    @nbray.remote(num_returns="dynamic")
    def parts(n: int):  # type: ignore[no-untyped-def]
        yield from range(n)

    assert [nbray.get(r) for r in nbray.get(parts.remote(2))] == [0, 1]


def test_a_function_over_the_size_limit_is_refused_inline_too(
    inline: InlineEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # code that runs in local_mode must run on a cluster: the same limit, Ray's message
    assert_oversized_code_is_refused(monkeypatch)
    assert inline.calls == 0  # nothing ran

    @nbray.remote
    def small() -> int:
        return 1

    assert nbray.get(small.remote()) == 1
