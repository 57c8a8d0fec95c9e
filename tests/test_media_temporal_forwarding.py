"""VP8 temporal layers in the forwarder: a publication fed an L1T3 stream (synthetic RTP, as
aiortc's own encoder makes no layers) counts its packets per TID; a subscriber whose
receiver reports loss (real RTCP receiver reports through the sender's RTCP handling) gets
only TID 0/1, then TID 0, with consecutive sequence numbers and PictureIDs, and every layer
again, carried by the C fan-out, once the loss stops. Real sockets, real SRTP sessions."""

from __future__ import annotations

import itertools
import socket
import struct
from dataclasses import dataclass

import pytest
from aiortc import (
    RTCCertificate,
    RTCDtlsTransport,
    RTCIceGatherer,
    RTCIceTransport,
    RTCRtpReceiver,
    RTCRtpSender,
)
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import RtcpReceiverInfo, RtcpRrPacket, RtpPacket
from pylibsrtp import Policy, Session

from media import fanout, rtp
from media.forwarder import Fanout, Publication, Subscription
from media.temporal import LayerPolicy, parse_vp8

KEY = bytes(range(30))
EXTENSIONS = rtp.one_byte_extensions([(1, b"0")])
VP8 = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96)
POLICY = LayerPolicy(down_loss=0.10, down_reports=2, up_loss=0.02, up_after_s=5.0)
PATTERN = (0, 2, 1, 2)
LOSSY = 60  # 23 %
CLEAR = 0


def session(inbound: bool = False) -> Session:
    policy = Policy(
        key=KEY,
        ssrc_type=Policy.SSRC_ANY_INBOUND if inbound else Policy.SSRC_ANY_OUTBOUND,
        srtp_profile=Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
    )
    policy.allow_repeat_tx = True
    return Session(policy)


