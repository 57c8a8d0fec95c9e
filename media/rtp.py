"""RTP as the relay sees it, pure: where a publisher's keyframes start, how one subscriber's
copy of a stream is renumbered, and the bytes of the packet it is sent.

The relay forwards a publisher's packets to each subscriber without decoding them. Each
subscriber gets its own SSRC, payload type, sequence numbers and timestamps (those its peer
connection negotiated), so a subscriber can start late, pause and resume without the others
noticing. A subscriber starts, and after a stall restarts, on the first packet of a keyframe:
anything earlier would only make its decoder ask for one.

Nothing here touches sockets, clocks or aiortc objects: packets are numbers and bytes. This
module reads the RTP payload formats (RFC 7741 for VP8, RFC 6184 for H.264); what the codec's
own bytes inside them say is media.bitstream's.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

from media import bitstream

_HEADER: Final = struct.Struct("!BBHII")
_RTP_VERSION_BITS: Final = 0x80
_EXTENSION_BIT: Final = 0x10
ONE_BYTE_PROFILE: Final = 0xBEDE

# RFC 6184 payload types beyond H.264's own NAL units: one packet aggregating several NAL
# units (STAP-A), one fragment of a NAL unit (FU-A).
_H264_STAP_A: Final = 24
_H264_FU_A: Final = 28
# A subscriber can start on an IDR slice, or on the parameter sets sent right before one.
_H264_STARTS: Final = (bitstream.H264_IDR, bitstream.H264_SPS)


def vp8_keyframe_start(payload: bytes) -> bool:
    """Whether this VP8 RTP payload (RFC 7741) begins a keyframe."""
    if not payload:
        return False
    first = payload[0]
    # S (start of partition) set and partition index 0: the frame's first packet.
    if not first & 0x10 or first & 0x07:
        return False
    pos = 1
    if first & 0x80:  # X: extension byte follows
        if len(payload) < 2:
            return False
        ext = payload[1]
        pos = 2
        if ext & 0x80:  # I: picture id, 7 or 15 bits
            if len(payload) <= pos:
                return False
            pos += 2 if payload[pos] & 0x80 else 1
        if ext & 0x40:  # L: TL0PICIDX
            pos += 1
        if ext & 0x30:  # T or K: TID/KEYIDX byte
            pos += 1
    if len(payload) <= pos:
        return False
    return bitstream.vp8_key_frame_tag(payload[pos])


def h264_keyframe_start(payload: bytes) -> bool:
    """Whether this H264 RTP payload (RFC 6184) begins an IDR picture (or its SPS)."""
    if not payload:
        return False
    nal_type = bitstream.h264_nal_type(payload[0])
    if nal_type in _H264_STARTS:
        return True
    if nal_type == _H264_STAP_A:
        pos = 1
        while pos + 2 < len(payload):
            size = (payload[pos] << 8) | payload[pos + 1]
            if size == 0:
                return False
            if bitstream.h264_nal_type(payload[pos + 2]) in _H264_STARTS:
                return True
            pos += 2 + size
        return False
    if nal_type == _H264_FU_A and len(payload) > 1:
        fu = payload[1]
        return bool(fu & 0x80) and bitstream.h264_nal_type(fu) in _H264_STARTS
    return False


def keyframe_start(codec_name: str, payload: bytes) -> bool:
    """Whether a packet is a valid place for a subscriber to start. Audio starts anywhere."""
    name = codec_name.upper()
    if name == bitstream.VP8:
        return vp8_keyframe_start(payload)
    if name == bitstream.H264:
        return h264_keyframe_start(payload)
    return True


def one_byte_extensions(elements: list[tuple[int, bytes]]) -> bytes:
    """An RTP header extension block in the one-byte form (RFC 8285), padded to 32 bits."""
    body = b"".join(bytes([(ext_id << 4) | (len(value) - 1)]) + value for ext_id, value in elements)
    body += b"\x00" * (-len(body) % 4)
    return struct.pack("!HH", ONE_BYTE_PROFILE, len(body) // 4) + body


def packet_bytes(
    *,
    marker: bool,
    payload_type: int,
    sequence_number: int,
    timestamp: int,
    ssrc: int,
    extensions: bytes,
    payload: bytes,
) -> bytes:
    """A plain (not yet SRTP-protected) RTP packet; `extensions` from `one_byte_extensions`."""
    first = _RTP_VERSION_BITS | (_EXTENSION_BIT if extensions else 0)
    second = (0x80 if marker else 0) | payload_type
    header = _HEADER.pack(first, second, sequence_number, timestamp, ssrc)
    return header + extensions + payload


# Packets older than a (re)start are dropped until the stream is this far past it.
_RESTART_WINDOW: Final = 1024


def seq_newer(a: int, b: int) -> bool:
    """Whether 16-bit sequence number `a` comes after `b` (RFC 3550 wrap-around)."""
    return a != b and ((a - b) & 0xFFFF) < 0x8000


def seq_add(seq: int, delta: int) -> int:
    """16-bit sequence number `seq` moved by `delta`, wrapping around; `seq_add(a, -b)` is
    how far `a` is after `b`."""
    return (seq + delta) & 0xFFFF


def timestamp_add(timestamp: int, delta: int) -> int:
    """32-bit RTP timestamp `timestamp` moved by `delta`, wrapping around."""
    return (timestamp + delta) & 0xFFFFFFFF


@dataclass(frozen=True, slots=True)
class Steady:
    """A renumbering between keyframe (re)starts: every output number is the input plus a
    constant offset, so another forwarder (media.fanout's C lanes) can carry it packet by
    packet with these fields alone, and hand them back (`Renumbering.resume`)."""

    seq_offset: int
    ts_offset: int
    start_seq: int | None
    last_out: int | None
    last_ts: int


@dataclass(slots=True)
class Renumbering:
    """One subscriber's view of one publisher stream.

    Output sequence numbers are the publisher's plus an offset, so a loss upstream is a gap
    downstream and the subscriber asks for it (NACK) like any loss. The offset changes only
    when the subscriber (re)starts on a keyframe: then it continues right after the last number
    it was sent, so a pause leaves no gap to ask for. Timestamps keep one offset for the
    stream's lifetime (a pause shows as time passing, which it did).
    """

    seq_base: int
    timestamp_base: int
    waiting: bool = True
    seq_offset: int = 0
    ts_offset: int | None = None
    last_out: int | None = None
    # Publisher sequence number of the (re)start: older packets (late retransmissions of a
    # frame before it) are never forwarded to this subscriber.
    start_seq: int | None = None
    # The last output timestamp: a switch to another source continues from it.
    last_ts: int | None = None

    def restart(self) -> None:
        """Stop forwarding until the next keyframe (a stall, or a subscriber too slow)."""
        self.waiting = True

    def switch(self, ts_advance: int) -> None:
        """Another publisher's stream follows from its next keyframe (a conference's slot
        changing source): sequence numbers continue without a gap, and timestamps continue
        `ts_advance` ticks after the last one sent, as if that much time had passed."""
        self.waiting = True
        self.start_seq = None
        if self.last_ts is not None:
            self.timestamp_base = (self.last_ts + ts_advance) & 0xFFFFFFFF
            self.ts_offset = None

    def steady(self) -> Steady | None:
        """The mapping as constant offsets, or None while it waits for a keyframe (the next
        packets' offsets are not known yet)."""
        if self.waiting or self.ts_offset is None or self.last_ts is None:
            return None
        return Steady(
            seq_offset=self.seq_offset,
            ts_offset=self.ts_offset,
            start_seq=self.start_seq,
            last_out=self.last_out,
            last_ts=self.last_ts,
        )

    def resume(self, steady: Steady) -> None:
        """Take back a steady mapping another forwarder advanced (the same offsets; the
        restart window and the last numbers sent moved on)."""
        self.waiting = False
        self.seq_offset = steady.seq_offset
        self.ts_offset = steady.ts_offset
        self.start_seq = steady.start_seq
        self.last_out = steady.last_out
        self.last_ts = steady.last_ts

    def map(self, seq: int, timestamp: int, starts_keyframe: bool) -> tuple[int, int] | None:
        """Output (sequence number, timestamp) for a publisher packet; None: not forwarded."""
        if self.waiting:
            if not starts_keyframe:
                return None
            self.waiting = False
            last = self.last_out if self.last_out is not None else self.seq_base - 1
            self.seq_offset = (last + 1 - seq) & 0xFFFF
            self.start_seq = seq
            if self.ts_offset is None:
                self.ts_offset = (self.timestamp_base - timestamp) & 0xFFFFFFFF
        # (This runs for every packet and subscriber: seq_newer is inlined.)
        elif self.start_seq is not None:
            behind = (self.start_seq - seq) & 0xFFFF
            if 0 < behind < 0x8000:
                return None
            if 0x10000 - behind > _RESTART_WINDOW:
                # Far past the restart: nothing that old can still arrive, and half the
                # sequence space on, "older" would wrongly match new packets.
                self.start_seq = None
        out = (seq + self.seq_offset) & 0xFFFF
        prev = self.last_out
        if prev is None or 0 < ((out - prev) & 0xFFFF) < 0x8000:
            self.last_out = out
        assert self.ts_offset is not None
        ts = (timestamp + self.ts_offset) & 0xFFFFFFFF
        self.last_ts = ts
        return out, ts


@dataclass(slots=True)
class KeyframeRequests:
    """When to ask a publisher for a keyframe (PLI): at most once per `interval` seconds,
    and a request that arrives inside the interval is kept and sent when it ends, never
    dropped (dropping one left a new subscriber without a picture for seconds)."""

    interval: float
    last_sent: float | None = None
    pending: bool = False

    def request(self, now: float) -> bool:
        """Someone needs a keyframe. True: send a PLI now. False: one is due at `due()`."""
        if self.last_sent is None or now - self.last_sent >= self.interval:
            self.last_sent = now
            self.pending = False
            return True
        self.pending = True
        return False

    def due(self) -> float | None:
        """When the held-back request must be sent, or None if none is held back."""
        if not self.pending or self.last_sent is None:
            return None
        return self.last_sent + self.interval

    def fire(self, now: float) -> bool:
        """The timer for `due()` went off. True: send the PLI now."""
        if not self.pending:
            return False
        return self.request(now)

    def keyframe_seen(self) -> None:
        """A keyframe arrived: a held-back request is answered already."""
        self.pending = False
