"""Who may hold a TCP connection: a cap on connections in total and per client address, so
that one address (or a flood from many) cannot take every file descriptor the trace, the
evidence files and the media sockets need.

`ConnectionGate` is the pure count; `GatedHandler` applies it to aiohttp's request handler at
`connection_made`, before a byte is read: a refused connection gets a short 503 and is
closed, and never reaches the application, its access log or its header deadline.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Final

from aiohttp.web_protocol import RequestHandler

# Reasons, also the `error` of the 503 body.
TOO_MANY: Final = "too_many_connections"
TOO_MANY_FROM_ADDRESS: Final = "too_many_connections_from_address"
RETRY_AFTER_S: Final = 5


@dataclass
class ConnectionGate:
    """Counts open connections; `admit` says whether one more from `address` may open.
    `total` and `per_address` are caps; 0 means no cap of that kind."""

    total: int
    per_address: int
    open: int = 0
    by_address: dict[str, int] = field(default_factory=dict)
    refused: int = 0
    # The refusals by reason (the 503's `error`), for the metrics.
    refusals: Counter[str] = field(default_factory=Counter)

    def admit(self, address: str) -> str | None:
        """None when admitted (and counted), else the reason it is refused."""
        if self.total and self.open >= self.total:
            self.refused += 1
            self.refusals[TOO_MANY] += 1
            return TOO_MANY
        held = self.by_address.get(address, 0)
        if self.per_address and held >= self.per_address:
            self.refused += 1
            self.refusals[TOO_MANY_FROM_ADDRESS] += 1
            return TOO_MANY_FROM_ADDRESS
        self.open += 1
        self.by_address[address] = held + 1
        return None

    def leave(self, address: str) -> None:
        self.open -= 1
        held = self.by_address[address] - 1
        if held:
            self.by_address[address] = held
        else:
            # Kept only while open, so the table cannot grow with every address ever seen.
            del self.by_address[address]


def total_cap(max_connections: int, nofile: int, fd_reserve: int) -> int:
    """The total cap in force: the configured one, but never more than the descriptors left
    once `fd_reserve` are kept for everything that is not a client connection."""
    by_descriptors = max(1, nofile - fd_reserve)
    return min(max_connections, by_descriptors) if max_connections else by_descriptors


def refusal(reason: str) -> bytes:
    """A whole HTTP response, written straight to the socket: the connection never got as far
    as a request, so no handler could answer it. Same JSON error shape as http_edge."""
    body = json.dumps({"error": reason, "message": "server busy, retry later"}).encode()
    head = (
        "HTTP/1.1 503 Service Unavailable\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        f"Retry-After: {RETRY_AFTER_S}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode() + body


def peer_host(transport: asyncio.BaseTransport) -> str:
    peer = transport.get_extra_info("peername")
    if isinstance(peer, tuple) and peer:
        return str(peer[0])
    # A Unix socket or an unknown transport: one shared bucket.
    return ""


class GatedHandler(RequestHandler):
    """aiohttp's request handler, admitted by a `ConnectionGate` first. `on_refused` is told
    each refusal (for a rate-limited log line)."""

    def __init__(self, manager: Any, *, gate: ConnectionGate, on_refused: Any, **kwargs: Any):
        super().__init__(manager, **kwargs)
        self._gate = gate
        self._on_refused = on_refused
        self._admitted: str | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        address = peer_host(transport)
        reason = self._gate.admit(address)
        if reason is not None:
            assert isinstance(transport, asyncio.WriteTransport)
            transport.write(refusal(reason))
            transport.close()
            self._on_refused(address, reason)
            return
        self._admitted = address
        super().connection_made(transport)

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._admitted is None:
            # Refused: never registered with aiohttp's server, nothing of it to undo.
            return
        self._gate.leave(self._admitted)
        self._admitted = None
        super().connection_lost(exc)


__all__ = [
    "TOO_MANY",
    "TOO_MANY_FROM_ADDRESS",
    "ConnectionGate",
    "GatedHandler",
    "peer_host",
    "refusal",
    "total_cap",
]
