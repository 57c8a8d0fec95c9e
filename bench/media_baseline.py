"""aiortc's MediaRelay as a media server: the baseline `bench.relay` compares ours with.

One publisher, any number of subscribers, each with one peer connection to this server,
negotiated over HTTP: `POST /publish` and `POST /subscribe` take the client's offer as
`{"sdp": ..., "type": "offer"}` and answer with the server's. The publisher's video track is
handed to every subscriber through `MediaRelay.subscribe`, which is how aiortc's examples
relay: the server decodes the publisher's video once and encodes it once per subscriber.
That cost is the point of the comparison.

Run as `python -m bench.media_baseline --port P --ice-address A`; `GET /healthz` answers
once it listens.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
from collections.abc import Sequence

from aiohttp import web
from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.contrib.media import MediaRelay

from media.ice import use_addresses


class Baseline:
    def __init__(self) -> None:
        self.relay = MediaRelay()
        self.source: MediaStreamTrack | None = None
        self.pcs: set[RTCPeerConnection] = set()

    def _new_pc(self) -> RTCPeerConnection:
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.pcs.add(pc)

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            if pc.connectionState in ("failed", "closed"):
                self.pcs.discard(pc)
                await pc.close()

        return pc

    async def publish(self, request: web.Request) -> web.Response:
        offer = await _offer(request)
        pc = self._new_pc()

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            if track.kind == "video":
                self.source = track

        await pc.setRemoteDescription(offer)
        return await _answer(pc)

    async def subscribe(self, request: web.Request) -> web.Response:
        if self.source is None:
            raise web.HTTPConflict(text="nobody publishes")
        offer = await _offer(request)
        pc = self._new_pc()
        await pc.setRemoteDescription(offer)
        # The offer's recvonly video transceiver takes the relayed track; unbuffered, so a
        # subscriber whose encoder lags skips frames instead of queueing them.
        pc.addTrack(self.relay.subscribe(self.source, buffered=False))
        return await _answer(pc)

    async def close(self) -> None:
        await asyncio.gather(*(pc.close() for pc in self.pcs), return_exceptions=True)
        self.pcs.clear()


async def _offer(request: web.Request) -> RTCSessionDescription:
    body = await request.json()
    if body.get("type") != "offer" or not isinstance(body.get("sdp"), str):
        raise web.HTTPBadRequest(text="expected {sdp, type: offer}")
    return RTCSessionDescription(sdp=body["sdp"], type="offer")


async def _answer(pc: RTCPeerConnection) -> web.Response:
    await pc.setLocalDescription(await pc.createAnswer())
    answer = pc.localDescription
    assert answer is not None
    return web.json_response({"sdp": answer.sdp, "type": answer.type})


async def _healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def _serve(port: int) -> None:
    baseline = Baseline()
    app = web.Application()
    app.router.add_post("/publish", baseline.publish)
    app.router.add_post("/subscribe", baseline.subscribe)
    app.router.add_get("/healthz", _healthz)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(baseline.close(), 5.0)
        await runner.cleanup()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.media_baseline", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument(
        "--ice-address", required=True, help="the address offered as the host candidate"
    )
    args = parser.parse_args(argv)
    use_addresses([args.ice_address])
    asyncio.run(_serve(args.port))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
