"""What every live widget shares: attach to the engine's hub, redraw when told, close.

    EventHub (throttled) ──refresh(state, gone)──▶ LiveWidget._draw ──▶ ipywidgets / plotly
                                                  └─ no frontend: nothing drawn; repr() is
                                                     the text summary (_text)

A widget is an ``ipywidgets.VBox``; in a kernel its children are built, elsewhere (plain
IPython, a script) it holds no children and its ``repr`` is a text summary, so
``print(nbray.monitor())`` works in a terminal.

Its output also carries a static picture of its last state (``text/html``, no script; see
``pictures.py``), so a notebook saved with it shows the picture where no kernel draws the
live view (nbconvert's HTML, nbviewer, GitHub, JupyterLab without the widget's kernel):

    display(widget) ──▶ display_data {widget-view, text/html: picture, text/plain}, display_id
    end of every cell (post_run_cell), close() ──▶ snapshot(): update_display with a new
                                                    picture when it changed
    between cells, the first redraw with every task ended ──▶ snapshot() if the tasks'
                                                 states changed since the cell's end
"""

from __future__ import annotations

import html
import threading
import time
import weakref
from typing import Any

import ipywidgets

from nbray._base.events import TERMINAL_STATES
from nbray._model.engine import Engine

from .hub import EventHub, hub_for
from .state import EventAggregator

__all__ = ["LiveWidget", "has_frontend", "publish_picture"]

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
_LIVE: weakref.WeakSet[LiveWidget] = weakref.WeakSet()  # displayed, not closed
_HOOKED: set[int] = set()  # ids of the shells whose post_run_cell refreshes the pictures
_cell_running = False  # a hooked shell is between pre_run_cell and post_run_cell
# how long after a cell's end its tasks' first events may still come: the local head sends
# events every 0.1 s, the hub folds them at its redraws (0.4 s)
SETTLE = 1.0


