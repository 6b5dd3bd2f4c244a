"""The magics in a real IPython kernel, driven over the Jupyter protocol (jupyter_client).

One kernel (with a two-CPU cluster of its own) serves the whole module; each test uses its
own variable names. Outputs are read from the kernel's iopub messages grouped by the
request they answer, which is how JupyterLab puts them under cells.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kernel_session import Execution, KernelSession
from nbray_testing import wait_until

pytestmark = pytest.mark.timeout(90)

ANSI = re.compile(r"\x1b\[[0-9;]*m")


def plain(lines: list[str]) -> str:
    return ANSI.sub("", "\n".join(lines))


@pytest.fixture(scope="module")
def kernel() -> Iterator[KernelSession]:
    k = KernelSession()
    try:
        # a plain ``import nbray`` registers the magics in IPython (no %load_ext needed)
        info = k.execute(
            "import json, nbray\nctx = nbray.init(num_cpus=2)\n"
            "print('SESSION', json.dumps(ctx.session_dir))"
        ).ok()
        k.session_dir = json.loads(info.stream().split("SESSION ", 1)[1])  # type: ignore[attr-defined]
        yield k
    finally:
        k.close()
    # the kernel's private cluster went with it
    session_dir = getattr(k, "session_dir", "")
    if session_dir:
        wait_until(lambda: not Path(session_dir).exists(), 10.0)


def count(r: Execution) -> int:
    return int(r.reply["content"]["execution_count"])


def test_remote_ships_what_the_cell_reads_and_brings_back_what_it_assigns(
    kernel: KernelSession,
) -> None:
    kernel.execute(
        "import math, os\nbase = 7\nunused = object()\nref = nbray.put([1, 2, 3])\n"
        "kernel_pid = os.getpid()"
    ).ok()
    r = kernel.execute(
        "%%remote\n"
        "doubled = [v * 2 for v in ref]      # an ObjectRef, resolved on the worker\n"
        "root = math.sqrt(base)               # a module, imported there\n"
        "where = os.getpid()\n"
        "print('on the worker', doubled)\n"
        "root + 1"
    ).ok()
    assert r.stream() == "on the worker [2, 4, 6]\n"  # in this cell, without a prefix
    assert r.data() == [repr(7**0.5 + 1)]  # the last expression, shown as Out[n]
    check = kernel.execute("print(doubled, round(root, 3), where != kernel_pid)").ok()
    assert check.stream() == "[2, 4, 6] 2.646 True\n"


def test_remote_o_brings_back_only_the_names_given(kernel: KernelSession) -> None:
    kernel.execute("%%remote -o keep\nkeep = 1\ndrop_me = 2").ok()
    r = kernel.execute("print(keep, 'drop_me' in globals())").ok()
    assert r.stream() == "1 False\n"


def test_remote_each_runs_one_task_per_item_in_order(kernel: KernelSession) -> None:
    r = kernel.execute(
        "%%remote --each n in [3, 1, 2]\nimport os\nsquare = n * n\npid = os.getpid()\nsquare + 100"
    ).ok()
    assert r.data() == ["[109, 101, 104]"]
    check = kernel.execute("print(square, len(pid))").ok()
    assert check.stream() == "[9, 1, 4] 3\n"
    # a large variable the tasks share is stored once and read by each
    kernel.execute("import numpy as np\nshared = np.arange(300_000)").ok()
    r = kernel.execute("%%remote --each k in range(3)\nint(shared[k * 1000] + shared.sum())").ok()
    total = sum(range(300_000))
    assert r.data() == [str([total, total + 1000, total + 2000])]


def test_remote_async_returns_at_once_and_writes_back_later(kernel: KernelSession) -> None:
    r = kernel.execute(
        "%%remote --async\nimport time\ntime.sleep(1.0)\nlate_answer = 41 + 1\nlate_answer"
    ).ok()
    first = r.data()
    assert len(first) == 1 and "0/1 task(s) done" in first[0]
    assert kernel.execute("print('late_answer' in globals())").ok().stream() == "False\n"
    wait_until(lambda: any("done in" in d for d in r.data()), 20.0)
    assert "wrote time, late_answer; value: 42" in r.data()[-1]
    assert kernel.execute("print(late_answer)").ok().stream() == "42\n"


def test_output_lands_in_the_submitting_cell_while_a_later_cell_runs(
    kernel: KernelSession,
) -> None:
    first = kernel.execute(
        "@nbray.remote\n"
        "def later(i):\n"
        "    import time\n"
        "    time.sleep(1.0)\n"
        "    print('late line', i, flush=True)\n"
        "    return i\n"
        "later_refs = [later.remote(i) for i in range(2)]"
    ).ok()
    assert first.stream() == ""  # the cell ended before its tasks printed
    second = kernel.execute("import time\ntime.sleep(2.5)\nprint('second cell')").ok()
    assert second.stream() == "second cell\n"
    late = [m for m in first.messages if m["msg_type"] == "stream"]
    text = re.sub(r"pid=\d+", "pid=N", "".join(m["content"]["text"] for m in late))
    assert sorted(text.splitlines()) == ["(later pid=N) late line 0", "(later pid=N) late line 1"]
    # and they arrived while the second cell was running
    busy, idle = (
        next(m["received"] for m in second.messages if m["content"].get("execution_state") == s)
        for s in ("busy", "idle")
    )
    assert all(busy < m["received"] < idle for m in late)


WAIT_FOR_FREE_CPUS = (
    "import time\n"
    "for _ in range(200):\n"
    "    if nbray.available_resources().get('CPU') == 2.0:\n"
    "        break\n"
    "    time.sleep(0.05)\n"
    "print(nbray.available_resources())"
)


def interrupt_while_running(kernel: KernelSession, code: str) -> Execution:
    """Run ``code``, press the stop button once its tasks run, return the cell's result."""
    msg_id = kernel.submit(code)
    kernel.wait_for(
        lambda: any(m["msg_type"] == "execute_input" for m in kernel.messages_of(msg_id))
    )
    time.sleep(1.0)  # the tasks are running now
    kernel.interrupt()
    r = kernel.finish(msg_id, timeout=30)
    assert r.reply["content"]["ename"] == "KeyboardInterrupt"
    return r


