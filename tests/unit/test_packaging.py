"""The runtime's dependencies stay apart from the notebook faces' (the `lab` extra), so a
Ray host that `nbray up` provisions with nbray[ray] gets no JupyterLab."""

from __future__ import annotations

import re
from importlib import metadata

from nbray._compose.cluster import install

NOTEBOOK_PARTS = {"jupyterlab", "jupyter-server", "ipykernel", "ipywidgets", "plotly", "anywidget"}


def requirements(extra: str | None) -> set[str]:
    found = set()
    for req in metadata.requires("nbray") or []:
        name = re.split(r"[\s\[<>=!~;]", req, maxsplit=1)[0].lower()
        marker = re.search(r"extra == ['\"]([^'\"]+)", req)
        if (marker.group(1) if marker else None) == extra:
            found.add(name)
    return found


def test_the_runtime_needs_no_notebook_parts() -> None:
    base = requirements(None)
    assert {"cloudpickle", "psutil"} <= base
    assert not base & NOTEBOOK_PARTS
    assert not requirements("ray") & NOTEBOOK_PARTS
    assert NOTEBOOK_PARTS <= requirements("lab")


def test_nbray_up_installs_the_ray_extra_only() -> None:
    assert '"$W[ray]"' in install._INSTALL
    assert "lab" not in install._INSTALL
