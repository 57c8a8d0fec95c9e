"""The C fan-out, as media.forwarder uses it: one C call per received packet and publication
sends it to every subscriber whose numbering is steady (docs/media.md "Forwarding").

A `Lane` is one subscriber's state in C: its socket (a duplicate of the ICE pair's
descriptor, so that the lane never writes to a number the system has since given to another
socket), the peer's address, its SRTP context (the sender's own, through media.hooks), its
header fields, its steady numbering (`media.rtp.Steady`) and the last 256 packets sent to it,
kept whichever path sent them. A `Group` is one publication's lanes, in one C array; `send`
fans a packet out over them and reports per owner what happened.

The C part is built by `make venv` (media/fanout_build.py). Without it `unavailable()` says
why, and the forwarder runs in Python (media.service logs that once at start).
"""

from __future__ import annotations

import os
import socket
import struct
import weakref
from dataclasses import dataclass
from typing import Any, Final, Generic, TypeVar

from pylibsrtp import Session as SrtpSession

from media import hooks, rtp

try:
    from media._fanout import ffi, lib
except ImportError as exc:
    _MISSING: str | None = f"media/_fanout is not built ({exc}); run `make venv`"
else:
    _MISSING = None
    lib.fanout_set_protect(ffi.cast("fanout_protect_fn", hooks.srtp_protect_address()))

# A lane's status after `Group.send`, as media/fanout.h defines them (also without the built
# library, which the tests compare them with).
SENT: Final = 0
SKIPPED: Final = 1
WOULD_BLOCK: Final = 2
FAILED: Final = 3

# Room for a packet and libsrtp's trailer, as in fanout.c.
_PACKET_MAX: Final = 2048 - 144
_MAX_EXTENSIONS: Final = 256

# sendmmsg for lanes sharing one socket (a subscriber's own ICE socket is its own, so in a
# server batches are of one; bench.fanout measures both).
BATCH: Final = True

T = TypeVar("T")


def unavailable() -> str | None:
    """Why the C fan-out cannot be used, or None when it can."""
    return _MISSING


def sockaddr(family: int, address: Any) -> bytes:
    """The C `struct sockaddr` for `address` as Python's socket module spells it for
    `family`; ValueError for one the lane cannot send to."""
    native = struct.pack("=H", family)
    if family in (socket.AF_INET, socket.AF_INET6) and not (
        isinstance(address, tuple)
        and len(address) >= 2
        and isinstance(address[0], str)
        and isinstance(address[1], int)
    ):
        raise ValueError(f"cannot send to {address!r}: not a (host, port) pair")
    if family == socket.AF_INET:
        host, port = address[0], address[1]
        return native + struct.pack("!H", port) + socket.inet_aton(host) + bytes(8)
    if family == socket.AF_INET6:
        host, port = address[0], address[1]
        flowinfo = address[2] if len(address) > 2 else 0
        scope = address[3] if len(address) > 3 else 0
        return (
            native
            + struct.pack("!HI", port, flowinfo)
            + socket.inet_pton(socket.AF_INET6, host)
            + struct.pack("=I", scope)
        )
    if family == socket.AF_UNIX and isinstance(address, str):
        path = os.fsencode(address)
        if len(path) >= 108:
            raise ValueError("unix socket path too long")
        return native + path + b"\x00"
    raise ValueError(f"cannot send to {address!r} on address family {family}")


def _release(lane: Any, fd: int) -> None:
    lib.fanout_lane_free(lane)
    os.close(fd)


