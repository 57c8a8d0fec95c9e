"""The fabric's hand-off cost: what one conference packet costs the router and each worker.

`python -m bench.fabric [--workers 1 2 3] [--rate 1000] [--seconds 3]`

Separate processes, each with the real `media.fabric.Fabric` and `media.span.ConferenceSpan`
(the code the media workers run, without peer connections): a source worker sends a
spotlight's packets (1,100-byte payloads) at `--rate` per second to the home worker, whose
router checks each against the stage, feeds its own RemotePublication and sends one copy to
each of W other workers; each of those decodes it and feeds its RemotePublication (with no
subscribers: the per-subscriber cost is media.forwarder's, measured by bench.relay). Every
process reports its own CPU time (user + system) for the run.

One JSON line per W, then a summary line: `router_us_per_packet` (router CPU per packet in,
all copies included), `router_us_per_copy`, `worker_us_per_packet` (a receiving worker's CPU
per packet), `source_us_per_packet` (the exporting side: encode and send),
`codec_us_per_packet` (encode + decode + resend in one process, no sockets), and
`delivery_min` (the worst worker's share of the packets the source sent).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import resource
import tempfile
import time
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Final

from bench._common import emit, rounded
from media.fabric import Fabric, FabricEndpoint
from media.fabric_frames import decode, encode_packet, resend
from media.placement import Placement
from media.settings import MediaConfig
from media.span import ConferenceSpan
from signalling.core.actions import Stage

CONFERENCE: Final = "bench-conf"
PUBLISHER: Final = "pub"
PAYLOAD: Final = bytes(range(256)) * 4 + bytes(76)  # 1,100 bytes
HOME: Final = 0
SOURCE: Final = 1
# Sends per tick of the source's pacing.
_TICK_S: Final = 0.005


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _where(workers: int) -> dict[str, int]:
    where = {PUBLISHER: SOURCE}
    where.update({f"site{i}": i for i in range(2, 2 + workers)})
    return where


async def _run_worker(
    index: int, paths: dict[int, str], workers: int, seconds: float, rate: int, report: Connection
) -> None:
    siblings = {i: p for i, p in paths.items() if i != index}
    fabric = Fabric(FabricEndpoint(index, paths[index], siblings))
    fabric.open()
    config = MediaConfig(conference_rollin_s=0.0)
    span = ConferenceSpan(
        conference_id=CONFERENCE,
        fabric=fabric,
        config=config,
        clock=time.monotonic,
        room=lambda: None,
    )
    span.stage = Stage(audible=(), spotlight=PUBLISHER, moderators=())
    report.send("ready")
    report.recv()  # every socket is bound
    span.place(Placement(index, HOME, _where(workers)))
    span.stage = Stage(audible=(), spotlight=PUBLISHER, moderators=())
    report.send("placed")
    report.recv()  # every worker has said it has sites
    cpu0 = _cpu_s()
    sent = 0
    if index == SOURCE:
        conf, track = CONFERENCE.encode(), f"{PUBLISHER}:video".encode()
        start = time.monotonic()
        per_tick = max(1, int(rate * _TICK_S))
        seq = 0
        while (now := time.monotonic()) - start < seconds:
            for _ in range(per_tick):
                data = encode_packet(
                    SOURCE,
                    conf,
                    track,
                    sequence_number=seq & 0xFFFF,
                    timestamp=(seq * 3000) & 0xFFFFFFFF,
                    marker=seq % 5 == 4,
                    payload_type=96,
                    keyframe_start=seq % 300 == 0,
                    audio_level=None,
                    payload=PAYLOAD,
                )
                fabric.send(HOME, data)
                seq += 1
            sent = seq
            await asyncio.sleep(max(0.0, start + seq / rate - time.monotonic()))
        # Let the queues drain before counting.
        await asyncio.sleep(0.5)
        del now
    else:
        await asyncio.sleep(seconds + 1.0)
    cpu = _cpu_s() - cpu0
    remote = span.remote.get(f"{PUBLISHER}:video")
    report.send(
        {
            "index": index,
            "cpu_s": cpu,
            "sent": sent,
            "received": remote.packets_received if remote is not None else 0,
            "relayed": span.relayed,
            "dropped": dict(fabric.dropped),
        }
    )
    span.close()
    fabric.close()


def _worker(
    index: int, paths: dict[int, str], workers: int, seconds: float, rate: int, report: Connection
) -> None:
    asyncio.run(_run_worker(index, paths, workers, seconds, rate, report))


Spawn = Callable[[int, dict[int, str], Connection], tuple[Callable[..., None], tuple[Any, ...]]]


def run_fabric_processes(prefix: str, indices: list[int], spawn: Spawn) -> dict[int, Any]:
    """One process per fabric index, each with its socket path in a private directory; the
    two steps each reports ("ready", "placed") are waited for across all of them before all
    are told to go, then their results are gathered (bench.open_audio runs the same way)."""
    ctx = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix=prefix) as directory:
        paths = {i: str(Path(directory) / f"w{i}.sock") for i in indices}
        pipes: dict[int, Connection] = {}
        procs = []
        for i in indices:
            parent, child = ctx.Pipe()
            target, args = spawn(i, paths, child)
            proc = ctx.Process(target=target, args=args)
            proc.start()
            pipes[i] = parent
            procs.append(proc)
        for step in ("ready", "placed"):
            for pipe in pipes.values():
                assert pipe.recv() == step
            if step == "placed":
                time.sleep(0.2)  # the SITES frames reach home
            for pipe in pipes.values():
                pipe.send("go")
        results = {i: pipe.recv() for i, pipe in pipes.items()}
        for proc in procs:
            proc.join(10)
    return results


def handoff(workers: int, seconds: float, rate: int) -> dict[str, Any]:
    """One run: a source, the router and `workers` receiving workers, each a process."""
    indices = [HOME, SOURCE, *range(2, 2 + workers)]
    results = run_fabric_processes(
        "fabric-bench-",
        indices,
        lambda i, paths, report: (_worker, (i, paths, workers, seconds, rate, report)),
    )
    sent = results[SOURCE]["sent"]
    router = results[HOME]
    receivers = [results[i] for i in range(2, 2 + workers)]
    copies = max(1, router["relayed"])
    return {
        "phase": "handoff",
        "workers": workers,
        "rate": rate,
        "packets": sent,
        "router_us_per_packet": rounded(router["cpu_s"] / max(1, sent) * 1e6, 2),
        "router_us_per_copy": rounded(router["cpu_s"] / copies * 1e6, 2),
        "worker_us_per_packet": rounded(
            max(r["cpu_s"] / max(1, r["received"]) for r in receivers) * 1e6, 2
        ),
        "source_us_per_packet": rounded(results[SOURCE]["cpu_s"] / max(1, sent) * 1e6, 2),
        "delivery_min": rounded(min(r["received"] for r in receivers) / max(1, sent), 4),
        "dropped": {str(i): r["dropped"] for i, r in results.items() if r["dropped"]},
    }


def codec_cost(packets: int = 20_000) -> float:
    """Microseconds per packet to encode, decode and resend a frame, in one process."""
    conf, track = CONFERENCE.encode(), f"{PUBLISHER}:video".encode()
    start = time.perf_counter()
    for seq in range(packets):
        data = encode_packet(
            SOURCE,
            conf,
            track,
            sequence_number=seq & 0xFFFF,
            timestamp=seq,
            marker=False,
            payload_type=96,
            keyframe_start=False,
            audio_level=None,
            payload=PAYLOAD,
        )
        decode(data)
        resend(data, HOME)
    return (time.perf_counter() - start) / packets * 1e6


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fabric", description=__doc__)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--rate", type=int, default=1000, help="packets per second in")
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args(argv)
    emit({"phase": "start", "workers": args.workers, "rate": args.rate, "seconds": args.seconds})
    runs = []
    for workers in args.workers:
        run = handoff(workers, args.seconds, args.rate)
        emit(run)
        runs.append(run)
    emit(
        {
            "phase": "summary",
            "codec_us_per_packet": rounded(codec_cost(), 2),
            "router_us_per_packet": max(r["router_us_per_packet"] for r in runs),
            "router_us_per_copy": max(r["router_us_per_copy"] for r in runs),
            "worker_us_per_packet": max(r["worker_us_per_packet"] for r in runs),
            "source_us_per_packet": max(r["source_us_per_packet"] for r in runs),
            "delivery_min": min(r["delivery_min"] for r in runs),
        }
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
