"""A real IPython kernel driven over the Jupyter protocol, for tests of the magics.

    test ─▶ KernelSession.execute(code) ─▶ jupyter_client ─▶ ipykernel (this venv)
        iopub reader thread ─▶ every message kept, grouped by the request it answers
    test ◀── Execution(reply, messages of that request: stream, display, error...)

Messages are grouped by their parent header, as JupyterLab routes them to cells, so a test
can check which cell an output landed in, also when it arrived while another cell ran.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections import defaultdict
from typing import Any

from jupyter_client.manager import KernelManager


class Execution:
    def __init__(self, session: KernelSession, msg_id: str, reply: dict[str, Any]) -> None:
        self.session = session
        self.msg_id = msg_id
        self.reply = reply

    @property
    def status(self) -> str:
        return str(self.reply["content"]["status"])

    @property
    def messages(self) -> list[dict[str, Any]]:
        return self.session.messages_of(self.msg_id)

    def stream(self, name: str | None = None) -> str:
        return "".join(
            m["content"]["text"]
            for m in self.messages
            if m["msg_type"] == "stream" and (name is None or m["content"]["name"] == name)
        )

    def data(self, mime: str = "text/plain") -> list[Any]:
        """The ``mime`` data of each execute_result / display_data / update, in order."""
        return [
            m["content"]["data"][mime]
            for m in self.messages
            if m["msg_type"] in ("execute_result", "display_data", "update_display_data")
            and mime in m["content"]["data"]
        ]

    def error(self) -> dict[str, Any]:
        errors = [m["content"] for m in self.messages if m["msg_type"] == "error"]
        assert errors, f"no error output; stream: {self.stream()!r}"
        return errors[-1]

    def ok(self) -> Execution:
        assert self.status == "ok", (self.reply["content"], self.stream())
        return self


class KernelSession:
    """One kernel with a collector of all its iopub messages; ``close()`` shuts it down."""

    def __init__(self, env: dict[str, str] | None = None, timeout: float = 60) -> None:
        self.km = KernelManager(kernel_name="python3")
        base = {k: v for k, v in os.environ.items() if k != "NBRAY_ADDRESS"}
        self.km.start_kernel(env={**base, **(env or {})})
        self.client = self.km.client()
        self.client.start_channels()
        self.client.wait_for_ready(timeout=timeout)
        self._by_parent: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self._idle: set[str] = set()
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                msg = self.client.iopub_channel.get_msg(timeout=0.1)
            except queue.Empty:
                continue
            except Exception:  # channel closed at shutdown
                return
            parent = msg["parent_header"].get("msg_id", "")
            msg["received"] = time.monotonic()
            with self._cond:
                self._by_parent[parent].append(msg)
                if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                    self._idle.add(parent)
                self._cond.notify_all()

    def messages_of(self, msg_id: str) -> list[dict[str, Any]]:
        with self._cond:
            return list(self._by_parent.get(msg_id, []))

    def wait_for(self, predicate: Any, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate():
                left = deadline - time.monotonic()
                assert left > 0, "timed out waiting for kernel output"
                self._cond.wait(left)

    def submit(
        self,
        code: str,
        allow_stdin: bool = False,
        *,
        metadata: dict[str, Any] | None = None,
        silent: bool = False,
    ) -> str:
        """Send an execute_request; ``metadata`` goes into the request's metadata, as VS Code
        sends each cell's ``cellId`` there."""
        if metadata is None:
            return str(self.client.execute(code, silent=silent, allow_stdin=allow_stdin))
        content = {
            "code": code,
            "silent": silent,
            "store_history": not silent,
            "user_expressions": {},
            "allow_stdin": allow_stdin,
            "stop_on_error": False,
        }
        msg = self.client.session.msg("execute_request", content, metadata=metadata)
        self.client.shell_channel.send(msg)
        return str(msg["header"]["msg_id"])

    def finish(self, msg_id: str, timeout: float = 60) -> Execution:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            assert left > 0, f"no reply to {msg_id} within {timeout} s"
            reply = self.client.get_shell_msg(timeout=left)
            if reply["parent_header"].get("msg_id") == msg_id:
                break
        self.wait_for(lambda: msg_id in self._idle, timeout=max(1.0, deadline - time.monotonic()))
        return Execution(self, msg_id, reply)

    def execute(self, code: str, timeout: float = 60) -> Execution:
        return self.finish(self.submit(code), timeout)

    def interrupt(self) -> None:
        self.km.interrupt_kernel()

    def close(self) -> None:
        self._stop.set()
        try:
            self.client.stop_channels()
        finally:
            if self.km.has_kernel:
                self.km.shutdown_kernel(now=True)
        self._reader.join(timeout=5)
