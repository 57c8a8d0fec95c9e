"""The C fan-out (media.fanout) against the Python path: the same SRTP bytes for the same
packets, the same numbering as media.rtp.Renumbering, NACKs answered with the original bytes,
and a full socket reported as would-block. Real sockets on loopback, real libsrtp sessions."""

from __future__ import annotations

import contextlib
import os
import random
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

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
from aiortc.rtp import RtpPacket
from hypothesis import given, settings
from hypothesis import strategies as st
from pylibsrtp import Error as SrtpError
from pylibsrtp import Policy, Session

from media import fanout, rtp
from media.forwarder import FORWARDED, HISTORY, Publication, Subscription

pytestmark = pytest.mark.skipif(fanout.unavailable() is not None, reason=str(fanout.unavailable()))

KEY = bytes(range(30))
EXTENSIONS = rtp.one_byte_extensions([(1, b"0")])


def session(inbound: bool = False) -> Session:
    policy = Policy(
        key=KEY,
        ssrc_type=Policy.SSRC_ANY_INBOUND if inbound else Policy.SSRC_ANY_OUTBOUND,
        srtp_profile=Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
    )
    # As aiortc's sender: a NACK resends a sequence number already protected.
    policy.allow_repeat_tx = True
    return Session(policy)


@pytest.fixture
def sockets() -> Iterator[tuple[socket.socket, socket.socket]]:
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx.bind(("127.0.0.1", 0))
    rx.bind(("127.0.0.1", 0))
    tx.setblocking(False)
    rx.settimeout(2)
    yield tx, rx
    tx.close()
    rx.close()


def lane_for(tx: socket.socket, rx: socket.socket, srtp: Session, ssrc: int = 1234) -> fanout.Lane:
    return fanout.Lane(
        tx,
        rx.getsockname(),
        srtp,
        ssrc=ssrc,
        payload_type=96,
        first_byte=0x90,
        extensions=EXTENSIONS,
    )


def started(seq: int, timestamp: int) -> rtp.Renumbering:
    """A renumbering started on a keyframe at (seq, timestamp), as the Python path does."""
    numbering = rtp.Renumbering(seq_base=40000, timestamp_base=0xFFFFFF00)
    assert numbering.map(seq, timestamp, True) is not None
    return numbering


# Packets after a keyframe start: (sequence step, timestamp step, marker, payload size).
packets = st.lists(
    st.tuples(
        st.integers(-40, 40), st.integers(0, 9000), st.booleans(), st.sampled_from([1, 100, 1200])
    ),
    min_size=1,
    max_size=40,
)


@settings(max_examples=40, deadline=None)
@given(packets, st.integers(0, 0xFFFF), st.integers(0, 0xFFFFFFFF), st.booleans())
def test_c_path_sends_the_python_paths_srtp_bytes(
    steps: list[tuple[int, int, bool, int]], seq: int, timestamp: int, batch: bool
) -> None:
    """For any packets after a start (reordered, older than the start, wrapping), the C lane
    sends exactly the SRTP packets the Python path would: its numbering is Renumbering's,
    its plain packet rtp.packet_bytes', protected by the same libsrtp state."""
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        tx.bind(("127.0.0.1", 0))
        rx.bind(("127.0.0.1", 0))
        tx.setblocking(False)
        rx.settimeout(2)
        python = started(seq, timestamp)
        carried = started(seq, timestamp)
        steady = carried.steady()
        assert steady is not None
        c_session, py_session, sink = session(), session(), session(inbound=True)
        lane = lane_for(tx, rx, c_session)
        lane.load(steady)
        group: fanout.Group[str] = fanout.Group(batch=batch)
        group.add("subscriber", lane)
        seen: set[int] = set()
        newest: int | None = None
        for step, ts_step, marker, size in steps:
            seq = (seq + step) & 0xFFFF
            timestamp = (timestamp + ts_step) & 0xFFFFFFFF
            payload = os.urandom(size)
            sent = group.send(seq, timestamp, marker, payload)
            mapped = python.map(seq, timestamp, False)
            if mapped is None:
                assert (sent.packets, lane.status()) == (0, fanout.SKIPPED)
                continue
            plain = rtp.packet_bytes(
                marker=marker,
                payload_type=96,
                sequence_number=mapped[0],
                timestamp=mapped[1],
                ssrc=1234,
                extensions=EXTENSIONS,
                payload=payload,
            )
            assert lane.recall(mapped[0]) == plain
            try:
                expected = py_session.protect(plain)
            except SrtpError:
                # libsrtp refuses a number too far behind the newest (a late retransmission):
                # neither path sends it.
                assert (sent.packets, lane.status()) == (0, fanout.FAILED)
                continue
            assert (sent.packets, sent.bytes, lane.status()) == (1, len(plain), fanout.SENT)
            wire = rx.recv(2048)
            assert wire == expected
            # The sink's replay check refuses a number twice, or far behind the newest.
            if mapped[0] not in seen and (newest is None or rtp.seq_newer(mapped[0], newest)):
                assert sink.unprotect(wire) == plain
                newest = mapped[0]
            seen.add(mapped[0])
        assert lane.steady() == python.steady()
        carried.resume(lane.steady())
        assert carried == python
        lane.close()
    finally:
        tx.close()
        rx.close()