def test_interrupt_cancels_the_cells_remote_work(kernel: KernelSession) -> None:
    r = interrupt_while_running(
        kernel,
        "@nbray.remote\n"
        "def forever():\n"
        "    import time\n"
        "    time.sleep(600)\n"
        "stuck = [forever.remote() for _ in range(3)]   # two run, one waits for a CPU\n"
        "nbray.get(stuck)",
    )
    assert "cancelled the 3 task(s) this cell started" in r.stream()
    check = kernel.execute(
        "from nbray.exceptions import TaskCancelledError\n"
        "for ref in stuck:\n"
        "    try:\n"
        "        nbray.get(ref, timeout=20)\n"
        "    except TaskCancelledError:\n"
        "        print('cancelled')\n" + WAIT_FOR_FREE_CPUS
    ).ok()
    assert check.stream() == "cancelled\ncancelled\ncancelled\n{'CPU': 2.0}\n"


def test_interrupting_a_remote_cell_cancels_its_tasks(kernel: KernelSession) -> None:
    r = interrupt_while_running(
        kernel, "%%remote --each i in range(2)\nimport time\ntime.sleep(600)"
    )
    assert "cancelled the 2 task(s) this cell started" in r.stream()
    assert kernel.execute(WAIT_FOR_FREE_CPUS).ok().stream() == "{'CPU': 2.0}\n"


