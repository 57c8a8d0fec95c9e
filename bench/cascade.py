"""The cascade's hop between nodes: what one conference packet costs to cross, and how late.

`python -m bench.cascade [--rate 1000] [--seconds 3]`

One process runs two real `media.cascade.CascadeGateway`s (nodes n1, the conference's home,
and n2) on 127.0.0.1, each beside a real AF_UNIX fabric socket standing for its node's
router worker. The n1 "router" sends a spotlight's packets (1,100-byte payloads, its send
time inside) at `--rate` per second to its gateway, which seals (AES-256-GCM) and sends each
over UDP; n2's gateway checks and opens it and hands it to n2's "router". The same packets
are also sent over the fabric alone (router to router, one AF_UNIX hop: how workers of one
node exchange them), for comparison.

Lines: one per path (`path`: "fabric" or "cascade") with `us_per_packet` (this process's CPU
per packet for the whole path, both ends: both gateways run here), `latency_p50_us`,
`latency_p99_us` (send to arrival at the far router) and `delivery`; then a summary with
`extra_us_per_packet` and `extra_latency_p50_us` (cascade less fabric), `seal_open_us` (seal
and open alone, no sockets) and `contended` (others used more than a fifth of a core).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import resource
import socket
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import structlog

from bench._common import MachineMeter, emit, percentile, rounded
from media import cascade_frames as cf
from media.cascade import CascadeGateway
from media.fabric import Fabric, FabricEndpoint
from media.fabric_frames import decode, encode_packet

CONFERENCE: Final = "bench-conf"
PAYLOAD_BYTES: Final = 1100
CONTENDED_PCT: Final = 20.0
_TICK_S: Final = 0.005


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _packet(sequence: int) -> bytes:
    stamp = time.perf_counter_ns().to_bytes(8, "big")
    return encode_packet(
        0,
        CONFERENCE.encode(),
        b"spot:video",
        sequence_number=sequence & 0xFFFF,
        timestamp=sequence * 3000 & 0xFFFFFFFF,
        marker=False,
        payload_type=96,
        keyframe_start=False,
        audio_level=None,
        payload=stamp + bytes(PAYLOAD_BYTES - 8),
    )


class _Router:
    """A fabric socket at a worker's path; records each packet's latency on arrival."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.sock.bind(path)
        self.path = path
        self.latencies_us: list[float] = []
        # Set once `want` packets have arrived.
        self.want = 0
        self.arrived = asyncio.Event()

    def listen(self) -> None:
        asyncio.get_running_loop().add_reader(self.sock.fileno(), self._readable)

    def _readable(self) -> None:
        for _ in range(64):
            try:
                data = self.sock.recv(4096)
            except BlockingIOError:
                return
            frame = decode(data)
            payload = getattr(frame, "payload", b"")
            sent = int.from_bytes(payload[:8], "big")
            self.latencies_us.append((time.perf_counter_ns() - sent) / 1000)
            if self.want and len(self.latencies_us) >= self.want:
                self.arrived.set()

    def close(self) -> None:
        asyncio.get_running_loop().remove_reader(self.sock.fileno())
        self.sock.close()


