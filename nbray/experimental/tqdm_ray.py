"""Progress bars from tasks and actors, shown once each in the cell that submitted the
work (Ray's ``ray.experimental.tqdm_ray``; also ``nbray.util.tqdm``).

    tqdm(...) in a task ──update()──▶ at most one JSON state line per flush interval on
        the task's stdout (Ray's format) ──▶ driver: nbray.progress_lines ──▶
        show_remote_state ──▶ one bar per bar id: an ipywidgets bar under the submitting
        cell in Jupyter, a line redrawn in place in a terminal
    tqdm(...) in the kernel itself ──▶ the same bars, directly
    a bar whose process dies ──▶ closed, marked "(died)", within about half a second

On the Ray engine the lines go through Ray's log streaming, whose driver draws them with
Ray's own bar manager (it needs the ``tqdm`` package on the driver).
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from typing import Any

__all__ = ["RAY_TQDM_MAGIC", "show_remote_state", "tqdm"]

RAY_TQDM_MAGIC = "__ray_tqdm_magic_token__"


def _in_task() -> bool:
    from nbray._model import session

    return bool(session.in_worker)


class tqdm:
    """A progress bar usable inside tasks and actors (a subset of tqdm's API, as Ray's).

    Example::

        from nbray.experimental.tqdm_ray import tqdm

        @nbray.remote
        def work(n):
            for _ in tqdm(range(n), desc="work"):
                time.sleep(0.01)

        nbray.get([work.remote(100), work.remote(200)])   # two bars under this cell
    """

    DEFAULT_FLUSH_INTERVAL_SECONDS = 1.0

    def __init__(
        self,
        iterable: Iterable[Any] | None = None,
        desc: str | None = None,
        total: int | None = None,
        unit: str | None = None,
        position: int | None = None,
        flush_interval_s: float | None = None,
    ) -> None:
        if total is None and iterable is not None:
            try:
                total = len(iterable)  # type: ignore[arg-type]
            except (TypeError, AttributeError):
                total = None
        self._iterable = iterable
        self._desc = desc or ""
        self._total = total
        self._unit = unit or "it"
        self._pos = position or 0
        self._uuid = uuid.uuid4().hex
        self._x = 0
        self._closed = False
        self._flush_interval_s = (
            self.DEFAULT_FLUSH_INTERVAL_SECONDS if flush_interval_s is None else flush_interval_s
        )
        self._last_flush = 0.0
        self._dump_state(force=True)

    # --- tqdm's API -----------------------------------------------------------------------

    def set_description(self, desc: str) -> None:
        self._desc = desc
        self._dump_state()

    def update(self, n: int = 1) -> None:
        self._x += n
        self._dump_state()

    def refresh(self) -> None:
        self._dump_state(force=True)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._dump_state(force=True)

    @property
    def total(self) -> int | None:
        return self._total

    @total.setter
    def total(self, total: int | None) -> None:
        self._total = total

    @property
    def n(self) -> int:
        return self._x

    @n.setter
    def n(self, n: int) -> None:
        self._x = n

    def __iter__(self) -> Iterator[Any]:
        if self._iterable is None:
            raise ValueError("No iterable provided")
        for x in self._iterable:
            yield x
            self.update(1)
        self.close()

    def __enter__(self) -> tqdm:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        # a bar dropped without close() (its task returned) still ends on the driver
        try:
            self.close()
        except Exception:  # interpreter shutdown: nothing to tell
            return

    # --- state -----------------------------------------------------------------------------

    def _state(self) -> dict[str, Any]:
        return {
            "__magic_token__": RAY_TQDM_MAGIC,
            "x": self._x,
            "pos": self._pos,
            "desc": self._desc,
            "total": self._total,
            "unit": self._unit,
            "ip": _IP,
            "pid": os.getpid(),
            "uuid": self._uuid,
            "closed": self._closed,
        }

    def _dump_state(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_flush < self._flush_interval_s:
            return
        self._last_flush = now
        if _in_task():
            sys.stdout.write(json.dumps(self._state()) + "\n")
            sys.stdout.flush()
        else:
            _manager().process(self._state(), None)


def _node_ip() -> str:
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return "127.0.0.1"


_IP = _node_ip()


# --- the driver's side ----------------------------------------------------------------------


def show_remote_state(state: dict[str, Any], task_id: int, client: Any) -> None:
    """Apply one bar state that arrived in a task's output (``nbray.progress_lines``)."""
    _manager().process(state, _submitting_cell(task_id, client))


def _submitting_cell(task_id: int, client: Any) -> Any:
    """The Jupyter parent message of the cell that submitted ``task_id`` (the magics'
    output router knows it), else ``None``."""
    router = getattr(getattr(client, "output_handler", None), "__self__", None)
    parent_of = getattr(router, "parent_of", None)
    return parent_of(task_id) if parent_of is not None and task_id else None


def _format(state: dict[str, Any], started: float) -> str:
    x, total, unit = state["x"], state["total"], state["unit"]
    elapsed = max(time.monotonic() - started, 1e-9)
    rate = f"{x / elapsed:,.1f} {unit}/s"
    who = "" if state["pid"] == os.getpid() else f"(pid={state['pid']}) "
    desc = f"{who}{state['desc']}: " if state["desc"] or who else ""
    if total:
        pct = 100.0 * x / total
        return f"{desc}{pct:3.0f}% {x:,}/{total:,} {unit} [{elapsed:.1f}s, {rate}]"
    return f"{desc}{x:,} {unit} [{elapsed:.1f}s, {rate}]"