class Clock:
    """The publication's clock, moved by the test (the selector's waits without waiting)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Publisher:
    """An L1T3 VP8 publisher as libwebrtc packetizes it: TIDs 0, 2, 1, 2, ..., 15-bit
    PictureIDs, TL0PICIDX, the layer-sync bit on the first TID-1/2 frame after a TID 0."""

    def __init__(self) -> None:
        self.seq = 65500  # wraps during the test
        self.timestamp = 1234
        self.frame = 0
        self.picture_id = 0x7FF0  # wraps too
        self.tl0 = 250

    def frames(self, count: int, packets: int = 2) -> list[RtpPacket]:
        out = []
        for _ in range(count):
            tid = PATTERN[self.frame % 4]
            if tid == 0 and self.frame:
                self.tl0 = (self.tl0 + 1) & 0xFF
            sync = self.frame % 4 in (1, 2)
            key = self.frame == 0
            for k in range(packets):
                descriptor = bytes(
                    [
                        0x80 | (0x10 if k == 0 else 0),
                        0x80 | 0x40 | 0x20,
                        0x80 | (self.picture_id >> 8),
                        self.picture_id & 0xFF,
                        self.tl0,
                        (tid << 6) | (0x20 if sync else 0),
                    ]
                )
                # The VP8 frame tag's first byte: bit 0 clear on a key frame.
                body = bytes([0x10 if key else 0x11]) + bytes([self.frame & 0xFF]) * 200
                out.append(
                    RtpPacket(
                        payload_type=96,
                        sequence_number=self.seq,
                        timestamp=self.timestamp,
                        marker=int(k == packets - 1),
                        ssrc=77,
                        payload=descriptor + body,
                    )
                )
                self.seq = (self.seq + 1) & 0xFFFF
            self.frame += 1
            self.picture_id = (self.picture_id + 1) & 0x7FFF
            self.timestamp = (self.timestamp + 3000) & 0xFFFFFFFF
        return out


@dataclass(frozen=True)
class Received:
    seq: int
    picture_id: int
    tid: int
    tl0: int
    start: bool


def wired(clock: Clock) -> tuple[RTCDtlsTransport, Publication, socket.socket, socket.socket]:
    """A video publication on `clock`, and a sending and a receiving loopback socket (the
    receiver's buffer large enough for a test's burst)."""
    dtls = RTCDtlsTransport(
        RTCIceTransport(RTCIceGatherer()), [RTCCertificate.generateCertificate()]
    )
    pub = Publication(
        owner="p",
        kind="video",
        receiver=RTCRtpReceiver("video", dtls),
        keyframe_interval=1e9,
        clock=clock,
    )
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    rx.setblocking(False)
    rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    tx.setblocking(False)
    return dtls, pub, tx, rx


def unwire(pub: Publication, tx: socket.socket, rx: socket.socket) -> None:
    pub.close()
    tx.close()
    rx.close()


def drain(rx: socket.socket, sink: Session) -> list[Received]:
    out: list[Received] = []
    while True:
        try:
            wire = rx.recv(2048)
        except BlockingIOError:
            return out
        plain = sink.unprotect(wire)
        (seq,) = struct.unpack("!H", plain[2:4])
        descriptor = parse_vp8(plain[12 + len(EXTENSIONS) :])
        assert descriptor is not None
        assert descriptor.picture_id is not None
        assert descriptor.tid is not None
        assert descriptor.tl0picidx is not None
        out.append(
            Received(
                seq, descriptor.picture_id, descriptor.tid, descriptor.tl0picidx, descriptor.start
            )
        )


async def report_loss(sub: Subscription, fraction_lost: int) -> None:
    """A receiver report from the subscriber about its sender, as aiortc's DTLS transport
    hands it to the sender."""
    info = RtcpReceiverInfo(
        ssrc=sub.tap.ssrc,
        fraction_lost=fraction_lost,
        packets_lost=0,
        highest_sequence=0,
        jitter=0,
        lsr=0,
        dlsr=0,
    )
    await sub.tap.sender._handle_rtcp_packet(RtcpRrPacket(ssrc=4321, reports=[info]))


ENGINES: list[Fanout] = ["python", "c"] if fanout.unavailable() is None else ["python"]


@pytest.mark.parametrize("engine", ENGINES)
async def test_a_lossy_subscriber_gets_fewer_layers_and_all_again_when_loss_stops(
    engine: Fanout,
) -> None:
    """Sustained loss reports: TID 0/1 only, then TID 0 only; reports clear for 5 s each:
    layer 1, then every layer, carried by the C fan-out again (engine "c"). Throughout,
    sequence numbers and PictureIDs are consecutive, TL0PICIDX unchanged, every TID-0 frame
    arrives; the publication counts packets per TID and the subscriber those dropped."""
    clock = Clock()
    dtls, pub, tx, rx = wired(clock)
    sink = session(inbound=True)
    publisher = Publisher()
    try:
        sub = pub.subscribe("s", RTCRtpSender("video", dtls), 1 << 20, engine, layers=POLICY)
        sub.connect(tx, rx.getsockname(), session(), payload_type=96, extensions=EXTENSIONS)

        def send(frames: int) -> list[Received]:
            for packet in publisher.frames(frames):
                pub.forward(packet, VP8)
            return drain(rx, sink)

        got = send(40)
        assert {r.tid for r in got} == {0, 1, 2}
        assert sub.carried == (engine == "c")

        await report_loss(sub, LOSSY)
        assert sub.selector is not None
        assert sub.selector.layer == 2
        await report_loss(sub, LOSSY)
        assert sub.selector.layer == 1
        assert not sub.carried
        phase = send(40)
        assert {r.tid for r in phase[2:]} == {0, 1}
        got += phase

        await report_loss(sub, LOSSY)
        await report_loss(sub, LOSSY)
        assert sub.selector.layer == 0
        phase = send(40)
        assert {r.tid for r in phase[2:]} == {0}
        got += phase

        for _ in range(3):  # clear for 5 s: layer 1
            await report_loss(sub, CLEAR)
            clock.now += 2.5
        assert sub.selector.layer == 1
        phase = send(40)
        assert {r.tid for r in phase[4:]} == {0, 1}
        got += phase
        for _ in range(3):  # 5 s more: every layer
            await report_loss(sub, CLEAR)
            clock.now += 2.5
        assert sub.selector.layer == 2
        phase = send(40)
        assert {r.tid for r in phase[4:]} == {0, 1, 2}
        got += phase
        assert sub.carried == (engine == "c")
        phase = send(40)  # the C lane lowers the PictureIDs by what was left out
        assert {r.tid for r in phase} == {0, 1, 2}
        got += phase

        seqs = [r.seq for r in got]
        assert seqs == [(seqs[0] + k) & 0xFFFF for k in range(len(seqs))]
        starts = [r for r in got if r.start]
        for a, b in itertools.pairwise(starts):
            assert (b.picture_id - a.picture_id) & 0x7FFF == 1
        tl0s = [r.tl0 for r in starts if r.tid == 0]
        assert tl0s == [(250 + k) & 0xFF for k in range(len(tl0s))]
        assert len(tl0s) == 240 // 4

        assert pub.tid_packets == [120, 120, 240, 0]
        assert sub.layers_dropped == 2 * 240 - len(got)
        assert sub.layers_dropped > 0
        assert pub.layers_dropped == sub.layers_dropped
    finally:
        unwire(pub, tx, rx)


async def test_a_publication_without_layers_is_never_thinned() -> None:
    """Loss reported about a stream without TIDs changes nothing: every packet is sent."""
    dtls, pub, tx, rx = wired(Clock())
    try:
        sub = pub.subscribe("s", RTCRtpSender("video", dtls), 1 << 20, layers=POLICY)
        sub.connect(tx, rx.getsockname(), session(), payload_type=96, extensions=EXTENSIONS)
        for _ in range(4):
            await report_loss(sub, LOSSY)
        for n in range(20):
            # S=1, partition 0, no X: no PictureID, no TID.
            body = bytes([0x10, 0x10 if n == 0 else 0x11]) + bytes(100)
            pub.forward(RtpPacket(payload_type=96, sequence_number=n, payload=body), VP8)
        assert sub.packets_sent == 20
        assert sub.layers_dropped == 0
        assert not pub.layered
        assert sub.selector is not None
        assert sub.selector.layer == 2
    finally:
        unwire(pub, tx, rx)


@pytest.mark.parametrize("engine", ENGINES)
async def test_a_capped_subscriber_gets_only_the_base_layer_from_its_first_packet(
    engine: Fanout,
) -> None:
    """`temporal_max_layer` 0: from the keyframe on, only TID-0 frames, consecutive in
    sequence number and PictureID, forwarded in Python whatever the engine."""
    dtls, pub, tx, rx = wired(Clock())
    capped = LayerPolicy(top=0)
    try:
        sub = pub.subscribe("s", RTCRtpSender("video", dtls), 1 << 20, engine, layers=capped)
        sub.connect(tx, rx.getsockname(), session(), payload_type=96, extensions=EXTENSIONS)
        for packet in Publisher().frames(80):
            pub.forward(packet, VP8)
        got = drain(rx, session(inbound=True))
        assert {r.tid for r in got} == {0}
        assert len(got) == 2 * 20
        assert [r.seq for r in got] == [(got[0].seq + k) & 0xFFFF for k in range(len(got))]
        starts = [r for r in got if r.start]
        for a, b in itertools.pairwise(starts):
            assert (b.picture_id - a.picture_id) & 0x7FFF == 1
        assert not sub.carried
        assert sub.layer == 0
        assert sub.layers_dropped == 2 * 60
    finally:
        unwire(pub, tx, rx)


async def test_a_late_packet_of_a_frame_sent_takes_its_place_behind_frames_dropped() -> None:
    """Only TID 0 sent: the second packet of a TID-0 frame arrives after the next frame
    (TID 2, dropped): it is sent with the number it would have had, so the subscriber's
    numbers, sorted, have no gap and no duplicate, and its PictureID is its frame's."""
    dtls, pub, tx, rx = wired(Clock())
    try:
        sub = pub.subscribe("s", RTCRtpSender("video", dtls), 1 << 20, layers=LayerPolicy(top=0))
        sub.connect(tx, rx.getsockname(), session(), payload_type=96, extensions=EXTENSIONS)
        packets = Publisher().frames(12)
        late = packets.pop(9)  # frame 4's second packet, after frame 5's two
        packets.insert(11, late)
        for packet in packets:
            pub.forward(packet, VP8)
        got = drain(rx, session(inbound=True))
        seqs = sorted(r.seq - got[0].seq & 0xFFFF for r in got)
        assert seqs == list(range(len(got)))
        assert len(got) == 2 * 3  # frames 0, 4 and 8
        by_frame = {(r.tl0, r.picture_id) for r in got}
        assert len(by_frame) == 3
        assert got[3].seq == (got[2].seq + 1) & 0xFFFF  # the late one: frame 4's second
        assert got[3].picture_id == got[2].picture_id
    finally:
        unwire(pub, tx, rx)
