"""A blocked ``get``, ``wait`` or generator ``next`` of a client, woken by its reader thread."""

from __future__ import annotations

import threading

__all__ = ["Waiter"]


class Waiter:
    """A blocked ``get``/``wait``: woken once ``remaining`` more objects arrived, or (for a
    ``get``, ``stop_on_error``) as soon as one of them is an error, as Ray's ``get`` raises
    at the first failed object without waiting for the others."""

    __slots__ = ("event", "remaining", "stop_on_error")

    def __init__(self, remaining: int, stop_on_error: bool = False) -> None:
        self.remaining = remaining
        self.stop_on_error = stop_on_error
        self.event = threading.Event()