def has_frontend() -> bool:
    """Whether this process is a Jupyter kernel, whose frontend can render widgets."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


class LiveWidget(ipywidgets.VBox):
    """Base of the live widgets: subclasses build their views in ``_build`` and update
    them in ``_draw``; ``_text`` is the plain-text summary."""

    def __init__(self, engine: Engine | None = None, *, frontend: bool | None = None) -> None:
        super().__init__()
        self._draw_lock = threading.Lock()
        self.gone = ""
        self.stalled = 0.0  # seconds without news, as last drawn (0: news are flowing)
        self.draws = 0
        self._hub: EventHub = hub_for(engine)
        self.frontend = has_frontend() if frontend is None else frontend
        self._banner = ipywidgets.HTML()
        if self.frontend:
            self.children = (self._banner, *self._build())
        self._display_ids: list[str] = []
        self._shown_picture = ""
        self._publish_lock = threading.Lock()
        # a cell ended: the picture is drawn again once its tasks have all ended
        self._trailing = False
        self._settled_after = 0.0
        self._counts: dict[str, int] = {}
        self._detach = self._hub.attach(self._refresh)
        self.sync()

    # --- subclass hooks --------------------------------------------------------------------

    def _build(self) -> list[ipywidgets.Widget]:
        raise NotImplementedError

    def _draw(self, state: EventAggregator) -> None:
        raise NotImplementedError

    def _text(self, state: EventAggregator) -> str:
        raise NotImplementedError

    def _picture(self, state: EventAggregator) -> str:
        """A static HTML picture of what the widget shows now (``pictures.py``)."""
        raise NotImplementedError

    # --- public ----------------------------------------------------------------------------

    @property
    def state(self) -> EventAggregator:
        """The shared state model this widget draws."""
        return self._hub.state

    def sync(self) -> None:
        """Take in every event the cluster sent so far and redraw now (the live updates
        otherwise come a few times a second)."""
        self._hub.sync()
        self._refresh(self._hub.state, self._hub.check_gone())

    def picture(self) -> str:
        """The static picture of the widget's current state: HTML, no script. It is the
        ``text/html`` entry of the widget's output, kept current at the end of each cell,
        so a saved notebook shows it where no kernel draws the widget."""
        with self._draw_lock:  # no banner: "cluster gone" is news for the live view only
            return self._picture(self._hub.state)

    def snapshot(self) -> bool:
        """Refresh the picture in the outputs that show this widget (done at the end of
        every cell and by ``close``); returns whether it changed."""
        if not self._display_ids:
            return False
        with self._publish_lock:  # the end of a cell and the redraw thread may both publish
            return self._publish(self._bundle(live=not getattr(self, "_closed", False)))

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        return self._bundle(live=True)

    def _ipython_display_(self) -> None:
        """Shown with a display id, so its picture can be brought up to date later."""
        from IPython.display import display

        bundle = self._bundle(live=True)
        handle = display(bundle, raw=True, display_id=True)
        if handle is not None:
            self._display_ids.append(handle.display_id)
            self._shown_picture = bundle.get("text/html", "")
            _LIVE.add(self)
            _hook_cells()

    def close(self) -> None:
        """Stop updating and release the event subscription; the outputs that showed the
        widget keep its last picture."""
        detach = getattr(self, "_detach", None)
        if detach is not None:
            detach()
        if getattr(self, "_display_ids", None) and not getattr(self, "_closed", False):
            self._closed = True
            self.snapshot()
            _LIVE.discard(self)
        _close_tree([self._banner, *self.children])
        super().close()

    def __repr__(self) -> str:
        text = self._text(self._hub.state)
        return f"{text}\n[{self.gone}]" if self.gone else text

    __str__ = __repr__

    # --- internals -------------------------------------------------------------------------

    def _bundle(self, *, live: bool) -> dict[str, Any]:
        bundle: dict[str, Any] = {"text/plain": repr(self)}
        if self.frontend:
            bundle["text/html"] = self.picture()
            if live and self._view_name is not None and self._model_id:
                bundle[WIDGET_VIEW] = {
                    "version_major": 2,
                    "version_minor": 0,
                    "model_id": self._model_id,
                }
        return bundle

    def _publish(self, bundle: dict[str, Any]) -> bool:
        picture = bundle.get("text/html", "")
        if picture == self._shown_picture and WIDGET_VIEW in bundle:
            return False
        self._shown_picture = picture
        for display_id in self._display_ids:
            publish_picture(bundle, display_id)
        return True

    def _refresh(self, state: EventAggregator, gone: str) -> None:
        with self._draw_lock:
            if gone and not self.gone:
                self.gone = gone
                self._banner.value = _banner(
                    "#fee2e2",
                    "#991b1b",
                    f"<b>cluster gone</b>: {html.escape(gone)}. This view no longer updates.",
                )
            elif not self.gone:
                quiet = self._hub.stalled
                self.stalled = quiet
                self._banner.value = (
                    _banner(
                        "#fef3c7",
                        "#92400e",
                        f"<b>no news from the cluster for {quiet:.0f} s</b> (busy or "
                        "unreachable); still listening.",
                    )
                    if quiet
                    else ""
                )
            if self.frontend:
                self._draw(state)
            self.draws += 1
        if self._trailing and not _cell_running:
            self._follow(state)

    def _cell_ended(self) -> None:
        self._trailing = True
        self._settled_after = time.monotonic() + SETTLE
        # counted before the picture is drawn: a change after the count is either in the
        # picture or followed by a redraw, which publishes it
        self._counts = self._hub.state.counts()
        self.snapshot()

    def _follow(self, state: EventAggregator) -> None:
        """Between cells: once none of the tasks is unfinished, publish the picture again if
        their states changed since it was drawn. Not at every change: a frontend draws the
        live view anew for each update of its output, and metrics change every second."""
        counts = state.counts()
        if any(n for s, n in counts.items() if s not in TERMINAL_STATES):
            return
        if counts != self._counts:
            self._counts = counts
            self.snapshot()
        if time.monotonic() >= self._settled_after:
            self._trailing = False


def publish_picture(bundle: dict[str, Any], display_id: str) -> None:
    """Replace the output shown under ``display_id`` (in whichever cell shows it)."""
    from IPython.display import update_display

    update_display(bundle, raw=True, display_id=display_id)


def _hook_cells() -> None:
    """Once per shell: refresh the pictures of the displayed widgets after every cell."""
    from IPython import get_ipython

    shell = get_ipython()
    if shell is None or id(shell) in _HOOKED:
        return
    _HOOKED.add(id(shell))
    shell.events.register("pre_run_cell", _cell_started)
    shell.events.register("post_run_cell", _snapshot_all)


def _cell_started(*_: Any) -> None:
    global _cell_running
    _cell_running = True


def _snapshot_all(*_: Any) -> None:
    global _cell_running
    _cell_running = False
    for widget in list(_LIVE):
        widget._cell_ended()


def _close_tree(widgets: list[Any]) -> None:
    """Close widgets and the widgets inside them (their models leave the kernel)."""
    for w in widgets:
        _close_tree(list(getattr(w, "children", ())))
        w.close()


def _banner(background: str, color: str, body: str) -> str:
    return (
        f'<div style="background:{background};color:{color};padding:4px 8px;'
        f'border-radius:4px">{body}</div>'
    )


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def html_table(header: list[str], rows: list[list[Any]]) -> str:
    """A small HTML table; cells are escaped unless they are ``Markup`` strings."""
    th = "".join(f'<th style="text-align:left;padding:2px 8px">{h}</th>' for h in header)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td style="padding:2px 8px">'
            f"{c if isinstance(c, Markup) else html.escape(str(c))}</td>"
            for c in row
        )
        + "</tr>"
        for row in rows
    )
    return f'<table style="border-collapse:collapse;font-size:12px"><tr>{th}</tr>{body}</table>'


class Markup(str):
    """Trusted HTML for ``html_table``."""


def bar(percent: float, color: str = "#3b82f6", width: int = 120) -> Markup:
    pct = max(0.0, min(100.0, percent))
    return Markup(
        f'<div style="display:inline-block;width:{width}px;height:10px;background:#e5e7eb;'
        f'vertical-align:middle"><div style="width:{pct:.0f}%;height:10px;'
        f'background:{color}"></div></div> {percent:.0f}%'
    )
