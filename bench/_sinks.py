"""The large conference benchmark's pre-keyed SRTP sinks, bench side (`bench.conference
--sites N`; the server side is media.sink): one process holding a UDP socket per sink on the
clients' address, each with its own SRTP master key, that counts what the server sends it.

A sink counts per SSRC (one per slot the server fills: the spotlight's video, the voice in
an audio slot) the packets it received and the advance of their RTP sequence numbers, which
the server numbers without a gap (a source switch, a restart on a keyframe continue the
numbering), so `expected - received` is what was lost on the way, whatever the processes'
reading times. It notes when its first video packet came (the server sends a new
subscriber nothing before the first packet of a keyframe: that is its first frame), and
decrypts a sample of what it receives with its key (the first packet of each SSRC and every
`SAMPLE_EVERY`th), the proof that the server protected them with the sink's own keying.

The sockets are drained every `SWEEP_S` (each has a 1 MiB receive buffer: a sink gets about
200 kB/s), not woken per packet: at 300 sites the sinks receive about 45,000 packets a
second, and this process must take as little of the machine as it can.

Commands (bench._common.Worker): `open` (names: a socket and a key each; replies with the
ports and keys), `counts` (per sink its counters, and when they were read), `close` (names),
`stop`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from dataclasses import dataclass, field
from typing import Any, Final

from pylibsrtp import Error as SrtpError
from pylibsrtp import Session

from bench._common import BenchError, Reply, Worker, raise_nofile_limit
from bench._media import serve_commands
from media.sink import KEY_BYTES, PAYLOAD_TYPES, inbound_session

SWEEP_S: Final = 0.02
SAMPLE_EVERY: Final = 1000
RCVBUF: Final = 1 << 20
VIDEO_PT: Final = PAYLOAD_TYPES["video"]


@dataclass(eq=False)
class Sink:
    name: str
    sock: socket.socket
    key: bytes
    session: Session
    received: int = 0
    video: int = 0
    first_video_at: float | None = None
    decrypted: int = 0
    decrypt_failed: int = 0
    # Per SSRC: [received, first extended sequence number, highest].
    streams: dict[int, list[int]] = field(default_factory=dict)

    def expected(self) -> int:
        return sum(high - first + 1 for _, first, high in self.streams.values())

    def take(self, data: bytes, now: float) -> None:
        if len(data) < 12:
            return
        self.received += 1
        ssrc = int.from_bytes(data[8:12], "big")
        seq = int.from_bytes(data[2:4], "big")
        if data[1] & 0x7F == VIDEO_PT:
            self.video += 1
            if self.first_video_at is None:
                self.first_video_at = now
        stream = self.streams.get(ssrc)
        if stream is None:
            self.streams[ssrc] = [1, seq, seq]
            self._sample(data)
            return
        stream[0] += 1
        high = stream[2]
        ext = high + ((seq - high + 0x8000) & 0xFFFF) - 0x8000
        if ext > high:
            stream[2] = ext
            if stream[0] % SAMPLE_EVERY == 0:
                self._sample(data)
        elif ext < stream[1]:
            stream[1] = ext

    def _sample(self, data: bytes) -> None:
        try:
            self.session.unprotect(data)
        except SrtpError:
            self.decrypt_failed += 1
        else:
            self.decrypted += 1

    def counters(self) -> dict[str, Any]:
        return {
            "received": self.received,
            "expected": self.expected(),
            "video": self.video,
            "first_video_at": self.first_video_at,
            "decrypted": self.decrypted,
            "decrypt_failed": self.decrypt_failed,
        }


class _SinksWorker:
    def __init__(self, address: str) -> None:
        self.address = address
        self.sinks: dict[str, Sink] = {}
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep())

    async def _sweep(self) -> None:
        while True:
            now = time.monotonic()
            for sink in list(self.sinks.values()):
                sock = sink.sock
                take = sink.take
                with contextlib.suppress(BlockingIOError, OSError):
                    while True:
                        take(sock.recv(2048), now)
            await asyncio.sleep(SWEEP_S)

    async def run(self, cmd: str, args: dict[str, Any]) -> Reply:
        match cmd:
            case "open":
                opened: dict[str, Any] = {}
                for name in args["names"]:
                    if name in self.sinks:
                        raise BenchError(f"sink {name} is open already")
                    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
                    sock.bind((self.address, 0))
                    sock.setblocking(False)
                    key = os.urandom(KEY_BYTES)
                    self.sinks[name] = Sink(name, sock, key, inbound_session(key))
                    opened[name] = {"port": sock.getsockname()[1], "key": key.hex()}
                return {"opened": opened}
            case "counts":
                return {
                    "t": time.monotonic(),
                    "sinks": {name: s.counters() for name, s in self.sinks.items()},
                }
            case "close":
                for name in args["names"]:
                    sink = self.sinks.pop(name, None)
                    if sink is not None:
                        sink.sock.close()
                return {}
            case "stop":
                await self.close()
                return {}
        raise BenchError(f"unknown command {cmd!r}")

    async def close(self) -> None:
        self._sweeper.cancel()
        for sink in self.sinks.values():
            sink.sock.close()
        self.sinks.clear()


def _main(conn: Any, address: str) -> None:
    raise_nofile_limit()
    asyncio.run(serve_commands(conn, lambda: _SinksWorker(address)))


class SinkProcess(Worker):
    """The process of the sinks, on `address`."""

    def __init__(self, name: str, address: str) -> None:
        super().__init__(name, _main, address)


__all__ = ["SAMPLE_EVERY", "Sink", "SinkProcess"]
