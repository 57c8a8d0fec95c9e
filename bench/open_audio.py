"""An open discussion's audio at the conference's home worker, with and without the workers'
preselection (media.loudest, `media.open_audio_preselect`).

`python -m bench.open_audio [--sites 60] [--workers 2] [--speakers 6] [--seconds 5]
[--no-preselect]`

Separate processes, each with the real `media.fabric.Fabric` and `media.span.ConferenceSpan`
(the code the media workers run, without peer connections): home (worker 0, the router, no
sites of its own) and `--workers` site workers, the sites spread over them round-robin. Each
site worker plays its sites' microphones as Opus would: one 80-byte packet per site every
20 ms with its RFC 6464 level, into the span's export sink (what a site's Publication calls).
`--speakers` sites speak at once at different levels (who speaks moves on every 2 s), the
rest are silent (level 127). Home routes what comes: checks, feeds its RemotePublication,
relays one copy to each other site worker. With `--no-preselect` every site's packets go
home, as before the preselection.

One JSON line: `home_cores` (home's CPU seconds per second), `home_packets_in_per_s`,
`home_audio_sites` (sites whose audio home took), `site_packets_per_s` (played by all sites),
`held_back_per_s` (kept on their workers), `voices_from_workers` (site workers whose VOICES
frames home took).
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import time
from collections.abc import Sequence
from multiprocessing.connection import Connection
from typing import Any, Final

from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import RtpPacket

from bench._common import emit, rounded
from bench.fabric import run_fabric_processes
from media.fabric import Fabric, FabricEndpoint
from media.forwarder import Publication
from media.placement import Placement
from media.settings import MediaConfig
from media.span import ConferenceSpan
from signalling.core.actions import Stage

CONFERENCE: Final = "bench-open"
HOME: Final = 0
PACKET_S: Final = 0.02
PAYLOAD: Final = bytes(range(80))
OPUS: Final = RTCRtpCodecParameters(
    mimeType="audio/opus", clockRate=48000, channels=2, payloadType=111
)
STAGE: Final = Stage(audible=(), spotlight=None, moderators=(), open=True)
# Who speaks moves on this often.
TURN_S: Final = 2.0


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _where(sites: int, workers: int) -> dict[str, int]:
    return {f"site{i:03d}": 1 + i % workers for i in range(sites)}


def _level(site: int, turn: int, sites: int, speakers: int) -> tuple[bool, int]:
    """Site `site`'s level in turn `turn`: `speakers` consecutive sites speak, each 4 dB
    quieter than the one before; the others are silent."""
    rank = (site - turn * speakers) % sites
    if rank < speakers:
        return True, 10 + 4 * rank
    return False, 127


async def _run(index: int, paths: dict[int, str], args: dict[str, Any], report: Connection) -> None:
    siblings = {i: p for i, p in paths.items() if i != index}
    fabric = Fabric(FabricEndpoint(index, paths[index], siblings))
    fabric.open()
    config = MediaConfig(conference_rollin_s=0.0, open_audio_preselect=args["preselect"])
    span = ConferenceSpan(
        conference_id=CONFERENCE,
        fabric=fabric,
        config=config,
        clock=time.monotonic,
        room=lambda: None,
    )
    where = _where(args["sites"], args["workers"])
    report.send("ready")
    report.recv()  # every socket is bound
    span.place(Placement(index, HOME, where), STAGE)
    report.send("placed")
    report.recv()  # every worker has said it has sites
    own = sorted(int(u[4:]) for u, w in where.items() if w == index)
    sinks = []
    for site in own:
        pub = Publication(
            owner=f"site{site:03d}",
            kind="audio",
            receiver=None,
            keyframe_interval=config.keyframe_interval_s,
            clock=time.monotonic,
        )
        sinks.append((site, span.export_sink(pub)))
    cpu0 = _cpu_s()
    played = 0
    start = time.monotonic()
    seconds, sites, speakers = args["seconds"], args["sites"], args["speakers"]
    if own:
        tick = 0
        while (now := time.monotonic()) - start < seconds:
            turn = int((now - start) // TURN_S)
            for site, sink in sinks:
                packet = RtpPacket(
                    payload_type=111,
                    sequence_number=tick & 0xFFFF,
                    timestamp=(tick * 960) & 0xFFFFFFFF,
                    ssrc=site + 1,
                    payload=PAYLOAD,
                )
                packet.extensions.audio_level = _level(site, turn, sites, speakers)
                sink(packet, OPUS, now)
                played += 1
            tick += 1
            await asyncio.sleep(max(0.0, start + tick * PACKET_S - time.monotonic()))
    else:
        await asyncio.sleep(seconds)
    elapsed = time.monotonic() - start
    cpu = _cpu_s() - cpu0
    # Let the queues drain before counting.
    await asyncio.sleep(0.5)
    report.send(
        {
            "index": index,
            "cpu_s": cpu,
            "elapsed_s": elapsed,
            "played": played,
            "held_back": sum(span.held_back.values()),
            "audio_in": sum(span.audio_in.values()),
            "audio_sites": len(span.audio_in),
            "voices": len(span.voices),
            "dropped": dict(fabric.dropped),
        }
    )
    span.close()
    fabric.close()


def _process(index: int, paths: dict[int, str], args: dict[str, Any], report: Connection) -> None:
    asyncio.run(_run(index, paths, args, report))


def measure(
    sites: int, workers: int, speakers: int, seconds: float, preselect: bool
) -> dict[str, Any]:
    """One run: home and `workers` site workers, each a process."""
    args = {
        "sites": sites,
        "workers": workers,
        "speakers": speakers,
        "seconds": seconds,
        "preselect": preselect,
    }
    indices = [HOME, *range(1, 1 + workers)]
    results = run_fabric_processes(
        "open-audio-", indices, lambda i, paths, report: (_process, (i, paths, args, report))
    )
    home = results[HOME]
    others = [results[i] for i in indices if i != HOME]
    elapsed = max(home["elapsed_s"], 1e-9)
    return {
        "phase": "open_audio",
        "sites": sites,
        "workers": workers,
        "speakers": speakers,
        "preselect": preselect,
        "seconds": rounded(elapsed, 2),
        "home_cores": rounded(home["cpu_s"] / elapsed, 4),
        "home_packets_in_per_s": rounded(home["audio_in"] / elapsed, 1),
        "home_audio_sites": home["audio_sites"],
        "site_packets_per_s": rounded(sum(r["played"] for r in others) / elapsed, 1),
        "held_back_per_s": rounded(sum(r["held_back"] for r in others) / elapsed, 1),
        "voices_from_workers": home["voices"],
        "dropped": {str(i): r["dropped"] for i, r in results.items() if r["dropped"]},
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.open_audio", description=__doc__)
    parser.add_argument("--sites", type=int, default=60)
    parser.add_argument("--workers", type=int, default=2, help="site workers besides home")
    parser.add_argument("--speakers", type=int, default=6, help="sites speaking at once")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument(
        "--no-preselect",
        action="store_true",
        help="media.open_audio_preselect = false: every site's audio goes home",
    )
    args = parser.parse_args(argv)
    if not 1 <= args.sites <= 1000 or not 1 <= args.workers <= 16:
        parser.error("--sites is 1 to 1000, --workers 1 to 16")
    if not 0 <= args.speakers <= args.sites or not 0 < args.seconds <= 600:
        parser.error("--speakers is 0 to --sites, --seconds above 0 up to 600")
    emit(measure(args.sites, args.workers, args.speakers, args.seconds, not args.no_preselect))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
