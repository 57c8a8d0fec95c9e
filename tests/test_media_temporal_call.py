"""Temporal layers end to end in an answered call: real aiortc peers through the server,
the subscriber's receiver reporting loss in its own RTCP receiver reports over the wire.

aiortc's encoder makes no temporal layers, so the officer's camera sends nothing and the
test feeds its publication an L1T3 stream (as bench.fanout feeds one). Loss between
publisher and server shows downstream as gaps (docs/media.md): leaving out a quarter of the
publisher's packets makes the operator's receiver report loss, the server sends it TID 0
alone; once the stream is whole again its reports are clear and every layer comes back,
carried by the C fan-out again."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiortc.mediastreams import AudioStreamTrack, VideoStreamTrack
from aiortc.rtp import RtpPacket

from commandcenter import keys
from media import fanout, ice
from media.forwarder import FORWARDED, Publication
from media.service import MediaService
from tests.mediahelpers import Member
from tests.wsclient import Server

# Up a layer after 1 s of clear reports, so that the climb back takes seconds.
MEDIA = {
    "ice_addresses": ("127.0.0.1",),
    "record": False,
    "temporal_up_after_s": 1.0,
}
PATTERN = (0, 2, 1, 2)
# Reports come about once a second; each step waits for a few.
STEP_S = 15.0

pytestmark = pytest.mark.slow

# Without the built C fan-out (`make venv` builds it) every subscriber stays in Python.
IN_C = fanout.unavailable() is None


class SilentCamera(VideoStreamTrack):
    """A camera that never yields a frame: the publication's packets are the test's."""

    async def recv(self) -> Any:
        await asyncio.Event().wait()


class L1T3Feed:
    """Packets of an L1T3 stream into a publication at 30 frames a second, two a frame,
    leaving out every fourth packet while `lossy`."""

    def __init__(self, pub: Publication) -> None:
        self.pub = pub
        self.lossy = False
        self.seq = 1000
        self.frame = 0
        self.tl0 = 0

    async def run(self) -> None:
        codec = self.pub.codec
        assert codec is not None
        assert codec.payloadType is not None
        while True:
            tid = PATTERN[self.frame % 4]
            if tid == 0 and self.frame:
                self.tl0 = (self.tl0 + 1) & 0xFF
            picture_id = self.frame & 0x7FFF
            for k in range(2):
                descriptor = bytes(
                    [
                        0x80 | (0x10 if k == 0 else 0),
                        0xE0,  # I, L, T
                        0x80 | (picture_id >> 8),
                        picture_id & 0xFF,
                        self.tl0,
                        (tid << 6) | (0x20 if self.frame % 4 in (1, 2) else 0),
                    ]
                )
                # The frame tag: a key frame every 16 frames (bit 0 clear), for a start soon.
                tag = 0x10 if self.frame % 16 == 0 else 0x11
                packet = RtpPacket(
                    payload_type=codec.payloadType,
                    sequence_number=self.seq & 0xFFFF,
                    timestamp=(self.frame * 3000) & 0xFFFFFFFF,
                    marker=int(k == 1),
                    ssrc=4242,
                    payload=descriptor + bytes([tag]) + bytes(300),
                )
                if not (self.lossy and self.seq % 4 == 0):
                    self.pub.forward(packet, codec)
                self.seq += 1
            self.frame += 1
            await asyncio.sleep(1 / 30)


@pytest.fixture
async def media_server(serve: Any) -> AsyncIterator[Server]:
    ice.use_addresses(["127.0.0.1"])
    yield await serve(media=MEDIA)
    ice.use_addresses([])


async def test_a_subscriber_reporting_loss_gets_the_base_layer_and_every_layer_after(
    media_server: Server,
) -> None:
    """The operator's receiver reports the gaps: its layer goes to 0 and the server leaves
    out TID 1 and 2 for it (forwarding it in Python); with the stream whole again its
    reports are clear and it climbs back to every layer, carried by the C fan-out."""
    officer_ws = await media_server.connect("o-1", "officer", "P0101")
    operator_ws = await media_server.connect("op-1", "operator", "P0101")
    placed = await officer_ws.request("call_center", reply="call_placed")
    call_id = placed["call_id"]
    await operator_ws.expect("call_ringing")
    await operator_ws.request("accept", call_id=call_id)
    await officer_ws.expect("call_answered")
    officer = Member(officer_ws, call_id, [SilentCamera(), AudioStreamTrack()])
    operator = Member(operator_ws, call_id, [AudioStreamTrack()])
    feeding: asyncio.Task[None] | None = None
    try:
        await officer.join()
        await operator.join()
        await operator.renegotiate()
        await officer.renegotiate()
        await media_server.wait_for(lambda: "o-1" in operator.media.tracks, what="tracks")
        media: MediaService = media_server.http.app[keys.MEDIA]
        pub = media.rooms[call_id].publications["o-1:video"]
        sub = pub.subscriptions["op-1"]
        feed = L1T3Feed(pub)
        feeding = asyncio.get_running_loop().create_task(feed.run())
        await media_server.wait_for(lambda: sub.packets_sent > 20, STEP_S, "started")
        await media_server.wait_for(lambda: sub.carried == IN_C, STEP_S, "carried in C")
        assert sub.layer == 2
        assert sub.layers_dropped == 0

        counted = FORWARDED.layer_dropped
        feed.lossy = True
        await media_server.wait_for(lambda: sub.layer == 0, STEP_S, "down to TID 0")
        assert not sub.carried
        dropped = sub.layers_dropped
        tids = list(pub.tid_packets)
        await media_server.wait_for(lambda: pub.tid_packets[0] > tids[0] + 30, STEP_S, "more")
        # Every TID-1 and TID-2 packet since was left out for this subscriber.
        left_out = (pub.tid_packets[1] - tids[1]) + (pub.tid_packets[2] - tids[2])
        assert sub.layers_dropped - dropped >= left_out > 0
        # /metrics' commandcenter_media_layer_dropped_packets counts them too.
        assert FORWARDED.layer_dropped - counted >= sub.layers_dropped - dropped

        feed.lossy = False
        await media_server.wait_for(lambda: sub.layer == 2, STEP_S, "back to every layer")
        await media_server.wait_for(lambda: sub.carried == IN_C, STEP_S, "carried in C again")
        assert sub.selector is not None
        assert sub.selector.changes >= 4
    finally:
        if feeding is not None:
            feeding.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await feeding
        await officer.close()
        await operator.close()
