"""inspect_serializability: Ray's return shape, and the failing member named by its path."""

from __future__ import annotations

import io
import threading
from typing import Any

import pytest

from nbray.util import FailureTuple, inspect_serializability


class Holder:
    def __init__(self) -> None:
        self.ok = [1, 2, 3]
        self.lock = threading.Lock()


class Outer:
    def __init__(self) -> None:
        self.inner = Holder()
        self.name = "outer"


def test_a_picklable_object_passes_with_no_failures() -> None:
    out = io.StringIO()
    assert inspect_serializability({"a": [1, 2]}, name="cfg", print_file=out) == (True, set())
    assert "Checking Serializability of {'a': [1, 2]}" in out.getvalue()


def test_the_innermost_unpicklable_member_is_named() -> None:
    out = io.StringIO()
    ok, failures = inspect_serializability(Outer(), name="model", print_file=out)
    assert ok is False
    [failure] = failures
    assert isinstance(failure, FailureTuple)
    assert failure.path == ("model", "inner", "lock") and failure.name == "lock"
    assert failure.dotted() == "model.inner.lock"
    assert isinstance(failure.parent, Holder)
    assert type(failure.obj).__name__ == "lock"
    text = out.getvalue()
    assert "!!! FAIL serialization" in text and "was found to be non-serializable" in text
    assert "FailTuple(lock [path=model -> inner -> lock" in repr(failure)


def test_a_function_closure_and_container_items_are_walked() -> None:
    lock = threading.Lock()
    settings: dict[str, Any] = {"db": {"lock": lock}}

    def uses_globals() -> Any:
        return settings

    ok, failures = inspect_serializability(uses_globals, name="f", print_file=io.StringIO())
    assert not ok
    assert [f.dotted() for f in failures] == ["f.settings['db']['lock']"]


def test_depth_limits_the_walk() -> None:
    ok, failures = inspect_serializability(Outer(), depth=1, print_file=io.StringIO())
    assert not ok
    [failure] = failures
    assert failure.path == ("inner",)  # stops one level down
    with pytest.raises(ValueError, match="depth"):
        inspect_serializability(1, depth=-1)
