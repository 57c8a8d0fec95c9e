"""Recording a call to Matroska without transcoding: RTP packets in, encoded frames muxed.

Theory of operation. Each recorded track (one participant's audio or video) has a
`FrameAssembler`: it depayloads every RTP packet with aiortc's own depayloaders (the functions
`aiortc.codecs.depayload` dispatches to) and reassembles encoded frames with aiortc's
`JitterBuffer`, exactly as `RTCRtpReceiver._handle_rtp_packet` does, minus the decoder. The
frames are written, as they are, to a Matroska file through a PyAV stream that has no encoder:
`add_mux_stream` for VP8 and H264. Opus is the exception: Matroska needs its `OpusHead` as the
track's CodecPrivate and PyAV 18 offers no way to set a mux-only stream's extradata, so the
audio stream is a libopus stream whose encoder is opened once (which produces the OpusHead)
and never fed; packets are still muxed untouched.

One file per track (`<call>-<n>-<kind>.mkv`). A Matroska header lists every track and is
written before the first frame; PyAV cannot add a stream after it, and participants join and
leave during a call. Buffering until every track is known cannot be bounded (a supervisor may
join an hour in), and restarting the file for each join would need a keyframe from every video
track at once. Separate files need no coordination: each starts at its own first frame
(video: its first keyframe), and each gets its own `RecordingResult` (server start and stop
times, SHA-256) so that they can be registered and aligned on the server's clock. A track's
timestamps are its RTP timestamps, unwrapped, relative to its first recorded frame (90 kHz
video, 48 kHz Opus); a new SSRC on the same track continues the timeline by the server's
clock. The header gives the first keyframe's picture size; a browser that changes resolution
mid-call sends a keyframe with the new size, which decoders follow.

Loss and order. The jitter buffer puts packets back in order and releases a frame only when
all of its packets are there. A hole that stays open for `LOSS_TIMEOUT_S` (NACK/RTX has had
its chance) is given up. If the frame before it is whole (an Opus packet; a video packet
with the marker bit) the hole is filled with empty padding so that frame still comes out;
otherwise the buffer drops up to the hole and the rest of that frame. After any loss a video
track drops every frame until the next keyframe, since later frames refer to what was lost.
`needs_keyframe(track_id)` says when that is so (also before the first keyframe): the caller
then asks the publisher for one (PLI), as Chromium sends keyframes only when asked. Until the
first frame is out, a packet older than the first one received restarts the buffer there,
so a keyframe whose first packets arrive late is not lost; later, a packet up to twice the
buffer behind its start is a late retransmission and ignored (aiortc's buffer would take one
100 behind for a restart of the numbering and drop everything it holds).

aiortc internals used (pinned version; `tests/test_media_recording.py` fails loudly if an
upgrade changes them): `JitterBuffer._remove_frame` to release every frame that is complete
(one `add` releases at most one), `_origin`, `_packets` and `smart_remove` to give up a hole.

Bounds: per track one jitter buffer (512 packets for video as in aiortc's receiver, 128 for
audio), and at most as many missing sequence numbers, held packets before the first frame
and frame arrival times; nothing else is buffered. Muxing a
frame is a memory copy and, now and then, a buffered write: cheap enough for the event loop.
`close` and `close_track` finish files, fsync and hash them: blocking file I/O, meant to be
called through `asyncio.to_thread`. Packets that arrive for a track while it is being closed
are dropped, never waited for, so the event loop does not block on the closing thread.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Final, Literal

import av
import structlog
from aiortc import RTCRtpCodecParameters
from aiortc.codecs.h264 import h264_depayload
from aiortc.codecs.vpx import vp8_depayload
from aiortc.jitterbuffer import JitterBuffer, JitterFrame
from aiortc.rtp import RtpPacket
from aiortc.utils import uint16_add, uint32_add

log = structlog.get_logger(__name__)

Kind = Literal["audio", "video"]

VIDEO_CLOCK: Final = 90000
OPUS_CLOCK: Final = 48000
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
# Read size when hashing a finished file.
HASH_CHUNK: Final = 1 << 20
MATROSKA_VIDEO: Final = "video/x-matroska"
MATROSKA_AUDIO: Final = "audio/x-matroska"

# Codec names as they appear in RTCRtpCodecParameters.mimeType, upper-cased.
VP8: Final = "VP8"
H264: Final = "H264"
OPUS: Final = "OPUS"
_KIND_OF: Final[dict[str, Kind]] = {VP8: "video", H264: "video", OPUS: "audio"}
_CLOCK_OF: Final[dict[str, int]] = {VP8: VIDEO_CLOCK, H264: VIDEO_CLOCK, OPUS: OPUS_CLOCK}

# H264 NAL unit types (ITU-T H.264 table 7-1).
_NAL_IDR: Final = 5
_NAL_SPS: Final = 7
_NAL_PPS: Final = 8
_START_CODE: Final = b"\x00\x00\x01"
# An access unit delimiter: appended to a frame so that PyAV's H264 parser, which holds an
# access unit until the next one begins, parses the frame now.
_AUD: Final = b"\x00\x00\x00\x01\x09\xf0"
# VP8 keyframe start code (RFC 6386 section 9.1), bytes 3-5 of a keyframe.
_VP8_START: Final = b"\x9d\x01\x2a"


def codec_key(codec: RTCRtpCodecParameters) -> str:
    """VP8, H264 or OPUS; raises ValueError for a codec that cannot be recorded as is."""
    name = codec.name.upper()
    if name not in _KIND_OF:
        raise ValueError(f"{codec.mimeType} cannot be recorded without transcoding")
    return name


def _depayloader(name: str) -> Callable[[bytes], bytes]:
    # The functions aiortc.codecs.depayload picks by name; chosen once here so that a
    # lower-case mimeType ("video/vp8") is not silently passed through undepayloaded.
    if name == VP8:
        return vp8_depayload
    if name == H264:
        return h264_depayload
    return bytes


def _h264_nal_types(data: bytes) -> set[int]:
    types = set()
    at = data.find(_START_CODE)
    while at >= 0 and at + 3 < len(data):
        types.add(data[at + 3] & 0x1F)
        at = data.find(_START_CODE, at + 3)
    return types


def is_keyframe(name: str, data: bytes) -> bool:
    """Whether `data` (one depayloaded frame) decodes on its own, from its first byte.

    Strict on purpose: it is also what tells a whole keyframe from the tail of one whose
    first packets never arrived. VP8: a key frame tag, the start code that follows it, and
    as many bytes as the tag says the first partition has.
    H264 (Annex-B, as aiortc depayloads it): a start code first, and SPS, PPS and an IDR
    slice, as browsers send every keyframe, so the frame also carries what the decoder and
    the file header need."""
    if name == VP8:
        if len(data) < 10 or data[0] & 1 or data[3:6] != _VP8_START:
            return False
        # The frame tag's 19-bit size of the first partition, which must all be there.
        first_partition = int.from_bytes(data[0:3], "little") >> 5
        return len(data) >= 10 + first_partition
    if name == H264:
        if not (data.startswith(_START_CODE) or data.startswith(b"\x00" + _START_CODE)):
            return False
        return {_NAL_SPS, _NAL_PPS, _NAL_IDR} <= _h264_nal_types(data)
    return True


def video_size(name: str, keyframe: bytes) -> tuple[int, int]:
    """Width and height from a keyframe's headers, without decoding it."""
    if name == VP8:
        # RFC 6386 section 9.1: 14-bit width and height, little-endian, after the start code.
        width = int.from_bytes(keyframe[6:8], "little") & 0x3FFF
        height = int.from_bytes(keyframe[8:10], "little") & 0x3FFF
        return width, height
    parser = av.CodecContext.create("h264", "r")
    parser.parse(keyframe + _AUD)
    return parser.width, parser.height


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
        self.kind: Kind = _KIND_OF[self.name]
        self._depayload = _depayloader(self.name)
        self._capacity = VIDEO_CAPACITY if self.kind == "video" else AUDIO_CAPACITY
        self._timeline = _Timeline(_CLOCK_OF[self.name])
        self._ssrc: int | None = None
        self._new_buffer()
        self.dropped_frames = 0
        self.malformed_packets = 0
        self.late_packets = 0

    def _new_buffer(self) -> None:
        # prefetch 0: a frame is released as soon as it is whole; the recording is not played.
        self._buffer = JitterBuffer(self._capacity, prefetch=0, is_video=self.kind == "video")
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
        own = RtpPacket(
            payload_type=packet.payload_type,
            marker=packet.marker,
            sequence_number=packet.sequence_number,
            timestamp=packet.timestamp,
            ssrc=packet.ssrc,
            payload=packet.payload,
        )
        try:
            data = self._depayload(packet.payload) if packet.payload else b""
        except ValueError:
            # Left missing: the hole it leaves is given up like a lost packet's.
            self.malformed_packets += 1
            return out
        own._data = data  # type: ignore[attr-defined]
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
                sequence_number=uint16_add(newest.sequence_number, 1),
                timestamp=uint32_add(newest.timestamp, 1),
                ssrc=newest.ssrc,
            )
            end._data = b""  # type: ignore[attr-defined]
            frames = self._insert(end, now)
        accepted = self._accept(frames, now)
        while self._missing:
            accepted += self._accept(self._skip_hole(now), now)
        return accepted

    def _insert(self, packet: RtpPacket, now: float) -> list[JitterFrame | None]:
        lost, frame = self._buffer.add(packet)
        self._note_sequence(packet, now)
        # JitterBuffer.add releases one frame; a late packet that fills a hole can complete
        # several. The argument of _remove_frame is unused by aiortc.
        frames: list[JitterFrame | None] = []
        while frame is not None:
            frames.append(frame)
            frame = self._buffer._remove_frame(0)
        if lost:
            # The buffer dropped packets to make room, or started over on a far jump:
            # what it released comes after the loss.
            self._after_skip(now)
            frames.insert(0, LOSS)
        return frames

    def _late_by(self, seq: int) -> int:
        """How many packets before the buffer's start `seq` is (0: not before it)."""
        origin = self._buffer._origin
        if origin is None:
            return 0
        late = uint16_add(origin, -seq)
        return late if late < 0x8000 else 0

    def _restart_with(self, packet: RtpPacket, now: float) -> list[JitterFrame | None]:
        """Start the buffer over at `packet`, which arrived after later ones (only before
        the first frame is released: later, it is too late for a frame already out)."""
        held = [*(self._early or []), packet]
        held.sort(key=lambda p: uint16_add(p.sequence_number, -packet.sequence_number))
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
        origin = self._buffer._origin
        return origin is not None and uint16_add(seq, -origin) < self._capacity

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
            gap = uint16_add(seq, -newest.sequence_number)
            if 0 < gap < 0x8000:
                for step in range(1, gap):
                    self._missing.add(uint16_add(newest.sequence_number, step))
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
        origin = self._buffer._origin
        if not self._missing or origin is None:
            self._hole_since = None
            return []
        oldest = min(self._missing, key=lambda s: uint16_add(s, -origin))
        before = self._held(uint16_add(oldest, -1))
        frames: list[JitterFrame | None] = []
        if before is not None and (self.kind == "audio" or before.marker):
            # Padding of a timestamp of its own: a frame of nothing, which marks the loss.
            mark = uint32_add(before.timestamp, 1)
            seq = oldest
            while seq in self._missing:
                filler = RtpPacket(
                    payload_type=before.payload_type,
                    sequence_number=seq,
                    timestamp=mark,
                    ssrc=before.ssrc,
                )
                filler._data = b""  # type: ignore[attr-defined]
                frames += self._insert(filler, now)
                seq = uint16_add(seq, 1)
            frames = [LOSS if f is not None and f.timestamp == mark else f for f in frames]
        else:
            self._buffer.smart_remove(uint16_add(oldest, -origin) + 1)
            frames.append(LOSS)
            while (frame := self._buffer._remove_frame(0)) is not None:
                frames.append(frame)
        self._after_skip(now)
        return frames

    def _held(self, seq: int) -> RtpPacket | None:
        packet = self._buffer._packets[seq % self._capacity]
        return packet if packet is not None and packet.sequence_number == seq else None

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


