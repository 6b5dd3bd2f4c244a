"""nbray: Ray's programming model made native to Jupyter.

``import nbray as ray`` runs code written for Ray's core API on an embedded runtime that
starts in a blink::

    import nbray

    @nbray.remote
    def square(x):
        return x * x

    print(nbray.get([square.remote(i) for i in range(4)]))   # [0, 1, 4, 9]

The public names are listed once, in ``__init__.pyi`` beside this file; each is imported on
first use (PEP 562), so ``import nbray`` costs a few milliseconds, and so do the start-up of
the head and worker processes, which import only the modules they need.

This package is the top of the layers (DESIGN.md): it hands the layers below the few things
they call back (the progress bar of ``get``/``wait``, the bars tasks draw with tqdm_ray), so
that none of them imports upward.
"""

from __future__ import annotations

import sys

from ._base.lazy import lazy_getattr as _lazy_getattr
from ._base.lazy import stub_exports as _stub_exports

TYPE_CHECKING = False  # (typing.TYPE_CHECKING without importing typing: see _base/lazy.py)
if TYPE_CHECKING:
    from typing import Any as _Any
del TYPE_CHECKING  # not a public name

__version__ = "0.1.0"

# public name -> (module relative to this package, attribute or submodule name)
_EXPORTS = _stub_exports(__file__)
__all__ = sorted([*_EXPORTS, "__version__"])
_lazy = _lazy_getattr(__name__, _EXPORTS, globals())


def __getattr__(name: str) -> object:
    if name == "load_ipython_extension":  # %load_ext nbray; not part of the API
        from .magics import load_ipython_extension

        return load_ipython_extension
    return _lazy(name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


def _progress_get(engine: _Any, refs: list[_Any], timeout: float | None) -> list[_Any]:
    from .widgets.progress import get_with_progress

    return get_with_progress(engine, refs, timeout)


def _progress_wait(engine: _Any, refs: list[_Any], num_returns: int, timeout: float | None) -> _Any:
    from .widgets.progress import wait_with_progress

    return wait_with_progress(engine, refs, num_returns, timeout)


def _show_task_progress(state: dict[str, _Any], task_id: int, client: _Any) -> None:
    from .experimental.tqdm_ray import show_remote_state

    show_remote_state(state, task_id, client)


def _install() -> None:
    """Hand the layers below their call-backs into the faces, and, in IPython, register the
    magics as ``%load_ext nbray`` does (IPython finds ``nbray.load_ipython_extension``
    through ``__getattr__``: see ``nbray.magics``)."""
    from ._model import session
    from ._wire import progress_lines

    session.progress_get = _progress_get
    session.progress_wait = _progress_wait
    # progress bars that tasks draw (nbray.experimental.tqdm_ray), found in task output
    progress_lines.sink = _show_task_progress
    get_ipython = getattr(sys.modules.get("IPython"), "get_ipython", None)
    shell = get_ipython() if get_ipython is not None else None
    if shell is not None:
        from .magics import load_ipython_extension

        load_ipython_extension(shell)


_install()
