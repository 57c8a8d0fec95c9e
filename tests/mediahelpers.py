"""Call members with real aiortc media against the server under test: the hub's
negotiation messages carried by the test WebSocket client (tests.wsclient)."""

from __future__ import annotations

import asyncio
import math
import struct
from collections.abc import Sequence
from typing import Any

from aiortc import MediaStreamTrack
from aiortc.mediastreams import AudioStreamTrack, MediaStreamError, VideoStreamTrack
from av import AudioFrame

from media.client import MediaClient
from tests.polling import wait_until
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


async def media_call(
    officer_ws: Client, operator_ws: Client, *, case_number: str | None = None
) -> tuple[Member, Member, str]:
    """The officer calls the center and the operator accepts; then the officer publishes
    video and audio, the operator audio, and each has been offered the other's tracks."""
    fields = {} if case_number is None else {"case_number": case_number}
    placed = await officer_ws.request("call_center", reply="call_placed", **fields)
    call_id = placed["call_id"]
    await operator_ws.expect("call_ringing")
    await operator_ws.request("accept", call_id=call_id)
    await officer_ws.expect("call_answered")
    officer = Member(officer_ws, call_id, [VideoStreamTrack(), AudioStreamTrack()])
    operator = Member(operator_ws, call_id, [AudioStreamTrack()])
    await officer.join()
    await operator.join()
    await operator.renegotiate()
    await officer.renegotiate()
    await wait_until(lambda: officer_ws.user in operator.media.tracks, what="officer's tracks")
    return officer, operator, call_id


class ToneTrack(AudioStreamTrack):
    """A microphone that hears a steady tone (aiortc's AudioStreamTrack is silence): its
    packets carry a loud audio level, so the server counts the sender as speaking."""

    def __init__(self, hz: float = 440.0, amplitude: int = 12000) -> None:
        super().__init__()
        self.hz = hz
        # Peak sample value: 12000 is about -12 dBov (RFC 6464 level 12), 600 about -38.
        self.amplitude = amplitude
        self._phase = 0

    async def recv(self) -> Any:
        frame = await super().recv()
        assert isinstance(frame, AudioFrame)
        n = frame.samples
        rate = frame.sample_rate
        samples = [
            int(self.amplitude * math.sin(2 * math.pi * self.hz * (self._phase + i) / rate))
            for i in range(n)
        ]
        self._phase += n
        frame.planes[0].update(struct.pack(f"<{n}h", *samples))
        return frame