def test_remote_error_traceback_names_the_users_cells_and_debug_sees_remote_locals(
    kernel: KernelSession,
) -> None:
    defined = kernel.execute(
        "@nbray.remote\ndef invert(a):\n    shifted = a - 3\n    return 1 / shifted\n"
    ).ok()
    r = kernel.execute("nbray.get(invert.remote(3))")
    tb = plain(r.error()["traceback"])
    assert f"Cell In[{count(r)}], line 1\n----> 1 nbray.get(invert.remote(3))" in tb
    assert f"Cell In[{count(defined)}], line 4, in invert()" in tb
    assert "----> 4     return 1 / shifted" in tb
    assert "nbray/" not in tb  # no frame of the runtime's internals
    assert r.error()["ename"] == "TaskError(ZeroDivisionError)"

    nested = kernel.execute(
        "@nbray.remote\ndef outer(a):\n    return nbray.get(invert.remote(a))\n"
        "nbray.get(outer.remote(3))"
    )
    tb = plain(nested.error()["traceback"])  # the waiting task's frame, then the failed one's
    assert tb.index(f"Cell In[{count(nested)}], line 3, in outer()") < tb.index("in invert()")

    msg_id = kernel.submit("%debug", allow_stdin=True)
    for answer in ("p (a, shifted)", "q"):
        kernel.client.get_stdin_msg(timeout=20)
        kernel.client.input(answer)
    debug = kernel.finish(msg_id).ok()
    assert "(3, 0)" in debug.stream()  # the innermost remote frame's locals, shipped back


def test_remote_cell_error_points_at_the_cell_line(kernel: KernelSession) -> None:
    r = kernel.execute("%%remote\nnumerator = 10\nratio = numerator / (base - 7)")
    tb = plain(r.error()["traceback"])
    assert f"Cell In[{count(r)}], line 2\n      1 numerator = 10\n----> 2 ratio" in tb
    assert "run_cell_magic" not in tb


def test_values_that_cannot_be_shipped_fail_before_anything_runs(kernel: KernelSession) -> None:
    kernel.execute("import threading\nguard = threading.Lock()\nbig = bytes(5000)").ok()
    r = kernel.execute("%%remote\nwith guard:\n    print('ran')")
    assert r.error()["ename"] == "SerializationError"
    assert "cannot ship the variable 'guard'" in r.error()["evalue"]
    assert "cannot pickle '_thread.lock' object" in r.error()["evalue"]
    r = kernel.execute(
        "import nbray.magics.remote as R\nR.MAX_SHIP_BYTES, old = 1000, R.MAX_SHIP_BYTES\n"
        "try:\n    get_ipython().run_cell_magic('remote', '', 'print(len(big))')\n"
        "finally:\n    R.MAX_SHIP_BYTES = old"
    )
    assert "cannot ship the variable 'big': it is 5.1 kB pickled" in r.error()["evalue"]
    assert "ran" not in r.stream() and "5000" not in r.stream()


def test_wrong_usage_raises_usage_error(kernel: KernelSession) -> None:
    r = kernel.execute("%%remote --cpus\nx = 1")
    assert r.status == "error"
    assert "UsageError: %%remote: argument --cpus: expected one argument" in r.stream()
    assert "Usage:\n%%remote [--cpus N]" in r.stream()
    r = kernel.execute("%%remote --cpus 1\n   \n")
    assert "%%remote needs code in the cell" in r.stream()


def test_compare_times_both_runs_and_checks_results(kernel: KernelSession) -> None:
    r = kernel.execute(
        "%%compare -l tasks\n"
        "@nbray.remote\n"
        "def spin(n):\n"
        "    return sum(i * i for i in range(n))\n"
        "sum(nbray.get([spin.remote(200_000) for _ in range(4)]))"
    ).ok()
    summary = r.stream()
    assert re.match(
        r"tasks: kernel [\d.]+ s wall / [\d.]+ s CPU, cluster [\d.]+ s wall / [\d.]+ s CPU; "
        r"speedup [\d.]+x on 2 CPUs \(\d+% parallel efficiency\); results equal\n",
        summary,
    ), summary
    charts = r.data("application/vnd.plotly.v1+json")
    assert charts and charts[0]["data"][0]["x"] == ["tasks"]
    assert r.data() == [summary.strip(), str(sum(i * i for i in range(200_000)) * 4)]
    r2 = kernel.execute("%%compare -l 'one task'\nnbray.get(spin.remote(100_000))").ok()
    assert r2.data("application/vnd.plotly.v1+json")[0]["data"][0]["x"] == ["tasks", "one task"]


