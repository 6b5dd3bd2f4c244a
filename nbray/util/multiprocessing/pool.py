"""The standard library's ``multiprocessing.Pool`` API over nbray actors.

    Pool(processes) ──▶ one _PoolActor per process (initializer run in each)
    map / starmap / imap / apply ──▶ chunks of items ──▶ run_batch on the least busy actor
        (a 10,000-item map with the default chunksize is 2 chunks per process: a handful
        of messages, not 10,000)
    AsyncResult ──▶ the chunks' ObjectRefs; callbacks run on a thread once all are in
    an item whose call raised ──▶ _Raised(exception, traceback) in its chunk's results, so
        the chunk's other items are kept: map/apply raise the first (its remote traceback
        as ``__cause__``, like the standard library), imap yields it as the item's value
        (as Ray's Pool does)
    maxtasksperchild ──▶ an actor that ran that many chunks is dropped (it stops once its
        calls are done) and a fresh one takes its place

Ray builds its Pool on actors too (one per CPU); actors keep ``initializer`` state and
give ``maxtasksperchild`` a process to replace. Built on nbray's public API only.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
import traceback
from collections import deque
from collections.abc import Callable, Iterable
from multiprocessing import TimeoutError as MpTimeoutError
from typing import Any

import nbray

__all__ = ["AsyncResult", "IMapIterator", "Pool", "RemoteTraceback"]

log = logging.getLogger("nbray.util.multiprocessing")

# how a batch's items are applied: f(x), f(*x), f(*args, **kwargs)
_ONE, _STAR, _APPLY = 0, 1, 2


class RemoteTraceback(Exception):
    """The traceback of a call that raised in a pool process: the ``__cause__`` of the
    exception ``map``/``apply``/``get`` raise (as in the standard library)."""

    def __init__(self, tb: str) -> None:
        super().__init__(tb)
        self.tb = tb

    def __str__(self) -> str:
        return self.tb


class _Raised:
    """What a call that raised leaves in its chunk's results."""

    __slots__ = ("exc", "tb")

    def __init__(self, exc: BaseException, tb: str) -> None:
        self.exc = exc
        self.tb = tb

    def exception(self) -> BaseException:
        """The call's exception, its remote traceback attached as ``__cause__``."""
        self.exc.__cause__ = RemoteTraceback(f'\n"""\n{self.tb}"""')
        return self.exc


def _call(func: Callable[..., Any], args: Any, kwargs: Any) -> Any:
    try:
        return func(*args, **kwargs)
    except Exception as exc:
        return _Raised(exc, traceback.format_exc())


def _first_raised(values: list[Any]) -> _Raised | None:
    return next((v for v in values if type(v) is _Raised), None)


class _PoolActor:
    """One process of a Pool: runs the initializer once, then batches of calls (each
    call's exception is kept as its result, so one bad item loses no other)."""

    def __init__(self, initializer: Callable[..., Any] | None, initargs: tuple[Any, ...]) -> None:
        if initializer is not None:
            initializer(*initargs)

    def ping(self) -> int:
        return os.getpid()

    def run_batch(self, func: Callable[..., Any], items: list[Any], mode: int) -> list[Any]:
        if mode == _ONE:
            return [_call(func, (x,), {}) for x in items]
        if mode == _STAR:
            return [_call(func, x, {}) for x in items]
        return [_call(func, args, kwargs) for args, kwargs in items]


_PoolActorClass = nbray.remote(_PoolActor)


#: chunks per process when ``chunksize`` is not given (the standard library makes four:
#: each chunk is a round trip through the cluster here, so fewer, larger ones)
CHUNKS_PER_PROCESS = 2
#: ... and with ``maxtasksperchild``, which counts chunks: the standard library's (and
#: Ray's) four, so a process lives for the same items as there
CHUNKS_PER_PROCESS_WITH_MAXTASKS = 4


def _chunksize(n_items: int, chunks: int) -> int:
    size, extra = divmod(n_items, chunks)
    return size + 1 if extra else max(size, 1)


