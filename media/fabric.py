"""The fabric between the media workers of one server: one AF_UNIX datagram socket per
worker, carrying media.fabric_frames frames (a conference's selected packets, keyframe
requests, who has sites of it).

Each worker binds its own path and sends to a sibling through a socket connected to the
sibling's path. Connected, because Linux queues few datagrams per receiving unix socket
(net.unix.max_dgram_qlen, 10 here): a keyframe's burst fills that, and only a connected
sender can wait for the receiver to drain (poll on it reports the peer's queue). Frames that
do not fit are kept in a short queue per sibling and sent when it drains; beyond that they
are dropped and counted, as a lost UDP packet would be (subscribers NACK or restart).

Received bytes are decoded and checked before anything else sees them; bad frames and frames
of conferences this worker does not know are dropped and counted, never raised.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Final

import structlog

from media.fabric_frames import MAX_FRAME, BadFrame, Frame, decode

log = structlog.get_logger(__name__)

# Frames kept per sibling while its queue is full: a quarter second of a busy router's
# output (about 1.2 MB); past that a stalled sibling costs drops, not memory.
MAX_QUEUED: Final = 1024
# Frames read per wake-up before other work gets the loop.
_READ_BATCH: Final = 64
# Socket buffers: a keyframe's burst, with room to spare.
_BUFFER_BYTES: Final = 1 << 20

FrameHandler = Callable[[Frame, bytes], None]


@dataclass(frozen=True, slots=True)
class FabricEndpoint:
    """Where worker `index` listens, and where each sibling does (index -> socket path)."""

    index: int
    path: str
    siblings: Mapping[int, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 0 <= self.index <= 0xFFFF:
            raise ValueError(f"a worker index is 0 to 65535: {self.index}")
        if self.index in self.siblings:
            raise ValueError(f"worker {self.index} is not its own sibling")
        for path in (self.path, *self.siblings.values()):
            # sockaddr_un's sun_path is 108 bytes with its terminating NUL.
            if not path or len(os.fsencode(path)) > 107:
                raise ValueError(f"a fabric socket path is 1 to 107 bytes: {path!r}")


class _Sibling:
    __slots__ = ("path", "queue", "sock", "writing")

    def __init__(self, path: str) -> None:
        self.path = path
        self.sock: socket.socket | None = None
        self.queue: collections.deque[bytes] = collections.deque()
        self.writing = False


class Fabric:
    def __init__(self, endpoint: FabricEndpoint) -> None:
        self.endpoint = endpoint
        self.index = endpoint.index
        self._siblings = {i: _Sibling(path) for i, path in endpoint.siblings.items()}
        # Conference id -> what handles its frames here.
        self.handlers: dict[str, FrameHandler] = {}
        self.received = 0
        self.sent = 0
        # Why frames were dropped, received or sent: reason -> count.
        self.dropped: collections.Counter[str] = collections.Counter()
        self._sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # ---- life -----------------------------------------------------------------------------

    def open(self) -> None:
        """Bind this worker's socket (a stale one left by a killed worker is replaced)."""
        self._loop = asyncio.get_running_loop()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.endpoint.path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.setblocking(False)
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _BUFFER_BYTES)
        sock.bind(self.endpoint.path)
        self._sock = sock
        self._loop.add_reader(sock.fileno(), self._readable)

    def close(self) -> None:
        loop = self._loop
        if self._sock is not None:
            if loop is not None:
                loop.remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.endpoint.path)
        for sibling in self._siblings.values():
            self._disconnect(sibling)
            sibling.queue.clear()

    # ---- sending --------------------------------------------------------------------------

    def send(self, to: int, data: bytes) -> None:
        sibling = self._siblings.get(to)
        if sibling is None:
            self.dropped["no_such_worker"] += 1
            return
        if sibling.queue:
            self._enqueue(sibling, data)
            return
        sock = sibling.sock or self._connect(sibling)
        if sock is None:
            return
        try:
            sock.send(data)
        except BlockingIOError:
            self._enqueue(sibling, data)
            return
        except OSError:
            # The sibling is gone or restarted (a new socket at the same path): connect
            # again for the next frame.
            self.dropped["unreachable"] += 1
            self._disconnect(sibling)
            return
        self.sent += 1

    def _connect(self, sibling: _Sibling) -> socket.socket | None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.setblocking(False)
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _BUFFER_BYTES)
        try:
            sock.connect(sibling.path)
        except OSError:
            sock.close()
            self.dropped["unreachable"] += 1
            return None
        sibling.sock = sock
        return sock

    def _disconnect(self, sibling: _Sibling) -> None:
        if sibling.sock is not None:
            if sibling.writing and self._loop is not None:
                self._loop.remove_writer(sibling.sock.fileno())
            sibling.writing = False
            sibling.sock.close()
            sibling.sock = None

    def _enqueue(self, sibling: _Sibling, data: bytes) -> None:
        if sibling.sock is None:
            self.dropped["unreachable"] += 1
            return
        if len(sibling.queue) >= MAX_QUEUED:
            self.dropped["queue_full"] += 1
            return
        sibling.queue.append(data)
        if not sibling.writing and self._loop is not None:
            sibling.writing = True
            self._loop.add_writer(sibling.sock.fileno(), self._drain, sibling)

    def _drain(self, sibling: _Sibling) -> None:
        sock = sibling.sock
        while sibling.queue and sock is not None:
            try:
                sock.send(sibling.queue[0])
            except BlockingIOError:
                return
            except OSError:
                self.dropped["unreachable"] += len(sibling.queue)
                sibling.queue.clear()
                self._disconnect(sibling)
                return
            sibling.queue.popleft()
            self.sent += 1
        if sibling.writing and sock is not None and self._loop is not None:
            self._loop.remove_writer(sock.fileno())
        sibling.writing = False

    # ---- receiving ------------------------------------------------------------------------

    def _readable(self) -> None:
        sock = self._sock
        for _ in range(_READ_BATCH):
            if sock is None:
                return
            try:
                # One byte more than any valid frame: a longer datagram shows as too long
                # instead of passing truncated.
                data = sock.recv(MAX_FRAME + 1)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                log.exception("fabric socket failed", worker=self.index)
                return
            self.received += 1
            self.take(data)
            sock = self._sock

    def take(self, data: bytes) -> None:
        """One datagram as received: checked, then handed to its conference's handler."""
        try:
            frame = decode(data)
        except BadFrame as bad:
            self.dropped[bad.reason] += 1
            return
        if frame.sender not in self._siblings:
            self.dropped["unknown_worker"] += 1
            return
        handler = self.handlers.get(frame.conference)
        if handler is None:
            self.dropped["unknown_conference"] += 1
            return
        try:
            handler(frame, data)
        except Exception:
            # One conference's fault is not worth the others' media.
            self.dropped["handler_failed"] += 1
            log.exception("fabric frame failed", worker=self.index, conference=frame.conference)
