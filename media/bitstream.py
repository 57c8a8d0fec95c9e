"""What VP8 and H.264 bytes say, pure: the codecs the server keeps as they are (VP8, H.264,
Opus), whether a depayloaded frame is a whole keyframe, a keyframe's picture size, and the
codec-level facts (VP8 frame tag, H.264 NAL unit types) that media.rtp reads in RTP payloads.

A frame here is what aiortc's depayloaders build: a VP8 frame (RFC 6386), H.264 in Annex B
byte-stream form (a start code before each NAL unit), an Opus packet. Nothing here touches
sockets, files, clocks or aiortc's objects; the one library call, FFmpeg's H.264 parser for a
picture size, reads the parameter sets and decodes nothing.
"""

from __future__ import annotations

from typing import Final, Literal

import av
from aiortc import RTCRtpCodecParameters

Kind = Literal["audio", "video"]

# Codec names as they appear in RTCRtpCodecParameters.mimeType, upper-cased.
VP8: Final = "VP8"
H264: Final = "H264"
OPUS: Final = "OPUS"
# RTP clock rates (RFC 7741, RFC 6184: 90 kHz; RFC 7587: Opus is always 48 kHz).
VIDEO_CLOCK: Final = 90000
OPUS_CLOCK: Final = 48000
KIND_OF: Final[dict[str, Kind]] = {VP8: "video", H264: "video", OPUS: "audio"}
CLOCK_OF: Final[dict[str, int]] = {VP8: VIDEO_CLOCK, H264: VIDEO_CLOCK, OPUS: OPUS_CLOCK}

# H.264 NAL unit types (ITU-T H.264 table 7-1), in the low five bits of a NAL unit's header.
H264_IDR: Final = 5
H264_SPS: Final = 7
H264_PPS: Final = 8
_NAL_TYPE_MASK: Final = 0x1F
_START_CODE: Final = b"\x00\x00\x01"
# An access unit delimiter: appended to a frame so that FFmpeg's H.264 parser, which holds an
# access unit until the next one begins, parses the frame now.
_AUD: Final = b"\x00\x00\x00\x01\x09\xf0"
# VP8 keyframe start code (RFC 6386 section 9.1), bytes 3-5 of a keyframe.
_VP8_START: Final = b"\x9d\x01\x2a"


def codec_key(codec: RTCRtpCodecParameters) -> str:
    """VP8, H264 or OPUS; raises ValueError for a codec that cannot be recorded as is."""
    name = codec.name.upper()
    if name not in KIND_OF:
        raise ValueError(f"{codec.mimeType} cannot be recorded without transcoding")
    return name


def vp8_key_frame_tag(first_byte: int) -> bool:
    """Whether a VP8 frame tag's first byte (RFC 6386 section 9.1) marks a key frame: bit 0 is
    the inverse key frame flag."""
    return not first_byte & 0x01


def h264_nal_type(header: int) -> int:
    """The type of an H.264 NAL unit (or of an RTP aggregation or fragment) from its first
    byte."""
    return header & _NAL_TYPE_MASK


def _h264_nal_types(data: bytes) -> set[int]:
    types = set()
    at = data.find(_START_CODE)
    while at >= 0 and at + 3 < len(data):
        types.add(h264_nal_type(data[at + 3]))
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
        if len(data) < 10 or not vp8_key_frame_tag(data[0]) or data[3:6] != _VP8_START:
            return False
        # The frame tag's 19-bit size of the first partition, which must all be there.
        first_partition = int.from_bytes(data[0:3], "little") >> 5
        return len(data) >= 10 + first_partition
    if name == H264:
        if not (data.startswith(_START_CODE) or data.startswith(b"\x00" + _START_CODE)):
            return False
        return {H264_SPS, H264_PPS, H264_IDR} <= _h264_nal_types(data)
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


__all__ = [
    "CLOCK_OF",
    "H264",
    "H264_IDR",
    "H264_PPS",
    "H264_SPS",
    "KIND_OF",
    "OPUS",
    "OPUS_CLOCK",
    "VIDEO_CLOCK",
    "VP8",
    "Kind",
    "codec_key",
    "h264_nal_type",
    "is_keyframe",
    "video_size",
    "vp8_key_frame_tag",
]