class Lane:
    """One subscriber's state in C (see the module's doc). Closed explicitly or when
    collected; either way its descriptor is closed and its history freed once."""

    __slots__ = ("__weakref__", "_finalizer", "c", "session")

    def __init__(
        self,
        sock: socket.socket,
        address: Any,
        session: SrtpSession,
        *,
        ssrc: int,
        payload_type: int,
        first_byte: int,
        extensions: bytes,
    ) -> None:
        if _MISSING is not None:
            raise RuntimeError(_MISSING)
        if len(extensions) > _MAX_EXTENSIONS:
            raise ValueError(f"header extensions over {_MAX_EXTENSIONS} bytes")
        name = sockaddr(sock.family, address)
        fd = os.dup(sock.fileno())
        c = ffi.new("struct fanout_lane *")
        lib.fanout_lane_init(c)
        self._finalizer = weakref.finalize(self, _release, c, fd)
        self.c = c
        # The context's owner: libsrtp's state lives as long as this reference.
        self.session = session
        c.fd = fd
        # A socket's inode names it while any descriptor of it is open (ours is).
        c.socket_id = os.fstat(fd).st_ino
        c.addr[0 : len(name)] = name
        c.addr_len = len(name)
        c.srtp = ffi.cast("void *", hooks.srtp_context(session))
        c.ssrc = ssrc
        c.payload_type = payload_type
        c.first_byte = first_byte
        c.ext_len = len(extensions)
        c.ext[0 : len(extensions)] = extensions

    def close(self) -> None:
        self._finalizer()

    def load(self, steady: rtp.Steady) -> None:
        """Carry on from `steady` (the Python path's numbering)."""
        c = self.c
        c.seq_offset = steady.seq_offset
        c.ts_offset = steady.ts_offset
        c.start_seq = -1 if steady.start_seq is None else steady.start_seq
        c.last_out = -1 if steady.last_out is None else steady.last_out
        c.last_ts = steady.last_ts

    def steady(self) -> rtp.Steady:
        """Where this lane's numbering has got to."""
        c = self.c
        return rtp.Steady(
            seq_offset=c.seq_offset,
            ts_offset=c.ts_offset,
            start_seq=None if c.start_seq < 0 else c.start_seq,
            last_out=None if c.last_out < 0 else c.last_out,
            last_ts=c.last_ts,
        )

    def lower_picture_ids(self, offset: int) -> None:
        """Lower the PictureIDs of the VP8 packets with a TID it sends by `offset` (the
        frames media.temporal.Munger left out); 0: send them as they come."""
        c = self.c
        c.picture_offset = offset & 0x7FFF
        c.vp8_munge = 1 if offset & 0x7FFF else 0

    def take_history(self, other: Lane) -> None:
        """Keep answering NACKs for what `other` sent (this lane replaces it)."""
        lib.fanout_lane_move_history(self.c, other.c)

    def remember(self, seq: int, data: bytes) -> None:
        """Keep `data`, sent as `seq` by the Python path, for NACKs."""
        if lib.fanout_remember(self.c, seq, data, len(data)) != 0:
            raise MemoryError("fan-out history")

    def recall(self, seq: int) -> bytes | None:
        """The plain packet last sent as `seq`, if still kept."""
        out = ffi.new("uint8_t[]", _PACKET_MAX)
        length = lib.fanout_recall(self.c, seq, out, _PACKET_MAX)
        if length < 0:
            return None
        return bytes(ffi.buffer(out, length))

    def sent(self) -> int:
        return int(self.c.sent)

    def take_uncounted(self) -> tuple[int, int]:
        """Packets and payload octets sent since last asked (the sender's counters)."""
        c = self.c
        counts = int(c.uncounted_packets), int(c.uncounted_octets)
        c.uncounted_packets = 0
        c.uncounted_octets = 0
        return counts

    def add_uncounted(self, packets: int, octets: int) -> None:
        self.c.uncounted_packets += packets
        self.c.uncounted_octets += octets

    def status(self) -> int:
        """What the last `Group.send` did with this lane's packet (SENT, SKIPPED, ...)."""
        return int(self.c.status)

    def timestamp(self) -> int:
        """The output timestamp of the last packet prepared for this lane."""
        return int(self.c.out_ts)


@dataclass(slots=True)
class Sent:
    """What one `Group.send` did: packets sent, their plain bytes, lanes that would block."""

    packets: int
    bytes: int
    would_block: int


class Group(Generic[T]):
    """One publication's lanes, each with its owner, in the C array `send` walks."""

    def __init__(self, capacity: int = 16, *, batch: bool = BATCH) -> None:
        self.batch = batch
        self.owners: list[T] = []
        self.lanes: list[Lane] = []
        self._array = ffi.new("struct fanout_lane *[]", capacity)
        self._totals = ffi.new("struct fanout_totals *")

    def __len__(self) -> int:
        return len(self.lanes)

    def add(self, owner: T, lane: Lane) -> None:
        if len(self.lanes) == len(self._array):
            grown = ffi.new("struct fanout_lane *[]", 2 * len(self._array))
            grown[0 : len(self.lanes)] = self._array[0 : len(self.lanes)]
            self._array = grown
        self._array[len(self.lanes)] = lane.c
        self.owners.append(owner)
        self.lanes.append(lane)

    def remove(self, owner: T) -> None:
        """Take `owner`'s lane out (the last one takes its place)."""
        i = self.owners.index(owner)
        last = len(self.lanes) - 1
        self.owners[i], self.lanes[i] = self.owners[last], self.lanes[last]
        self._array[i] = self._array[last]
        self.owners.pop()
        self.lanes.pop()

    def send(self, seq: int, timestamp: int, marker: int, payload: bytes) -> Sent:
        """Fan one publisher packet out to every lane (sendmmsg per socket if BATCH)."""
        totals = self._totals
        lib.fanout_send(
            self._array,
            len(self.lanes),
            seq,
            timestamp,
            marker,
            payload,
            len(payload),
            self.batch,
            totals,
        )
        return Sent(int(totals.packets), int(totals.bytes), int(totals.would_block))

    def with_status(self, status: int) -> list[tuple[T, Lane]]:
        """The owners (and lanes) whose packet the last `send` left in `status`."""
        return [
            (owner, lane)
            for owner, lane in zip(self.owners, self.lanes, strict=True)
            if lane.c.status == status
        ]
