"""Media worker processes benchmark: `python -m bench.workers [--quick] [options]`.

Prints one JSON line per phase; the LAST line is the summary. Everything runs on 127.0.0.1
against `commandcenter serve` (docs/media.md, *Worker processes*), with aiortc clients in
this process:

- `calls`, once with `media.workers = 0` (media in the server's process) and once with
  `--workers` (2): `--calls` (6) calls answered one after the other, each officer publishing
  video and audio, each operator audio. `offer_ms`: an officer's offer sent to the server's
  answer received (through the worker: one more hop each way); `first_frame_s`: the call
  accepted to the operator's first decoded video frame; `spread`: calls per worker, as
  /healthz reports them.
- `restart`: one call through `--workers` workers; the call's worker is SIGKILLed `--kills`
  (5) times, each once the killed one is back (/readyz). `kill_to_frame_s`: the kill to the
  operator's first video frame on its new peer connection (both members told
  `media_restart`, offering again, the server answering from another worker).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import signal
import statistics
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
from aiortc import MediaStreamTrack, RTCPeerConnection
from aiortc.mediastreams import AudioStreamTrack, MediaStreamError, VideoStreamTrack

from bench._common import BenchError, ServerProcess, emit, free_port
from bench._media import CcClient, TargetSpec, new_peer_connection, restrict_ice
from commandcenter.auth import Role

COURT = "P0101"
ADDRESS = "127.0.0.1"
FRAME_TIMEOUT_S = 20.0


def serve(workdir: Path, workers: int, secret: str) -> ServerProcess:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMMANDCENTER_")}
    env |= {
        "COMMANDCENTER_SERVER_DATA_DIR": str(workdir / f"data-{workers}"),
        "COMMANDCENTER_AUTH_JWT_SECRET": secret,
        "COMMANDCENTER_LOGGING_LEVEL": "warning",
        "COMMANDCENTER_MEDIA_ICE_ADDRESSES": ADDRESS,
        "COMMANDCENTER_MEDIA_WORKERS": str(workers),
        "COMMANDCENTER_MEDIA_RECORD": "false",
    }
    argv = [sys.executable, "-m", "commandcenter", "serve", "--host", ADDRESS]
    return ServerProcess(
        [*argv, "--port", str(port)],
        port=port,
        env=env,
        log_path=workdir / f"server-{workers}.log",
        ready_path="/readyz",
    )


def health(server: ServerProcess, path: str = "/healthz") -> dict[str, Any]:
    try:
        with urllib.request.urlopen(f"http://{ADDRESS}:{server.port}{path}", timeout=5) as resp:
            body: dict[str, Any] = json.loads(resp.read())
            return body
    except urllib.error.HTTPError as exc:
        return {"status": exc.code}


class Party:
    """One member of a call: its hub client and the first video frame it decodes."""

    def __init__(
        self, http: aiohttp.ClientSession, spec: TargetSpec, user: str, role: Role, video: bool
    ) -> None:
        self.video = video
        self.client = CcClient(http, spec, user, role, COURT, self._new_pc())
        self.first_frame = asyncio.Event()
        self._watching: set[asyncio.Task[None]] = set()
        self.restarted = asyncio.Event()
        self.pushes: list[dict[str, Any]] = []
        self.client.on_push = self._push

    def _new_pc(self) -> RTCPeerConnection:
        pc = new_peer_connection()
        tracks: list[MediaStreamTrack] = [AudioStreamTrack()]
        if self.video:
            tracks.append(VideoStreamTrack())
        for track in tracks:
            pc.addTransceiver(track, direction="sendrecv")
        self.first_frame = asyncio.Event()

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            if track.kind == "video":
                task = asyncio.ensure_future(self._watch(track, self.first_frame))
                self._watching.add(task)
                task.add_done_callback(self._watching.discard)

        return pc

    async def _watch(self, track: MediaStreamTrack, seen: asyncio.Event) -> None:
        try:
            await track.recv()
            seen.set()
        except MediaStreamError:
            return

    def _push(self, msg: dict[str, Any]) -> None:
        self.pushes.append(msg)
        if msg.get("type") == "media_restart":
            self.restarted.set()

    async def restart(self, call_id: str) -> None:
        """What a client does on `media_restart`: a new peer connection, offered again."""
        for sender in self.client.pc.getSenders():
            sender.replaceTrack(None)
        await self.client.pc.close()
        self.client.pc = self._new_pc()
        self.restarted.clear()
        await self.client.offer(call_id)

    async def close(self) -> None:
        await self.client.pc.close()
        await self.client.close()


async def wait_for(
    predicate: Callable[[], bool], what: str, within: float = FRAME_TIMEOUT_S
) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise BenchError(f"{what}: not within {within:g} s")
        await asyncio.sleep(0.01)


async def answered_call(
    http: aiohttp.ClientSession, spec: TargetSpec, n: int
) -> tuple[Party, Party, str, float, float]:
    """Call `n`: (officer, operator, call id, offer ms, seconds from accept to first frame)."""
    officer = Party(http, spec, f"o-{n}", Role.OFFICER, video=True)
    operator = Party(http, spec, f"op-{n}", Role.OPERATOR, video=False)
    await officer.client.connect()
    await operator.client.connect()
    placed = await officer.client.request({"type": "call_center"})
    call_id = str(placed["call_id"])
    await wait_for(lambda: any(m.get("type") == "call_ringing" for m in operator.pushes), "ringing")
    accepted = time.monotonic()
    await operator.client.request({"type": "accept", "call_id": call_id})
    sent = time.monotonic()
    await officer.client.offer(call_id)
    offer_ms = (time.monotonic() - sent) * 1000.0
    await operator.client.offer(call_id)
    await asyncio.wait_for(operator.first_frame.wait(), FRAME_TIMEOUT_S)
    return officer, operator, call_id, offer_ms, time.monotonic() - accepted


async def calls_phase(workdir: Path, workers: int, calls: int, secret: str) -> dict[str, Any]:
    server = serve(workdir, workers, secret)
    server.start(timeout_s=60.0)
    parties: list[Party] = []
    try:
        spec = TargetSpec(
            kind="commandcenter", port=server.port, ice_address=ADDRESS, secret=secret
        )
        offers, firsts = [], []
        async with aiohttp.ClientSession() as http:
            for n in range(calls):
                officer, operator, _, offer_ms, first_s = await answered_call(http, spec, n)
                parties += [officer, operator]
                offers.append(offer_ms)
                firsts.append(first_s)
            await asyncio.sleep(1.5)  # one load report from every worker
            report = health(server)
            spread = [w["rooms"] for w in report.get("media_workers", [])] or [
                report.get("media_rooms")
            ]
            for party in parties:
                await party.close()
    finally:
        server.stop()
    return {
        "phase": "calls",
        "workers": workers,
        "calls": calls,
        "offer_ms_median": round(statistics.median(offers), 2),
        "offer_ms_max": round(max(offers), 2),
        "first_frame_s_median": round(statistics.median(firsts), 3),
        "spread": spread,
    }


async def restart_phase(
    workdir: Path, workers: int, kills: int, secret: str
) -> list[dict[str, Any]]:
    server = serve(workdir, workers, secret)
    server.start(timeout_s=60.0)
    lines: list[dict[str, Any]] = []
    try:
        spec = TargetSpec(
            kind="commandcenter", port=server.port, ice_address=ADDRESS, secret=secret
        )
        async with aiohttp.ClientSession() as http:
            officer, operator, call_id, _, _ = await answered_call(http, spec, 0)
            try:
                for k in range(kills):
                    await wait_for(
                        lambda: health(server, "/readyz").get("ready") is True,
                        "every worker ready",
                        30.0,
                    )
                    await asyncio.sleep(1.5)  # the call's worker has reported its room

                    def busy() -> list[int]:
                        workers_now = health(server).get("media_workers", [])
                        return [int(w["pid"]) for w in workers_now if w["rooms"]]

                    await wait_for(lambda: bool(busy()), "the call's worker", 10.0)
                    killed = time.monotonic()
                    os.kill(busy()[0], signal.SIGKILL)
                    await asyncio.wait_for(officer.restarted.wait(), FRAME_TIMEOUT_S)
                    await asyncio.wait_for(operator.restarted.wait(), FRAME_TIMEOUT_S)
                    told = time.monotonic() - killed
                    await officer.restart(call_id)
                    await operator.restart(call_id)
                    await asyncio.wait_for(operator.first_frame.wait(), FRAME_TIMEOUT_S)
                    line = {
                        "phase": "restart",
                        "workers": workers,
                        "kill": k + 1,
                        "told_s": round(told, 3),
                        "kill_to_frame_s": round(time.monotonic() - killed, 3),
                    }
                    emit(line)
                    lines.append(line)
            finally:
                await officer.close()
                await operator.close()
    finally:
        server.stop()
    return lines


async def main_async(args: argparse.Namespace) -> None:
    secret = secrets.token_urlsafe(32)
    restrict_ice(ADDRESS)
    with tempfile.TemporaryDirectory(prefix="bench-workers-") as tmp:
        workdir = Path(tmp)
        calls = [await calls_phase(workdir, n, args.calls, secret) for n in (0, args.workers)]
        for line in calls:
            emit(line)
        restarts = await restart_phase(workdir, args.workers, args.kills, secret)
    times = [line["kill_to_frame_s"] for line in restarts]
    emit(
        {
            "phase": "summary",
            "workers": args.workers,
            "cores": len(os.sched_getaffinity(0)),
            "offer_ms_in_process": calls[0]["offer_ms_median"],
            "offer_ms_workers": calls[1]["offer_ms_median"],
            "spread": calls[1]["spread"],
            "kill_to_frame_s_median": round(statistics.median(times), 3),
            "kill_to_frame_s_max": max(times),
        }
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bench.workers", description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--calls", type=int, default=6)
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="2 calls, 1 kill")
    args = parser.parse_args(argv)
    if args.quick:
        args.calls, args.kills = 2, 1
    if args.workers < 1:
        parser.error("--workers: at least 1")
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
