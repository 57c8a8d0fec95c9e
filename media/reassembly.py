"""Whole encoded frames from one track's RTP packets: depayloading, reordering, loss, and a
timeline for the file they go to. No decoding, no files.

Each recorded track (one participant's audio or video) has a `FrameAssembler`: it depayloads
every RTP packet with aiortc's own depayloaders and reassembles encoded frames with aiortc's
`JitterBuffer` (both through media.jitterbuffer), exactly as aiortc's RTCRtpReceiver does,
minus the decoder. A track's timestamps are its RTP timestamps, unwrapped, relative to its
first frame out (90 kHz video, 48 kHz Opus); a new SSRC on the same track continues the
timeline by the server's clock.

Loss and order. The jitter buffer puts packets back in order and releases a frame only when
all of its packets are there. A hole that stays open for `LOSS_TIMEOUT_S` (NACK/RTX has had
its chance) is given up. If the frame before it is whole (an Opus packet; a video packet
with the marker bit) the hole is filled with empty padding so that frame still comes out;
otherwise the buffer drops up to the hole and the rest of that frame. After any loss a video
track drops every frame until the next keyframe, since later frames refer to what was lost.
`needs_keyframe` says when that is so (also before the first keyframe): the caller then asks
the publisher for one (PLI), as Chromium sends keyframes only when asked. Until the first
frame is out, a packet older than the first one received restarts the buffer there, so a
keyframe whose first packets arrive late is not lost; later, a packet up to twice the buffer
behind its start is a late retransmission and ignored (aiortc's buffer would take one 100
behind for a restart of the numbering and drop everything it holds).

What of aiortc's buffer is used beyond `add` (media.jitterbuffer reaches for it): releasing
every frame that is complete (one `add` releases at most one), its start, the packets it
holds, and dropping up to a hole to give it up.

Bounds: per track one jitter buffer (512 packets for video as in aiortc's receiver, 128 for
audio), and at most as many missing sequence numbers, held packets before the first frame
and frame arrival times; nothing else is buffered.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import structlog
from aiortc import RTCRtpCodecParameters
from aiortc.rtp import RtpPacket

from media.bitstream import CLOCK_OF, KIND_OF, Kind, codec_key, is_keyframe
from media.jitterbuffer import JitterBuffer, JitterFrame, buffered, depayloader
from media.rtp import seq_add, timestamp_add

log = structlog.get_logger(__name__)

# As aiortc's RTCRtpReceiver: a video buffer holds a large keyframe and what follows it.
VIDEO_CAPACITY: Final = 512
# aiortc's receiver uses 16; a recording holds more, so that a hole is given up by the
# timeout below (which keeps the frame before it) before the buffer makes room by itself
# (which drops that frame too): 1.28 s of 10 ms packets.
AUDIO_CAPACITY: Final = 128
# A hole in the sequence numbers open this long is given up. NACK/RTX recovers a packet in
# about one round trip; a second is many round trips, and short enough that a PLI sent then
# brings the video back soon.
LOSS_TIMEOUT_S: Final = 1.0


@dataclass(frozen=True)
class EncodedFrame:
    """One whole encoded frame: `data` as aiortc's depayloader builds it (VP8 frame, H264
    Annex-B, Opus packet), `pts` in the codec's clock from the track's first frame."""

    data: bytes
    pts: int
    keyframe: bool
    received_at: float


class _Timeline:
    """RTP timestamps to a monotonic pts from the first frame: unwraps 32-bit wraparound,
    and continues by the server's clock when the source (SSRC) changes."""

    def __init__(self, clock_rate: int) -> None:
        self._rate = clock_rate
        # Matroska counts milliseconds: a smaller step would give two frames one time.
        self._min_step = max(1, clock_rate // 1000)
        self._last_ts: int | None = None
        self._last_pts: int | None = None
        self._last_at = 0.0

    def restart(self) -> None:
        self._last_ts = None

    def pts(self, timestamp: int, at: float) -> int:
        if self._last_pts is None:
            pts = 0
        elif self._last_ts is None:
            pts = self._last_pts + round((at - self._last_at) * self._rate)
        else:
            delta = ((timestamp - self._last_ts + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)
            pts = self._last_pts + delta
        if self._last_pts is not None and pts < self._last_pts + self._min_step:
            # A source whose timestamps step back would make the muxer refuse the frame.
            pts = self._last_pts + self._min_step
        self._last_ts, self._last_pts, self._last_at = timestamp, pts, at
        return pts


# In a list of released frames: packets were lost here.
LOSS: Final = None


class FrameAssembler:
    """Whole encoded frames, in order, from one track's RTP packets (after RTX unwrapping),
    through aiortc's JitterBuffer. Video starts on a keyframe and, after a loss, waits for
    the next one. Packets are copied: the caller may reuse or rewrite its own."""

    def __init__(self, codec: RTCRtpCodecParameters) -> None:
        self.name = codec_key(codec)
        self.kind: Kind = KIND_OF[self.name]
        self._depayload = depayloader(self.name)
        self._capacity = VIDEO_CAPACITY if self.kind == "video" else AUDIO_CAPACITY
        self._timeline = _Timeline(CLOCK_OF[self.name])
        self._ssrc: int | None = None
        self._new_buffer()
        self.dropped_frames = 0
        self.malformed_packets = 0
        self.late_packets = 0

    def _new_buffer(self) -> None:
        self._buffer = JitterBuffer(self._capacity, is_video=self.kind == "video")
        self._newest: RtpPacket | None = None
        self._missing: set[int] = set()
        self._hole_since: float | None = None
        self._waiting_keyframe = self.kind == "video"
        # Until the buffer releases its first frame, the packets it holds: one that arrives
        # before the first (reordered) restarts it there instead of being dropped as late.
        self._early: list[RtpPacket] | None = []
        # When each frame's first packet arrived, by RTP timestamp.
        self._arrivals: dict[int, float] = {}

    @property
    def needs_keyframe(self) -> bool:
        return self._waiting_keyframe

    def add(self, packet: RtpPacket, now: float) -> list[EncodedFrame]:
        out: list[EncodedFrame] = []
        if self._ssrc != packet.ssrc:
            if self._ssrc is not None:
                # A new source numbers its packets and timestamps afresh: what the old one
                # completed comes out first.
                log.info("recorded track changed source", old=self._ssrc, new=packet.ssrc)
                out = self.flush(now)
                self._new_buffer()
                self._timeline.restart()
            self._ssrc = packet.ssrc
        try:
            data = self._depayload(packet.payload) if packet.payload else b""
        except ValueError:
            # Left missing: the hole it leaves is given up like a lost packet's.
            self.malformed_packets += 1
            return out
        own = buffered(packet, data)
        late = self._late_by(own.sequence_number)
        restart = 0 < late < self._capacity and self._early is not None
        if 0 < late < 2 * self._capacity and not restart:
            # A retransmission for a frame already out or given up. aiortc's buffer would
            # take one 100 or more packets late for a restart of the numbering and drop all
            # it holds; a real restart comes with a new SSRC.
            self.late_packets += 1
            return out
        self._note_arrival(own.timestamp, now)
        if restart:
            frames = self._restart_with(own, now)
        else:
            frames = self._insert(own, now)
            if self._early is not None:
                self._early.append(own)
        if frames or (self._early is not None and len(self._early) > self._capacity):
            self._early = None
        if self._hole_since is not None and now - self._hole_since >= LOSS_TIMEOUT_S:
            frames += self._skip_hole(now)
        return out + self._accept(frames, now)

    def flush(self, now: float) -> list[EncodedFrame]:
        """Every frame still held that can be known whole; at the end, or before a new
        source starts over."""
        frames: list[JitterFrame | None] = []
        newest = self._newest
        if newest is not None and (self.kind == "audio" or newest.marker):
            # The newest frame ended (marker bit): a packet of another timestamp after it
            # releases it, as the next frame's first packet would have.
            end = RtpPacket(
                payload_type=newest.payload_type,
                sequence_number=seq_add(newest.sequence_number, 1),
                timestamp=timestamp_add(newest.timestamp, 1),
                ssrc=newest.ssrc,
            )
            frames = self._insert(buffered(end, b""), now)
        accepted = self._accept(frames, now)
        while self._missing:
            accepted += self._accept(self._skip_hole(now), now)
        return accepted

    def _insert(self, packet: RtpPacket, now: float) -> list[JitterFrame | None]:
        lost, frame = self._buffer.add(packet)
        self._note_sequence(packet, now)
        # JitterBuffer.add releases one frame; a late packet that fills a hole can complete
        # several.
        frames: list[JitterFrame | None] = []
        while frame is not None:
            frames.append(frame)
            frame = self._buffer.release()
        if lost:
            # The buffer dropped packets to make room, or started over on a far jump:
            # what it released comes after the loss.
            self._after_skip(now)
            frames.insert(0, LOSS)
        return frames

    def _late_by(self, seq: int) -> int:
        """How many packets before the buffer's start `seq` is (0: not before it)."""
        origin = self._buffer.origin
        if origin is None:
            return 0
        late = seq_add(origin, -seq)
        return late if late < 0x8000 else 0

    def _restart_with(self, packet: RtpPacket, now: float) -> list[JitterFrame | None]:
        """Start the buffer over at `packet`, which arrived after later ones (only before
        the first frame is released: later, it is too late for a frame already out)."""
        held = [*(self._early or []), packet]
        held.sort(key=lambda p: seq_add(p.sequence_number, -packet.sequence_number))
        arrivals = self._arrivals
        self._new_buffer()
        self._arrivals = arrivals
        frames = []
        for p in held:
            frames += self._insert(p, now)
            if self._early is not None:
                self._early.append(p)
        return frames

    def _note_arrival(self, timestamp: int, now: float) -> None:
        if timestamp not in self._arrivals:
            if len(self._arrivals) >= self._capacity:
                # Frames the buffer dropped never come out to claim theirs.
                del self._arrivals[next(iter(self._arrivals))]
            self._arrivals[timestamp] = now

    def _in_window(self, seq: int) -> bool:
        """Whether `seq` lies where the buffer can still hold it (at or after its start)."""
        origin = self._buffer.origin
        return origin is not None and seq_add(seq, -origin) < self._capacity

    def _note_sequence(self, packet: RtpPacket, now: float) -> None:
        """Keep the set of sequence numbers missing between the buffer's start and the
        newest packet, and since when one has been."""
        seq = packet.sequence_number
        newest = self._newest
        if newest is None or not self._in_window(newest.sequence_number):
            # The first packet, or the buffer started over on a jump in the numbering.
            self._missing.clear()
            self._newest = packet if self._in_window(seq) else None
        else:
            gap = seq_add(seq, -newest.sequence_number)
            if 0 < gap < 0x8000:
                for step in range(1, gap):
                    self._missing.add(seq_add(newest.sequence_number, step))
                self._newest = packet
            else:
                self._missing.discard(seq)
        if not self._missing:
            self._hole_since = None
        elif self._hole_since is None:
            self._hole_since = now

    def _skip_hole(self, now: float) -> list[JitterFrame | None]:
        """Give up the oldest hole. If the frame before it is whole (audio: one packet a
        frame; video: marker bit), the hole is filled with empty padding so that frame comes
        out; otherwise the buffer drops everything up to the hole and the rest of its frame."""
        self._prune()
        origin = self._buffer.origin
        if not self._missing or origin is None:
            self._hole_since = None
            return []
        oldest = min(self._missing, key=lambda s: seq_add(s, -origin))
        before = self._buffer.held(seq_add(oldest, -1))
        frames: list[JitterFrame | None] = []
        if before is not None and (self.kind == "audio" or before.marker):
            # Padding of a timestamp of its own: a frame of nothing, which marks the loss.
            mark = timestamp_add(before.timestamp, 1)
            seq = oldest
            while seq in self._missing:
                filler = RtpPacket(
                    payload_type=before.payload_type,
                    sequence_number=seq,
                    timestamp=mark,
                    ssrc=before.ssrc,
                )
                frames += self._insert(buffered(filler, b""), now)
                seq = seq_add(seq, 1)
            frames = [LOSS if f is not None and f.timestamp == mark else f for f in frames]
        else:
            self._buffer.drop(seq_add(oldest, -origin) + 1)
            frames.append(LOSS)
            while (frame := self._buffer.release()) is not None:
                frames.append(frame)
        self._after_skip(now)
        return frames

    def _after_skip(self, now: float) -> None:
        # Holes behind the buffer's new start are moot; what is left gets a full timeout
        # from now rather than from its first sighting.
        self._prune()
        self._hole_since = now if self._missing else None

    def _prune(self) -> None:
        # The audio buffer makes room silently, so holes it dropped are found here.
        self._missing = {s for s in self._missing if self._in_window(s)}

    def _accept(self, frames: list[JitterFrame | None], now: float) -> list[EncodedFrame]:
        out = []
        for frame in frames:
            if frame is LOSS:
                # Later video frames refer to what was lost: wait for a keyframe.
                self._waiting_keyframe = self.kind == "video"
                continue
            at = self._arrivals.pop(frame.timestamp, now)
            data = frame.data
            if not data:
                continue  # padding only
            key = is_keyframe(self.name, data)
            if self._waiting_keyframe:
                if not key:
                    self.dropped_frames += 1
                    continue
                self._waiting_keyframe = False
            out.append(EncodedFrame(data, self._timeline.pts(frame.timestamp, at), key, at))
        return out


__all__ = [
    "AUDIO_CAPACITY",
    "LOSS",
    "LOSS_TIMEOUT_S",
    "VIDEO_CAPACITY",
    "EncodedFrame",
    "FrameAssembler",
]
