"""``nbray.errors``: the first name of :mod:`nbray.exceptions`, kept so that code written
for it runs on (``from nbray.errors import TaskError``)."""

from __future__ import annotations

from .exceptions import *  # noqa: F403
from .exceptions import __all__ as __all__
