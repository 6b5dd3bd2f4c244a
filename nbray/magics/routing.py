"""Task output into the cell that submitted the work, and interrupts that cancel it.

    cell runs ─▶ .remote() ─▶ Engine.submit_listener(task_id, first return id)
        ─▶ CellRouter notes the submitting cell's parent message and number (one entry per
           change of cell: task ids grow, so a bisect finds the cell of any task) and, while
           the cell runs, the return ids of its tasks
    pre_run_cell ─▶ CellRouter notes when each cell started: the cell of a task known only
           by when the cluster took it in (one that a task submitted, the Ray engine's)
    the widgets' cell scopes ─▶ submitting_cell (magics/__init__.py) ─▶ cell_of / cell_at
    worker prints ─▶ head ─▶ client reader thread ─▶ CellRouter.on_output
        ─▶ rate limit per cell ─▶ the kernel's stdout/stderr stream, written with the
           submitting cell's parent header, so the frontend shows it under that cell even
           while a later cell runs
    stop button ─▶ KeyboardInterrupt in the cell ─▶ post_run_cell ─▶ Engine.cancel_ids(the
        cell's tasks) ─▶ queued ones never run, running ones get TaskCancelledError

Outside a kernel (terminal IPython) output keeps the engine's default printing; interrupts
still cancel.
"""

from __future__ import annotations

import bisect
import logging
import os
import threading
import time
from array import array
from typing import TYPE_CHECKING, Any

from .cells import running_cell

if TYPE_CHECKING:
    from nbray._model.engine import Engine

__all__ = ["OUTPUT_BURST_BYTES", "OUTPUT_RATE_BYTES", "CellRouter"]

#: Output a cell's tasks may write per second once the burst is spent (characters).
OUTPUT_RATE_BYTES = int(os.environ.get("NBRAY_OUTPUT_RATE", 64_000))
#: Output a cell's tasks may write at once before the rate applies.
OUTPUT_BURST_BYTES = int(os.environ.get("NBRAY_OUTPUT_BURST", 256_000))
_MAX_EPOCHS = 100_000
log = logging.getLogger("nbray.magics")


class _Budget:
    """A token bucket for one cell's output, counting what it drops."""

    __slots__ = ("dropped_bytes", "dropped_lines", "last", "noted", "tokens")

    def __init__(self) -> None:
        self.tokens = float(OUTPUT_BURST_BYTES)
        self.last = time.monotonic()
        self.dropped_bytes = 0
        self.dropped_lines = 0
        self.noted = 0.0

    def take(self, n: int) -> bool:
        now = time.monotonic()
        self.tokens = min(OUTPUT_BURST_BYTES, self.tokens + (now - self.last) * OUTPUT_RATE_BYTES)
        self.last = now
        if n <= self.tokens:
            self.tokens -= n
            return True
        return False


def drop_note(lines: int, nbytes: int) -> str:
    return (
        f"[nbray] {lines:,} lines ({nbytes / 1e3:,.1f} kB) of task output from this cell were "
        f"dropped: tasks printed faster than {OUTPUT_RATE_BYTES / 1e3:,.0f} kB/s, more than "
        "a notebook can show. Write large logs to a file to keep them all.\n"
    )