def test_compare_without_remote_work_says_so_and_imports_before_timing(
    kernel: KernelSession,
) -> None:
    # a cell with no remote call, whose first import would land on the kernel's run
    r = kernel.execute("%%compare -l local\nimport colorsys\ncolorsys.rgb_to_hsv(0.2, 0.4, 0.4)")
    summary = r.ok().stream()
    assert "no remote work: the cell submitted no task or actor call" in summary, summary
    assert "(imported colorsys before timing both runs)" in summary
    assert "x on 2 CPUs" not in summary and "efficiency" not in summary
    chart = r.data("application/vnd.plotly.v1+json")[0]
    assert chart["data"][1]["text"][-1] == "no remote work"
    assert "no remote work" in r.data("text/html")[0]  # the static picture says it too


def test_session_and_object_reprs(kernel: KernelSession) -> None:
    r = kernel.execute("%nbray").ok()
    html = r.data("text/html")[0]
    assert "nbray session" in html and "CPU 2" in html and "local" in html
    r = kernel.execute("ready_ref = nbray.put(b'x' * 100)\nready_ref").ok()
    html = r.data("text/html")[0]
    assert "READY" in html and "this kernel" in html and "B" in html
    r = kernel.execute(
        "@nbray.remote\nclass Box:\n    def get(self):\n        return 1\n"
        "box = Box.options(name='box').remote()\nnbray.get(box.get.remote())\nbox"
    ).ok()
    html = r.data("text/html")[0]
    assert "Actor Box" in html and "ALIVE" in html and "box" in html


def test_output_floods_are_rate_limited_with_a_note(kernel: KernelSession) -> None:
    r = kernel.execute(
        "@nbray.remote\n"
        "def chatty():\n"
        "    for i in range(100_000):\n"
        "        print('line', i)\n"
        "nbray.get(chatty.remote())\n"
        "import time; time.sleep(1.5)",
        timeout=60,
    ).ok()
    text = r.stream()
    assert "(chatty pid=" in text
    assert len(text) < 100_000 * 20  # most of it was dropped...
    notes = re.findall(r"\[nbray\] ([\d,]+) lines \(", text)
    assert notes  # ...and the cell says how much
    shown = text.count("(chatty pid=")
    assert shown + sum(int(n.replace(",", "")) for n in notes) == 100_000


def test_logging_and_actor_output_land_in_the_cell(kernel: KernelSession) -> None:
    r = kernel.execute(
        "@nbray.remote\n"
        "def logs():\n"
        "    import logging\n"
        "    logging.getLogger('demo').warning('careful: %d', 3)\n"
        "@nbray.remote\n"
        "class Speaker:\n"
        "    def say(self, word):\n"
        "        print('actor says', word)\n"
        "speaker = Speaker.remote()\n"
        "nbray.get([logs.remote(), speaker.say.remote('hi')])"
    ).ok()
    assert re.search(r"^\(logs pid=\d+\) careful: 3$", r.stream("stderr"), re.M), r.stream()
    assert re.search(r"^\(Speaker.say pid=\d+\) actor says hi$", r.stream("stdout"), re.M)


def test_error_and_pending_ref_reprs(kernel: KernelSession) -> None:
    r = kernel.execute(
        "@nbray.remote\ndef halve(a):\n    return a / 0\n"
        "try:\n    nbray.get(halve.remote(3))\nexcept ZeroDivisionError as exc:\n"
        "    caught = exc\ncaught"
    ).ok()
    html = r.data("text/html")[0]
    assert "TaskError in halve" in html and "ZeroDivisionError: division by zero" in html
    assert f"Cell In[{count(r)}], line 3, in halve" in html, html
    r = kernel.execute(
        "@nbray.remote\ndef nap():\n    import time\n    time.sleep(30)\n"
        "napping = nap.remote()\nimport time\ntime.sleep(0.5)\nnapping"
    ).ok()
    assert "RUNNING" in r.data("text/html")[0]
    kernel.execute("nbray.cancel(napping)").ok()
