"""``%%remote``: run a cell as a task on the cluster.

%%remote line ──parse_line──▶ RemoteOptions (UsageError with the usage on a mistake)
cell ──analyse_cell──▶ free names ──in the notebook namespace──▶ shipped values
    (modules imported on the worker, ObjectRefs resolved there, each value checked:
    picklable and under MAX_SHIP_BYTES, before anything runs)
──▶ run_cell task(s) (one per item with --each) ──▶ get (or, with --async, a thread
    that waits and shows progress) ──▶ assigned names written back; the value shown
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import threading
import time
import types
from typing import Any, NamedTuple

from .analysis import analyse_cell
from .cell_task import CellSpec, run_cell
from .cells import running_cell

__all__ = ["MAX_SHIP_BYTES", "USAGE", "AsyncRun", "RemoteOptions", "parse_line", "run_remote"]

USAGE = """\
%%remote [--cpus N] [--gpus N] [--resources K=V[,K=V...]] [--retries N] [--timeout SECONDS]
         [--node NODE_ID] [-o NAME[,NAME...]] [--each NAME in EXPR] [--async]
<the cell's code>

  -o a,b             bring back only these names (default: every name the cell assigns)
  --each x in items  run the cell once per item, in parallel; the cell's value is the list
                     of each run's value, and each name brought back is a list, in order
  --async            return at once; results are written back when the work finishes"""

#: The largest pickled size of one variable ``%%remote`` ships (``NBRAY_REMOTE_MAX_BYTES``).
MAX_SHIP_BYTES = int(os.environ.get("NBRAY_REMOTE_MAX_BYTES", 1 << 30))
#: With ``--each``, variables larger than this are stored once and shared by the tasks.
SHARE_BYTES = 64 * 1024

# names IPython keeps in the user namespace: never shipped
_IPYTHON_NAMES = {"In", "Out", "get_ipython", "exit", "quit", "_oh", "_ih", "_dh"}
_HISTORY = re.compile(r"^_{1,3}$|^_i{1,3}$|^_i?\d+$")
_EACH = re.compile(r"--each\s+([A-Za-z_]\w*)\s+in\s+(.+?)(?=\s+(?:--?[A-Za-z])|\s*$)")


class RemoteOptions(NamedTuple):
    cpus: float
    gpus: float
    resources: dict[str, float]
    retries: int
    timeout: float | None
    node: str
    outputs: tuple[str, ...] | None
    each_name: str
    each_expr: str
    is_async: bool


def _usage_error(message: str) -> Exception:
    from IPython.core.error import UsageError

    return UsageError(f"{message}\nUsage:\n{USAGE}")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:
        raise _usage_error(f"%%remote: {message}")


def _parser() -> _Parser:
    p = _Parser(prog="%%remote", add_help=False)
    p.add_argument("--cpus", type=float, default=1.0)
    p.add_argument("--gpus", type=float, default=0.0)
    p.add_argument("--resources", default="")
    p.add_argument("--retries", type=int, default=3)
    p.add_argument("--timeout", type=float, default=None)
    p.add_argument("--node", default="")
    p.add_argument("-o", "--outputs", default=None)
    p.add_argument("--async", dest="is_async", action="store_true")
    return p


def _resources(text: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        try:
            out[key.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep or not key.strip():
            raise _usage_error(
                f"%%remote: --resources takes K=V pairs like gpu_mem=2, got {part!r}"
            )
    return out


def parse_line(line: str) -> RemoteOptions:
    """The options on a ``%%remote`` line; raises IPython's ``UsageError`` with the usage."""
    each_name = each_expr = ""
    m = _EACH.search(line)
    if m:
        each_name, each_expr = m.group(1), m.group(2).strip()
        line = line[: m.start()] + " " + line[m.end() :]
    elif "--each" in line.split():
        raise _usage_error("%%remote: --each takes NAME in EXPR, e.g. --each path in paths")
    try:
        tokens = shlex.split(line)
    except ValueError as exc:
        raise _usage_error(f"%%remote: {exc}") from None
    args = _parser().parse_args(tokens)
    if args.cpus < 0 or args.gpus < 0 or args.retries < 0:
        raise _usage_error("%%remote: --cpus, --gpus and --retries cannot be negative")
    if args.timeout is not None and args.timeout <= 0:
        raise _usage_error("%%remote: --timeout takes a number of seconds above 0")
    outputs = None
    if args.outputs is not None:
        outputs = tuple(n.strip() for n in args.outputs.split(",") if n.strip())
        bad = [n for n in outputs if not n.isidentifier()]
        if bad or not outputs:
            raise _usage_error(f"%%remote: -o takes variable names like a,b, got {args.outputs!r}")
    return RemoteOptions(
        args.cpus,
        args.gpus,
        _resources(args.resources),
        args.retries,
        args.timeout,
        args.node,
        outputs,
        each_name,
        each_expr,
        args.is_async,
    )


