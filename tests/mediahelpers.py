"""Call members with real aiortc media against the server under test: the hub's
negotiation messages carried by the test WebSocket client (tests.wsclient)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from media.client import MediaClient
from tests.wsclient import Client

CALL_TIMEOUT = 10.0


class Member:
    """A signed-in client and its media for one call."""

    def __init__(self, ws: Client, call_id: str, tracks: Sequence[MediaStreamTrack]) -> None:
        self.ws = ws
        self.call_id = call_id
        self.media = MediaClient(tracks)

    async def join(self) -> None:
        """Offer our tracks and apply the server's answer."""
        sdp = await self.media.offer()
        answer = await self.ws.request("offer", reply="answer", call_id=self.call_id, sdp=sdp)
        await self.media.accept_answer(answer["sdp"])

    async def renegotiate(self) -> dict[str, Any]:
        """Answer the server's next offer; returns the ack."""
        offer = await self.ws.expect("offer", CALL_TIMEOUT, call_id=self.call_id)
        sdp = await self.media.answer_offer(offer["sdp"])
        return await self.ws.request("answer", call_id=self.call_id, sdp=sdp)

    async def close(self) -> None:
        await self.media.close()


async def count_frames(
    track: MediaStreamTrack,
    want: int,
    timeout: float = CALL_TIMEOUT,  # noqa: ASYNC109
) -> list[Any]:
    """Receive (decode) `want` frames from `track`; fails if they do not come in time."""
    frames: list[Any] = []

    async def receive() -> None:
        while len(frames) < want:
            try:
                frames.append(await track.recv())
            except MediaStreamError:
                return

    await asyncio.wait_for(receive(), timeout)
    assert len(frames) >= want, f"{len(frames)} of {want} frames"
    return frames
