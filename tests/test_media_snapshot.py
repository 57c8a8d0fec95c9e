"""Snapshots: real VP8 and H264 keyframes from aiortc's encoders become JPEGs of the same
picture, bad input is refused with SnapshotError, and the keeper holds the latest whole
keyframe of a reordered stream."""

from __future__ import annotations

import fractions
import os
import random
from typing import Literal

import av
import pytest
from aiortc import RTCRtpCodecParameters
from aiortc.codecs.base import Encoder
from aiortc.codecs.h264 import H264Encoder
from aiortc.codecs.vpx import Vp8Encoder

from media.reassembly import FrameAssembler
from media.snapshot import KeyframeKeeper, SnapshotError, snapshot_jpeg
from tests.test_media_recording import H264, OPUS, T0, VP8, Publisher, scramble, video_frame

CODECS = [pytest.param(VP8, Vp8Encoder, id="vp8"), pytest.param(H264, H264Encoder, id="h264")]
# A flat colour (BT.601 limited range) that comes through both codecs and JPEG nearly exact.
Y, U, V = 150, 90, 170


def flat_frame(width: int, height: int) -> av.VideoFrame:
    frame = av.VideoFrame(width, height, "yuv420p")
    for plane, value in zip(frame.planes, (Y, U, V), strict=True):
        plane.update(bytes([value]) * plane.buffer_size)
    frame.pts = 0
    frame.time_base = fractions.Fraction(1, 90000)
    return frame


def keyframe_of(codec: RTCRtpCodecParameters, encoder: Encoder, frame: av.VideoFrame) -> bytes:
    """The frame encoded as a keyframe, packetised and reassembled as a receiver would."""
    assembler = FrameAssembler(codec)
    for packet in Publisher(encoder, codec).packets(frame, keyframe=True):
        assembler.add(packet, T0)
    [encoded] = assembler.flush(T0)
    assert encoded.keyframe
    return encoded.data


def decode_jpeg(jpeg: bytes) -> av.VideoFrame:
    assert jpeg.startswith(b"\xff\xd8")
    assert jpeg.endswith(b"\xff\xd9")
    [frame] = av.CodecContext.create("mjpeg", "r").decode(av.Packet(jpeg))
    return frame


def mean_rgb(frame: av.VideoFrame) -> tuple[float, float, float]:
    rgb = frame.reformat(format="rgb24", width=64, height=48)
    data = bytes(rgb.planes[0])
    line = rgb.planes[0].line_size
    pixels = [data[r * line + c * 3 : r * line + c * 3 + 3] for r in range(48) for c in range(64)]
    return (
        sum(p[0] for p in pixels) / len(pixels),
        sum(p[1] for p in pixels) / len(pixels),
        sum(p[2] for p in pixels) / len(pixels),
    )


def decoded(codec: RTCRtpCodecParameters, keyframe: bytes) -> av.VideoFrame:
    """The keyframe as a receiver's decoder shows it: what the snapshot must look like."""
    name: Literal["vp8", "h264"] = "vp8" if codec is VP8 else "h264"
    [frame] = av.CodecContext.create(name, "r").decode(av.Packet(keyframe))
    return frame


@pytest.mark.parametrize(("codec", "encoder"), CODECS)
@pytest.mark.parametrize(
    "frame",
    [flat_frame(640, 480), flat_frame(320, 180), video_frame(0)],
    ids=["flat-640x480", "flat-320x180", "noise-320x240"],
)
def test_a_keyframe_becomes_a_jpeg_of_the_same_picture(
    codec: RTCRtpCodecParameters, encoder: type[Encoder], frame: av.VideoFrame
) -> None:
    keyframe = keyframe_of(codec, encoder(), frame)
    picture = decode_jpeg(snapshot_jpeg(codec, keyframe))
    assert (picture.width, picture.height) == (frame.width, frame.height)
    assert mean_rgb(picture) == pytest.approx(mean_rgb(decoded(codec, keyframe)), abs=4)