class _Slot:
    """One process of the pool: its actor, chunks run so far, calls in flight."""

    __slots__ = ("actor", "in_flight", "ran")

    def __init__(self, actor: Any) -> None:
        self.actor = actor
        self.ran = 0
        self.in_flight = 0


class AsyncResult:
    """The result of ``apply_async`` / ``map_async`` / ``starmap_async`` (the standard
    library's ``AsyncResult``).

    Example::

        res = pool.map_async(abs, [-1, -2])
        res.wait(10)
        assert res.ready() and res.successful() and res.get() == [1, 2]
    """

    def __init__(
        self,
        pool: Pool,
        refs: list[Any],
        single: bool,
        callback: Callable[[Any], Any] | None = None,
        error_callback: Callable[[BaseException], Any] | None = None,
    ) -> None:
        self._pool = pool
        self._refs = refs
        self._single = single
        self._done = threading.Event()
        self._value: Any = None
        self._error: BaseException | None = None
        self._lock = threading.Lock()
        if not refs:
            self._done.set()
            self._value = None if single else []
        if callback is not None or error_callback is not None:
            threading.Thread(
                target=self._run_callbacks,
                args=(callback, error_callback),
                name="nbray-pool-callback",
                daemon=True,
            ).start()

    def _settle(self, timeout: float | None = None) -> bool:
        """Fetch the chunks' values once all are there (within ``timeout``)."""
        if self._done.is_set():
            return True
        refs = self._refs
        if refs and timeout is not None:  # without a timeout, get below waits for them
            ready, _ = nbray.wait(refs, num_returns=len(refs), timeout=timeout)
            if len(ready) < len(refs):
                return False
        with self._lock:
            if self._done.is_set():
                return True
            try:
                chunks = nbray.get(self._refs)
                values = list(itertools.chain.from_iterable(chunks))
                raised = _first_raised(values)
                if raised is not None:
                    self._error = raised.exception()
                else:
                    self._value = values[0] if self._single else values
            except Exception as exc:
                self._error = exc
            refs, self._refs = self._refs, []
            self._done.set()
            self._pool._finished(self, refs)
        return True

    def _run_callbacks(
        self, callback: Callable[[Any], Any] | None, error_callback: Callable[[Any], Any] | None
    ) -> None:
        try:
            self._settle()
        except Exception as exc:  # the cluster went away
            self._error = exc
            self._done.set()
        try:
            if self._error is None and callback is not None:
                callback(self._value)
            elif self._error is not None and error_callback is not None:
                error_callback(self._error)
        except Exception:
            log.exception("a Pool callback raised")

    def ready(self) -> bool:
        """Whether the call has finished (successfully or not)."""
        return self._settle(timeout=0)

    def successful(self) -> bool:
        """Whether the call finished without raising; ``ValueError`` if not finished."""
        if not self.ready():
            raise ValueError(f"{self!r} not ready")
        return self._error is None

    def wait(self, timeout: float | None = None) -> None:
        """Wait until the result is there, or ``timeout`` seconds passed."""
        self._settle(timeout)

    def get(self, timeout: float | None = None) -> Any:
        """The result (the exception raised in the call is raised here); raises
        ``multiprocessing.TimeoutError`` when it is not there within ``timeout`` s."""
        if not self._settle(timeout):
            raise MpTimeoutError(f"the pool's result was not ready within {timeout} s")
        if self._error is not None:
            raise self._error
        return self._value


