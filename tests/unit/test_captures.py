"""The walker that names the captured value keeping a function from pickling."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from nbray._wire.captures import describe, unpicklable_captures

LOCK = threading.Lock()


class Client:
    def __init__(self) -> None:
        self.url = "http://x"
        self._lock = threading.Lock()


CLIENT = Client()
FINE = {"a": [1, 2, 3]}


def uses_lock() -> None:
    with LOCK:
        pass


def uses_client_and_fine() -> Any:
    return CLIENT.url, FINE


def test_a_captured_global_is_named_with_its_path() -> None:
    assert unpicklable_captures(uses_lock, "uses_lock") == ["uses_lock -> LOCK -> <_thread.lock>"]


def test_the_innermost_part_of_an_object_is_found() -> None:
    paths = unpicklable_captures(uses_client_and_fine, "uses_client_and_fine")
    assert paths == ["uses_client_and_fine -> CLIENT -> ._lock -> <_thread.lock>"]


def test_closures_nested_functions_and_containers(tmp_path: Path) -> None:
    log = open(tmp_path / "log.txt", "w")
    try:
        things = {"log": log}

        def write_log(x: int) -> None:
            def inner() -> None:
                things["log"].write(str(x))

            inner()

        assert unpicklable_captures(write_log, "write_log") == [
            f"write_log -> things -> ['log'] -> <file {tmp_path / 'log.txt'} (w)>"
        ]
    finally:
        log.close()


def test_a_function_that_pickles_has_no_paths() -> None:
    def fine(x: int) -> int:
        return len(FINE) + x

    assert unpicklable_captures(fine, "fine") == []
    assert describe(threading.Lock()) == "<_thread.lock>"
