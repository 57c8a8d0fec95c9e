"""Media through the server: aiortc clients in an answered call see and hear each other."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiortc.mediastreams import AudioStreamTrack, VideoStreamTrack

from media import ice
from tests.conftest import Serve
from tests.mediahelpers import Member, count_frames
from tests.wsclient import Client, Server

MEDIA = {"ice_addresses": ("127.0.0.1",), "record": False}


@pytest.fixture
async def media_server(serve: Serve) -> AsyncIterator[Server]:
    ice.use_addresses(["127.0.0.1"])
    yield await serve(media=MEDIA)
    ice.use_addresses([])


async def answered_call(server: Server) -> tuple[Client, Client, str]:
    officer = await server.connect("o-1", "officer", "P0101")
    operator = await server.connect("op-1", "operator", "P0101")
    placed = await officer.request("call_center", reply="call_placed")
    call_id = placed["call_id"]
    await operator.expect("call_ringing")
    await operator.request("accept", call_id=call_id)
    await officer.expect("call_answered")
    return officer, operator, call_id


async def test_officer_video_and_audio_reach_the_operator(media_server: Server) -> None:
    """The operator receives and decodes the officer's video and audio through the server."""
    officer_ws, operator_ws, call_id = await answered_call(media_server)
    officer = Member(officer_ws, call_id, [VideoStreamTrack(), AudioStreamTrack()])
    operator = Member(operator_ws, call_id, [AudioStreamTrack()])
    try:
        await officer.join()
        await operator.join()
        await operator.renegotiate()
        await officer.renegotiate()
        await media_server.wait_for(lambda: "o-1" in operator.media.tracks, what="officer tracks")
        kinds = {t.kind: t for t in operator.media.tracks["o-1"]}
        assert set(kinds) == {"audio", "video"}
        frames = await count_frames(kinds["video"], 10)
        assert frames[-1].width == 640
        await count_frames(kinds["audio"], 10)
        assert {t.kind for t in officer.media.tracks["op-1"]} == {"audio"}
        await count_frames(officer.media.tracks["op-1"][0], 10)
    finally:
        await officer.close()
        await operator.close()
