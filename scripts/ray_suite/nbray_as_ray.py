"""``import ray`` (and every ``ray.X``) resolves to ``nbray`` (``nbray.X``): a module that
only renames, so Ray's own test files run unchanged against nbray.

Also provides the two helpers Ray's tests take from ``ray._private.test_utils``
(``wait_for_condition``, ``SignalActor``): test scaffolding, not Ray API. Loaded in the
pytest process by ``ray_suite_plugin`` and in every worker by ``sitecustomize`` (workers
import the test modules by reference, so they must see the same ``ray``).
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import time
import types
from collections.abc import Callable, Sequence
from typing import Any

import nbray


class _Rename(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds ``ray.X`` as the already imported ``nbray.X``, keeping its own spec."""

    def __init__(self) -> None:
        self._specs: dict[str, Any] = {}

    def find_spec(
        self, name: str, path: Sequence[str] | None = None, target: Any = None
    ) -> importlib.machinery.ModuleSpec | None:
        if name != "ray" and not name.startswith("ray."):
            return None
        try:
            importlib.import_module("nb" + name)
        except ImportError:
            return None
        return importlib.util.spec_from_loader(name, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        real = sys.modules["nb" + spec.name]
        self._specs[spec.name] = real.__spec__
        return real

    def exec_module(self, module: types.ModuleType) -> None:
        # the import system set the module's __spec__ to the alias's: give nbray's back
        spec = module.__spec__
        assert spec is not None
        module.__spec__ = self._specs.pop(spec.name, spec)


if not any(isinstance(f, _Rename) for f in sys.meta_path):
    sys.meta_path.insert(0, _Rename())


def wait_for_condition(
    condition_predictor: Callable[..., bool],
    timeout: float = 10,
    retry_interval_ms: float = 100,
    raise_exceptions: bool = False,
    **kwargs: Any,
) -> None:
    """Poll ``condition_predictor(**kwargs)`` until true; ``RuntimeError`` at ``timeout``."""
    start = time.time()
    last: Exception | None = None
    while time.time() - start <= timeout:
        try:
            if condition_predictor(**kwargs):
                return
        except Exception as exc:
            if raise_exceptions:
                raise
            last = exc
        time.sleep(retry_interval_ms / 1000.0)
    raise RuntimeError(f"The condition wasn't met before the timeout expired. {last!r}")


class _Signal:
    """An actor tasks block on until the test ``send``s (Ray's tests' ``SignalActor``)."""

    def __init__(self) -> None:
        self.ready_event = asyncio.Event()
        self.num_waiters = 0

    def send(self, clear: bool = False) -> None:
        self.ready_event.set()
        if clear:
            self.ready_event.clear()

    async def wait(self, should_wait: bool = True) -> None:
        if should_wait:
            self.num_waiters += 1
            await self.ready_event.wait()
            self.num_waiters -= 1

    async def cur_num_waiters(self) -> int:
        return self.num_waiters


SignalActor = nbray.remote(num_cpus=0)(_Signal)

_private = types.ModuleType("ray._private")
_private.__path__ = []
_test_utils = types.ModuleType("ray._private.test_utils")
_test_utils.wait_for_condition = wait_for_condition  # type: ignore[attr-defined]
_test_utils.SignalActor = SignalActor  # type: ignore[attr-defined]
_private.test_utils = _test_utils  # type: ignore[attr-defined]
sys.modules.setdefault("ray._private", _private)
sys.modules.setdefault("ray._private.test_utils", _test_utils)
