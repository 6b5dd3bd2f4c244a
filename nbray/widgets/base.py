"""What every live widget shares: attach to the engine's hub, redraw when told, close.

    EventHub (throttled) ──refresh(state, gone)──▶ LiveWidget._draw ──▶ ipywidgets / plotly
                                                  └─ no frontend: nothing drawn; repr() is
                                                     the text summary (_text)

A widget is an ``ipywidgets.VBox``; in a kernel its children are built, elsewhere (plain
IPython, a script) it holds no children and its ``repr`` is a text summary, so
``print(nbray.monitor())`` works in a terminal.
"""

from __future__ import annotations

import html
import threading
from typing import Any

import ipywidgets

from nbray._model.engine import Engine

from .hub import EventHub, hub_for
from .state import EventAggregator

__all__ = ["LiveWidget", "has_frontend"]


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
        self._detach = self._hub.attach(self._refresh)
        self.sync()

    # --- subclass hooks --------------------------------------------------------------------

    def _build(self) -> list[ipywidgets.Widget]:
        raise NotImplementedError

    def _draw(self, state: EventAggregator) -> None:
        raise NotImplementedError

    def _text(self, state: EventAggregator) -> str:
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

    def close(self) -> None:
        """Stop updating and release the event subscription."""
        detach = getattr(self, "_detach", None)
        if detach is not None:
            detach()
        _close_tree([self._banner, *self.children])
        super().close()

    def __repr__(self) -> str:
        text = self._text(self._hub.state)
        return f"{text}\n[{self.gone}]" if self.gone else text

    __str__ = __repr__

    # --- internals -------------------------------------------------------------------------

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
