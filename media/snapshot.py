"""Snapshots of live video: the latest keyframe kept per video track, and one keyframe turned
into a JPEG on request.

Forwarding never decodes, so a still image is made from a keyframe, the only frame that
decodes on its own. `KeyframeKeeper` reassembles a track's frames (media.reassembly, as the
recording does) and keeps the latest whole keyframe, with the server time its first packet
arrived. Chromium sends keyframes only when asked, so the latest may be old: for an image of
the scene now, ask the publisher for one (PLI) at time t and take `keyframe_since(t)` once it
is there (`on_keyframe` tells when); the image's capture time is `latest_at`, never the time
of the request.

`snapshot_jpeg` decodes one keyframe and encodes it as a JPEG with PyAV (about 10 ms at
640x480): CPU-bound, so call it with `asyncio.to_thread`. The keyframe's size and its picture
size are bounded before decoding, since the publisher chose them. It takes the keyframe to be
whole, as the keeper's are: FFmpeg's decoders conceal damage rather than fail, so the error is
for input that gives no picture at all, not a guarantee that a damaged frame is refused.
"""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction
from typing import Final, Literal

import av
from aiortc import RTCRtpCodecParameters
from aiortc.rtp import RtpPacket

from media.bitstream import H264, VP8, codec_key, is_keyframe, video_size
from media.reassembly import FrameAssembler

MAX_KEYFRAME_BYTES: Final = 8 * 1024 * 1024
# 4096 x 2304: above 4K UHD, below what a crafted header could make the decoder allocate.
MAX_PIXELS: Final = 4096 * 2304
# MJPEG quantiser, 1 (best) to 31: 3 keeps fine detail (faces, plates, documents) legible.
JPEG_QUALITY: Final = 3
_DECODERS: Final[dict[str, Literal["vp8", "h264"]]] = {VP8: "vp8", H264: "h264"}


class SnapshotError(ValueError):
    """The keyframe could not be made into an image (not a keyframe, damaged, too large, or
    a codec that has no still image here)."""


def snapshot_jpeg(codec: RTCRtpCodecParameters, keyframe: bytes) -> bytes:
    """One encoded keyframe (VP8, or H264 Annex-B as aiortc depayloads it) as a JPEG of the
    same size. Raises SnapshotError for anything that does not decode to a picture."""
    try:
        name = codec_key(codec)
    except ValueError:
        name = ""
    decoder_name = _DECODERS.get(name)
    if decoder_name is None:
        raise SnapshotError(f"{codec.mimeType} has no snapshot")
    if len(keyframe) > MAX_KEYFRAME_BYTES:
        raise SnapshotError(f"a keyframe is at most {MAX_KEYFRAME_BYTES} bytes")
    if not is_keyframe(name, keyframe):
        raise SnapshotError("not a whole keyframe")
    try:
        width, height = video_size(name, keyframe)
    except av.FFmpegError:
        width = height = 0
    if not (width > 0 and height > 0 and width * height <= MAX_PIXELS):
        raise SnapshotError(f"picture size {width}x{height} is out of bounds")
    try:
        decoder = av.CodecContext.create(decoder_name, "r")
        frames = decoder.decode(av.Packet(keyframe))
        frames += decoder.decode(None)
    except av.FFmpegError as exc:
        raise SnapshotError(f"the keyframe does not decode: {exc.strerror}") from None
    if not frames:
        raise SnapshotError("the keyframe decodes to no picture")
    picture = frames[0]
    encoder = av.CodecContext.create("mjpeg", "w")
    encoder.width = picture.width
    encoder.height = picture.height
    # Full-range YUV, which is what JPEG means by YCbCr.
    encoder.pix_fmt = "yuvj420p"
    encoder.time_base = Fraction(1, 1)
    encoder.qmin = encoder.qmax = JPEG_QUALITY
    packets = encoder.encode(picture.reformat(format="yuvj420p"))
    packets += encoder.encode(None)
    return b"".join(bytes(p) for p in packets)


class KeyframeKeeper:
    """The latest whole keyframe of one video track, from its RTP packets (after RTX
    unwrapping, in any order). Holds one keyframe and one jitter buffer."""

    def __init__(
        self,
        codec: RTCRtpCodecParameters,
        on_keyframe: Callable[[bytes, float], None] | None = None,
    ) -> None:
        """`on_keyframe(data, arrived_at)` is called, on the caller's thread, for each new
        keyframe, e.g. to answer a snapshot request waiting for a fresh one."""
        self.codec = codec
        self._assembler = FrameAssembler(codec)
        if self._assembler.kind != "video":
            raise ValueError(f"{codec.mimeType} is not video")
        self._on_keyframe = on_keyframe
        self._latest: bytes | None = None
        self._latest_at: float | None = None

    def on_packet(self, packet: RtpPacket, now: float) -> None:
        for frame in self._assembler.add(packet, now):
            if frame.keyframe:
                self._latest, self._latest_at = frame.data, frame.received_at
                if self._on_keyframe is not None:
                    self._on_keyframe(frame.data, frame.received_at)

    def latest(self) -> bytes | None:
        return self._latest

    @property
    def latest_at(self) -> float | None:
        """Server time (Unix seconds) the latest keyframe's first packet arrived."""
        return self._latest_at

    def keyframe_since(self, t: float) -> bytes | None:
        """The latest keyframe if it arrived at `t` or later."""
        if self._latest_at is None or self._latest_at < t:
            return None
        return self._latest


__all__ = [
    "JPEG_QUALITY",
    "MAX_KEYFRAME_BYTES",
    "MAX_PIXELS",
    "KeyframeKeeper",
    "SnapshotError",
    "snapshot_jpeg",
]