def _is_ipython_name(name: str) -> bool:
    return name in _IPYTHON_NAMES or bool(_HISTORY.match(name))


def check_shippable(name: str, value: Any) -> int:
    """The pickled size of ``value``; raises ``SerializationError`` naming the variable if it
    cannot be pickled, or is larger than ``MAX_SHIP_BYTES`` pickled."""
    from nbray._base.errors import SerializationError
    from nbray._model.reprs import human_size
    from nbray._wire.serialization import SIMPLE_TYPES, packed_size, serialize

    if type(value) in SIMPLE_TYPES and not isinstance(value, str | bytes):
        return 0
    try:
        size = packed_size(serialize(value, f"the variable {name!r}"))
    except SerializationError as exc:
        raise SerializationError(f"%%remote cannot ship the variable {name!r}: {exc}") from None
    if size > MAX_SHIP_BYTES:
        raise SerializationError(
            f"%%remote cannot ship the variable {name!r}: it is {human_size(size)} pickled, "
            f"over the {human_size(MAX_SHIP_BYTES)} limit for one variable. Create or load it "
            "inside the cell, or store it once with nbray.put() and use the ObjectRef in the "
            "cell (refs are resolved on the worker); NBRAY_REMOTE_MAX_BYTES raises the limit."
        )
    return size


def cell_number(shell: Any) -> int:
    """The In[N] number of the running cell."""
    return running_cell(shell) or 0


def _cell_filename(shell: Any, cell: str) -> str:
    """Register the cell's source like IPython does for a normal cell ("Cell In[5]")."""
    number = cell_number(shell)
    try:
        return str(shell.compile.cache(cell, number, raw_code=cell))
    except Exception:  # an unusual compiler: fall back to a linecache entry of our own
        import linecache

        name = f"<remote-cell-{number}>"
        linecache.cache[name] = (len(cell), None, cell.splitlines(keepends=True), name)
        return name


class _Prepared(NamedTuple):
    spec: CellSpec
    values: list[Any]
    items: list[Any] | None


