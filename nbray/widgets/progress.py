"""Progress: ``nbray.get(refs, progress=True)`` and ``nbray.wait(..., progress=True)``.

    get/wait ──▶ engine.wait(pending, timeout=0.2) in a loop ──▶ Progress.update(done, failed)
                 (ready values fetched as they come)             ├─ kernel: IntProgress + label
                                                                  └─ elsewhere: a text bar (stderr)

Only the engine interface is used (``wait`` and ``get``), so it works for any engine.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

import ipywidgets

from nbray._base.errors import GetTimeoutError
from nbray._model.engine import Engine
from nbray._model.object_ref import ObjectRef

from .base import has_frontend, publish_picture
from .pictures import progress_html

__all__ = ["Progress", "get_with_progress", "wait_with_progress"]

POLL = 0.2  # seconds between checks (and at most this many redraws a second: 5)


class Progress:
    """A progress bar: done/failed/total, rate and ETA; a widget in a notebook, a text bar
    elsewhere.

    Example::

        bar = Progress(100, "squares")
        bar.update(done=10, failed=0)
        bar.finish()
    """

    def __init__(
        self,
        total: int,
        label: str = "tasks",
        *,
        frontend: bool | None = None,
        stream: TextIO | None = None,
        verb: str = "done",
        failures: bool = True,
    ) -> None:
        self.total = total
        self.verb = verb
        self.failures = failures
        self.label = label
        self.done = 0
        self.failed = 0
        self.started = time.monotonic()
        self.frontend = has_frontend() if frontend is None else frontend
        self.stream = stream if stream is not None else sys.stderr
        self._last_text = 0.0
        self.widget: ipywidgets.HBox | None = None
        self._display_id: str | None = None
        if self.frontend:
            from IPython.display import display

            self._bar = ipywidgets.IntProgress(
                value=0,
                min=0,
                max=max(total, 1),
                bar_style="info",
                layout=ipywidgets.Layout(width="320px"),
            )
            self._label = ipywidgets.HTML(self.summary())
            self.widget = ipywidgets.HBox([self._bar, self._label])
            # shown with its picture, which finish() brings up to date (see base.py)
            handle = display(self._bundle(), raw=True, display_id=True)
            self._display_id = handle.display_id if handle is not None else None

    _COLORS = {"info": "#3b82f6", "success": "#22c55e", "danger": "#ef4444", "warning": "#f59e0b"}

    def picture(self) -> str:
        """A static HTML picture of the bar (what a saved notebook shows without a kernel)."""
        style = self._bar.bar_style if self.widget is not None else "info"
        return progress_html(self.fraction, self.summary(), self._COLORS.get(style, "#3b82f6"))

    def _bundle(self) -> dict[str, Any]:
        assert self.widget is not None
        bundle: dict[str, Any] = dict(self.widget._repr_mimebundle_() or {})
        bundle["text/plain"] = self.summary()
        bundle["text/html"] = self.picture()
        return bundle

    @property
    def fraction(self) -> float:
        return 1.0 if not self.total else self.done / self.total

    def summary(self) -> str:
        """E.g. ``'get: 40/100 done, 1 failed, 12.5/s, ETA 4.8 s'``."""
        elapsed = max(time.monotonic() - self.started, 1e-9)
        rate = self.done / elapsed
        left = self.total - self.done
        eta = f"ETA {left / rate:.1f} s" if rate > 0 and left else f"{elapsed:.1f} s"
        failed = f"{self.failed} failed, " if self.failures else ""
        return f"{self.label}: {self.done}/{self.total} {self.verb}, {failed}{rate:.1f}/s, {eta}"

    def update(self, done: int, failed: int = 0) -> None:
        self.done, self.failed = done, failed
        if self.widget is not None:
            self._bar.value = done
            self._bar.bar_style = "danger" if failed else "info"
            self._label.value = self.summary()
        elif time.monotonic() - self._last_text >= POLL:
            self._write_text("\r")

    def finish(self) -> None:
        if self.widget is not None:
            self._bar.value = self.done
            self._bar.bar_style = (
                "danger" if self.failed else "success" if self.done == self.total else "warning"
            )
            self._label.value = self.summary()
            if self._display_id is not None:
                publish_picture(self._bundle(), self._display_id)
        else:
            self._write_text("\r", end="\n")

    def _write_text(self, start: str, end: str = "") -> None:
        self._last_text = time.monotonic()
        width = 30
        filled = int(width * self.fraction)
        text = f"{start}[{'#' * filled}{'.' * (width - filled)}] {self.summary()}{end}"
        try:
            self.stream.write(text)
            self.stream.flush()
        except (ValueError, OSError):  # closed stream: progress is best effort
            return


def get_with_progress(engine: Engine, refs: list[ObjectRef], timeout: float | None) -> list[Any]:
    """``engine.get(refs, timeout)`` with a progress bar; raises the first failed ref's
    error (in the order of ``refs``) once all are done."""
    deadline = None if timeout is None else time.monotonic() + timeout
    bar = Progress(len(refs), "get")
    values: dict[int, Any] = {}
    errors: dict[int, BaseException] = {}
    pending = list(dict.fromkeys(refs))
    try:
        while pending:
            step = POLL if deadline is None else max(0.0, min(POLL, deadline - time.monotonic()))
            ready = engine.wait(pending, len(pending), step)
            _fetch(engine, ready, values, errors)
            ready_ids = {r.id for r in ready}
            pending = [r for r in pending if r.id not in ready_ids]
            bar.update(len(values) + len(errors), len(errors))
            if pending and deadline is not None and time.monotonic() >= deadline:
                raise GetTimeoutError(
                    f"get timed out after {timeout} s: {len(pending)} of {len(refs)} objects "
                    "were not ready. Pass a larger timeout, or timeout=None to wait."
                )
    finally:
        bar.finish()
    for r in refs:
        if r.id in errors:
            raise errors[r.id]
    return [values[r.id] for r in refs]


def _fetch(
    engine: Engine,
    ready: list[ObjectRef],
    values: dict[int, Any],
    errors: dict[int, BaseException],
) -> None:
    if not ready:
        return
    try:
        for r, v in zip(ready, engine.get(ready, None), strict=True):
            values[r.id] = v
    except Exception:  # some failed: sort them out one by one
        for r in ready:
            try:
                values[r.id] = engine.get([r], None)[0]
            except Exception as exc:
                errors[r.id] = exc


def wait_with_progress(
    engine: Engine, refs: list[ObjectRef], num_returns: int, timeout: float | None
) -> list[ObjectRef]:
    """``engine.wait`` with a progress bar towards ``num_returns`` ready refs."""
    deadline = None if timeout is None else time.monotonic() + timeout
    # wait does not fetch values, so it cannot tell failed objects from good ones
    bar = Progress(num_returns, "wait", verb="ready", failures=False)
    ready: list[ObjectRef] = []
    try:
        while True:
            step = POLL if deadline is None else max(0.0, min(POLL, deadline - time.monotonic()))
            ready = engine.wait(refs, num_returns, step)
            bar.update(min(len(ready), num_returns))
            if len(ready) >= num_returns or (deadline is not None and time.monotonic() >= deadline):
                return ready
    finally:
        bar.finish()
