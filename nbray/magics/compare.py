"""``%%compare``: the cell serially in the kernel, then on the cluster, side by side.

    cell ──▶ run 1: a copy of the namespace, the session's engine swapped for InlineEngine
             (every .remote() runs at once, in the kernel): wall and CPU time, value
         ──▶ run 2: the real namespace and engine: wall time, kernel + workers' CPU time
         ──▶ values compared ──▶ ComparisonRun ──▶ TimeComparison chart + summary line

The cell's imports of modules not loaded yet run once before either run is timed (a first
``import numpy`` is not charged to the kernel's run); a cell that submits no task or actor
call is reported as "no remote work" rather than with a speedup.

The cell may use IPython syntax, so ``%%compare`` can time a ``%%remote --each`` cell (its
serial run then runs each item inline). ``-l LABEL`` adds the run to the kernel's shared
comparison, shown again (and updated in the cells that showed it before) with every
labelled run so far.
"""

from __future__ import annotations

import ast
import sys
import time
from typing import Any

from nbray._engines.inline import InlineEngine
from nbray._model import session
from nbray.widgets.comparison import ComparisonRun, TimeComparison

from .cell_task import compile_cell

__all__ = ["equal_results", "run_compare", "shared_comparison"]

USAGE = """\
%%compare [-l LABEL]
<the cell's code>

Runs the cell serially in the kernel (every .remote() call inline), then on the cluster,
checks both gave equal results and shows wall time, CPU time, speedup and parallel
efficiency. -l LABEL adds the run to one comparison that later %%compare -l cells extend."""

shared_comparison = TimeComparison()
_SHARED_DISPLAY_ID = "nbray-compare-shared"


def _usage_error(message: str) -> Exception:
    from IPython.core.error import UsageError

    return UsageError(f"{message}\nUsage:\n{USAGE}")


def parse_label(line: str) -> str:
    import shlex

    try:
        tokens = shlex.split(line)
    except ValueError as exc:
        raise _usage_error(f"%%compare: {exc}") from None
    if not tokens:
        return ""
    if tokens[0] in ("-l", "--label") and len(tokens) == 2:
        return tokens[1]
    raise _usage_error(f"%%compare: unexpected arguments {line.strip()!r}")


def equal_results(a: Any, b: Any) -> bool:
    """Whether two results are equal, also for numpy arrays and containers of them."""
    if type(a) is not type(b):
        return False
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(equal_results(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(equal_results(a[k], b[k]) for k in a)
    try:
        return bool(a == b)
    except (ValueError, TypeError):  # an array's == is elementwise
        try:
            import numpy

            return bool(numpy.array_equal(a, b))
        except (ImportError, TypeError):
            from nbray._wire.serialization import dumps

            return dumps(a) == dumps(b)


def _run(body: Any, last: Any, ns: dict[str, Any]) -> Any:
    exec(body, ns)
    return eval(last, ns) if last is not None else None


def warm_imports(source: str, ns: dict[str, Any]) -> list[str]:
    """Run the top-level imports of ``source`` whose modules are not loaded yet, in a copy
    of ``ns``; returns those modules' names. A failing import is left for the timed run to
    report."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    imports: list[ast.stmt] = []
    names: list[str] = []
    for node in tree.body:
        if isinstance(node, ast.Import):
            mods = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            mods = [node.module]
        else:
            continue
        new = [m for m in mods if m not in sys.modules]
        if new:
            imports.append(node)
            names += new
    if not imports:
        return []
    try:
        exec(
            compile(ast.Module(body=imports, type_ignores=[]), "<%%compare imports>", "exec"),
            dict(ns),
        )
    except Exception:
        return []
    return [n for n in names if n in sys.modules]


def _workers_cpu(engine: Any) -> float | None:
    """Total CPU seconds of the cluster's worker processes so far (local engine only)."""
    status = getattr(engine, "status", None)
    if status is None:
        return None
    import psutil

    total = 0.0
    try:
        pids = status().get("worker_pids", {}).values()
    except Exception:
        return None
    for pid in pids:
        try:
            t = psutil.Process(pid).cpu_times()
        except psutil.Error:
            continue  # exited meanwhile
        total += t.user + t.system
    return total


def run_compare(shell: Any, line: str, cell: str) -> Any:
    """The ``%%compare`` cell magic."""
    from IPython.display import display

    from .remote import _cell_filename, cell_number

    label = parse_label(line)
    if not cell.strip():
        raise _usage_error("%%compare needs code in the cell below the %%compare line")
    filename = _cell_filename(shell, cell)
    # IPython syntax too: a %%compare cell can time a "%%remote --each ..." cell
    python = shell.transform_cell(cell)
    body, last = compile_cell(python, filename)
    warmed = warm_imports(python, shell.user_ns)
    cluster_engine = session.current_engine()  # started before timing, not during
    cpus = float(cluster_engine.cluster_info()["total"].get("CPU", 1.0))

    inline = InlineEngine()
    session.set_engine(inline)
    try:
        ns = dict(shell.user_ns)
        t0, c0 = time.perf_counter(), time.process_time()
        serial_value = _run(body, last, ns)
        kernel_wall, kernel_cpu = time.perf_counter() - t0, time.process_time() - c0
        remote_calls = inline.calls
    finally:
        session.set_engine(cluster_engine)
        inline.shutdown()
    del ns

    w0 = _workers_cpu(cluster_engine)
    t0, c0 = time.perf_counter(), time.process_time()
    value = _run(body, last, shell.user_ns)
    cluster_wall, local_cpu = time.perf_counter() - t0, time.process_time() - c0
    w1 = _workers_cpu(cluster_engine)
    cluster_cpu = local_cpu + (w1 - w0) if w0 is not None and w1 is not None else None

    run = ComparisonRun(
        label or f"In[{cell_number(shell)}]",
        kernel_wall,
        kernel_cpu,
        cluster_wall,
        cluster_cpu,
        cpus,
        equal_results(serial_value, value) if last is not None else None,
        remote_calls,
        f"imported {', '.join(warmed)}" if warmed else "",
    )
    if label:
        shared_comparison.add(run)
        chart = shared_comparison
        display_id: str | None = _SHARED_DISPLAY_ID
    else:
        chart = TimeComparison([run])
        display_id = None
    if getattr(shell, "kernel", None) is not None:
        display(chart, display_id=display_id) if display_id else display(chart)
    print(run.summary())  # noqa: T201
    return value
