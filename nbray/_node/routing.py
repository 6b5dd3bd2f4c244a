"""Message routing: one table from each input's type to the job that handles it.

    Peer ──message──▶ Router.route ──messages[type(msg)](peer, msg)──▶ a job's on_<Message>
        Request(what, args) ──▶ requests[what](peer, *args) ──▶ Reply(ok, value | error)
    Scheduler ──instructions──▶ Router.run ──instructions[type(ins)](ins)──▶ a job's do_<...>

The head fills the tables once (``Head.__init__``), so what handles each message, request
and instruction reads off one place. A connection must say Hello before anything else.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from nbray._wire import protocol as P

from .instructions import Instruction
from .peers import Peer

__all__ = ["Router"]

log = logging.getLogger("nbray.head")


class Router:
    def __init__(self) -> None:
        self.messages: dict[type, Callable[[Peer, Any], None]] = {P.Request: self.on_request}
        self.requests: dict[str, Callable[..., Any]] = {}
        self.instructions: dict[type, Callable[[Any], None]] = {}
        # runs before each request is answered (the event bus's flush: a reply comes after
        # the events that came before the request)
        self.before_request: Callable[[], None] | None = None

    def route(self, peer: Peer, msg: Any) -> None:
        handler = self.messages.get(type(msg))
        if handler is None:
            log.warning("connection %s sent an unknown message %s", peer.conn_id, type(msg))
            return
        if not peer.conn_id and type(msg) is not P.Hello:
            log.warning("a connection sent %s before Hello: closed", type(msg).__name__)
            peer.abort()
            return
        handler(peer, msg)

    def run(self, instructions: list[Instruction]) -> None:
        table = self.instructions
        for ins in instructions:
            table[type(ins)](ins)

    def on_request(self, peer: Peer, msg: P.Request) -> None:
        if self.before_request is not None:
            self.before_request()
        handler = self.requests.get(msg.what)
        try:
            if handler is None:
                raise ValueError(f"unknown request {msg.what!r}")
            peer.send(P.Reply(msg.req_id, True, handler(peer, *msg.args)))
        except Exception as exc:
            peer.send(P.Reply(msg.req_id, False, exc))
