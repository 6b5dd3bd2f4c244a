"""Remote tracebacks that point at the user's code, with the frames' locals shipped back.

    worker: task raises ──▶ capture_frames(exc): the user's frames (nbray's own skipped),
            each with its file, line, function name and locals (pickled one by one, capped)
        ──▶ RemoteError.extra["frames"] ──▶ kernel: TaskError.remote_frames
        ──▶ remote_traceback(frames): real traceback objects whose frames carry the remote
            file names, line numbers, function names and locals
        ──▶ IPython shows "Cell In[4], line 3, in f" with the cell's source; ``%debug`` opens
            a post-mortem on those frames and ``p x`` prints the shipped value of ``x``

Fake frames are made as Jinja2 makes template frames: code compiled at the right line of
the right file name, renamed to the function, run with the locals, and made to raise.
Values that cannot be pickled, or are too large, come back as :class:`Unshipped`
placeholders that show their repr.
"""

from __future__ import annotations

import builtins
import os
import pickle
import reprlib
import sys
import types
from typing import Any, NamedTuple

__all__ = [
    "RemoteFrame",
    "Unshipped",
    "capture_frames",
    "remote_traceback",
    "user_frames_only",
]

MAX_FRAMES = 30
MAX_LOCALS = 60
MAX_VALUE_BYTES = 1 << 20  # one local
MAX_TOTAL_BYTES = 8 << 20  # all locals of one error
MAX_ITEMS = 100_000  # a list, dict, ... longer than this is not pickled to be measured
_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep  # nbray/


class Unshipped:
    """Stands in for a remote local that could not come back (unpicklable or too large)."""

    def __init__(self, type_name: str, text: str, reason: str) -> None:
        self.type_name = type_name
        self.text = text
        self.reason = reason

    def __repr__(self) -> str:
        return f"<{self.type_name} not shipped back ({self.reason}): {self.text}>"


class RemoteFrame(NamedTuple):
    """One frame of a remote traceback."""

    filename: str
    lineno: int
    name: str
    line: str  # the source line as the worker saw it ("" when it had none)
    locals: dict[str, bytes]  # name -> pickled value (or pickled Unshipped)


def _is_internal(filename: str) -> bool:
    return os.path.abspath(filename).startswith(_PACKAGE_DIR) if filename else False


_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = 200


def _short_repr(value: Any) -> str:
    try:
        text = _REPR.repr(value)  # bounded: a huge list is not turned into one huge string
    except Exception as exc:  # a broken __repr__ must not hide the error itself
        text = f"<repr failed: {type(exc).__name__}>"
    return text if len(text) <= 200 else text[:197] + "..."


def _ship(value: Any, budget: int) -> bytes:
    from nbray._wire.serialization import dumps

    limit = min(MAX_VALUE_BYTES, budget)
    nbytes = getattr(value, "nbytes", None)
    if isinstance(nbytes, int) and nbytes > limit:
        reason = f"{nbytes / 1e6:.1f} MB"
        return pickle.dumps(Unshipped(type(value).__qualname__, _short_repr(value), reason))
    try:  # a huge container is not pickled just to find out it is too big
        items = len(value) if isinstance(value, list | tuple | dict | set | str | bytes) else 0
    except TypeError:
        items = 0
    if items > MAX_ITEMS or (isinstance(value, str | bytes) and items > limit):
        reason = f"{items:,} {'long' if isinstance(value, str | bytes) else 'items'}"
        return pickle.dumps(Unshipped(type(value).__qualname__, _short_repr(value), reason))
    try:
        blob = dumps(value)
    except Exception as exc:
        reason = f"cannot be pickled: {type(exc).__name__}"
        return pickle.dumps(Unshipped(type(value).__qualname__, _short_repr(value), reason))
    if len(blob) > min(MAX_VALUE_BYTES, budget):
        reason = f"{len(blob) / 1e6:.1f} MB pickled"
        return pickle.dumps(Unshipped(type(value).__qualname__, _short_repr(value), reason))
    return blob


def capture_frames(exc: BaseException) -> list[RemoteFrame]:
    """The frames of ``exc``'s traceback in user code (not nbray's), innermost last, with
    their locals pickled (capped in number and size)."""
    import linecache

    entries = []
    tb = exc.__traceback__
    while tb is not None:
        code = tb.tb_frame.f_code
        if not _is_internal(code.co_filename):
            entries.append(tb)
        tb = tb.tb_next
    entries = entries[-MAX_FRAMES:]
    budget = MAX_TOTAL_BYTES
    frames: list[RemoteFrame] = []
    for tb in reversed(entries):  # the innermost frames get the budget first
        frame = tb.tb_frame
        shipped: dict[str, bytes] = {}
        names = [n for n in frame.f_locals if not (n.startswith("__") and n.endswith("__"))]
        for name in names[:MAX_LOCALS]:
            value = frame.f_locals[name]
            if isinstance(value, types.ModuleType):
                continue
            blob = _ship(value, budget)
            budget = max(0, budget - len(blob))
            shipped[name] = blob
        filename = frame.f_code.co_filename
        frames.append(
            RemoteFrame(
                filename,
                tb.tb_lineno,
                frame.f_code.co_name,
                linecache.getline(filename, tb.tb_lineno).strip(),
                shipped,
            )
        )
    frames.reverse()
    # a task that failed because a task it waited on failed: that task's frames follow
    return frames + list(getattr(exc, "remote_frames", ()) or ())


class _Raise(Exception):
    pass


def _load(blob: bytes) -> Any:
    try:
        return pickle.loads(blob)
    except Exception as exc:  # a class this process cannot import
        return Unshipped("value", "", f"cannot be unpickled here: {type(exc).__name__}: {exc}")


def _fake_tb(frame: RemoteFrame) -> types.TracebackType | None:
    """A one-entry traceback whose frame has the remote frame's file, line, name, locals."""
    lineno = max(1, frame.lineno)
    code = compile("\n" * (lineno - 1) + "raise __nbray_raise__", frame.filename, "exec")
    code = code.replace(co_name=frame.name, co_qualname=frame.name)
    local_ns = {name: _load(blob) for name, blob in frame.locals.items()}
    global_ns = {
        "__name__": "__nbray_remote__",
        "__builtins__": builtins,
        "__nbray_raise__": _Raise,
    }
    try:
        exec(code, global_ns, local_ns)
    except _Raise:
        tb = sys.exc_info()[2]
        return tb.tb_next if tb is not None else None
    return None


def _chain(entries: list[types.TracebackType]) -> types.TracebackType | None:
    head: types.TracebackType | None = None
    for tb in reversed(entries):
        head = types.TracebackType(head, tb.tb_frame, tb.tb_lasti, tb.tb_lineno)
    return head


def remote_traceback(
    frames: list[RemoteFrame], local_tb: types.TracebackType | None = None
) -> types.TracebackType | None:
    """``local_tb`` (nbray's own frames removed), continued by the remote ``frames``."""
    entries = _entries(user_frames_only(local_tb))
    for frame in frames:
        tb = _fake_tb(frame)
        if tb is not None:
            entries.append(tb)
    return _chain(entries)


def _entries(tb: types.TracebackType | None) -> list[types.TracebackType]:
    out = []
    while tb is not None:
        out.append(tb)
        tb = tb.tb_next
    return out


def user_frames_only(tb: types.TracebackType | None) -> types.TracebackType | None:
    """``tb`` without the frames of nbray's own modules."""
    return _chain([t for t in _entries(tb) if not _is_internal(t.tb_frame.f_code.co_filename)])
