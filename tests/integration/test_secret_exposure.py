"""The cluster's secret never leaves its 0600 file: not in any process's argv or
environment, not in the head's log, the address, the context's repr, or the event stream."""

from __future__ import annotations

import base64
import threading
from pathlib import Path
from typing import Any

import psutil
from nbray_testing import wait_until

import nbray
from nbray._model import session


def _forms(secret: bytes) -> list[bytes]:
    return [secret, secret.hex().encode(), base64.b64encode(secret), base64.b64encode(secret)[:-2]]


def test_the_secret_appears_nowhere_but_its_file(cluster_factory: Any) -> None:
    ctx = cluster_factory(num_cpus=2, port=0)
    secret_file = Path(ctx.session_dir) / "secret"
    secret = secret_file.read_bytes()
    events: list[dict[str, Any]] = []
    lock = threading.Lock()

    def collect(ev: dict[str, Any]) -> None:
        with lock:
            events.append(ev)

    unsubscribe = session.current_engine().subscribe(collect)

    @nbray.remote
    def square(x: int) -> int:
        return x * x

    @nbray.remote
    class Box:
        def get(self) -> str:
            return "ok"

    assert nbray.get([square.remote(i) for i in range(5)]) == [0, 1, 4, 9, 16]
    assert nbray.get(Box.remote().get.remote()) == "ok"
    nbray.get(nbray.put(b"x" * 200_000))
    wait_until(lambda: any(e.get("type") == "metrics" for e in events), 10)
    unsubscribe()

    head = psutil.Process(int((Path(ctx.session_dir) / "head.pid").read_text()))
    places: dict[str, bytes] = {
        "events": repr(events).encode(),
        "address": ctx.address.encode(),
        "context": repr(ctx).encode() + repr(ctx.address_info).encode(),
        "head.log": (Path(ctx.session_dir) / "head.log").read_bytes(),
    }
    for proc in [psutil.Process(), head, *head.children(recursive=True)]:
        places[f"argv of {proc.pid}"] = b"\0".join(a.encode() for a in proc.cmdline())
        places[f"environment of {proc.pid}"] = Path(f"/proc/{proc.pid}/environ").read_bytes()
    assert len(places) >= 4 + 2 * 4  # this process, the head, the fork server, workers
    leaks = [where for where, text in places.items() for form in _forms(secret) if form in text]
    assert leaks == []
    assert secret_file.stat().st_mode & 0o777 == 0o600