def vp8_header(width: int, height: int, first_partition: int = 0) -> bytes:
    tag = (first_partition << 5) | 0x10  # key frame, version 0, shown
    return (
        tag.to_bytes(3, "little")
        + b"\x9d\x01\x2a"
        + bytes([width & 0xFF, width >> 8, height & 0xFF, height >> 8])
    )


def test_undecodable_input_is_refused_with_a_snapshot_error() -> None:
    vp8 = keyframe_of(VP8, Vp8Encoder(), flat_frame(320, 240))
    h264 = keyframe_of(H264, H264Encoder(), flat_frame(320, 240))
    noise = random.Random(1).randbytes(5000)
    cases: list[tuple[RTCRtpCodecParameters, bytes, str | None]] = [
        (VP8, b"", "not a whole keyframe"),
        (VP8, noise, "not a whole keyframe"),
        (H264, noise, "not a whole keyframe"),
        # Its first packets missing: the tail of a keyframe is not one.
        (VP8, vp8[40:], "not a whole keyframe"),
        (H264, h264[h264.index(b"\x00\x00\x00\x01\x65") :], "not a whole keyframe"),
        # The first partition cut short.
        (VP8, vp8[:20], "not a whole keyframe"),
        # Parameter sets and a slice in name only.
        (
            H264,
            b"".join(b"\x00\x00\x00\x01" + bytes([t]) + noise[:200] for t in (0x67, 0x68, 0x65)),
            None,
        ),
        # A header that claims a picture far too big to allocate.
        (VP8, vp8_header(16000, 16000) + noise, "out of bounds"),
        (VP8, vp8_header(0, 240) + noise, "out of bounds"),
        (OPUS, vp8, "has no snapshot"),
        (VP8, bytes(9 * 1024 * 1024), "at most"),
    ]
    for codec, data, reason in cases:
        with pytest.raises(SnapshotError, match=reason):
            snapshot_jpeg(codec, data)
    assert issubclass(SnapshotError, ValueError)


@pytest.mark.parametrize(("codec", "encoder"), CODECS)
def test_the_keeper_holds_the_latest_whole_keyframe(
    codec: RTCRtpCodecParameters, encoder: type[Encoder]
) -> None:
    seen: list[float] = []
    keeper = KeyframeKeeper(codec, on_keyframe=lambda data, at: seen.append(at))
    pub = Publisher(encoder(), codec)
    rng = random.Random(11)
    assert keeper.latest() is None
    keyframes = {0, 12}
    # 5 fps, so that the hole left by the loss is given up (after a second) before frame 12.
    interval = 0.2
    for i in range(20):
        packets = pub.packets(video_frame(i), keyframe=i in keyframes)
        if i == 5:
            packets = packets[1:]  # lost: the frames after it are no keyframe
        for packet in scramble(packets, rng):
            keeper.on_packet(packet, T0 + i * interval)
        if i == 11:
            first = keeper.latest()
            assert first is not None
            assert keeper.latest_at == T0
            assert keeper.keyframe_since(T0 + 1.0) is None
    assert seen == [T0, pytest.approx(T0 + 12 * interval)]
    latest = keeper.latest()
    assert latest is not None
    assert latest != first
    assert keeper.keyframe_since(T0 + 1.0) == latest
    picture = decode_jpeg(snapshot_jpeg(codec, latest))
    assert (picture.width, picture.height) == (320, 240)


def test_the_keeper_is_for_video_only() -> None:
    with pytest.raises(ValueError, match="not video"):
        KeyframeKeeper(OPUS)


def test_snapshot_inputs_are_never_read_beyond_the_bound() -> None:
    """A huge buffer is refused on its length, before any parsing."""
    with pytest.raises(SnapshotError, match="at most"):
        snapshot_jpeg(H264, b"\x00\x00\x00\x01\x67" + os.urandom(16) * (600 * 1024))
