"""A call member's media with aiortc: the Python counterpart of the web client.

It speaks the media negotiation of docs/protocol.md over whatever carries the hub's
messages: `offer()` gives the first offer to send; the server's `answer` goes to
`accept_answer`; each server `offer` goes to `answer_offer`, whose result is sent back as an
`answer`. Remote tracks arrive in `tracks`, keyed by the publishing member's user id (the
stream id the server gives them). On the server's `media_restart` (the call's media moved to
another worker process), `restart()` starts over with a new peer connection and gives the
offer to send again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.contrib.media import MediaRelay


class MediaClient:
    def __init__(
        self,
        tracks: Sequence[MediaStreamTrack],
        *,
        configuration: RTCConfiguration | None = None,
    ) -> None:
        self.configuration = configuration or RTCConfiguration(iceServers=[])
        self.pc = RTCPeerConnection(self.configuration)
        self.local_tracks = list(tracks)
        # Each peer connection sends its own relay of the tracks, never the tracks: aiortc
        # stops a sender's track when the sender ends, which a connection to a worker or node
        # that died does on its own (its DTLS fails) before `media_restart` comes; the new
        # connection would then send a stopped camera, i.e. nothing.
        self._relay = MediaRelay()
        # Publishing member's user id -> their tracks, as announced by the server.
        self.tracks: dict[str, list[MediaStreamTrack]] = {}
        self.track_added = asyncio.Event()
        self.pc.on("track", self._on_track)

    def _on_track(self, track: MediaStreamTrack) -> None:
        # aiortc names the remote stream after the server's msid: the publisher's user id.
        owner = track.id.split(":", 1)[0]
        self.tracks.setdefault(owner, []).append(track)
        self.track_added.set()

    async def offer(self) -> str:
        """The SDP of the first offer: our own tracks (or one receive-only audio section)."""
        for track in self.local_tracks:
            self.pc.addTransceiver(self._relay.subscribe(track, buffered=False), "sendrecv")
        if not self.local_tracks:
            self.pc.addTransceiver("audio", direction="recvonly")
        await self.pc.setLocalDescription(await self.pc.createOffer())
        return str(self.pc.localDescription.sdp)

    async def accept_answer(self, sdp: str) -> None:
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))

    async def answer_offer(self, sdp: str) -> str:
        """Apply a server offer (tracks added or removed); returns our answer's SDP."""
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        return str(self.pc.localDescription.sdp)

    async def close(self) -> None:
        await self.pc.close()
        # The camera and microphone end with the client (the relay stops reading them).
        for track in self.local_tracks:
            track.stop()

    async def restart(self) -> str:
        """Close the peer connection, make a new one with the same tracks and return its
        first offer's SDP (the answer goes to `accept_answer` as before). What the old one
        received is forgotten: the others' tracks are offered again."""
        await self.pc.close()
        self.pc = RTCPeerConnection(self.configuration)
        self.pc.on("track", self._on_track)
        self.tracks = {}
        self.track_added = asyncio.Event()
        return await self.offer()