def test_lanes_sharing_a_socket_go_out_in_one_batch_to_each_address(
    sockets: tuple[socket.socket, socket.socket],
) -> None:
    """sendmmsg over several lanes of one socket: each sink gets its own packet, with its
    own SSRC, decryptable with its own session."""
    tx, _ = sockets
    sinks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(3)]
    group: fanout.Group[int] = fanout.Group(capacity=1, batch=True)
    try:
        for i, rx in enumerate(sinks):
            rx.bind(("127.0.0.1", 0))
            rx.settimeout(2)
            lane = lane_for(tx, rx, session(), ssrc=100 + i)
            lane.load(
                rtp.Steady(seq_offset=i, ts_offset=0, start_seq=None, last_out=None, last_ts=0)
            )
            group.add(i, lane)
        sent = group.send(10, 3000, True, b"frame")
        assert (sent.packets, sent.would_block) == (3, 0)
        for i, rx in enumerate(sinks):
            plain = session(inbound=True).unprotect(rx.recv(2048))
            assert plain[2:4] == (10 + i).to_bytes(2, "big")
            assert plain[8:12] == (100 + i).to_bytes(4, "big")
            assert plain.endswith(b"frame")
        group.remove(1)
        assert group.owners == [0, 2]
        assert group.send(11, 3000, False, b"next").packets == 2
    finally:
        for rx in sinks:
            rx.close()


def test_history_answers_a_nack_with_the_original_bytes(
    sockets: tuple[socket.socket, socket.socket],
) -> None:
    """What a NACK resends is the plain packet first sent with that number, which protects
    (allow_repeat_tx, as aiortc) to the very SRTP packet sent the first time; packets the
    Python path sent are kept in the same history."""
    tx, rx = sockets
    srtp = session()
    lane = lane_for(tx, rx, srtp)
    lane.load(rtp.Steady(seq_offset=0, ts_offset=0, start_seq=None, last_out=None, last_ts=0))
    group: fanout.Group[str] = fanout.Group()
    group.add("s", lane)
    group.send(500, 90000, False, b"a" * 1200)
    first = rx.recv(2048)
    plain = lane.recall(500)
    assert plain is not None
    assert srtp.protect(plain) == first
    lane.remember(501, b"python path")
    assert lane.recall(501) == b"python path"
    # Another number in the same slot replaces it.
    group.send(500 + 256, 90000, False, b"b")
    assert lane.recall(500) is None
    assert lane.recall(502) is None