class CellRouter:
    """Ties the work a cell submits to that cell: output routing and interrupt cancelling."""

    def __init__(self, shell: Any) -> None:
        self.shell = shell
        kernel = getattr(shell, "kernel", None)
        self.kernel = kernel if hasattr(kernel, "get_parent") else None
        self._lock = threading.Lock()
        self._starts: list[int] = []  # task id where a run of one cell's submissions starts
        self._parents: list[Any] = []
        self._cells: list[int | None] = []  # the cell (its In[N] number) of each run
        self._last_parent: Any = None
        self._last_cell: int | None = None
        # when each cell started (time.time(), as task events are stamped) and its number
        self._cell_times: list[float] = []
        self._cell_numbers: list[int] = []
        self._running: array[int] = array("Q")
        self._budgets: dict[str, _Budget] = {}
        self._engine: Engine | None = None
        self._ticker: threading.Thread | None = None
        self.cancelled_last = 0
        self._cell_started()  # the cell running now (the one loading nbray) began by now

    # --- engines ------------------------------------------------------------------------

    def attach(self, engine: Engine) -> None:
        """Follow ``engine``'s submissions and route its output (idempotent)."""
        if self._engine is engine:
            return
        with self._lock:  # another connection's task ids: not comparable with the old ones
            self._starts, self._parents, self._cells = [], [], []
            self._last_parent = self._last_cell = None
        self._engine = engine
        engine.submit_listener = self.on_submit
        client = getattr(engine, "client", None)
        if self.kernel is not None and client is not None and hasattr(client, "output_handler"):
            client.output_handler = self.on_output_msg

    def _parent(self) -> Any:
        return self.kernel.get_parent() if self.kernel is not None else None

    # --- submissions --------------------------------------------------------------------

    def on_submit(self, task_id: int, first_return_id: int) -> None:
        parent = self._parent()
        cell = running_cell(self.shell)
        with self._lock:
            if parent is not self._last_parent or cell != self._last_cell:
                self._last_parent, self._last_cell = parent, cell
                self._starts.append(task_id)
                self._parents.append(parent)
                self._cells.append(cell)
                if len(self._starts) > _MAX_EPOCHS:
                    half = _MAX_EPOCHS // 2
                    del self._starts[:half], self._parents[:half], self._cells[:half]
            self._running.append(first_return_id)

    def parent_of(self, task_id: int) -> Any:
        with self._lock:
            i = bisect.bisect_right(self._starts, task_id) - 1
            return self._parents[i] if i >= 0 else None

    def cell_of(self, task_id: int) -> int | None:
        """The cell (In[N] number) that submitted ``task_id``, one of this process's
        own through the attached engine; None before the first one recorded."""
        with self._lock:
            i = bisect.bisect_right(self._starts, task_id) - 1
            return self._cells[i] if i >= 0 else None

    def cell_at(self, when: float) -> int | None:
        """The cell that was running at ``when`` (``time.time()``): the latest one started
        by then; None before the first start recorded."""
        with self._lock:
            i = bisect.bisect_right(self._cell_times, when) - 1
            return self._cell_numbers[i] if i >= 0 else None

    @property
    def engine(self) -> Engine | None:
        return self._engine

    # --- cells --------------------------------------------------------------------------

    def pre_run_cell(self, info: Any = None) -> None:
        self._cell_started()
        with self._lock:
            self._running = array("Q")

    def _cell_started(self) -> None:
        cell = running_cell(self.shell)
        if cell is None:
            return
        with self._lock:
            times = self._cell_times
            now = time.time()  # (a step back of the clock must not unsort the starts)
            times.append(max(now, times[-1]) if times else now)
            self._cell_numbers.append(cell)
            if len(times) > _MAX_EPOCHS:
                half = _MAX_EPOCHS // 2
                del times[:half], self._cell_numbers[:half]

    def post_run_cell(self, result: Any) -> None:
        with self._lock:
            ids, self._running = list(self._running), array("Q")
        error = getattr(result, "error_in_exec", None)
        if isinstance(error, KeyboardInterrupt) and ids and self._engine is not None:
            self.cancelled_last = len(ids)
            try:
                self._engine.cancel_ids(ids)
            except Exception as exc:  # the cluster went away: nothing left to cancel
                print(f"[nbray] could not cancel this cell's tasks: {exc}")  # noqa: T201
                return
            print(  # noqa: T201
                f"[nbray] interrupted: cancelled the {len(ids):,} task(s) this cell started "
                "that had not finished"
            )

    # --- output -------------------------------------------------------------------------

    def on_output_msg(self, msg: Any) -> None:
        # runs on the client's reader thread: an error here must not end that thread
        try:
            self.on_output(msg.task_id, msg.stream, msg.text, msg.name, msg.pid)
        except (ValueError, OSError):  # the kernel's streams are closed (shutting down)
            return
        except Exception:
            log.exception("routing task output to its cell failed")

    def on_output(self, task_id: int, stream: str, text: str, name: str, pid: int) -> None:
        parent = self.parent_of(task_id) if task_id else None
        if parent is None:
            parent = self._parent()
        if not text.endswith("\n"):
            text += "\n"
        if not name.startswith("%%"):  # tasks: Ray's "(name pid=123) " prefix on each line
            prefix = f"({name} pid={pid}) "
            text = "".join(prefix + line for line in text.splitlines(keepends=True))
        key = _parent_id(parent)
        with self._lock:
            budget = self._budgets.get(key)
            if budget is None:
                budget = self._budgets[key] = _Budget()
                if len(self._budgets) > 1000:
                    self._budgets.pop(next(iter(self._budgets)))
            allowed = budget.take(len(text))
            if not allowed:
                budget.dropped_bytes += len(text)
                budget.dropped_lines += text.count("\n")
                self._start_ticker()
        if allowed:
            self._write(parent, stream, text)

    def _write(self, parent: Any, stream: str, text: str) -> None:
        import sys

        out: Any = sys.stderr if stream == "stderr" else sys.stdout
        setter = getattr(out, "set_thread_parent", None)
        if setter is None or parent is None:
            out.write(text)
            return
        token = setter(parent)
        try:
            out.write(text)
        finally:
            out.reset_thread_parent(token)

    def _start_ticker(self) -> None:
        if self._ticker is None or not self._ticker.is_alive():
            self._ticker = threading.Thread(target=self._tick, name="nbray-output", daemon=True)
            self._ticker.start()

    def _tick(self) -> None:
        """Once a second while output is being dropped: tell each cell how much it lost."""
        while True:
            time.sleep(1.0)
            notes = []
            with self._lock:
                for key, b in self._budgets.items():
                    if b.dropped_lines or b.dropped_bytes:
                        notes.append((key, b.dropped_lines, b.dropped_bytes))
                        b.dropped_lines = b.dropped_bytes = 0
                parents = {_parent_id(p): p for p in self._parents[-1000:]}
            if not notes:
                return
            for key, lines, nbytes in notes:
                try:
                    self._write(parents.get(key), "stderr", drop_note(lines, nbytes))
                except (ValueError, OSError):  # the kernel's streams are closed
                    return


def _parent_id(parent: Any) -> str:
    if isinstance(parent, dict):
        return str(parent.get("header", {}).get("msg_id", ""))
    return ""
