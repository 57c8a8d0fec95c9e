"""The relay's pure RTP core: keyframe starts, renumbering, keyframe request pacing."""

from __future__ import annotations

import fractions

import av
from aiortc.codecs.h264 import H264Encoder
from aiortc.codecs.vpx import Vp8Encoder
from aiortc.rtp import RtpPacket
from hypothesis import given
from hypothesis import strategies as st

from media import rtp


def _frames(n: int) -> list[av.VideoFrame]:
    frames = []
    for i in range(n):
        frame = av.VideoFrame(width=320, height=240, format="yuv420p")
        for plane in frame.planes:
            plane.update(bytes([(i * 7) % 256]) * plane.buffer_size)
        frame.pts = i * 3000
        frame.time_base = fractions.Fraction(1, 90000)
        frames.append(frame)
    return frames


def test_vp8_keyframe_start_is_only_the_first_packet_of_a_keyframe() -> None:
    encoder = Vp8Encoder()
    starts = []
    for i, frame in enumerate(_frames(4)):
        payloads, _ = encoder.encode(frame, force_keyframe=(i == 2))
        starts.append([rtp.vp8_keyframe_start(p) for p in payloads])
    assert starts[0][0]
    assert not any(starts[0][1:])
    assert not any(starts[1])
    assert starts[2][0]
    assert not any(starts[3])


def test_h264_keyframe_start_finds_sps_or_idr_in_every_packetisation() -> None:
    encoder = H264Encoder()
    payloads, _ = encoder.encode(_frames(1)[0], force_keyframe=True)
    assert rtp.h264_keyframe_start(payloads[0])
    # FU-A fragment of an IDR slice: only the start fragment counts.
    assert rtp.h264_keyframe_start(bytes([0x7C, 0x85]) + b"x")
    assert not rtp.h264_keyframe_start(bytes([0x7C, 0x45]) + b"x")
    # STAP-A holding SPS.
    assert rtp.h264_keyframe_start(bytes([0x78, 0x00, 0x02, 0x67, 0x42]))
    # A non-IDR slice.
    assert not rtp.h264_keyframe_start(bytes([0x41, 0x9A]))
    assert not rtp.h264_keyframe_start(b"")


def test_audio_starts_anywhere() -> None:
    assert rtp.keyframe_start("opus", b"\x01\x02")


@given(st.binary(max_size=64))
def test_keyframe_detection_never_crashes(payload: bytes) -> None:
    rtp.vp8_keyframe_start(payload)
    rtp.h264_keyframe_start(payload)


def test_packet_bytes_parse_back_with_aiortc() -> None:
    ext = rtp.one_byte_extensions([(1, b"3")])
    data = rtp.packet_bytes(
        marker=True,
        payload_type=96,
        sequence_number=65535,
        timestamp=0xFFFFFFFF,
        ssrc=1234,
        extensions=ext,
        payload=b"hello",
    )
    parsed = RtpPacket.parse(data)
    assert (parsed.marker, parsed.payload_type, parsed.sequence_number) == (1, 96, 65535)
    assert (parsed.timestamp, parsed.ssrc, parsed.payload) == (0xFFFFFFFF, 1234, b"hello")


def test_renumbering_waits_for_a_keyframe_then_keeps_gaps() -> None:
    n = rtp.Renumbering(seq_base=100, timestamp_base=5000)
    assert n.map(10, 900, False) is None
    assert n.map(11, 900, True) == (100, 5000)
    assert n.map(12, 900, False) == (101, 5000)
    # A loss upstream stays a gap downstream (the subscriber NACKs it).
    assert n.map(14, 3900, False) == (103, 8000)
    # The late retransmission fills it.
    assert n.map(13, 900, False) == (102, 5000)


