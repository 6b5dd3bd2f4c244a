"""Public surfaces listed once, in a package's ``__init__.pyi``, and imported on first use.

    __init__.pyi: from .MODULE import NAME as PUBLIC    (one per line; type checkers read it)
        ──stub_exports()──▶ {PUBLIC: (".MODULE", "NAME")}
        ──lazy_getattr()──▶ the package's ``__getattr__`` (PEP 562): imports MODULE the first
                            time PUBLIC is read, then keeps the value in the package

``from . import SUB as SUB`` lines name public submodules.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["lazy_getattr", "stub_exports"]

_STUB_LINE = re.compile(r"^from (\.[\w.]*) import (\w+) as (\w+)$", re.MULTILINE)


def stub_exports(init_file: str) -> dict[str, tuple[str, str]]:
    """Public name -> (module relative to the package, attribute or submodule name), read
    from the ``__init__.pyi`` beside ``init_file``."""
    text = Path(init_file).with_suffix(".pyi").read_text()
    return {public: (module, name) for module, name, public in _STUB_LINE.findall(text)}


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
