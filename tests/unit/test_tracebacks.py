"""Remote frames: captured with their locals (capped), rebuilt as real traceback frames."""

from __future__ import annotations

import pickle
import threading
import traceback

from nbray._model.tracebacks import Unshipped, capture_frames, remote_traceback


def failing(x: int) -> float:
    items = list(range(200_000))  # too many items to ship back
    guard = threading.Lock()  # cannot be pickled
    label = "ok"
    assert items and guard and label
    return 1 / x


def caught() -> ZeroDivisionError:
    try:
        failing(0)
    except ZeroDivisionError as exc:
        return exc
    raise AssertionError("no error")


def test_frames_are_the_users_with_their_locals() -> None:
    frames = capture_frames(caught())
    assert [f.name for f in frames] == ["caught", "failing"]
    inner = frames[-1]
    assert inner.filename == __file__ and inner.line == "return 1 / x"
    values = {k: pickle.loads(v) for k, v in inner.locals.items()}
    assert values["x"] == 0 and values["label"] == "ok"
    assert isinstance(values["items"], Unshipped) and "200,000 items" in repr(values["items"])
    assert isinstance(values["guard"], Unshipped) and "cannot be pickled" in repr(values["guard"])


def test_rebuilt_traceback_has_the_remote_names_lines_and_locals() -> None:
    frames = capture_frames(caught())
    tb = remote_traceback(frames)
    summary = traceback.extract_tb(tb)
    assert [(s.name, s.lineno, s.line) for s in summary] == [
        (f.name, f.lineno, f.line) for f in frames
    ]
    last = tb
    while last is not None and last.tb_next is not None:
        last = last.tb_next
    assert last is not None and last.tb_frame.f_locals["x"] == 0
