"""Public surfaces listed once, in a package's ``__init__.pyi``, and imported on first use.

    __init__.pyi: from .MODULE import NAME as PUBLIC    (one per line; type checkers read it)
        ──stub_exports()──▶ {PUBLIC: (".MODULE", "NAME")}
        ──lazy_getattr()──▶ the package's ``__getattr__`` (PEP 562): imports MODULE the first
                            time PUBLIC is read, then keeps the value in the package

``from . import SUB as SUB`` lines name public submodules.
"""

from __future__ import annotations

import importlib
import os

# ``import nbray`` runs this module and the package's __init__ only: they import neither
# typing, re nor pathlib (about 15 ms), so the head process, whose ``python -m`` imports the
# package first, spawns its fork server sooner. TYPE_CHECKING stands for typing's.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

__all__ = ["lazy_getattr", "stub_exports"]


def stub_exports(init_file: str) -> dict[str, tuple[str, str]]:
    """Public name -> (module relative to the package, attribute or submodule name), read
    from the ``__init__.pyi`` beside ``init_file``: its lines
    ``from .MODULE import NAME as PUBLIC``."""
    with open(os.path.splitext(init_file)[0] + ".pyi", encoding="utf-8") as f:
        lines = f.read().splitlines()
    exports = {}
    for line in lines:
        words = line.split(" ")
        if (
            len(words) == 6
            and (words[0], words[2], words[4]) == ("from", "import", "as")
            and words[1].startswith(".")
            and words[3].isidentifier()
            and words[5].isidentifier()
        ):
            exports[words[5]] = (words[1], words[3])
    return exports


def lazy_getattr(
    package: str, exports: dict[str, tuple[str, str]], namespace: dict[str, Any]
) -> Callable[[str], object]:
    """The module ``__getattr__`` of ``package`` over ``exports`` (``namespace``: its
    globals, where each value is kept once imported)."""

    def __getattr__(name: str) -> object:
        try:
            module, attribute = exports[name]
        except KeyError:
            raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        if module == ".":  # a public submodule
            value: object = importlib.import_module(f".{attribute}", package)
        else:
            value = getattr(importlib.import_module(module, package), attribute)
        namespace[name] = value
        return value

    return __getattr__