@dataclass(frozen=True)
class RecordingResult:
    """One finished file: a track of a call. Times are the server's, Unix seconds:
    `started_at` when its first frame arrived, `stopped_at` when it was closed."""

    path: Path
    sha256: str
    size: int
    started_at: float
    stopped_at: float
    call_id: str
    track_id: str
    kind: Kind
    # The RTP codec's MIME type, e.g. "video/VP8", "audio/opus".
    codec: str
    frames: int
    # None: the file was finished cleanly. Otherwise why writing stopped early; the file
    # holds what was written until then.
    error: str | None = None

    @property
    def media_type(self) -> str:
        return MATROSKA_VIDEO if self.kind == "video" else MATROSKA_AUDIO

    @property
    def file_name(self) -> str:
        return self.path.name


class _TrackFile:
    """One track's Matroska file, opened at its first frame."""

    def __init__(
        self,
        path: Path,
        *,
        call_id: str,
        track_id: str,
        codec: RTCRtpCodecParameters,
    ) -> None:
        self.path = path
        self.call_id = call_id
        self.track_id = track_id
        self.codec = codec
        self.assembler = FrameAssembler(codec)
        self.lock = threading.Lock()
        self.closed = False
        self.container: av.container.OutputContainer | None = None
        self.stream: av.stream.Stream | None = None
        self.time_base = Fraction(1, _CLOCK_OF[self.assembler.name])
        self.started_at: float | None = None
        self.frames = 0
        self.error: str | None = None

    def on_packet(self, packet: RtpPacket, now: float) -> None:
        for frame in self.assembler.add(packet, now):
            self._write(frame)

    def _open(self, first: EncodedFrame) -> None:
        # Written through as it goes, a cluster at least every second: a server killed
        # mid-call leaves a file that decodes up to about a second before (media.capture
        # registers it at the next start).
        container = av.open(str(self.path), "w", format="matroska", options=_LIVE_OPTIONS)
        self.container = container
        name = self.assembler.name
        started = dt.datetime.fromtimestamp(first.received_at, dt.UTC)
        container.metadata["title"] = f"call {self.call_id} track {self.track_id}"
        container.metadata["creation_time"] = started.isoformat()
        if name == OPUS:
            stream: av.stream.Stream = container.add_stream(
                "libopus", rate=OPUS_CLOCK, layout="stereo"
            )
        else:
            width, height = video_size(name, first.data)
            stream = container.add_mux_stream(name.lower(), width=width, height=height)
        stream.time_base = self.time_base
        self.stream = stream

    def _write(self, frame: EncodedFrame) -> None:
        if self.error is not None:
            return
        try:
            if self.container is None:
                self._open(frame)
            assert self.container is not None
            assert self.stream is not None
            packet = av.Packet(frame.data)
            packet.stream = self.stream
            packet.time_base = self.time_base
            packet.pts = packet.dts = frame.pts
            packet.is_keyframe = frame.keyframe
            self.container.mux_one(packet)
            if self.frames == 0:
                self.started_at = frame.received_at
            self.frames += 1
        except (av.FFmpegError, OSError) as exc:
            # Disk full, say: keep what is written, stop writing, report it at close.
            self.error = f"{type(exc).__name__}: {exc}"
            log.error("recording stopped", call=self.call_id, track=self.track_id, exc_info=exc)

    def finish(self, now: float) -> RecordingResult | None:
        """Blocking: writes what is left and the file's index, fsyncs and hashes it. None
        (and no file) if not one frame was written."""
        for frame in self.assembler.flush(now):
            self._write(frame)
        if self.container is not None:
            try:
                self.container.close()
            except (av.FFmpegError, OSError) as exc:
                self.error = self.error or f"{type(exc).__name__}: {exc}"
                log.error("recording not finished", call=self.call_id, track=self.track_id)
        if self.started_at is None:
            self.path.unlink(missing_ok=True)
            return None
        digest = hashlib.sha256()
        size = 0
        with self.path.open("rb") as f:
            while chunk := f.read(HASH_CHUNK):
                digest.update(chunk)
                size += len(chunk)
            # Durable before anyone is told it exists.
            os.fsync(f.fileno())
        return RecordingResult(
            path=self.path,
            sha256=digest.hexdigest(),
            size=size,
            started_at=self.started_at,
            stopped_at=now,
            call_id=self.call_id,
            track_id=self.track_id,
            kind=self.assembler.kind,
            codec=self.codec.mimeType,
            frames=self.frames,
            error=self.error,
        )


