"""The number of the notebook cell running now, as the frontend shows it (In[N]).

IPython 9 counts ``execution_count`` up before it runs a cell (and before
``pre_run_cell``), so the cell running is In[execution_count - 1]. The magics' cell names,
the cell router's records and the widgets' cell scopes all number cells with this.

Example::

    from nbray.magics.cells import running_cell

    running_cell(get_ipython())   # 5 while In[5] runs
"""

from __future__ import annotations

from typing import Any

__all__ = ["running_cell"]


def running_cell(shell: Any) -> int | None:
    """The In[N] number of the cell running now; None without a shell."""
    count = getattr(shell, "execution_count", None)
    return max(0, count - 1) if isinstance(count, int) else None