def test_a_full_socket_buffer_is_reported_as_would_block(tmp_path: Path) -> None:
    """A peer that never reads: sends succeed until its queue is full, then the lane says
    it would block, and nothing counts as sent."""
    stuck = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = str(tmp_path / "stuck.sock")
    stuck.bind(path)
    sender.setblocking(False)
    try:
        lane = fanout.Lane(
            sender, path, session(), ssrc=1, payload_type=96, first_byte=0x80, extensions=b""
        )
        lane.load(rtp.Steady(seq_offset=0, ts_offset=0, start_seq=None, last_out=None, last_ts=0))
        group: fanout.Group[str] = fanout.Group()
        group.add("s", lane)
        for seq in range(2000):
            sent = group.send(seq, 0, False, b"x" * 1200)
            if sent.would_block:
                break
        assert sent.would_block == 1
        assert sent.packets == 0
        assert group.with_status(fanout.WOULD_BLOCK) == [("s", lane)]
        assert lane.sent() == seq
    finally:
        stuck.close()
        sender.close()


def test_the_statuses_and_history_size_are_the_c_librarys() -> None:
    """media.fanout's names for a lane's outcome, and the forwarder's history size, are the
    ones media/fanout.h defines."""
    from media._fanout import lib

    assert (fanout.SENT, fanout.SKIPPED, fanout.WOULD_BLOCK, fanout.FAILED) == (
        lib.FANOUT_SENT,
        lib.FANOUT_SKIPPED,
        lib.FANOUT_WOULD_BLOCK,
        lib.FANOUT_FAILED,
    )
    assert lib.FANOUT_HISTORY == HISTORY


def test_an_address_the_lane_cannot_send_to_is_refused() -> None:
    """The lane sends to IPv4, IPv6 and Unix datagram addresses; anything else is an error
    (and the subscriber stays on the Python path)."""
    with pytest.raises(ValueError, match="cannot send"):
        fanout.sockaddr(socket.AF_INET, b"\x00")
    with pytest.raises(ValueError, match="cannot send"):
        fanout.sockaddr(socket.AF_INET6, ("::1",))
    with pytest.raises(ValueError, match="cannot send"):
        fanout.sockaddr(socket.AF_PACKET, ("eth0", 0))
    assert len(fanout.sockaddr(socket.AF_INET, ("127.0.0.1", 5))) == 16
    assert len(fanout.sockaddr(socket.AF_INET6, ("::1", 5))) == 28


WITHOUT_EXTENSION = """
import sys, time
sys.modules["media._fanout"] = None  # as if `make venv` had not built it
from media import fanout
from media.service import MediaService
from media.settings import MediaConfig
assert fanout.unavailable() is not None
MediaService(config=MediaConfig(), clock=time.monotonic)
MediaService(config=MediaConfig(fanout="python"), clock=time.monotonic)
print("started")
"""


def test_without_the_built_extension_the_server_forwards_in_python_and_says_so() -> None:
    """Not refused: one warning at start names the cause and the remedy; with fanout =
    "python" there is nothing to warn about."""
    proc = subprocess.run(
        [sys.executable, "-c", WITHOUT_EXTENSION],
        cwd=Path(__file__).resolve().parent.parent,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout + proc.stderr
    assert out.count("media fan-out in Python: the C fan-out cannot be loaded") == 1
    assert "make venv" in out
    assert proc.stdout.rstrip().endswith("started")


# ---- the forwarder, both engines side by side -------------------------------------------------

VP8 = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96)


def vp8(seq: int, timestamp: int, *, key: bool = False, marker: bool = False) -> RtpPacket:
    # RFC 7741: S=1, partition 0, then a key frame's tag (bit 0 clear) when `key`.
    body = (b"\x10\x00" if key else b"\x00\x01") + (seq & 0xFFFF).to_bytes(2, "big") * 300
    return RtpPacket(
        payload_type=96,
        sequence_number=seq & 0xFFFF,
        timestamp=timestamp & 0xFFFFFFFF,
        marker=int(marker),
        ssrc=77,
        payload=body,
    )


