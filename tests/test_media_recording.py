"""Recording without transcoding: real VP8, H264 and Opus from aiortc's own encoders,
packetised as RTCRtpSender does, fed to `CallRecording` out of order and with losses; the
Matroska files it writes are opened with PyAV and decoded back."""

from __future__ import annotations

import fractions
import hashlib
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiortc
import av
import pytest
from aiortc import RTCRtpCodecParameters
from aiortc.codecs.base import Encoder
from aiortc.codecs.h264 import H264Encoder
from aiortc.codecs.opus import OpusEncoder
from aiortc.codecs.vpx import Vp8Encoder
from aiortc.jitterbuffer import JitterBuffer
from aiortc.rtp import RtpPacket
from aiortc.utils import uint16_add, uint32_add

from media.recording import (
    LOSS_TIMEOUT_S,
    CallRecording,
    FrameAssembler,
    RecordingResult,
    is_keyframe,
)

VP8 = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=97)
H264 = RTCRtpCodecParameters(
    mimeType="video/H264",
    clockRate=90000,
    payloadType=99,
    parameters={"packetization-mode": "1", "profile-level-id": "42e01f"},
)
OPUS = RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48000, channels=2, payloadType=111)
T0 = 1_780_000_000.0
FPS = 30
WIDTH, HEIGHT = 320, 240
# Random enough that the encoder has real work, the same on every run.
NOISE = random.Random(7).randbytes(WIDTH * HEIGHT * 2)


