"""aiortc's frame reassembly, borrowed: its `JitterBuffer` and its VP8 and H.264 depayloaders,
behind the little that media.reassembly needs of them. They are what aiortc's own receiver
uses, so a recording and a snapshot reassemble frames exactly as a receiver in the call does.

This is the second and last module that reaches into aiortc's internals (media.hooks is the
first and says what counts as public). Every attribute starting with `_` in this module is
aiortc's (our own state has plain names), so that tests/test_media_hooks.py, which checks
each on real objects, finds them all by reading this file. What it relies on, in aiortc
1.16.0:
- `aiortc.jitterbuffer.JitterBuffer(capacity, prefetch, is_video)`: `add(packet)` returns
  `(lost, frame)`, at most one frame; a frame (`JitterFrame`: `data`, `timestamp`) is the
  `_data` of its packets joined, which aiortc's receiver sets to the depayloaded payload;
- `_remove_frame(sequence_number)` (the argument is unused) releases the next whole frame;
- `_origin`, the sequence number at the buffer's start (None before its first packet), and
  `_packets`, the packets held, at their sequence number modulo the capacity;
- `smart_remove(count)`, which drops `count` packets and the rest of the frame of the last;
- `aiortc.codecs.vpx.vp8_depayload` and `aiortc.codecs.h264.h264_depayload`: an RTP payload
  in, its part of the frame out; ValueError for a payload they cannot parse.
"""

from __future__ import annotations

from collections.abc import Callable

import aiortc.jitterbuffer
from aiortc.codecs.h264 import h264_depayload
from aiortc.codecs.vpx import vp8_depayload
from aiortc.jitterbuffer import JitterFrame
from aiortc.rtp import RtpPacket

from media.bitstream import H264, VP8

Depayloader = Callable[[bytes], bytes]


def depayloader(name: str) -> Depayloader:
    """What makes a codec's RTP payload (`name`: VP8, H264 or OPUS) its part of a frame:
    aiortc's depayloaders for video; an Opus packet is its payload. Raises ValueError for a
    payload it cannot parse."""
    # The functions aiortc.codecs.depayload picks by name; chosen once here so that a
    # lower-case mimeType ("video/vp8") is not silently passed through undepayloaded.
    if name == VP8:
        return vp8_depayload
    if name == H264:
        return h264_depayload
    return bytes


def buffered(packet: RtpPacket, data: bytes) -> RtpPacket:
    """A copy of `packet` for the buffer, carrying `data`, its depayloaded payload, where the
    buffer reads it. A copy: the caller may reuse or rewrite its own packet."""
    own = RtpPacket(
        payload_type=packet.payload_type,
        marker=packet.marker,
        sequence_number=packet.sequence_number,
        timestamp=packet.timestamp,
        ssrc=packet.ssrc,
        payload=packet.payload,
    )
    own._data = data  # type: ignore[attr-defined]
    return own


class JitterBuffer:
    """aiortc's jitter buffer with nothing prefetched: a frame comes out as soon as it is
    whole, since a recording is not played. Packets go in through `buffered`."""

    def __init__(self, capacity: int, *, is_video: bool) -> None:
        self.capacity = capacity
        self.buffer = aiortc.jitterbuffer.JitterBuffer(capacity, prefetch=0, is_video=is_video)

    def add(self, packet: RtpPacket) -> tuple[bool, JitterFrame | None]:
        """Hold `packet`; whether packets were dropped to make room (or the buffer started
        over on a far jump), and the first frame now whole, if any."""
        lost, frame = self.buffer.add(packet)
        return lost, frame

    def release(self) -> JitterFrame | None:
        """The next frame that is whole, if any (`add` releases at most one)."""
        frame: JitterFrame | None = self.buffer._remove_frame(0)
        return frame

    @property
    def origin(self) -> int | None:
        """The sequence number at the buffer's start; None before its first packet."""
        origin: int | None = self.buffer._origin
        return origin

    def held(self, seq: int) -> RtpPacket | None:
        """The packet of sequence number `seq`, if the buffer holds it."""
        packet: RtpPacket | None = self.buffer._packets[seq % self.capacity]
        return packet if packet is not None and packet.sequence_number == seq else None

    def drop(self, count: int) -> None:
        """Drop the first `count` packets' places and the rest of the frame of the last."""
        self.buffer.smart_remove(count)


__all__ = ["Depayloader", "JitterBuffer", "JitterFrame", "buffered", "depayloader"]