class IMapIterator:
    """The iterator ``imap`` / ``imap_unordered`` return: chunks are submitted as it is
    consumed (a few per process ahead), so a long or endless input is fine.

    ``next(timeout)`` raises ``multiprocessing.TimeoutError`` as the standard library's.
    An item whose call raised comes back as its exception (Ray's Pool does the same; the
    standard library's raises it from ``next``), its remote traceback as ``__cause__``.
    """

    def __init__(
        self,
        pool: Pool,
        func: Callable[..., Any],
        iterable: Iterable[Any],
        chunksize: int,
        ordered: bool,
    ) -> None:
        if not isinstance(chunksize, int) or chunksize < 1:
            raise ValueError(f"Chunksize must be 1+, not {chunksize!r}")
        self._pool = pool
        self._func = func
        self._items = iter(iterable)
        self._chunksize = chunksize
        self._ordered = ordered
        self._window = max(2, 4 * pool._processes)
        self._in_flight: deque[Any] = deque()
        self._ready: deque[Any] = deque()
        self._exhausted = False
        self._lock = threading.Lock()
        self._fill()

    def _fill(self) -> None:
        while not self._exhausted and len(self._in_flight) < self._window:
            chunk = list(itertools.islice(self._items, self._chunksize))
            if not chunk:
                self._exhausted = True
                break
            self._in_flight.append(self._pool._submit(self._func, chunk, _ONE))

    def __iter__(self) -> IMapIterator:
        return self

    def __next__(self) -> Any:
        return self.next()

    def next(self, timeout: float | None = None) -> Any:
        with self._lock:
            while not self._ready:
                if not self._in_flight:
                    raise StopIteration
                if self._ordered:
                    ref = self._in_flight[0]
                    done, _ = nbray.wait([ref], timeout=timeout)
                else:
                    done, _ = nbray.wait(list(self._in_flight), num_returns=1, timeout=timeout)
                if not done:
                    raise MpTimeoutError(f"no result within {timeout} s")
                ref = done[0]
                self._in_flight.remove(ref)
                self._pool._chunk_done(ref)
                self._ready.extend(
                    v.exception() if type(v) is _Raised else v for v in nbray.get(ref)
                )
                self._fill()
            return self._ready.popleft()

    __next__.__doc__ = next.__doc__ = "The next result (ordered for imap, first ready else)."


