"""Values to bytes and back, with pickle protocol 5 out-of-band buffers.

    value ──cloudpickle(protocol 5, buffer_callback)──▶ main pickle + raw buffers
          ──pack──▶ one blob: header | main | 64-byte aligned buffers
          ──▶ inline in a message (small) or written into a shared-memory segment (large)

    blob (bytes or a read-only mmap) ──unpack──▶ memoryview slices ──pickle.loads──▶ value

Buffers are never copied on the way back: numpy arrays read from a segment are read-only
views of the mapping. ObjectRefs met while pickling are collected (``contained``) so the
head can keep them alive as long as the object that holds them.
"""

from __future__ import annotations

import io
import pickle
import struct
import threading
import types
from collections import ChainMap
from typing import Any, NamedTuple

import cloudpickle
from cloudpickle import cloudpickle as _cp

from nbray._base.errors import SerializationError

_tls = threading.local()
_ALIGN = 64
_COUNT = struct.Struct("<IQ")
_LEN = struct.Struct("<Q")
SIMPLE_TYPES = frozenset((int, float, str, bytes, bool, type(None)))


class Serialized(NamedTuple):
    main: bytes
    buffers: list[pickle.PickleBuffer]
    contained: tuple[int, ...]

    @property
    def size(self) -> int:
        return packed_size(self)


def _code_reduce(code: types.CodeType) -> Any:
    # cloudpickle renames every file "<dynamic-code>"; keep the real one so a remote
    # traceback names the notebook cell or file the function was written in
    rebuild, args = _cp._code_reduce(code)
    return rebuild, tuple(code.co_filename if a == "<dynamic-code>" else a for a in args)


class _Pickler(cloudpickle.Pickler):
    dispatch_table = ChainMap({types.CodeType: _code_reduce}, cloudpickle.Pickler.dispatch_table)


def dumps(value: Any, buffer_callback: Any = None) -> bytes:
    """``cloudpickle.dumps`` (protocol 5) that keeps code objects' file names."""
    with io.BytesIO() as file:
        _Pickler(file, protocol=5, buffer_callback=buffer_callback).dump(value)
        return file.getvalue()


def note_contained_ref(object_id: int) -> None:
    """Called by ObjectRef.__reduce__: record a ref pickled inside the current value."""
    collected = getattr(_tls, "contained", None)
    if collected is not None:
        collected.append(object_id)


def serialize(value: Any, what: str = "value") -> Serialized:
    """Pickle ``value``; raise SerializationError naming ``what`` if it cannot be pickled."""
    if type(value) in SIMPLE_TYPES:
        return Serialized(pickle.dumps(value, protocol=5), [], ())
    buffers: list[pickle.PickleBuffer] = []
    outer = getattr(_tls, "contained", None)
    _tls.contained = []
    try:
        main = dumps(value, buffer_callback=buffers.append)
        contained = tuple(_tls.contained)
    except Exception as exc:
        raise SerializationError(
            f"could not serialize {what} {_describe(value)}: {type(exc).__name__}: {exc}. "
            "Objects holding locks, open files, sockets or generators cannot be sent to "
            "a worker; create them inside the task instead."
        ) from exc
    finally:
        _tls.contained = outer
    if outer is not None:
        outer.extend(contained)
    return Serialized(main, buffers, contained)


def _describe(value: Any) -> str:
    text = repr(value)
    if len(text) > 80:
        text = text[:77] + "..."
    return f"{text} of type {type(value).__qualname__}"


def _pad(n: int) -> int:
    return (-n) % _ALIGN


def _header_size(nbuf: int) -> int:
    size = _COUNT.size + _LEN.size * nbuf
    return size + _pad(size)


def packed_size(s: Serialized) -> int:
    size = _header_size(len(s.buffers)) + len(s.main)
    for buf in s.buffers:
        size += _pad(size) + buf.raw().nbytes
    return size


