"""What keeps the listener up when clients misbehave: silent connections closed, descriptors
to spare, and the accept loop's errors logged at a bounded rate.

A connection that never sends a request, or never finishes its headers (a WebSocket
handshake left half way), holds a descriptor. A few hundred of them under a modest
RLIMIT_NOFILE used to exhaust the process: `/healthz`, WebSockets and uploads then timed out
for over a minute (aiohttp's default idle limit, 75 s), and asyncio logged the failed
`accept()` once per retry, hundreds of thousands of lines. So:

- `server.header_timeout_s` (default 5 s) is aiohttp's idle limit: a connection with no
  whole request within it, or idle that long between requests, is closed;
- the open-file limit is raised to the hard limit at start (`raise_nofile_limit`);
- the loop's "accept() out of system resource" errors are logged at most once every
  `ACCEPT_LOG_INTERVAL_S`, with how many were swallowed (asyncio itself already waits a
  second before accepting again).
"""

from __future__ import annotations

import asyncio
import resource
import time
from typing import Any, Final

import structlog

log = structlog.get_logger(__name__)

ACCEPT_LOG_INTERVAL_S: Final = 10.0
_ACCEPT_ERROR: Final = "socket.accept() out of system resource"


def raise_nofile_limit() -> int:
    """Raise the open-file limit to the hard limit; returns the soft limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = max(soft, 1 << 20)
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            # Some containers cap below what they report; keep what we have.
            return soft
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


class AcceptErrorLog:
    """A loop exception handler that passes everything on but accept errors, which it logs
    at most once per `interval_s` (time from `clock`), with the count since the last line."""

    def __init__(self, interval_s: float = ACCEPT_LOG_INTERVAL_S, clock: Any = time.monotonic):
        self.interval_s = interval_s
        self.clock = clock
        self.swallowed = 0
        self._last: float | None = None

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if context.get("message") != _ACCEPT_ERROR:
            loop.default_exception_handler(context)
            return
        now = self.clock()
        if self._last is not None and now - self._last < self.interval_s:
            self.swallowed += 1
            return
        exc = context.get("exception")
        log.error(
            "cannot accept connections: out of descriptors",
            error=repr(exc),
            alarm=True,
            repeated=self.swallowed,
        )
        self._last = now
        self.swallowed = 0


__all__ = ["ACCEPT_LOG_INTERVAL_S", "AcceptErrorLog", "raise_nofile_limit"]