def video_frame(i: int, width: int = WIDTH, height: int = HEIGHT) -> av.VideoFrame:
    """Frame `i` of a synthetic 30 fps clip: noise that shifts a little every frame."""
    frame = av.VideoFrame(width, height, "yuv420p")
    for n, plane in enumerate(frame.planes):
        start = (i * 97 + n * 1013) % (len(NOISE) - plane.buffer_size)
        plane.update(NOISE[start : start + plane.buffer_size])
    frame.pts = i * (90000 // FPS)
    frame.time_base = fractions.Fraction(1, 90000)
    return frame


def audio_frame(i: int) -> av.AudioFrame:
    """20 ms of a stereo 48 kHz tone, as a microphone track delivers it."""
    frame = av.AudioFrame(format="s16", layout="stereo", samples=960)
    frame.planes[0].update(NOISE[(i % 50) * 3840 : (i % 50) * 3840 + 3840])
    frame.sample_rate = 48000
    frame.pts = i * 960
    frame.time_base = fractions.Fraction(1, 48000)
    return frame


@dataclass
class Publisher:
    """aiortc's encoder and RTCRtpSender._run_rtp's packetising, without the network.
    Sequence numbers and timestamps start just before they wrap, to cover the wrap."""

    encoder: Encoder
    codec: RTCRtpCodecParameters
    ssrc: int = 0x1234ABCD
    seq: int = 65530
    ts_origin: int = (1 << 32) - 9000
    sent: int = 0
    frame_packets: list[int] = field(default_factory=list)

    def packets(self, frame: av.frame.Frame, keyframe: bool = False) -> list[RtpPacket]:
        payloads, timestamp = self.encoder.encode(frame, keyframe)
        out = []
        for i, payload in enumerate(payloads):
            packet = RtpPacket(
                payload_type=self.codec.payloadType or 0,
                sequence_number=self.seq,
                timestamp=uint32_add(self.ts_origin, timestamp),
            )
            packet.ssrc = self.ssrc
            packet.payload = payload
            packet.marker = 1 if i == len(payloads) - 1 else 0
            out.append(packet)
            self.seq = uint16_add(self.seq, 1)
        self.sent += 1
        self.frame_packets.append(len(out))
        return out


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def decoded_video(path: Path) -> list[av.VideoFrame]:
    with av.open(str(path)) as container:
        return list(container.decode(container.streams.video[0]))


def scramble(packets: Sequence[RtpPacket], rng: random.Random) -> list[RtpPacket]:
    """Swap some neighbours, as a network reorders."""
    out = list(packets)
    for i in range(len(out) - 1):
        if rng.random() < 0.3:
            out[i], out[i + 1] = out[i + 1], out[i]
    return out


@dataclass
class VideoRun:
    recorded: list[int]
    results: list[RecordingResult]
    keyframes_requested: list[int]


def run_video(
    tmp_path: Path,
    codec: RTCRtpCodecParameters,
    encoder: Encoder,
    *,
    frames: int,
    lose: int | None = None,
    join_at: int = 0,
) -> VideoRun:
    """Publish `frames` frames through a recording: packets reordered, the first packet of
    frame `lose` never delivered, frames before `join_at` sent before the track was added.
    When the recording wants a keyframe the publisher sends one next, as after a PLI. Each
    packet is rewritten after it is handed over, as a forwarder rewriting in place would."""
    rng = random.Random(3)
    pub = Publisher(encoder, codec)
    rec = CallRecording(tmp_path, "c-rec1", T0)
    requested: list[int] = []
    recorded: list[int] = []
    waiting = True
    held: list[RtpPacket] = []
    for i in range(frames):
        now = T0 + i / FPS
        if i == join_at:
            rec.add_track("cam", "video", codec)
        want = i > join_at and rec.needs_keyframe("cam")
        if want:
            requested.append(i)
        packets = pub.packets(video_frame(i), keyframe=want)
        if i == lose:
            packets = packets[1:]
            waiting = True
        elif i >= join_at and (i == join_at or want or not waiting):
            # Recorded: everything from the first keyframe on, and after a loss from the
            # keyframe the recording asked for.
            if waiting and (i == 0 or want):
                waiting = False
            if not waiting:
                recorded.append(i)
        # One frame's packets are held back behind the next frame's, now and then.
        batch = held + scramble(packets, rng)
        held = []
        if i % 9 == 4 and len(batch) > 1:
            batch, held = batch[:-1], batch[-1:]
        for packet in batch:
            rec.on_packet("cam", packet, now)
            packet.sequence_number = 0
            packet.timestamp = 0
    for packet in held:
        rec.on_packet("cam", packet, T0 + frames / FPS)
    assert not rec.needs_keyframe("cam")
    return VideoRun(recorded, rec.close(T0 + frames / FPS + 0.5), requested)


def assert_file_is_the_result(result: RecordingResult) -> None:
    assert result.path.is_file()
    assert result.size == result.path.stat().st_size
    assert result.sha256 == sha256_of(result.path)


def assert_frames_at(frames: list[av.VideoFrame], indices: list[int]) -> None:
    """Each decoded frame at its RTP time from the first recorded one (ms in Matroska)."""
    first = indices[0]
    expected = [round((i - first) * 1000 / FPS) / 1000 for i in indices]
    assert [round(float(f.time or 0.0), 3) for f in frames] == pytest.approx(expected, abs=0.0011)


def test_vp8_reordered_with_a_loss_decodes_back_from_the_keyframe_it_asked_for(
    tmp_path: Path,
) -> None:
    run = run_video(tmp_path, VP8, Vp8Encoder(), frames=75, lose=20)
    # The hole is given up after LOSS_TIMEOUT_S and a keyframe asked for once.
    assert len(run.keyframes_requested) == 1
    asked = run.keyframes_requested[0]
    assert asked - 21 == pytest.approx(LOSS_TIMEOUT_S * FPS, abs=2)
    assert run.recorded == [*range(20), *range(asked, 75)]
    [result] = run.results
    assert_file_is_the_result(result)
    assert (result.kind, result.codec, result.call_id, result.track_id) == (
        "video",
        "video/VP8",
        "c-rec1",
        "cam",
    )
    assert result.frames == len(run.recorded)
    assert result.started_at == T0
    assert result.error is None
    assert result.media_type == "video/x-matroska"
    frames = decoded_video(result.path)
    assert len(frames) == len(run.recorded)
    assert {(f.width, f.height) for f in frames} == {(WIDTH, HEIGHT)}
    assert_frames_at(frames, run.recorded)


def test_h264_joined_mid_stream_starts_on_the_keyframe_it_asked_for(tmp_path: Path) -> None:
    run = run_video(tmp_path, H264, H264Encoder(), frames=40, join_at=10)
    assert run.keyframes_requested == [11]
    assert run.recorded == list(range(11, 40))
    [result] = run.results
    assert_file_is_the_result(result)
    assert result.codec == "video/H264"
    assert result.started_at == T0 + 11 / FPS
    with av.open(str(result.path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert (stream.codec_context.width, stream.codec_context.height) == (WIDTH, HEIGHT)
    frames = decoded_video(result.path)
    assert len(frames) == 29
    assert_frames_at(frames, run.recorded)


def test_opus_with_a_loss_and_reordering_decodes_back_with_a_gap(tmp_path: Path) -> None:
    rng = random.Random(5)
    pub = Publisher(OpusEncoder(), OPUS, seq=65500)
    rec = CallRecording(tmp_path, "c-rec2", T0)
    rec.add_track("mic", "audio", OPUS)
    assert not rec.needs_keyframe("mic")
    sent: list[int] = []
    pending: list[RtpPacket] = []
    for i in range(100):
        packets = pub.packets(audio_frame(i))
        if packets:
            sent.append(i)
        if i == 40:
            continue  # lost
        pending += packets
        if i % 3 == 2:
            for packet in scramble(pending, rng):
                rec.on_packet("mic", packet, T0 + i * 0.02)
            pending = []
    for packet in pending:
        rec.on_packet("mic", packet, T0 + 2.0)
    [result] = rec.close(T0 + 2.5)
    assert_file_is_the_result(result)
    assert (result.kind, result.codec, result.media_type) == ("audio", "audio/opus", "audio/x-matroska")
    with av.open(str(result.path)) as container:
        stream = container.streams.audio[0]
        assert stream.codec_context.extradata is not None
        assert stream.codec_context.extradata.startswith(b"OpusHead")
        packets = [p for p in container.demux(stream) if p.size]
    assert len(packets) == len(sent) - 1 == result.frames
    # 20 ms apart, except across the lost packet.
    times = [round(float(p.pts or 0) * float(p.time_base), 3) for p in packets]
    steps = {round(b - a, 3) for a, b in zip(times, times[1:], strict=False)}
    assert steps == {0.02, 0.04}
    with av.open(str(result.path)) as container:
        decoded = list(container.decode(audio=0))
    assert len(decoded) == len(sent) - 1
    assert {f.sample_rate for f in decoded} == {48000}


def test_a_track_added_while_another_records_gets_a_file_of_its_own(tmp_path: Path) -> None:
    video = Publisher(Vp8Encoder(), VP8, ssrc=1)
    audio = Publisher(OpusEncoder(), OPUS, ssrc=2)
    rec = CallRecording(tmp_path, "c/../rec 3", T0)
    rec.add_track("v1", "video", VP8)
    for i in range(30):
        now = T0 + i / FPS
        if i == 15:
            rec.add_track("a2", "audio", OPUS)
        for packet in video.packets(video_frame(i)):
            rec.on_packet("v1", packet, now)
        if i >= 15:
            for packet in audio.packets(audio_frame(i)):
                rec.on_packet("a2", packet, now)
    first, second = rec.close(T0 + 1.0)
    assert (first.track_id, first.kind, first.frames) == ("v1", "video", 30)
    assert (second.track_id, second.kind) == ("a2", "audio")
    assert second.started_at == T0 + 15 / FPS
    # The call id is only part of a name, never a path.
    assert {first.path.parent, second.path.parent} == {tmp_path}
    assert first.path.name == "c_.._rec_3-1-video.mkv"
    assert second.path.name == "c_.._rec_3-2-audio.mkv"
    for result in (first, second):
        assert_file_is_the_result(result)
    assert len(decoded_video(first.path)) == 30
    assert rec.close(T0 + 2.0) == []


def test_a_track_closed_early_is_finished_and_a_new_one_does_not_overwrite_it(
    tmp_path: Path,
) -> None:
    pub = Publisher(Vp8Encoder(), VP8)
    rec = CallRecording(tmp_path, "c-rec4", T0)
    rec.add_track("cam", "video", VP8)
    for i in range(5):
        for packet in pub.packets(video_frame(i)):
            rec.on_packet("cam", packet, T0 + i / FPS)
    result = rec.close_track("cam", T0 + 1.0)
    assert result is not None
    assert result.frames == 5
    assert result.stopped_at == T0 + 1.0
    # Packets after the close are ignored; a later recording of the same call keeps the file.
    for packet in pub.packets(video_frame(5)):
        rec.on_packet("cam", packet, T0 + 2.0)
    again = CallRecording(tmp_path, "c-rec4", T0)
    again.add_track("cam", "video", VP8)
    for i in range(6, 9):
        for packet in pub.packets(video_frame(i), keyframe=i == 6):
            again.on_packet("cam", packet, T0 + i / FPS)
    [later] = again.close(T0 + 3.0)
    assert later.path != result.path
    assert_file_is_the_result(result)
    assert len(decoded_video(result.path)) == 5
    assert len(decoded_video(later.path)) == 3


def test_nothing_recorded_gives_no_result_and_no_file(tmp_path: Path) -> None:
    pub = Publisher(Vp8Encoder(), VP8)
    for i in range(3):
        pub.packets(video_frame(i))  # the keyframe goes by before the track is recorded
    rec = CallRecording(tmp_path, "c-rec5", T0)
    rec.add_track("cam", "video", VP8)
    rec.add_track("mic", "audio", OPUS)
    for i in range(3, 6):
        for packet in pub.packets(video_frame(i)):
            rec.on_packet("cam", packet, T0 + i / FPS)
    assert rec.needs_keyframe("cam")
    assert rec.close(T0 + 1.0) == []
    assert list(tmp_path.iterdir()) == []


def test_add_track_refuses_codecs_and_kinds_it_cannot_record(tmp_path: Path) -> None:
    rec = CallRecording(tmp_path, "c-rec6", T0)
    pcmu = RTCRtpCodecParameters(mimeType="audio/PCMU", clockRate=8000, payloadType=0)
    with pytest.raises(ValueError, match="without transcoding"):
        rec.add_track("a", "audio", pcmu)
    with pytest.raises(ValueError, match="is not audio"):
        rec.add_track("a", "audio", VP8)
    rec.add_track("v", "video", VP8)
    with pytest.raises(ValueError, match="already recorded"):
        rec.add_track("v", "video", VP8)
    rec.close(T0)
    with pytest.raises(ValueError, match="closed"):
        rec.add_track("w", "video", VP8)


def keyframe_packets(codec: RTCRtpCodecParameters, encoder: Encoder) -> list[RtpPacket]:
    return Publisher(encoder, codec).packets(video_frame(0), keyframe=True)


def test_the_assembler_releases_a_keyframe_only_when_whole(tmp_path: Path) -> None:
    """A keyframe missing its first packet, or any middle one, is never taken for whole."""
    packets = keyframe_packets(VP8, Vp8Encoder())
    assert len(packets) > 3
    end = T0 + 10 * LOSS_TIMEOUT_S
    for missing in (0, 1, len(packets) - 2):
        assembler = FrameAssembler(VP8)
        for n, packet in enumerate(packets):
            if n != missing:
                assert assembler.add(packet, T0) == []
        assert assembler.flush(end) == []
        assert assembler.needs_keyframe
    whole = FrameAssembler(VP8)
    for packet in reversed(packets):
        assert whole.add(packet, T0) == []
    [frame] = whole.flush(end)
    assert frame.keyframe
    assert is_keyframe("VP8", frame.data)
    assert not whole.needs_keyframe


def test_h264_keyframe_detection_needs_parameter_sets_and_an_idr_slice() -> None:
    packets = keyframe_packets(H264, H264Encoder())
    assembler = FrameAssembler(H264)
    for packet in packets:
        assembler.add(packet, T0)
    [frame] = assembler.flush(T0)
    assert is_keyframe("H264", frame.data)
    # Without its first packet (SPS and PPS), or cut mid-NAL, it is not a keyframe.
    assert not is_keyframe("H264", frame.data[frame.data.index(b"\x00\x00\x00\x01\x65") :])
    assert not is_keyframe("H264", frame.data[7:])
    assert not is_keyframe("VP8", frame.data)


def test_aiortc_internals_the_recording_relies_on_are_there() -> None:
    """These hooks reach into aiortc; an upgrade that moves them must fail here, loudly."""
    assert aiortc.__version__ == "1.16.0"
    buffer = JitterBuffer(16, prefetch=0, is_video=True)
    assert buffer._origin is None
    assert callable(buffer._remove_frame)
    assert callable(buffer.smart_remove)


def video_stream_frames(count: int) -> Iterator[av.VideoFrame]:
    for i in range(count):
        yield video_frame(i)
