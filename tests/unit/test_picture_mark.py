"""The JupyterLab extension tells an nbray widget's output by the mark that opens its
picture (frontend/src/pictures.ts, PICTURE_MARK): every picture that
nbray.widgets.pictures draws carries it, so a trusted notebook shows them all."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from nbray.widgets.pictures import (
    PICTURE_CLASS,
    comparison_picture,
    graph_picture,
    monitor_html,
    progress_html,
    timeline_picture,
)
from nbray.widgets.state import GraphView

pytestmark = pytest.mark.timeout(60)

PICTURES_TS = Path(__file__).resolve().parents[2] / "frontend" / "src" / "pictures.ts"


def ts_mark() -> str:
    m = re.search(r"export const PICTURE_MARK = '([^']*)';", PICTURES_TS.read_text())
    assert m, "PICTURE_MARK is gone from frontend/src/pictures.ts"
    return m.group(1)


def test_the_mark_is_the_pictures_class() -> None:
    assert ts_mark() == f'class="{PICTURE_CLASS} {PICTURE_CLASS}-'


def test_every_kind_of_picture_carries_the_mark() -> None:
    pictures = {
        "monitor": monitor_html("<table></table>", [], 0.0, ""),
        "progress": progress_html(0.5, "3/6 done", "#3b82f6"),
        "task-graph": graph_picture(GraphView([], [], False, 0), [], "no tasks", []),
        "timeline": timeline_picture([], []),
        "comparison": comparison_picture([]),
    }
    for kind, html in pictures.items():
        assert f"{ts_mark()}{kind}" in html, kind
