"""Fan-out benchmark: `python -m bench.fanout [--quick] [--subscribers 64,128,256,512]`.

CPU time per subscriber-packet of the forwarder's hot path, C fan-out against Python, with
no aiortc connection in the way: one `media.forwarder.Publication` fed `RtpPacket`s as aiortc
hands them over, and N `Subscription`s on real (unconnected) aiortc senders, each connected
(`Subscription.connect`) to a loopback sink socket with an SRTP session keyed in advance, as
/work/shared/research/conference-bench/fwd_bench.py does. So what is measured is the real
code: renumbering, header, history, SRTP protect, the send, the counters (FORWARDED, the
sender's counters once per frame).

Per path (`python`; `c`, as the server runs it: sendmmsg for the lanes of one socket, 64 a
call, sendto for a lane alone; `c-sendto`: sendto for every lane), socket layout (`own`: a
socket per subscriber, as aiortc gives each peer connection; `shared`: one socket for all)
and payload (video: 1200-byte packets, 4 per frame, the last with the marker; audio:
100-byte packets), and N: one JSON line with `us_per_subscriber_packet`, the process's CPU
time (user + system, which includes the loopback's delivery to the sink) over the packets
sent, draining the sinks outside the timed part. The last line is the summary: each C
path's speed-up over Python per payload and layout, and whether `c` is at least 1.3 times as
fast for video at every N (the goal; the send itself is most of the cost either way). Each
line says what others took of the machine meanwhile (`others_cpu_pct`): it is shared.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final

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
from pylibsrtp import Policy, Session

from bench._common import MachineMeter, emit, raise_nofile_limit
from media import fanout
from media.forwarder import FORWARDED, Fanout, Publication, Subscription

SIZES: Final = (64, 128, 256, 512)
QUICK_SIZES: Final = (64,)
PACKETS: Final = 400
QUICK_PACKETS: Final = 60
# "c": sendmmsg for the lanes of one socket (sendto for a lane alone), as the server does;
# "c-sendto": sendto for every lane.
PATHS: Final = ("python", "c", "c-sendto")
LAYOUTS: Final = ("own", "shared")
# (kind, payload bytes, packets per frame): VP8 at about 1 Mbit/s; Opus, one per 20 ms.
PAYLOADS: Final = (("video", 1200, 4), ("audio", 100, 1))
CODECS: Final = {
    "video": RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96),
    "audio": RTCRtpCodecParameters(
        mimeType="audio/opus", clockRate=48000, channels=2, payloadType=111
    ),
}
# Drain the sinks this often, so that none overflows (a drop would be cheaper than a send).
DRAIN_EVERY: Final = 16
KEY: Final = bytes(range(30))
# The goal: C at least 1.3 times as fast as Python for video, at every N. The kernel's
# sendto (about 3.8 us here, section 9 of the research notes) is most of either path, so
# the floor for C is about 5 us against about 9 us for Python.
GOAL_SPEEDUP: Final = 1.3


@dataclass(frozen=True)
class Settings:
    sizes: tuple[int, ...]
    packets: int
    paths: tuple[str, ...]


def parse_args(argv: Sequence[str] | None) -> Settings:
    parser = argparse.ArgumentParser(prog="python -m bench.fanout", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="64 subscribers, few packets")
    parser.add_argument("--subscribers", help="comma-separated N (64,128,256,512)")
    parser.add_argument("--packets", type=int, help=f"packets per N ({PACKETS})")
    parser.add_argument("--paths", help=f"comma-separated, of {','.join(PATHS)} (all)")
    args = parser.parse_args(argv)
    sizes: tuple[int, ...] = QUICK_SIZES if args.quick else SIZES
    if args.subscribers:
        sizes = tuple(int(n) for n in args.subscribers.split(","))
    if any(n < 1 for n in sizes):
        parser.error("--subscribers: positive numbers")
    packets = args.packets or (QUICK_PACKETS if args.quick else PACKETS)
    if packets < 8:
        parser.error("--packets: at least 8")
    paths = tuple(args.paths.split(",")) if args.paths else PATHS
    if not set(paths) <= set(PATHS):
        parser.error(f"--paths: of {','.join(PATHS)}")
    if set(paths) - {"python"} and fanout.unavailable() is not None:
        parser.error(f"the C fan-out is not available: {fanout.unavailable()}")
    return Settings(sizes=sizes, packets=packets, paths=paths)


def srtp_session() -> Session:
    policy = Policy(
        key=KEY,
        ssrc_type=Policy.SSRC_ANY_OUTBOUND,
        srtp_profile=Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
    )
    policy.allow_repeat_tx = True
    return Session(policy)


def sink() -> socket.socket:
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    rx.setblocking(False)
    rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    return rx


def drain(sinks: Sequence[socket.socket]) -> None:
    for rx in sinks:
        with contextlib.suppress(BlockingIOError):
            while True:
                rx.recv(2048)


def frames(kind: str, size: int, per_frame: int) -> Iterator[RtpPacket]:
    """The publisher's packets: video frames whose first is a keyframe's (VP8 descriptor
    S=1, then a key frame's tag), audio packets 20 ms apart."""
    seq, timestamp, n = 1000, 0, 0
    body = os.urandom(size)
    while True:
        for k in range(per_frame):
            if kind == "video":
                payload = (b"\x10\x00" if n == 0 and k == 0 else b"\x00\x01") + body[2:]
            else:
                payload = body
            yield RtpPacket(
                payload_type=CODECS[kind].payloadType or 0,
                marker=1 if kind == "video" and k == per_frame - 1 else 0,
                sequence_number=seq,
                timestamp=timestamp,
                ssrc=4242,
                payload=payload,
            )
            seq = (seq + 1) & 0xFFFF
        timestamp = (timestamp + (3000 if kind == "video" else 960)) & 0xFFFFFFFF
        n += 1


def run(
    path: str, layout: str, kind: str, size: int, per_frame: int, n: int, packets: int
) -> dict[str, Any]:
    dtls = RTCDtlsTransport(
        RTCIceTransport(RTCIceGatherer()), [RTCCertificate.generateCertificate()]
    )
    pub = Publication(
        owner="speaker",
        kind=kind,
        receiver=RTCRtpReceiver(kind, dtls),
        # No keyframe request leaves during the run (the first waits for a timer).
        keyframe_interval=1e9,
        clock=time.monotonic,
    )
    sinks = [sink() for _ in range(n)]
    shared = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    shared.setblocking(False)
    senders: list[socket.socket] = []
    subs: list[Subscription] = []
    try:
        for i, rx in enumerate(sinks):
            if layout == "own":
                tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                tx.setblocking(False)
                senders.append(tx)
            else:
                tx = shared
            engine: Fanout = "python" if path == "python" else "c"
            sub = pub.subscribe(f"s{i}", RTCRtpSender(kind, dtls), 1 << 20, engine=engine)
            sub.connect(
                tx,
                rx.getsockname(),
                srtp_session(),
                payload_type=CODECS[kind].payloadType or 0,
                extensions=b"",
            )
            subs.append(sub)
        source = frames(kind, size, per_frame)
        codec = CODECS[kind]
        # The first frame starts every subscriber (and moves them to the C fan-out).
        for _ in range(per_frame):
            pub.forward(next(source), codec)
        if pub.carried is not None:
            pub.carried.batch = path != "c-sendto"
        drain(sinks)
        forwarded = FORWARDED.packets
        sent_before = sum(sub.packets_sent for sub in subs)
        meter = MachineMeter([os.getpid()])
        meter.start()
        cpu = 0.0
        for done in range(packets):
            packet = next(source)
            started = time.process_time()
            pub.forward(packet, codec)
            cpu += time.process_time() - started
            if done % DRAIN_EVERY == DRAIN_EVERY - 1:
                drain(sinks)
        machine = meter.stop()
        sent = sum(sub.packets_sent for sub in subs) - sent_before
        if sent != FORWARDED.packets - forwarded or sent != n * packets:
            raise RuntimeError(f"{path}: sent {sent} of {n * packets} packets")
        return {
            "phase": "fanout",
            "path": path,
            "layout": layout,
            "kind": kind,
            "payload_bytes": size,
            "subscribers": n,
            "packets": sent,
            "carried_in_c": sum(sub.carried for sub in subs),
            "us_per_subscriber_packet": round(cpu / sent * 1e6, 3),
            "others_cpu_pct": machine.get("others_cpu_pct"),
        }
    finally:
        pub.close()
        for rx in sinks:
            rx.close()
        for tx in senders:
            tx.close()
        shared.close()


def summarize(lines: Sequence[dict[str, Any]]) -> dict[str, Any]:
    cost = {
        (line["path"], line["layout"], line["kind"], line["subscribers"]): line[
            "us_per_subscriber_packet"
        ]
        for line in lines
    }
    speedups: dict[str, dict[str, float]] = {}
    for (path, layout, kind, n), us in cost.items():
        python = cost.get(("python", layout, kind, n))
        if path != "python" and python:
            speedups.setdefault(f"{path}_{kind}_{layout}", {})[str(n)] = round(python / us, 2)
    video = [x for key, row in speedups.items() if key.startswith("c_video") for x in row.values()]
    passed = bool(video) and min(video) >= GOAL_SPEEDUP
    return {
        "phase": "summary",
        "speedup_c_over_python": speedups,
        "goals": {"video_speedup": {"target": GOAL_SPEEDUP, "pass": passed}},
        "pass": passed,
    }


async def measure(settings: Settings) -> list[dict[str, Any]]:
    lines: list[dict[str, Any]] = []
    for kind, size, per_frame in PAYLOADS:
        for layout in LAYOUTS:
            for n in settings.sizes:
                for path in settings.paths:
                    line = run(path, layout, kind, size, per_frame, n, settings.packets)
                    emit(line)
                    lines.append(line)
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    settings = parse_args(sys.argv[1:] if argv is None else argv)
    raise_nofile_limit()
    emit(
        {
            "phase": "start",
            "sizes": list(settings.sizes),
            "packets": settings.packets,
            "paths": list(settings.paths),
            "cores": os.cpu_count(),
        }
    )
    # The forwarder arms its keyframe timer on the running loop.
    lines = asyncio.run(measure(settings))
    emit(summarize(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