def chunks(s: Serialized) -> list[bytes | memoryview]:
    """``s`` packed, as the pieces to write one after another (``packed_size(s)`` bytes in
    all): header, main pickle, then each buffer after its padding. The buffers are not
    copied."""
    bufs = [b.raw() for b in s.buffers]
    header = bytearray(_header_size(len(bufs)))
    _COUNT.pack_into(header, 0, len(bufs), len(s.main))
    for i, raw in enumerate(bufs):
        _LEN.pack_into(header, _COUNT.size + i * _LEN.size, raw.nbytes)
    out: list[bytes | memoryview] = [bytes(header), s.main]
    off = len(header) + len(s.main)
    for raw in bufs:
        pad = _pad(off)
        if pad:
            out.append(bytes(pad))
        out.append(raw)
        off += pad + raw.nbytes
    return out


def pack_plain(args: tuple[Any, ...]) -> bytes:
    """``pack(serialize((args, {})))`` for arguments of SIMPLE_TYPES only, much faster."""
    if not args:
        return _NO_ARGS
    main = pickle.dumps((args, {}), protocol=5)
    return _COUNT.pack(0, len(main)) + _PAD0 + main


def pack(s: Serialized) -> bytes:
    """``s`` as one bytes blob (for inline transport)."""
    if not s.buffers:
        return _COUNT.pack(0, len(s.main)) + bytes(_pad(_COUNT.size)) + s.main
    return b"".join(chunks(s))


_PAD0 = bytes(_pad(_COUNT.size))
_NO_ARGS = pack(Serialized(pickle.dumps(((), {}), protocol=5), [], ()))


def unpack(blob: bytes | memoryview) -> Any:
    """Rebuild a value from a packed blob; buffers are views into ``blob``."""
    view = memoryview(blob)
    nbuf, main_len = _COUNT.unpack_from(view, 0)
    lens = [_LEN.unpack_from(view, _COUNT.size + i * _LEN.size)[0] for i in range(nbuf)]
    off = _header_size(nbuf)
    main = view[off : off + main_len]
    off += main_len
    buffers = []
    for n in lens:
        off += _pad(off)
        buffers.append(view[off : off + n])
        off += n
    return pickle.loads(main, buffers=buffers)


def dumps_function(func: Any, what: str) -> bytes:
    """Pickle a function or class by value where needed (``__main__``, notebooks)."""
    try:
        return dumps(func)
    except Exception as exc:
        error = exc
    from .captures import unpicklable_captures

    name = getattr(func, "__name__", what)
    paths = unpicklable_captures(func, name)
    if paths:
        shown = "; ".join(paths[:3]) + (f"; and {len(paths) - 3} more" if len(paths) > 3 else "")
        message = (
            f"{what} captures a value that cannot be pickled: {shown} "
            f"({type(error).__name__}: {error}). Create it inside the function (e.g. open the "
            "file or make the lock there), or pass what it needs as an argument."
        )
    else:
        message = (
            f"could not serialize {what}: {type(error).__name__}: {error}. A remote function "
            "must not capture unpicklable globals (locks, open files, clients); create "
            "them inside the function instead."
        )
    # no chained pickler traceback: the message says what and where
    raise SerializationError(message) from None


FUNCTION_SIZE_WARN_THRESHOLD = 10**7  # Ray's: above this a pickled function is "very large"


def check_function_size(blob: bytes, kind: str, name: str) -> None:
    """Refuse a pickled function or class over Ray's limit, with Ray's message (``kind``:
    "remote function" or "actor"). The limit is 100 MB, or ``FUNCTION_SIZE_ERROR_THRESHOLD``
    bytes from the environment, as in Ray; above 10 MB it warns."""
    size = len(blob)
    if size <= FUNCTION_SIZE_WARN_THRESHOLD and size <= _error_threshold():
        return
    tip = (
        "Check that its definition is not implicitly capturing a large array or other object "
        "in scope. Tip: use nbray.put() to put large objects in the object store."
    )
    limit = _error_threshold()
    if size >= limit:
        raise ValueError(
            f"The {kind} {name} is too large ({size // (1024 * 1024)} MiB > "
            f"FUNCTION_SIZE_ERROR_THRESHOLD={limit // (1024 * 1024)} MiB). {tip}"
        )
    import warnings

    warnings.warn(
        f"The {kind} {name} is very large ({size // (1024 * 1024)} MiB). {tip}", stacklevel=4
    )


def _error_threshold() -> int:
    import os

    return int(os.environ.get("FUNCTION_SIZE_ERROR_THRESHOLD", 10**8))