_LIVE_OPTIONS: Final = {"flush_packets": "1", "cluster_time_limit": "1000"}
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def safe_name(name: str) -> str:
    """`name` as a file name part (a call id is one already; this makes sure)."""
    return _UNSAFE.sub("_", name).strip("._")[:64] or "call"


class CallRecording:
    """A call's recording: one Matroska file per track, in directory `path`.

    `add_track`, `on_packet` and `needs_keyframe` are for the event loop; `close_track` and
    `close` do blocking file I/O (run them with `asyncio.to_thread`)."""

    def __init__(self, path: Path, call_id: str, started_at: float) -> None:
        self.dir = path
        self.call_id = call_id
        self.started_at = started_at
        self._tracks: dict[str, _TrackFile] = {}
        # Guards _tracks and _closed against close() in a worker thread; held for a dict
        # operation only, never for I/O, so the event loop never waits on it for long.
        self._registry = threading.Lock()
        self._added = 0
        self._closed = False
        path.mkdir(parents=True, exist_ok=True)

    def add_track(self, track_id: str, kind: Kind, codec: RTCRtpCodecParameters) -> None:
        """Record `track_id` from now on; its file starts at its first (key)frame. Raises
        ValueError for a codec other than VP8, H264 or Opus, a kind that does not match it,
        or a track already recorded (close_track it first to start a new file)."""
        if _KIND_OF[codec_key(codec)] != kind:
            raise ValueError(f"{codec.mimeType} is not {kind}")
        with self._registry:
            if self._closed:
                raise ValueError("the recording is closed")
            if track_id in self._tracks:
                raise ValueError(f"track {track_id!r} is already recorded")
            path = self._new_path(kind)
            self._tracks[track_id] = _TrackFile(
                path, call_id=self.call_id, track_id=track_id, codec=codec
            )

    def _new_path(self, kind: Kind) -> Path:
        # Never an existing file: av.open would truncate it, and it may be a recording of
        # this call from an earlier session that is not registered yet.
        while True:
            self._added += 1
            path = self.dir / f"{safe_name(self.call_id)}-{self._added}-{kind}.mkv"
            if not path.exists():
                return path

    def on_packet(self, track_id: str, packet: RtpPacket, now: float) -> None:
        """One received RTP packet of `track_id` (RTX already unwrapped), in any order.
        Packets of tracks not recorded, or being closed, are ignored."""
        track = self._tracks.get(track_id)
        if track is None or not track.lock.acquire(blocking=False):
            return
        try:
            if not track.closed:
                track.on_packet(packet, now)
        finally:
            track.lock.release()

    def needs_keyframe(self, track_id: str) -> bool:
        """True while a recorded video track waits for a keyframe (before its first, or
        after a loss): ask its publisher for one (PLI)."""
        track = self._tracks.get(track_id)
        return track is not None and not track.closed and track.assembler.needs_keyframe

    def tracks(self) -> list[str]:
        return list(self._tracks)

    def close_track(self, track_id: str, now: float) -> RecordingResult | None:
        """Finish one track's file (its publisher left). Blocking file I/O. None if the
        track is unknown or recorded nothing."""
        with self._registry:
            track = self._tracks.pop(track_id, None)
        if track is None:
            return None
        return self._finish(track, now)

    def close(self, now: float) -> list[RecordingResult]:
        """Finish every file, in the order the tracks were added. Blocking file I/O.
        Tracks that recorded nothing have no result; idempotent."""
        with self._registry:
            self._closed = True
            tracks = list(self._tracks.values())
            self._tracks.clear()
        results = []
        for track in tracks:
            result = self._finish(track, now)
            if result is not None:
                results.append(result)
        return results

    @staticmethod
    def _finish(track: _TrackFile, now: float) -> RecordingResult | None:
        with track.lock:
            track.closed = True
            return track.finish(now)


__all__ = [
    "LOSS_TIMEOUT_S",
    "MATROSKA_AUDIO",
    "MATROSKA_VIDEO",
    "CallRecording",
    "EncodedFrame",
    "FrameAssembler",
    "Kind",
    "RecordingResult",
    "codec_key",
    "is_keyframe",
    "video_size",
]
