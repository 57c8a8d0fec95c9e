"""Behind a reverse proxy: whose `X-Forwarded-For` and `X-Forwarded-Proto` count.

A proxy that terminates TLS connects to us over plain HTTP from its own address; the client's
address and scheme come in the forwarded headers. Those headers are believed only from a
peer in `server.trusted_proxies` (addresses or networks): from anyone else they are ignored,
or any client could claim any address (and dodge the sign-in attempt budget) or pretend its
page is secure. The client's address is the right-most `X-Forwarded-For` entry that is not
itself a trusted proxy (each proxy appends the address it saw).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable, Iterable
from typing import Final

from aiohttp import web
from aiohttp.typedefs import Middleware

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

X_FORWARDED_FOR: Final = "X-Forwarded-For"
X_FORWARDED_PROTO: Final = "X-Forwarded-Proto"
# Longer headers are ignored whole: no proxy chain is this deep.
MAX_HEADER_CHARS: Final = 1024


def networks(entries: Iterable[str]) -> tuple[Network, ...]:
    """The configured proxies as networks; ValueError naming a bad entry."""
    out = []
    for entry in entries:
        try:
            out.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            raise ValueError(f"{entry!r} is not an address or network") from None
    return tuple(out)


def _trusted(address: str | None, trusted: tuple[Network, ...]) -> bool:
    if not address:
        return False
    try:
        ip = ipaddress.ip_address(address.split("%")[0])
    except ValueError:
        return False
    return any(ip in net for net in trusted)


def client_address(forwarded_for: str, trusted: tuple[Network, ...]) -> str | None:
    """The right-most address of `X-Forwarded-For` that is not a trusted proxy, or None."""
    if len(forwarded_for) > MAX_HEADER_CHARS:
        return None
    for hop in reversed([h.strip() for h in forwarded_for.split(",")]):
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            return None
        if not _trusted(hop, trusted):
            return hop
    return None


def forwarded(trusted: tuple[Network, ...]) -> Middleware:
    """Middleware: a request from a trusted proxy takes the client's address and scheme from
    the forwarded headers. Not a coroutine: every request gets its handler's own awaitable
    back, so a WebSocket does not keep a frame of this alive."""

    @web.middleware
    def apply(request: web.Request, handler: Handler) -> Awaitable[web.StreamResponse]:
        if not trusted or not _trusted(request.remote, trusted):
            return handler(request)
        changes: dict[str, str] = {}
        remote = client_address(request.headers.get(X_FORWARDED_FOR, ""), trusted)
        if remote is not None:
            changes["remote"] = remote
        proto = request.headers.get(X_FORWARDED_PROTO, "").strip().lower()
        if proto in ("http", "https"):
            changes["scheme"] = proto
        if not changes:
            return handler(request)
        return handler(request.clone(**changes))  # type: ignore[arg-type]

    return apply


__all__ = ["X_FORWARDED_FOR", "X_FORWARDED_PROTO", "client_address", "forwarded", "networks"]