def prepare(shell: Any, opts: RemoteOptions, cell: str) -> _Prepared:
    """Analyse the cell and collect what it reads; nothing is submitted."""
    from nbray._model.object_ref import ObjectRef

    ns = shell.user_ns
    filename = _cell_filename(shell, cell)
    names = analyse_cell(cell, filename)
    shipped: list[str] = []
    values: list[Any] = []
    modules: list[tuple[str, str]] = []
    large: list[int] = []  # positions of values worth storing once for all --each tasks
    for name in names.free:
        if name == opts.each_name or name not in ns or _is_ipython_name(name):
            continue
        value = ns[name]
        if isinstance(value, types.ModuleType):
            if value.__name__ != "__main__":
                modules.append((name, value.__name__))
            continue
        if not isinstance(value, ObjectRef) and check_shippable(name, value) > SHARE_BYTES:
            large.append(len(values))
        shipped.append(name)
        values.append(value)
    items = None
    if opts.each_name:
        try:
            items = list(eval(opts.each_expr, ns))
        except Exception as exc:
            raise _usage_error(
                f"%%remote: --each {opts.each_name} in {opts.each_expr}: evaluating "
                f"{opts.each_expr!r} in the notebook failed: {type(exc).__name__}: {exc}"
            ) from None
        for i, item in enumerate(items):
            check_shippable(f"{opts.each_name} (item {i})", item)
        shipped.append(opts.each_name)
    outputs = opts.outputs if opts.outputs is not None else names.assigned
    if opts.each_name:
        outputs = tuple(n for n in outputs if n != opts.each_name)
    spec = CellSpec(cell, filename, tuple(shipped), tuple(modules), tuple(outputs), names.has_value)
    if items is not None and len(items) > 1:
        from nbray._compose import api

        for i in large:  # one copy in the object store instead of one per task
            values[i] = api.put(values[i])
    return _Prepared(spec, values, items)


def _check_node(node: str) -> None:
    from nbray._compose import api

    nodes = api.nodes()
    known = {
        str(n.get(k, "")) for n in nodes for k in ("NodeID", "NodeName", "NodeManagerHostname")
    }
    if node not in known:
        ids = ", ".join(str(n.get("NodeID")) for n in nodes)
        raise _usage_error(f"%%remote: --node {node!r} is not a node of this cluster ({ids})")


def submit(shell: Any, opts: RemoteOptions, prepared: _Prepared) -> list[Any]:
    """Submit the cell's task(s); returns their ObjectRefs (one per item with --each)."""
    from nbray._base.options import TaskOptions, make_options
    from nbray._model.remote_function import RemoteFunction

    if opts.node:
        _check_node(opts.node)
    options = make_options(
        TaskOptions,
        None,
        {
            "num_cpus": opts.cpus,
            "num_gpus": opts.gpus,
            "resources": opts.resources,
            "max_retries": opts.retries,
            "name": f"%%remote In[{cell_number(shell)}]",
        },
    )
    func: RemoteFunction[Any, Any] = RemoteFunction(run_cell, options)
    if prepared.items is None:
        return [func.remote(prepared.spec, *prepared.values)]
    return [func.remote(prepared.spec, *prepared.values, item) for item in prepared.items]


def _write_back(shell: Any, prepared: _Prepared, results: list[dict[str, Any]]) -> list[str]:
    """Assign the names brought back; returns them. Warns about those left behind."""
    import sys

    ns = shell.user_ns
    written: list[str] = []
    skipped: dict[str, str] = {}
    for r in results:
        skipped.update(r["skipped"])
    if prepared.items is None:
        ns.update(results[0]["names"])
        written = list(results[0]["names"])
    else:
        for name in prepared.spec.outputs:
            if any(name in r["names"] for r in results):
                ns[name] = [r["names"].get(name) for r in results]
                written.append(name)
    for name, why in skipped.items():
        print(f"[nbray] %%remote did not bring back {name!r}: {why}", file=sys.stderr)  # noqa: T201
    return written


def _value(prepared: _Prepared, results: list[dict[str, Any]]) -> Any:
    if not prepared.spec.has_value:
        return None
    if prepared.items is None:
        return results[0]["value"]
    return [r["value"] for r in results]


def run_remote(shell: Any, line: str, cell: str) -> Any:
    """The ``%%remote`` cell magic."""
    from nbray._base.errors import GetTimeoutError, TaskError
    from nbray._compose import api

    opts = parse_line(line)
    if not cell.strip():
        raise _usage_error("%%remote needs code in the cell below the %%remote line")
    prepared = prepare(shell, opts, cell)
    refs = submit(shell, opts, prepared)
    if opts.is_async:
        run = AsyncRun(shell, opts, prepared, refs)
        run.start()
        return None
    try:
        results = api.get(refs, timeout=opts.timeout)
    except TaskError as exc:
        setattr(exc, "nbray_cell_task", True)  # noqa: B010 (its traceback starts in the cell)
        raise
    except GetTimeoutError:
        for ref in refs:
            api.cancel(ref)
        raise GetTimeoutError(
            f"%%remote: the cell did not finish within --timeout {opts.timeout:g} s; its "
            "task(s) were cancelled"
        ) from None
    _write_back(shell, prepared, results)
    return _value(prepared, results)


