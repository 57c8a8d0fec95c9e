"""One client's WebSocket as the hub sees it: its user, session, wire format, and an ordered
outgoing queue drained by a writer task of its own, so that handing it a frame never blocks
the caller (the core's actions are performed synchronously, one connection's slowness must not
hold the others)."""

from __future__ import annotations

import asyncio
import collections
import contextlib
from typing import Final

import structlog
from aiohttp import web

from signalling.codec import Encoding

log = structlog.get_logger(__name__)

# A connection whose unsent backlog would pass this many bytes (or frames) is closed: one
# stalled console must not hold the server's memory hostage. Bytes are what memory is; the
# frame count only bounds the deque's own overhead. `limits.max_backlog_bytes` sets the first.
MAX_BACKLOG_BYTES: Final = 1024 * 1024
MAX_BACKLOG: Final = 1024
CLOSE_BACKLOG: Final = 1008
# How long a closing connection may take to flush what was queued for it.
CLOSE_WAIT_S: Final = 5.0
# Closes a connection whose writer could not finish its own close in time.
CLOSE_INTERNAL: Final = 1011


class Connection:
    """One WebSocket: its user, session, wire format and an ordered outgoing queue drained
    by its own writer task (so `send` never blocks the core's caller). `encoding` is the
    format frames are encoded in when they are delivered; the hub changes it, in order with
    the deliveries, to the format of the frame a reply answers."""

    def __init__(
        self,
        ws: web.WebSocketResponse,
        user: str,
        session_id: str,
        encoding: Encoding,
        *,
        max_backlog_bytes: int = MAX_BACKLOG_BYTES,
        transport: asyncio.Transport | None = None,
    ):
        self.ws = ws
        # The TCP connection under the WebSocket, to abort when the peer does not read: a
        # transport's close() waits for its unsent data, which such a peer never takes.
        self._transport = transport
        self.user = user
        self.session_id = session_id
        self.encoding = encoding
        self._queue: collections.deque[str | bytes] = collections.deque()
        # Bytes queued and not yet handed to the socket (a str counts its length: JSON
        # frames are nearly all ASCII, and the bound need not be exact).
        self._queued_bytes = 0
        self._max_backlog_bytes = max_backlog_bytes
        self._wake = asyncio.Event()
        self._closing: tuple[int, str] | None = None
        self._overflowed: asyncio.Task[None] | None = None
        self._writer = asyncio.get_running_loop().create_task(self._write())

    def send(self, frame: str | bytes) -> None:
        if self._closing is not None:
            return
        size = len(frame)
        if len(self._queue) >= MAX_BACKLOG or self._queued_bytes + size > self._max_backlog_bytes:
            log.warning(
                "send backlog full",
                user_id=self.user,
                frames=len(self._queue),
                backlog_bytes=self._queued_bytes,
            )
            # The backlog is stale by now; the close frame should not wait behind it. The
            # client resumes and its welcome carries the current state.
            self._queue.clear()
            self._queued_bytes = 0
            self.close(CLOSE_BACKLOG, "send backlog full")
            # A peer that stopped reading leaves the writer blocked on the socket, and the
            # close frame behind it: after CLOSE_WAIT_S the socket is closed regardless.
            self._overflowed = asyncio.get_running_loop().create_task(self.finish())
            return
        self._queue.append(frame)
        self._queued_bytes += size
        self._wake.set()

    @property
    def backlog_bytes(self) -> int:
        """Bytes queued for the peer and not yet written to its socket."""
        return self._queued_bytes

    def close(self, code: int, reason: str) -> None:
        """Close after the frames already queued have been sent."""
        if self._closing is None:
            self._closing = (code, reason)
            self._wake.set()

    @property
    def closing(self) -> bool:
        """A close was asked for (it may still be flushing)."""
        return self._closing is not None

    async def _write(self) -> None:
        ws = self.ws
        queue = self._queue
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                while queue:
                    frame = queue.popleft()
                    self._queued_bytes -= len(frame)
                    if isinstance(frame, str):
                        await ws.send_str(frame)
                    else:
                        await ws.send_bytes(frame)
                if self._closing is not None:
                    code, reason = self._closing
                    await ws.close(code=code, message=reason.encode())
                    return
        except (ConnectionError, RuntimeError):
            # The peer went away mid-send; the reader side notices and cleans up.
            return

    async def finish(self, wait_s: float = CLOSE_WAIT_S) -> None:
        """Wait until the writer has sent what was queued and closed the socket; after
        `wait_s` (a peer that stopped reading) give up on the backlog and close it now."""
        done, _ = await asyncio.wait({self._writer}, timeout=wait_s)
        if done:
            return
        try:
            await self.stop()
            code, reason = self._closing or (CLOSE_INTERNAL, "")
            with contextlib.suppress(ConnectionError, RuntimeError, TimeoutError):
                await asyncio.wait_for(self.ws.close(code=code, message=reason.encode()), wait_s)
        finally:
            if self._transport is not None:
                # Done with it either way (aiohttp's close can itself end cancelled when
                # the send it interrupts was stuck); if close() left the transport flushing
                # what the peer will not read, this is what ends it, and the hub's reader.
                self._transport.abort()

    async def stop(self) -> None:
        """Stop writing now, dropping the backlog (the peer is gone)."""
        if self._writer.done():
            return
        self._writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._writer