def received(rx: socket.socket) -> list[bytes]:
    """Every packet the sink got, decrypted, with the subscriber's SSRC blanked (each
    subscriber has its own, so their ciphertexts differ)."""
    sink = session(inbound=True)
    out = []
    with contextlib.suppress(BlockingIOError):
        while True:
            wire = rx.recv(2048)
            try:
                plain = sink.unprotect(wire)
            except SrtpError:
                # The late duplicate: the sink's replay check refuses it. What shows: its
                # sequence number, and its length less the 10-byte SHA1_80 tag.
                out.append(wire[2:4] + bytes(len(wire) - 10 - 2))
                continue
            out.append(plain[:8] + bytes(4) + plain[12:])
    return out


async def test_both_engines_send_the_same_stream_and_count_it_alike() -> None:
    """One publication, a subscriber forwarded in Python and one carried by the C fan-out,
    the same numbering bases: through a keyframe start, frames, reordering, a packet older
    than the start, a wrap of the sequence numbers and a restart (the one C would report
    when blocked), each sink decrypts the same packets, and every count agrees."""
    dtls = RTCDtlsTransport(
        RTCIceTransport(RTCIceGatherer()), [RTCCertificate.generateCertificate()]
    )
    pub = Publication(
        owner="p",
        kind="video",
        receiver=RTCRtpReceiver("video", dtls),
        keyframe_interval=1e9,
        clock=time.monotonic,
    )
    sockets: list[socket.socket] = []
    subs: dict[str, Subscription] = {}
    sinks: dict[str, socket.socket] = {}
    try:
        for engine in ("python", "c"):
            tx, rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM), sink_socket()
            tx.setblocking(False)
            sockets += [tx, rx]
            random.seed(7)  # the same sequence and timestamp bases for both
            sub = pub.subscribe(engine, RTCRtpSender("video", dtls), 1 << 20, engine=engine)
            sub.connect(tx, rx.getsockname(), session(), payload_type=96, extensions=EXTENSIONS)
            subs[engine], sinks[engine] = sub, rx
        before = (FORWARDED.packets, FORWARDED.bytes)
        seq, ts = 65000, 0xFFFFF000
        pub.forward(vp8(seq - 1, ts), VP8)  # before any keyframe: nobody gets it
        for frame in range(400):
            for k in range(3):
                pub.forward(vp8(seq, ts, key=frame in (0, 250) and k == 0, marker=k == 2), VP8)
                seq += 1
            if frame == 1:
                pub.forward(vp8(65000 - 2, ts - 3000), VP8)  # older than the start
            if frame == 5:
                pub.forward(vp8(seq - 2, ts), VP8)  # reordered, late
            if frame == 200:
                assert subs["c"].carried
                assert not subs["python"].carried
                pub.uncarry(subs["c"])
                for sub in subs.values():
                    sub.too_slow()
            ts += 3000
        assert subs["c"].carried
        python, c = received(sinks["python"]), received(sinks["c"])
        assert len(python) == subs["python"].packets_sent > 1000
        assert c == python
        assert subs["c"].packets_sent == subs["python"].packets_sent
        assert subs["c"].numbering == subs["python"].numbering
        assert subs["c"].restarts == subs["python"].restarts == 1
        assert FORWARDED.packets - before[0] == 2 * len(python)
        assert FORWARDED.bytes - before[1] == 2 * sum(map(len, python))
        stats = []
        # The C path brings the senders' counters up to date at most every COUNT_EVERY_S.
        pub.count_carried()
        for sub in subs.values():
            [sent] = [
                s for s in (await sub.tap.sender.getStats()).values() if s.type == "outbound-rtp"
            ]
            stats.append((sent.packetsSent, sent.bytesSent))
        assert stats[0] == stats[1]
        assert stats[0][0] == len(python)
    finally:
        pub.close()
        for sock in sockets:
            sock.close()


def sink_socket() -> socket.socket:
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    rx.setblocking(False)
    rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    return rx