class AsyncRun:
    """A ``%%remote --async`` run: a live progress line, results written back when done.

    ``nbray.magics.async_runs`` lists them; ``run.wait()`` blocks until one finishes and
    ``run.cancel()`` stops it.
    """

    def __init__(self, shell: Any, opts: RemoteOptions, prepared: _Prepared, refs: list[Any]):
        self.shell = shell
        self.opts = opts
        self.prepared = prepared
        self.refs = refs
        self.label = f"%%remote In[{cell_number(shell)}]"
        self.display_id = f"nbray-async-{id(self):x}"
        self.started = time.monotonic()
        self.done_count = 0
        self.state = "running"
        self.value: Any = None
        self.written: list[str] = []
        self.error: BaseException | None = None
        self._done = threading.Event()
        get_parent = getattr(getattr(shell, "kernel", None), "get_parent", None)
        self._parent = get_parent() if get_parent is not None else None
        async_runs.append(self)

    def status_line(self) -> str:
        elapsed = time.monotonic() - self.started
        n = len(self.refs)
        if self.state == "running":
            return f"{self.label} --async: {self.done_count}/{n} task(s) done, {elapsed:.1f} s"
        if self.state == "done":
            names = ", ".join(self.written) or "nothing"
            text = f"{self.label} --async: done in {elapsed:.1f} s; wrote {names}"
            if self.prepared.spec.has_value:
                value = repr(self.value)
                text += f"; value: {value if len(value) < 200 else value[:197] + '...'}"
            return text
        return f"{self.label} --async: {self.state}: {type(self.error).__name__}: {self.error}"

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(self.status_line())

    def __repr__(self) -> str:
        return self.status_line()

    def start(self) -> None:
        from IPython.display import display

        display(self, display_id=self.display_id)
        threading.Thread(target=self._watch, name="nbray-async", daemon=True).start()

    def _update(self) -> None:
        from IPython.display import update_display

        try:
            update_display(self, display_id=self.display_id)
        except Exception:  # the kernel is shutting down: nothing to show it on
            return

    def _watch(self) -> None:
        import sys

        from nbray._compose import api

        if self._parent is not None:  # this thread's displays and prints: the submitting cell
            for target in (self.shell.display_pub, sys.stdout, sys.stderr):
                setter = getattr(target, "set_thread_parent", None)
                if setter is not None:
                    setter(self._parent)
        deadline = None if self.opts.timeout is None else self.started + self.opts.timeout
        try:
            while True:
                ready, pending = api.wait(self.refs, num_returns=len(self.refs), timeout=0.25)
                if len(ready) != self.done_count:
                    self.done_count = len(ready)
                    self._update()
                if not pending:
                    break
                if deadline is not None and time.monotonic() > deadline:
                    for ref in self.refs:
                        api.cancel(ref)
                    raise TimeoutError(f"not finished within --timeout {self.opts.timeout:g} s")
            results = api.get(self.refs)
            self.written = _write_back(self.shell, self.prepared, results)
            self.value = _value(self.prepared, results)
            self.state = "done"
        except Exception as exc:  # a task error, a timeout, a lost cluster: shown in the line
            self.error = exc
            self.state = "failed"
        finally:
            self._done.set()
            self._update()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the run finished; True if it did."""
        return self._done.wait(timeout)

    def cancel(self) -> None:
        from nbray._compose import api

        for ref in self.refs:
            api.cancel(ref)


async_runs: list[AsyncRun] = []