def test_renumbering_keeps_forwarding_for_hours() -> None:
    """Past any number of sequence-number wraps, every packet in order is forwarded."""
    n = rtp.Renumbering(seq_base=7, timestamp_base=0)
    previous = None
    for i in range(200_000):
        mapped = n.map((1000 + i) & 0xFFFF, (i * 3000) & 0xFFFFFFFF, i == 0)
        assert mapped is not None, i
        if previous is not None:
            assert mapped[0] == (previous + 1) & 0xFFFF
        previous = mapped[0]


def test_renumbering_restart_continues_without_a_gap() -> None:
    n = rtp.Renumbering(seq_base=0, timestamp_base=0)
    n.map(500, 0, True)
    n.map(501, 0, False)
    n.restart()
    assert n.map(502, 3000, False) is None
    assert n.map(600, 9000, True) == (2, 9000)
    # Older than the restart point: never forwarded.
    assert n.map(599, 6000, False) is None


def test_renumbering_is_steady_between_restarts() -> None:
    """Between a keyframe start and the next restart or switch, the mapping is a constant
    offset (what the C fan-out carries); waiting for a keyframe, it is not."""
    n = rtp.Renumbering(seq_base=100, timestamp_base=5000)
    assert n.steady() is None
    assert n.map(65535, 0xFFFFFFF0, True) == (100, 5000)
    steady = n.steady()
    assert steady == rtp.Steady(
        seq_offset=101, ts_offset=5016, start_seq=65535, last_out=100, last_ts=5000
    )
    assert n.map(3, 0xFFFFFFF0 + 90, False) == (
        (3 + 101) & 0xFFFF,
        (0xFFFFFFF0 + 90 + 5016) & 0xFFFFFFFF,
    )
    n.restart()
    assert n.steady() is None
    n.map(10, 0, True)
    n.switch(3000)
    assert n.steady() is None


@given(st.lists(st.tuples(st.integers(-30, 30), st.integers(0, 3000)), max_size=60))
def test_a_resumed_renumbering_maps_as_the_one_it_came_from(
    steps: list[tuple[int, int]],
) -> None:
    """`resume(steady())` hands a mapping over whole: the copy maps every later packet (in
    order or not, older than the start or not) as the original does."""
    original = rtp.Renumbering(seq_base=7, timestamp_base=9)
    original.map(65500, 1000, True)
    steady = original.steady()
    assert steady is not None
    copy = rtp.Renumbering(seq_base=0, timestamp_base=0)
    copy.resume(steady)
    seq, ts = 65500, 1000
    for step, ts_step in steps:
        seq, ts = (seq + step) & 0xFFFF, ts + ts_step
        assert copy.map(seq, ts, False) == original.map(seq, ts, False)
    assert copy.steady() == original.steady()


@given(
    st.integers(0, 0xFFFF),
    st.integers(0, 0xFFFFFFFF),
    st.lists(st.integers(1, 3), min_size=1, max_size=200),
)
def test_renumbering_is_contiguous_across_wraparound(start: int, ts: int, steps: list[int]) -> None:
    """Forwarded in order, the output numbers advance exactly as the input's."""
    n = rtp.Renumbering(seq_base=65530, timestamp_base=0)
    seq = start
    first = n.map(seq, ts, True)
    assert first is not None
    out_prev = first[0]
    for step in steps:
        seq = (seq + step) & 0xFFFF
        mapped = n.map(seq, ts, False)
        assert mapped is not None
        assert (mapped[0] - out_prev) & 0xFFFF == step
        out_prev = mapped[0]


def test_keyframe_requests_are_paced_and_never_dropped() -> None:
    k = rtp.KeyframeRequests(interval=0.5)
    assert k.request(10.0)
    assert not k.request(10.1)
    assert not k.request(10.2)
    assert k.due() == 10.5
    assert not k.fire(10.4)
    assert k.fire(10.5)
    assert k.due() is None
    assert k.request(11.0)
    assert not k.request(11.1)
    k.keyframe_seen()
    assert k.due() is None
