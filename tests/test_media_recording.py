"""Recording without transcoding: real VP8, H264 and Opus from aiortc's own encoders,
packetised as RTCRtpSender does, fed to `CallRecording` out of order and with losses; the
Matroska files it writes are opened with PyAV and decoded back. Then registered as evidence
of the call in a real EvidenceStore over a SQLite trace."""

from __future__ import annotations

import fractions
import functools
import hashlib
import inspect
import itertools
import math
import random
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiortc
import av
import pytest
from aiortc import RTCRtpCodecParameters
from aiortc.codecs.base import Encoder
from aiortc.codecs.h264 import H264Encoder
from aiortc.codecs.opus import OpusEncoder
from aiortc.codecs.vpx import Vp8Encoder, vp8_depayload
from aiortc.jitterbuffer import JitterBuffer
from aiortc.rtp import RtpPacket
from aiortc.utils import uint16_add, uint32_add
from hypothesis import given, settings
from hypothesis import strategies as st

from commandcenter.auth import Courts, Identity, Role
from commandcenter.config import Config
from media.bitstream import is_keyframe
from media.evidence_sink import (
    CALL_EVIDENCE,
    SERVER_UPLOADER,
    StoreEvidenceSink,
    register_recording,
    register_snapshot,
)
from media.reassembly import LOSS_TIMEOUT_S, FrameAssembler
from media.recording import CallRecording, RecordingResult
from media.snapshot import snapshot_jpeg
from sessions import evidence as ev
from sessions.durable import DurableRecorder, verify_store
from sessions.evidence_store import ContentFiles, EvidenceStore
from sessions.sqlite_store import SqliteTraceStore

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
        start = (i * 2 + n * 1013) % (len(NOISE) - plane.buffer_size)
        plane.update(NOISE[start : start + plane.buffer_size])
    frame.pts = i * (90000 // FPS)
    frame.time_base = fractions.Fraction(1, 90000)
    return frame


def audio_frame(i: int) -> av.AudioFrame:
    """20 ms of a stereo 48 kHz tone, as a microphone track delivers it."""
    frame = av.AudioFrame(format="s16", layout="stereo", samples=960)
    frame.planes[0].update(NOISE[(i % 30) * 3840 : (i % 30) * 3840 + 3840])
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
    recording = False
    held: list[RtpPacket] = []
    # The encoder's first frame is a keyframe.
    last_keyframe = 0
    for i in range(frames):
        now = T0 + i / FPS
        if i == join_at:
            rec.add_track("cam", "video", codec)
        # A PLI at most every 10 frames: a keyframe takes a frame to come out whole.
        want = i >= join_at and rec.needs_keyframe("cam") and i - last_keyframe > 10
        if want:
            requested.append(i)
            last_keyframe = i
        packets = pub.packets(video_frame(i), keyframe=want)
        if i >= join_at and (i == 0 or want):
            recording = True  # a whole keyframe: recorded from here
        if i == lose:
            packets = packets[1:]
            recording = False  # until the keyframe asked for after the loss
        if recording:
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
    assert result.started_at == pytest.approx(T0 + 11 / FPS)
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
    assert (result.kind, result.codec, result.media_type) == (
        "audio",
        "audio/opus",
        "audio/x-matroska",
    )
    with av.open(str(result.path)) as container:
        stream = container.streams.audio[0]
        assert stream.codec_context.extradata is not None
        assert stream.codec_context.extradata.startswith(b"OpusHead")
        muxed = [p for p in container.demux(stream) if p.size]
    assert len(muxed) == len(sent) - 1 == result.frames
    # 20 ms apart, except across the lost packet.
    times = [round(float(p.pts or 0) * float(p.time_base), 3) for p in muxed]
    steps = {round(b - a, 3) for a, b in itertools.pairwise(times)}
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
    assert second.started_at == pytest.approx(T0 + 15 / FPS)
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


def test_a_new_source_on_the_track_continues_the_timeline_by_the_server_clock(
    tmp_path: Path,
) -> None:
    """A publisher that restarts its sender (new SSRC, numbering and timestamps) mid-call."""
    rec = CallRecording(tmp_path, "c-rec7", T0)
    rec.add_track("cam", "video", VP8)
    first = Publisher(Vp8Encoder(), VP8, ssrc=1)
    second = Publisher(Vp8Encoder(), VP8, ssrc=2, seq=123, ts_origin=777_777)
    for i in range(30):
        pub = first if i < 15 else second
        for packet in pub.packets(video_frame(i)):
            rec.on_packet("cam", packet, T0 + i / FPS)
    [result] = rec.close(T0 + 1.0)
    frames = decoded_video(result.path)
    assert len(frames) == 30
    assert_frames_at(frames, list(range(30)))


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


@dataclass(frozen=True)
class Stream:
    """A short VP8 stream, encoded once: its packets and, by RTP timestamp, each frame's
    bytes, whether it is a keyframe and its place in the stream."""

    packets: list[tuple[int, RtpPacket]]
    frames: dict[int, tuple[bytes, bool, int]]


@functools.cache
def vp8_stream() -> Stream:
    pub = Publisher(Vp8Encoder(), VP8)
    packets: list[tuple[int, RtpPacket]] = []
    frames: dict[int, tuple[bytes, bool, int]] = {}
    for i in range(24):
        frame_packets = pub.packets(video_frame(i, 160, 120), keyframe=i in (8, 16))
        data = b"".join(vp8_depayload(p.payload) for p in frame_packets)
        frames[frame_packets[0].timestamp] = (data, i in (0, 8, 16), i)
        packets += [(i, p) for p in frame_packets]
    return Stream(packets, frames)


@settings(max_examples=120, deadline=None)
@given(
    st.lists(st.integers(0, 10_000), max_size=40),
    st.lists(st.tuples(st.integers(0, 10_000), st.integers(1, 6)), max_size=30),
    st.lists(st.integers(0, 10_000), max_size=5),
    st.sampled_from([0.01, 0.1, 0.3]),
)
def test_the_assembler_only_ever_gives_whole_frames_in_a_decodable_chain(
    drops: list[int],
    swaps: list[tuple[int, int]],
    duplicates: list[int],
    seconds_per_frame: float,
) -> None:
    """Whatever is lost, reordered or repeated: every frame out is byte for byte one that was
    sent, in order, and each delta frame follows the frame before it (nothing it refers to
    is missing); the stream starts on a keyframe."""
    stream = vp8_stream()
    order = list(stream.packets)
    for i in drops:
        if order:
            del order[i % len(order)]
    for i, step in swaps:
        if len(order) > 1:
            a = i % len(order)
            b = min(len(order) - 1, a + step)
            order[a], order[b] = order[b], order[a]
    for i in duplicates:
        if order:
            at = i % len(order)
            order.insert(min(len(order), at + 3), order[at])
    assembler = FrameAssembler(VP8)
    out = []
    latest = 0
    for index, packet in order:
        # The clock never goes back, whatever order the packets arrive in.
        latest = max(latest, index)
        out += assembler.add(packet, T0 + latest * seconds_per_frame)
    out += assembler.flush(T0 + 100.0)
    previous: int | None = None
    for frame in out:
        matches = [v for v in stream.frames.values() if v[0] == frame.data]
        assert len(matches) == 1, "a frame that was never sent"
        _, keyframe, index = matches[0]
        assert frame.keyframe == keyframe
        assert keyframe or previous == index - 1
        assert previous is None or index > previous
        previous = index
    assert [f.pts for f in out] == sorted({f.pts for f in out})


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


def test_a_retransmission_long_after_its_frame_is_ignored_not_taken_for_a_restart() -> None:
    """aiortc's buffer restarts on a packet 100 or more behind; the recording keeps going."""
    pub = Publisher(Vp8Encoder(), VP8)
    packets = [p for i in range(40) for p in pub.packets(video_frame(i))]
    assert len(packets) > 250
    assembler = FrameAssembler(VP8)
    out = []
    for n, packet in enumerate(packets):
        out += assembler.add(packet, T0 + n / 300)
        if n == 250:
            out += assembler.add(packets[20], T0 + n / 300)
    out += assembler.flush(T0 + 2.0)
    assert len(out) == 40
    assert assembler.late_packets == 1
    assert not assembler.needs_keyframe


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
    assert buffer._packets == [None] * 16
    assert list(inspect.signature(buffer._remove_frame).parameters) == ["sequence_number"]
    assert callable(buffer.smart_remove)


# --- registration as evidence ------------------------------------------------------------

CASE = "(2026)P0101执7号"


@pytest.fixture
async def evidence(tmp_path: Path) -> AsyncIterator[EvidenceStore]:
    """The real evidence store over a SQLite trace in tmp_path."""
    recorder = DurableRecorder.over(await SqliteTraceStore.open(tmp_path / "trace.sqlite3"))
    store = EvidenceStore(
        files=ContentFiles(tmp_path / "evidence"),
        trace=recorder,
        recorder=recorder,
        courts=Courts(Config().courts),
        max_upload_bytes=64 * 1024 * 1024,
    )
    await store.start()
    try:
        yield store
    finally:
        await recorder.close()


def record_short_call(directory: Path) -> RecordingResult:
    pub = Publisher(Vp8Encoder(), VP8)
    rec = CallRecording(directory, "c-ev1", T0)
    rec.add_track("cam", "video", VP8)
    for i in range(10):
        for packet in pub.packets(video_frame(i)):
            rec.on_packet("cam", packet, T0 + i / FPS)
    [result] = rec.close(T0 + 1.0)
    return result


async def test_a_recording_is_registered_as_evidence_of_its_call(
    tmp_path: Path, evidence: EvidenceStore
) -> None:
    result = record_short_call(tmp_path / "rec")
    sink = StoreEvidenceSink(evidence, device="server:test-node")
    evidence_id = await register_recording(
        sink, result, case_number=CASE, court="P0101", officer="o1"
    )
    history = await evidence.history(evidence_id)
    assert history is not None
    item = history.current()
    assert (item.sha256, item.size, item.case_number, item.court) == (
        result.sha256,
        result.size,
        CASE,
        "P0101",
    )
    assert (item.kind, item.media_type, item.file_name) == (
        ev.EvidenceKind.VIDEO,
        "video/x-matroska",
        result.path.name,
    )
    assert (item.uploader, item.device) == (SERVER_UPLOADER, "server:test-node")
    assert item.capture_time == T0 * 1000
    assert (item.time_unverified, item.clock_offset_ms) == (False, 0.0)
    # The stored copy is the recording, byte for byte, and still decodes.
    stored = evidence.files.path(item.sha256)
    assert stored.read_bytes() == result.path.read_bytes()
    assert len(decoded_video(stored)) == 10
    [link] = await evidence.trace.find(kinds=[CALL_EVIDENCE], data_equals={"call": "c-ev1"})
    assert link.data == {
        "call": "c-ev1",
        "evidence_id": evidence_id,
        "case_number": CASE,
        "court": "P0101",
        "officer": "o1",
        "media": "recording",
        "media_type": "video/x-matroska",
        "file_name": result.path.name,
        "sha256": result.sha256,
        "size": result.size,
        "captured_at_ms": T0 * 1000,
        "ended_at_ms": (T0 + 1.0) * 1000,
        "requested_by": None,
    }
    # Again: the same item, no second record of either kind.
    again = await register_recording(sink, result, case_number=CASE, court="P0101", officer="o1")
    assert again == evidence_id
    assert len(await evidence.trace.find(kinds=[ev.STORED])) == 1
    assert len(await evidence.trace.find(kinds=[CALL_EVIDENCE])) == 1
    # Operators of the court read it; an officer reads only their own uploads, and one
    # outside an item's scope is told it does not exist.
    operator = Identity("op1", "op1", Role.OPERATOR, "P0101", math.inf)
    assert (await evidence.read(operator, evidence_id)).original.sha256 == result.sha256
    officer = Identity("o1", "o1", Role.OFFICER, "P0101", math.inf)
    with pytest.raises(ev.NotFound):
        await evidence.read(officer, evidence_id)
    assert (await verify_store(evidence.trace)).ok


async def test_a_recording_changed_before_registration_is_refused(
    tmp_path: Path, evidence: EvidenceStore
) -> None:
    result = record_short_call(tmp_path / "rec")
    with result.path.open("r+b") as f:
        f.seek(result.size // 2)
        f.write(b"\x00" * 16)
    sink = StoreEvidenceSink(evidence)
    with pytest.raises(ev.HashMismatch):
        await register_recording(sink, result, case_number=CASE, court="P0101", officer="o1")
    assert await evidence.trace.find(kinds=[ev.STORED]) == []
    [rejected] = await evidence.trace.find(kinds=[ev.REJECTED])
    assert rejected.data["reason"] == "hash_mismatch"
    assert await evidence.trace.find(kinds=[CALL_EVIDENCE]) == []


async def test_a_snapshot_is_registered_as_a_photo_of_the_call(evidence: EvidenceStore) -> None:
    jpeg = snapshot_jpeg(VP8, keyframe_packets_data())
    sink = StoreEvidenceSink(evidence)
    evidence_id = await register_snapshot(
        sink,
        jpeg,
        call_id="c-ev2",
        case_number=CASE,
        court="P0102",
        officer="o2",
        captured_at=T0 + 0.25,
        requested_by="op1",
    )
    history = await evidence.history(evidence_id)
    assert history is not None
    item = history.current()
    assert (item.kind, item.media_type, item.sha256) == (
        ev.EvidenceKind.PHOTO,
        "image/jpeg",
        hashlib.sha256(jpeg).hexdigest(),
    )
    assert item.court == "P0102"
    assert item.capture_time == T0 * 1000 + 250
    [link] = await evidence.trace.find(kinds=[CALL_EVIDENCE], data_equals={"call": "c-ev2"})
    assert (link.data["media"], link.data["requested_by"]) == ("snapshot", "op1")


async def test_registration_refuses_what_the_store_could_not_file(
    evidence: EvidenceStore,
) -> None:
    sink = StoreEvidenceSink(evidence)
    base: dict[str, Any] = {
        "call_id": "c-ev3",
        "case_number": CASE,
        "court": "P0101",
        "officer": "o1",
        "path_or_bytes": b"\xff\xd8\xff\xd9",
        "media_type": "image/jpeg",
        "file_name": "x.jpg",
        "captured_at_ms": T0 * 1000,
    }
    changes: list[tuple[dict[str, Any], str]] = [
        ({"court": "P9999"}, "court"),
        ({"case_number": " "}, "case"),
        ({"captured_at_ms": float("nan")}, "captured_at_ms"),
        ({"officer": ""}, "officer"),
        ({"call_id": "c" * 65}, "call"),
        ({"media_type": "not a type"}, "content-type"),
    ]
    for change, name in changes:
        with pytest.raises(ev.BadRequest) as info:
            await sink.register(**{**base, **change})
        assert info.value.field == name, change
    assert await evidence.trace.find(kinds=[ev.STORED]) == []


def keyframe_packets_data() -> bytes:
    assembler = FrameAssembler(VP8)
    for packet in keyframe_packets(VP8, Vp8Encoder()):
        assembler.add(packet, T0)
    [frame] = assembler.flush(T0)
    return frame.data
