"""The last line of defence against a test that pytest-timeout cannot end.

pytest-timeout (signal method) raises in the main thread once, at the test's timeout. Two
cases slip past it and would hold the whole run until CI's own limit kills it, with no
word of which test hung:

- the main thread never runs the handler (blocked in C code that does not look at
  signals, or another thread holds the GIL), and
- the test's teardown hangs after its timeout fired (pytest-timeout arms once).

    pytest_runtest_protocol ──▶ HangGuard.arm(nodeid, timeout)
        watcher thread       ──▶ past timeout + GRACE_S: stacks of every thread, then the
                                 test's id as the last line, kill this run's processes,
                                 remove the session's files, os._exit(HUNG_EXIT)
        faulthandler (C)     ──▶ past timeout + GRACE_S + 30: stacks, _exit (the GIL was
                                 never free for the watcher)
    end of the protocol      ──▶ HangGuard.disarm()

Both write to the stderr pytest had before capturing (the test's own stderr is a capture
file that would never be shown).
"""

from __future__ import annotations

import faulthandler
import os
import threading
import time
from collections.abc import Callable

import psutil

# NBRAY_HANG_GRACE_S: shorter in the harness test that proves the guard
GRACE_S = float(os.environ.get("NBRAY_HANG_GRACE_S", "60"))
HUNG_EXIT = 3


class HangGuard:
    def __init__(self, stderr_fd: int, cleanup: Callable[[], None]) -> None:
        self._fd = stderr_fd
        self._cleanup = cleanup
        self._lock = threading.Condition()
        self._nodeid = ""
        self._deadline = 0.0
        self._thread = threading.Thread(target=self._watch, name="hang-guard", daemon=True)
        self._thread.start()

    def arm(self, nodeid: str, timeout: float) -> None:
        with self._lock:
            self._nodeid = nodeid
            self._deadline = time.monotonic() + timeout + GRACE_S
            self._lock.notify()
        faulthandler.dump_traceback_later(timeout + GRACE_S + 30, exit=True, file=self._fd)

    def disarm(self) -> None:
        faulthandler.cancel_dump_traceback_later()
        with self._lock:
            self._deadline = 0.0

    def _watch(self) -> None:
        while True:
            with self._lock:
                while not self._deadline or time.monotonic() < self._deadline:
                    wait = self._deadline - time.monotonic() if self._deadline else None
                    self._lock.wait(wait)
                nodeid = self._nodeid
            self._end_run(nodeid)

    def _end_run(self, nodeid: str) -> None:
        faulthandler.dump_traceback(file=self._fd, all_threads=True)
        line = (
            f"\nHUNG: {nodeid} ran {GRACE_S:.0f} s past its timeout and pytest-timeout "
            "could not end it (stacks above); the run stops here.\n"
        )
        os.write(self._fd, line.encode())
        for child in psutil.Process().children(recursive=True):
            try:
                child.kill()
            except psutil.Error:
                pass
        self._cleanup()
        os._exit(HUNG_EXIT)