class _WidgetView:
    """One bar as an ipywidgets bar, displayed under the submitting cell."""

    def __init__(self, state: dict[str, Any], parent: Any, shell: Any) -> None:
        import ipywidgets as w
        from IPython.display import display

        self.bar = w.IntProgress(min=0, max=max(state["total"] or 1, 1), value=0)
        self.label = w.HTML()
        self.box = w.HBox([self.bar, self.label])
        pub = getattr(shell, "display_pub", None)
        setter = getattr(pub, "set_thread_parent", None)
        token = setter(parent) if setter is not None and parent is not None else None
        try:
            display(self.box)
        finally:
            if token is not None and pub is not None:
                pub.reset_thread_parent(token)

    def draw(self, state: dict[str, Any], text: str, end: str | None) -> None:
        total = state["total"]
        self.bar.max = max(total or 1, 1)
        self.bar.value = min(state["x"], self.bar.max) if total else self.bar.max
        if not total:
            self.bar.bar_style = "info"
        if end == "done":
            self.bar.bar_style = "success"
        elif end == "died":
            self.bar.bar_style = "danger"
        import html

        self.label.value = f"<code>{html.escape(text)}</code>"


class _TextView:
    """The bars in a terminal: redrawn in place on a TTY, one line per open and close
    otherwise (a log stays readable)."""

    def __init__(self, state: dict[str, Any], manager: _BarManager) -> None:
        self.manager = manager
        self.text = ""
        self.announced = False  # its first line written (not on a TTY)

    def draw(self, state: dict[str, Any], text: str, end: str | None) -> None:
        self.text = text + {"done": "", "died": " (died)"}.get(end or "", "")
        out = sys.stderr
        if not out.isatty():
            if end is not None or not self.announced:
                self.announced = True
                out.write(self.text + "\n")
                out.flush()
            return
        self.manager.redraw_terminal(self.text if end is not None else None, self)


class _Bar:
    __slots__ = ("ended", "started", "state", "view")

    def __init__(self, state: dict[str, Any], view: Any) -> None:
        self.state = state
        self.view = view
        self.started = time.monotonic()
        self.ended = False


class _BarManager:
    """The bars of this process, by bar id; a watcher closes bars whose process died."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.bars: dict[str, _Bar] = {}
        self.lines_drawn = 0  # bar lines under the cursor in a terminal
        self._watcher: threading.Thread | None = None

    def process(self, state: dict[str, Any], parent: Any) -> None:
        with self.lock:
            bar = self.bars.get(state["uuid"])
            if bar is None:
                if state["closed"] and state["x"] == 0 and not state["total"]:
                    return  # opened and closed with nothing to show
                bar = self.bars[state["uuid"]] = _Bar(state, self._view(state, parent))
                self._watch()
            bar.state = state
            self._draw(bar, "done" if state["closed"] else None)

    def _view(self, state: dict[str, Any], parent: Any) -> Any:
        shell = _kernel_shell()
        if shell is not None:
            return _WidgetView(state, parent, shell)
        return _TextView(state, self)

    def _draw(self, bar: _Bar, end: str | None) -> None:
        if bar.ended:
            return
        if end is not None:
            bar.ended = True
        bar.view.draw(bar.state, _format(bar.state, bar.started), end)
        if end is not None:
            del self.bars[bar.state["uuid"]]

    def redraw_terminal(self, final: str | None, view: Any) -> None:
        """Redraw the open bars in place (cursor up over the last drawing); a bar that
        ended is written once above them and stays."""
        views = [b.view for b in self.bars.values() if isinstance(b.view, _TextView)]
        if final is not None:
            views = [v for v in views if v is not view]
        lines = ([final] if final is not None else []) + [v.text for v in views]
        up = self.lines_drawn
        sys.stderr.write((f"\x1b[{up}F" if up else "") + "".join(f"\x1b[2K{t}\n" for t in lines))
        sys.stderr.flush()
        self.lines_drawn = len(views)

    # --- bars of processes that died ---------------------------------------------------

    def _watch(self) -> None:
        if self._watcher is None or not self._watcher.is_alive():
            self._watcher = threading.Thread(target=self._check, name="nbray-tqdm", daemon=True)
            self._watcher.start()

    def _check(self) -> None:
        while True:
            time.sleep(0.5)
            with self.lock:
                if not self.bars:
                    self._watcher = None
                    return
                for bar in list(self.bars.values()):
                    if bar.state["ip"] == _IP and not _alive(bar.state["pid"]):
                        self._draw(bar, "died")


def _alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _kernel_shell() -> Any:
    get_ipython = getattr(sys.modules.get("IPython"), "get_ipython", None)
    shell = get_ipython() if get_ipython is not None else None
    return shell if getattr(shell, "kernel", None) is not None else None


_the_manager: _BarManager | None = None
_manager_lock = threading.Lock()


def _manager() -> _BarManager:
    global _the_manager
    with _manager_lock:
        if _the_manager is None:
            _the_manager = _BarManager()
        return _the_manager