class Pool:
    """A pool of processes on the cluster with the standard library's ``Pool`` API.

    ``processes`` defaults to the cluster's CPUs; each process is an actor (holding no CPU
    unless ``ray_remote_args`` says so, as in Ray) that runs ``initializer(*initargs)``
    once, and is replaced after ``maxtasksperchild`` chunks. ``context`` is accepted and
    ignored; ``ray_address`` is passed to ``nbray.init`` when no cluster is connected.

    Example::

        from nbray.util.multiprocessing import Pool

        def square(x):
            return x * x

        with Pool() as pool:
            assert pool.map(square, range(10)) == [x * x for x in range(10)]
            assert list(pool.imap_unordered(square, [3])) == [9]
            assert pool.apply(divmod, (7, 2)) == (3, 1)
    """

    def __init__(
        self,
        processes: int | None = None,
        initializer: Callable[..., Any] | None = None,
        initargs: Iterable[Any] = (),
        maxtasksperchild: int | None = None,
        context: Any = None,
        ray_address: str | None = None,
        ray_remote_args: dict[str, Any] | None = None,
    ) -> None:
        if processes is not None and (not isinstance(processes, int) or processes < 1):
            raise ValueError(f"Number of processes must be at least 1, got {processes!r}")
        if initializer is not None and not callable(initializer):
            raise TypeError("initializer must be a callable")
        if maxtasksperchild is not None and (
            not isinstance(maxtasksperchild, int) or maxtasksperchild < 1
        ):
            raise ValueError(
                f"maxtasksperchild must be a positive int or None, got {maxtasksperchild!r}"
            )
        if context is not None:
            log.warning("Pool(context=...) is ignored: nbray starts the pool's processes")
        if not nbray.is_initialized():
            kwargs: dict[str, Any] = {}
            if ray_address is not None:
                kwargs["address"] = ray_address
            elif processes is not None and not os.environ.get("NBRAY_ADDRESS"):
                kwargs["num_cpus"] = processes
            nbray.init(**kwargs)
        cpus = int(nbray.cluster_resources().get("CPU", 0))
        if processes is None:
            processes = max(cpus, 1)
        elif processes > cpus:
            raise ValueError(
                f"Tried to start a pool with {processes} processes on a cluster with only "
                f"{cpus} CPUs: pass processes={cpus} or fewer, or start nbray with more CPUs"
            )
        self._processes = processes
        self._initializer = initializer
        self._initargs = tuple(initargs)
        self._maxtasksperchild = maxtasksperchild
        self._actor_class = _PoolActorClass.options(**(ray_remote_args or {}))
        self._lock = threading.Lock()
        self._state = "RUN"
        self._slots = [_Slot(self._new_actor()) for _ in range(processes)]
        self._ref_slot: dict[Any, _Slot] = {}
        # fail at once (with the initializer's error) rather than at the first map
        nbray.get([s.actor.ping.remote() for s in self._slots])

    def _new_actor(self) -> Any:
        return self._actor_class.remote(self._initializer, self._initargs)

    def __repr__(self) -> str:
        return f"<nbray.util.multiprocessing.Pool state={self._state} pool_size={self._processes}>"

    # --- dispatch ---------------------------------------------------------------------

    def _check_running(self) -> None:
        if self._state != "RUN":
            raise ValueError("Pool not running")

    def _submit(self, func: Callable[..., Any], items: list[Any], mode: int) -> Any:
        with self._lock:
            slot = min(self._slots, key=lambda s: s.in_flight)
            ref = slot.actor.run_batch.remote(func, items, mode)
            slot.in_flight += 1
            slot.ran += 1
            self._ref_slot[ref] = slot
            if self._maxtasksperchild is not None and slot.ran >= self._maxtasksperchild:
                # the old actor stops once its chunks are done: its handle is dropped
                slot.actor, slot.ran = self._new_actor(), 0
        return ref

    def _chunk_done(self, ref: Any) -> None:
        with self._lock:
            slot = self._ref_slot.pop(ref, None)
            if slot is not None:
                slot.in_flight -= 1

    def _finished(self, result: AsyncResult, refs: list[Any]) -> None:
        with self._lock:
            for ref in refs:
                slot = self._ref_slot.pop(ref, None)
                if slot is not None:
                    slot.in_flight -= 1

    def _chunks(self, items: list[Any], chunksize: int | None) -> list[list[Any]]:
        if chunksize is None:
            per_process = (
                CHUNKS_PER_PROCESS
                if self._maxtasksperchild is None
                else CHUNKS_PER_PROCESS_WITH_MAXTASKS
            )
            chunksize = _chunksize(len(items), self._processes * per_process)
        if not isinstance(chunksize, int) or chunksize < 1:
            raise ValueError(f"Chunksize must be 1+, not {chunksize!r}")
        return [items[i : i + chunksize] for i in range(0, len(items), chunksize)]

    def _async(
        self,
        func: Callable[..., Any],
        batches: list[list[Any]],
        mode: int,
        single: bool,
        callback: Callable[[Any], Any] | None,
        error_callback: Callable[[BaseException], Any] | None,
    ) -> AsyncResult:
        self._check_running()
        if not callable(func):
            raise TypeError(f"func must be callable, got {type(func).__name__}")
        refs = [self._submit(func, batch, mode) for batch in batches]
        return AsyncResult(self, refs, single, callback, error_callback)

    # --- the standard library's API ------------------------------------------------------

    def apply(
        self, func: Callable[..., Any], args: Iterable[Any] = (), kwds: dict[str, Any] | None = None
    ) -> Any:
        """``func(*args, **kwds)`` in a pool process; blocks for the result."""
        return self.apply_async(func, args, kwds).get()

    def apply_async(
        self,
        func: Callable[..., Any],
        args: Iterable[Any] = (),
        kwds: dict[str, Any] | None = None,
        callback: Callable[[Any], Any] | None = None,
        error_callback: Callable[[BaseException], Any] | None = None,
    ) -> AsyncResult:
        """``func(*args, **kwds)`` in a pool process; an ``AsyncResult`` at once."""
        item = (tuple(args), dict(kwds or {}))
        return self._async(func, [[item]], _APPLY, True, callback, error_callback)

    def map(
        self, func: Callable[[Any], Any], iterable: Iterable[Any], chunksize: int | None = None
    ) -> list[Any]:
        """``[func(x) for x in iterable]`` over the pool, in chunks (default: about two
        per process); raises the first exception a call raised."""
        return self.map_async(func, iterable, chunksize).get()

    def map_async(
        self,
        func: Callable[[Any], Any],
        iterable: Iterable[Any],
        chunksize: int | None = None,
        callback: Callable[[Any], Any] | None = None,
        error_callback: Callable[[BaseException], Any] | None = None,
    ) -> AsyncResult:
        """``map`` returning an ``AsyncResult``."""
        self._check_running()
        batches = self._chunks(list(iterable), chunksize)
        return self._async(func, batches, _ONE, False, callback, error_callback)

    def starmap(
        self,
        func: Callable[..., Any],
        iterable: Iterable[Iterable[Any]],
        chunksize: int | None = None,
    ) -> list[Any]:
        """``[func(*args) for args in iterable]`` over the pool."""
        return self.starmap_async(func, iterable, chunksize).get()

    def starmap_async(
        self,
        func: Callable[..., Any],
        iterable: Iterable[Iterable[Any]],
        chunksize: int | None = None,
        callback: Callable[[Any], Any] | None = None,
        error_callback: Callable[[BaseException], Any] | None = None,
    ) -> AsyncResult:
        """``starmap`` returning an ``AsyncResult``."""
        self._check_running()
        batches = self._chunks([tuple(a) for a in iterable], chunksize)
        return self._async(func, batches, _STAR, False, callback, error_callback)

    def imap(
        self, func: Callable[[Any], Any], iterable: Iterable[Any], chunksize: int = 1
    ) -> IMapIterator:
        """An iterator of ``func(x)`` in input order, computed ``chunksize`` items per call."""
        self._check_running()
        return IMapIterator(self, func, iterable, chunksize, ordered=True)

    def imap_unordered(
        self, func: Callable[[Any], Any], iterable: Iterable[Any], chunksize: int = 1
    ) -> IMapIterator:
        """Like ``imap``, in the order the chunks finish."""
        self._check_running()
        return IMapIterator(self, func, iterable, chunksize, ordered=False)

    # --- life ------------------------------------------------------------------------

    def close(self) -> None:
        """No more work may be submitted; what was submitted still runs (``join`` waits)."""
        if self._state == "RUN":
            self._state = "CLOSE"

    def terminate(self) -> None:
        """Stop the pool's processes now; unfinished results fail with ``ActorDiedError``."""
        self._state = "TERMINATE"
        self._kill_actors()

    def join(self) -> None:
        """Wait for the work submitted before ``close`` and for the processes to stop."""
        if self._state == "RUN":
            raise ValueError("Pool is still running")
        if self._state == "CLOSE":
            with self._lock:
                refs = list(self._ref_slot)
            if refs:
                nbray.wait(refs, num_returns=len(refs))
        self._kill_actors()

    def alive(self, timeout: float = 10.0) -> bool:
        """Whether the pool runs and all its processes answer within ``timeout`` s."""
        if self._state != "RUN":
            return False
        try:
            pings = [s.actor.ping.remote() for s in self._slots]
            ready, _ = nbray.wait(pings, num_returns=len(pings), timeout=timeout)
            nbray.get(ready)
        except Exception:  # a dead actor, or a cluster that is gone: not usable
            return False
        return len(ready) == len(pings)

    def _kill_actors(self) -> None:
        with self._lock:
            actors = [s.actor for s in self._slots]
            self._slots = []
        for actor in actors:
            try:
                nbray.kill(actor)
            except Exception as exc:  # the cluster (and the actor with it) is gone
                log.debug("could not kill a pool actor: %s", exc)

    def __enter__(self) -> Pool:
        self._check_running()
        return self

    def __exit__(self, *exc: object) -> None:
        self.terminate()

    def __reduce__(self) -> Any:
        raise NotImplementedError("pool objects cannot be passed between processes or pickled")