async def _pace(send: Any, rate: int, seconds: float) -> int:
    """Call `send(i)` `rate` times a second for `seconds`; how many were sent."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    sent = 0
    while (now := loop.time()) - start < seconds:
        due = int((now - start) * rate) + 1
        while sent < due:
            send(sent)
            sent += 1
        await asyncio.sleep(_TICK_S)
    return sent


async def _drain(router: _Router, sent: int) -> None:
    """Wait (at most 2 s) for the packets still on their way; the rest count as lost."""
    router.want = sent
    if len(router.latencies_us) >= sent:
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(router.arrived.wait(), 2.0)


def _line(path: str, router: _Router, sent: int, cpu: float, rate: int) -> dict[str, Any]:
    lat = router.latencies_us
    return {
        "path": path,
        "rate": rate,
        "sent": sent,
        "us_per_packet": rounded(cpu * 1e6 / max(1, sent), 2),
        "latency_p50_us": rounded(percentile(lat, 50), 1),
        "latency_p99_us": rounded(percentile(lat, 99), 1),
        "delivery": rounded(len(lat) / max(1, sent), 4),
    }


async def _run(rate: int, seconds: float, workdir: Path) -> list[dict[str, Any]]:
    lines: list[dict[str, Any]] = []
    # The fabric alone: router to router over one AF_UNIX hop (media.fabric, as workers).
    near = Fabric(FabricEndpoint(0, str(workdir / "near"), {1: str(workdir / "far")}))
    far = _Router(str(workdir / "far"))
    near.open()
    far.listen()
    cpu0 = _cpu_s()
    sent = await _pace(lambda i: near.send(1, _packet(i)), rate, seconds)
    await _drain(far, sent)
    lines.append(_line("fabric", far, sent, _cpu_s() - cpu0, rate))
    near.close()
    far.close()

    receiver = _Router(str(workdir / "n2-w0"))
    sender = Fabric(FabricEndpoint(0, str(workdir / "n1-w0"), {1: str(workdir / "n1-gw")}))
    gateways = {
        n: CascadeGateway(
            node_id=n,
            index=1,
            path=str(workdir / f"{n}-gw"),
            workers={0: str(workdir / f"{n}-w0")},
            host="127.0.0.1",
        )
        for n in ("n1", "n2")
    }
    for gateway in gateways.values():
        gateway.open()
    plan = cf.CascadePlan(
        home="n1",
        sites={"spot": "n1", "site": "n2"},
        addresses={n: g.address() for n, g in gateways.items()},
        key=os.urandom(cf.KEY_BYTES),
    )
    for gateway in gateways.values():
        gateway.place(CONFERENCE, plan, 0)
    sender.open()
    receiver.listen()
    cpu0 = _cpu_s()
    sent = await _pace(lambda i: sender.send(1, _packet(i)), rate, seconds)
    await _drain(receiver, sent)
    line = _line("cascade", receiver, sent, _cpu_s() - cpu0, rate)
    line["dropped"] = {n: dict(g.dropped) for n, g in gateways.items()}
    lines.append(line)
    for gateway in gateways.values():
        gateway.close()
    receiver.close()
    sender.close()
    return lines


def _seal_open_us(count: int = 20_000) -> float:
    """Seal, parse and open one 1,100-byte packet's frame, no sockets: the crypto's share."""
    key = os.urandom(cf.KEY_BYTES)
    stream = os.urandom(cf.STREAM_BYTES)
    sealer = cf.Sealer(key, CONFERENCE, "n1", stream)
    opener = cf.stream_key(key, b"n1", stream)
    frame = _packet(1)
    started = time.perf_counter()
    for _ in range(count):
        data = sealer.seal(frame)
        cf.open_sealed(opener, cf.header(data), data)
    return (time.perf_counter() - started) * 1e6 / count


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.cascade", description=__doc__)
    parser.add_argument("--rate", type=int, default=1000, help="packets per second")
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args(argv)
    # Only JSON lines on stdout.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    meter = MachineMeter([os.getpid()])
    meter.start()
    with tempfile.TemporaryDirectory(prefix="cc-bc-") as workdir:
        lines = asyncio.run(_run(args.rate, args.seconds, Path(workdir)))
    machine = meter.stop()
    for line in lines:
        emit(line)
    fabric, cascade = lines
    summary = {
        "phase": "summary",
        "rate": args.rate,
        "fabric_us_per_packet": fabric["us_per_packet"],
        "cascade_us_per_packet": cascade["us_per_packet"],
        "extra_us_per_packet": rounded(cascade["us_per_packet"] - fabric["us_per_packet"], 2),
        "extra_latency_p50_us": rounded(cascade["latency_p50_us"] - fabric["latency_p50_us"], 1),
        "extra_latency_p99_us": rounded(cascade["latency_p99_us"] - fabric["latency_p99_us"], 1),
        "seal_open_us": rounded(_seal_open_us(), 2),
        "delivery": cascade["delivery"],
        "others_cpu_pct": machine.get("others_cpu_pct"),
        "contended": float(machine.get("others_cpu_pct", 0.0)) > CONTENDED_PCT,
    }
    emit(summary)


if __name__ == "__main__":
    main()
