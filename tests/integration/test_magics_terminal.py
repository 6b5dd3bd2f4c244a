"""The magics in a plain IPython shell (no Jupyter kernel), as in terminal IPython: the
text stands alone, task output keeps the engine's own printing, errors still show the
user's frames.

The shell runs in a subprocess with a timeout, so IPython's process-wide state (display
hooks, builtins) never leaks into the other tests; on timeout its output is shown.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    cells = [
        "import nbray\\nnbray.init(num_cpus=2)",
        "scale = 3",
        "%%remote\\nprint('from the worker')\\nscaled = scale * 2",
        "print('scaled', scaled)",
        "@nbray.remote\\ndef sq(x):\\n    return x * x",
        "%%compare\\nsum(nbray.get([sq.remote(i) for i in range(4)]))",
        "%nbray",
        "%%remote\\nboom = 1 / (scale - 3)",
        "nbray.shutdown()",
    ]
    for cell in cells:
        print("=== CELL", flush=True)
        shell.run_cell(cell)
    print("=== END", flush=True)
    """
)


def test_magics_in_a_terminal_shell() -> None:
    try:
        proc = subprocess.run(
            [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=90
        )
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"the shell hung; its output: {exc.stdout!r} {exc.stderr!r}") from exc
    out = re.sub(r"\x1b\[[0-9;]*m", "", proc.stdout)
    assert proc.returncode == 0, (out, proc.stderr)
    cells = out.split("=== CELL\n")[1:]
    assert len(cells) == 9, out
    # task output keeps Ray's prefix outside a kernel (the engine's default printing)
    assert re.search(r"\(%%remote In\[\d+\] pid=\d+\) from the worker", cells[2]), cells[2]
    assert cells[3] == "scaled 6\n"
    # %%compare: the summary line alone, then the value
    assert re.fullmatch(
        r"In\[\d+\]: kernel [\d.]+ s wall / [\d.]+ s CPU, cluster [\d.]+ s wall / [\d.]+ s CPU; "
        r"speedup [\d.]+x on 2 CPUs \(\d+% parallel efficiency\); results equal\nOut\[\d+\]: 14\n",
        cells[5],
    ), cells[5]
    assert cells[6].startswith("nbray session\n  engine: local\n"), cells[6]
    assert "resources: CPU 2" in cells[6]
    assert re.search(r"Cell In\[\d+\], line 1\n----> 1 boom = 1 / \(scale - 3\)", cells[7])
    assert "ZeroDivisionError" in cells[7]
    assert cells[8].endswith("=== END\n")
