"""The video wall's media through the server: an officer's page publishes video in a watch,
and every watcher receives it receive-only from the one uplink (aiortc clients, real
server, real media relay over loopback)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiortc.mediastreams import AudioStreamTrack, VideoStreamTrack

from commandcenter import keys
from media import ice
from media.service import MediaService
from tests.conftest import Serve
from tests.mediahelpers import Member, count_frames, media_call
from tests.wsclient import Client, Server

MEDIA = {"ice_addresses": ("127.0.0.1",), "record": False}


@pytest.fixture
async def media_server(serve: Serve) -> AsyncIterator[Server]:
    ice.use_addresses(["127.0.0.1"])
    yield await serve(media=MEDIA)
    ice.use_addresses([])


def media_of(server: Server) -> MediaService:
    media: MediaService = server.http.app[keys.MEDIA]
    return media


async def open_watch(watcher: Client, officer: Client) -> str:
    reply = await watcher.request("watch", reply="watching", officer=officer.user)
    opened = await officer.expect("watch_opened")
    assert opened["watch_id"] == reply["watch_id"]
    return str(reply["watch_id"])


async def test_two_watchers_receive_the_officers_video_from_one_uplink(
    media_server: Server,
) -> None:
    """Video goes up once; each watcher decodes it and hears nothing; the last one out
    closes the room."""
    officer_ws = await media_server.connect("o-1", "officer", "P0101")
    op_ws = await media_server.connect("op-1", "operator", "P0101")
    sv_ws = await media_server.connect("sv-1", "supervisor", "P01")
    watch_id = await open_watch(op_ws, officer_ws)
    again = await sv_ws.request("watch", reply="watching", officer="o-1")
    assert again["watch_id"] == watch_id
    # A page that sent its microphone too would not be heard: a watch forwards video only.
    officer = Member(officer_ws, watch_id, [VideoStreamTrack(), AudioStreamTrack()])
    watchers = [Member(ws, watch_id, []) for ws in (op_ws, sv_ws)]
    try:
        await officer.join()
        for w in watchers:
            await w.join()
            await w.renegotiate()
        for w in watchers:
            tracks = w.media.tracks
            await media_server.wait_for(lambda: "o-1" in tracks, what="o-1 video")  # noqa: B023
            (track,) = tracks["o-1"]
            assert track.kind == "video"
            frames = await count_frames(track, 10)
            assert frames[-1].width == 640
        room = media_of(media_server).rooms[watch_id]
        assert set(room.publications) == {"o-1:video"}
        assert watch_id not in media_of(media_server).captures
        await op_ws.request("unwatch", watch_id=watch_id)
        await media_server.wait_recorded("watch_stopped", watch=watch_id, by="op-1")
        await count_frames(watchers[1].media.tracks["o-1"][0], 5)
        await sv_ws.request("unwatch", watch_id=watch_id)
        await officer_ws.expect("watch_closed", watch_id=watch_id)
        await media_server.wait_for(
            lambda: watch_id not in media_of(media_server).rooms, what="watch room closed"
        )
    finally:
        for m in (officer, *watchers):
            await m.close()


async def test_an_officer_in_a_call_is_watched_in_a_second_session(media_server: Server) -> None:
    """The call's media goes on; the watch's session carries the same camera to the wall."""
    officer_ws = await media_server.connect("o-1", "officer", "P0101")
    op_ws = await media_server.connect("op-1", "operator", "P0101")
    sv_ws = await media_server.connect("sv-1", "supervisor", "P01")
    officer, operator, call_id = await media_call(officer_ws, op_ws)
    watch_id = await open_watch(sv_ws, officer_ws)
    camera = next(t for t in officer.media.local_tracks if t.kind == "video")
    uplink = Member(officer_ws, watch_id, [camera])
    watcher = Member(sv_ws, watch_id, [])
    try:
        await uplink.join()
        await watcher.join()
        await watcher.renegotiate()
        await media_server.wait_for(lambda: "o-1" in watcher.media.tracks, what="o-1 video")
        await count_frames(watcher.media.tracks["o-1"][0], 5)
        video = next(t for t in operator.media.tracks["o-1"] if t.kind == "video")
        await count_frames(video, 5)
        assert call_id in media_of(media_server).rooms
    finally:
        for m in (officer, operator, uplink, watcher):
            await m.close()
