"""Notebook magics: ``%%remote``, ``%%compare`` and ``%nbray``; output, interrupts, errors.

    %load_ext nbray (or ``import nbray`` in IPython) ──▶ load_ipython_extension(shell)
        ├─ the magics (remote.py, compare.py, and %nbray here)
        ├─ CellRouter (routing.py): each engine's submissions tied to the cell that made
        │  them: output into that cell, rate-limited; an interrupt cancels its tasks; the
        │  widgets' cell scopes ask it which cell submitted a task (submitting_cell)
        └─ a TaskError handler: remote tracebacks shown with the user's cells and
           functions, and ``%debug`` on the remote frames (tracebacks.py)

Example::

    %load_ext nbray

    %%remote --cpus 2 -o total
    total = sum(range(n))
"""

from __future__ import annotations

import sys
from typing import Any

__all__ = ["load_ipython_extension", "submitting_cell", "unload_ipython_extension"]

_routers: dict[int, Any] = {}


def _show_task_error(shell: Any, etype: Any, value: Any, tb: Any, tb_offset: Any = None) -> Any:
    """Show a TaskError as a traceback through the user's own frames, local and remote."""
    from nbray._model.tracebacks import remote_traceback

    frames = list(getattr(value, "remote_frames", ()) or ())
    if frames:
        # a %%remote cell's own frames say it all; a get() call shows where it was made
        tb = remote_traceback(frames, None if getattr(value, "nbray_cell_task", False) else tb)
        value.__cause__ = None  # the worker's text traceback: the frames say it better
        value.__suppress_context__ = True
        value.__traceback__ = tb
    sys.last_type, sys.last_value, sys.last_traceback = etype, value, tb
    if sys.version_info >= (3, 12):
        sys.last_exc = value
    shell.InteractiveTB.tb = None
    offset = 0 if getattr(value, "nbray_cell_task", False) else (tb_offset or 1)
    stb = shell.InteractiveTB.structured_traceback(etype, value, tb, tb_offset=offset)
    shell._showtraceback(etype, value, stb)  # IPython leaves showing it to the handler
    return stb


def _wait_async(timeout: str | None) -> None:
    from IPython.core.error import UsageError

    from .remote import async_runs

    try:
        seconds = float(timeout) if timeout is not None else None
    except ValueError:
        raise UsageError(f"%nbray wait takes a number of seconds, got {timeout!r}") from None
    for run in list(async_runs):
        if not run.wait(seconds):
            raise TimeoutError(f"{run.label} --async is still running after {seconds:g} s")
        if run.error is not None:
            print(run.status_line(), file=sys.stderr)  # noqa: T201


def _make_magics_class() -> Any:
    from IPython.core.magic import Magics, cell_magic, line_magic, magics_class

    @magics_class
    class NbrayMagics(Magics):
        @cell_magic
        def remote(self, line: str, cell: str) -> Any:
            """Run the cell as a task on the cluster (see ``nbray.magics.remote.USAGE``).

            The variables the cell reads are shipped, the names it assigns come back, and
            the value of its last expression is shown.
            """
            from .remote import run_remote

            return run_remote(self.shell, line, cell)

        @cell_magic
        def compare(self, line: str, cell: str) -> Any:
            """Run the cell serially in the kernel, then on the cluster, and compare."""
            from .compare import run_compare

            return run_compare(self.shell, line, cell)

        @line_magic
        def nbray(self, line: str) -> Any:
            """``%nbray``: the session: engine, address, nodes, resources, tasks by state,
            and the nbray values only the output history still holds.
            ``%nbray wait [SECONDS]``: wait for the ``%%remote --async`` runs to finish.
            ``%nbray free``: let go of those values (``Out[n]``, ``_`` and the like)."""
            from IPython.core.error import UsageError
            from IPython.display import HTML, display

            from nbray._compose import lifecycle
            from nbray._model import session
            from nbray._model.reprs import session_html, session_text

            from .history import free_history, history_summary

            words = line.split()
            if words and words[0] == "wait" and len(words) <= 2:
                return _wait_async(words[1] if len(words) == 2 else None)
            if words == ["free"]:
                print(free_history(self.shell))  # noqa: T201
                return None
            if words:
                raise UsageError(
                    f"%nbray: unexpected arguments {line.strip()!r}\n"
                    "Usage: %nbray (the session), %nbray wait [SECONDS] (--async runs) or "
                    "%nbray free (values only the output history holds)"
                )
            context = lifecycle._context
            if context is None or session.get_engine() is None:
                print("nbray: not connected; nbray.init() starts or joins a cluster")  # noqa: T201
                return None
            if getattr(self.shell, "kernel", None) is not None:
                display(HTML(session_html(context)))
            else:
                print(session_text(context))  # noqa: T201
            held = history_summary(self.shell)
            if held:
                print(held)  # noqa: T201
            return None

    return NbrayMagics


def _error_html(err: Any) -> str:
    """A task error shown as a cell's value: its frames, foldable (``reprs.error_html``)."""
    from nbray._model.reprs import error_html

    return error_html(err)


def submitting_cell(engine: Any, task_id: int | None, when: float) -> int | None:
    """The cell a task of this process's was submitted from: by its id (``task_id``, one
    this process submitted through ``engine``), as the cell router recorded it; else the
    cell running at ``when``, the time the cluster took it in. None outside IPython."""
    for router in list(_routers.values()):
        cell: int | None = None
        if task_id is not None and router.engine is engine:
            cell = router.cell_of(task_id)
        return cell if cell is not None else router.cell_at(when)
    return None


def load_ipython_extension(shell: Any) -> None:
    """Register the magics, output routing and error display in ``shell`` (idempotent)."""
    from nbray._base.errors import TaskError
    from nbray._model import session

    from .routing import CellRouter

    if id(shell) in _routers:
        return
    router = CellRouter(shell)
    _routers[id(shell)] = router
    shell.register_magics(_make_magics_class())
    shell.events.register("pre_run_cell", router.pre_run_cell)
    shell.events.register("post_run_cell", router.post_run_cell)
    shell.set_custom_exc((TaskError,), _show_task_error)
    shell.display_formatter.formatters["text/html"].for_type(TaskError, _error_html)
    session.engine_listeners.append(router.attach)
    engine = session.get_engine()
    if engine is not None:
        router.attach(engine)


def unload_ipython_extension(shell: Any) -> None:
    """Stop routing output and showing errors (the magics stay registered)."""
    from nbray._model import session

    router = _routers.pop(id(shell), None)
    if router is None:
        return
    shell.events.unregister("pre_run_cell", router.pre_run_cell)
    shell.events.unregister("post_run_cell", router.post_run_cell)
    shell.set_custom_exc((), None)
    if router.attach in session.engine_listeners:
        session.engine_listeners.remove(router.attach)
