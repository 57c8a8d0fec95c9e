"""A conference's media through the real server: aiortc sites and a moderator, each publishing
video and audio; the server forwards only what the floor allows, into each member's slots.

The gate is proven with the server's packet counters: a site's audio arrives at the server and
is sent to nobody until the site holds the floor."""

from __future__ import annotations

import contextlib
import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import av
import pytest
from aiortc.mediastreams import AudioStreamTrack, VideoStreamTrack
from pytest_aiohttp import AiohttpClient

from commandcenter import keys
from commandcenter.app import create_app
from commandcenter.keys import TRACE
from media import ice
from media.conference_room import ConferenceRoom
from media.evidence_sink import CALL_EVIDENCE
from media.service import MediaService
from sessions.recorder import MemoryRecorder
from tests.conftest import Serve, make_config
from tests.mediahelpers import Member, ToneTrack, count_frames, media_call
from tests.polling import wait_until
from tests.test_hub_conferences import meeting
from tests.wsclient import Client, Server

MEDIA = {"ice_addresses": ("127.0.0.1",), "record": False}
REVOKE_GRACE_S = 0.5


@pytest.fixture
async def conference_server(serve: Serve) -> AsyncIterator[Server]:
    ice.use_addresses(["127.0.0.1"])
    yield await serve(media=MEDIA, conferences={"revoke_grace_s": REVOKE_GRACE_S})
    ice.use_addresses([])


def room_of(server: Server, cid: str) -> ConferenceRoom:
    media: MediaService = server.http.app[keys.MEDIA]
    room = media.rooms[cid]
    assert isinstance(room, ConferenceRoom)
    return room


async def with_media(ws: Client, cid: str) -> Member:
    """`ws`'s user publishes video and audio, and takes the slots the server offers."""
    member = Member(ws, cid, [VideoStreamTrack(), AudioStreamTrack()])
    await member.join()
    await member.renegotiate()
    return member


@contextlib.asynccontextmanager
async def media_of(cid: str, *clients: Client) -> AsyncIterator[list[Member]]:
    """Each client's user with media in the conference (`with_media`), closed at the end."""
    members: list[Member] = []
    try:
        for ws in clients:
            members.append(await with_media(ws, cid))
        yield members
    finally:
        for member in members:
            await member.close()


async def lineup(ws: Client, cid: str, **want: Any) -> dict[str, Any]:
    """The next `conference_media` whose fields are as `want` says."""
    return await ws.expect(
        "conference_media",
        where=lambda m: m["conference_id"] == cid and all(m[k] == v for k, v in want.items()),
    )


async def test_a_sites_audio_reaches_nobody_until_it_holds_the_floor(
    conference_server: Server,
) -> None:
    host_ws, consoles, cid = await meeting(conference_server)
    op1_ws, op3_ws = consoles["op1"], consoles["op3"]
    async with media_of(cid, host_ws, op1_ws, op3_ws) as members:
        room = room_of(conference_server, cid)
        # The chair is heard by every site; nobody else is.
        await lineup(op3_ws, cid, audio=["sup0", None, None])
        await wait_until(
            lambda: room.publications["op1:audio"].packets_received >= 50, what="op1's audio"
        )
        assert room.sent_from("op1", "audio") == 0
        assert room.sent_from("sup0", "audio") > 0
        # Granted: op1 is heard by the others (not by itself), and is the spotlight.
        await host_ws.request("grant_floor", conference_id=cid, site="op1")
        await lineup(op3_ws, cid, audio=["sup0", "op1", None], spotlight="op1")
        await lineup(op1_ws, cid, audio=["sup0", None, None], spotlight=None)
        op3_tracks = members[2].media.tracks
        await wait_until(lambda: "audio-1" in op3_tracks, what="op3's second audio slot")
        await count_frames(op3_tracks["audio-1"][0], 20)
        await wait_until(lambda: room.sent_from("op1", "audio") >= 20, what="op1 forwarded")
        # Revoked: after the grace op1 is cut at the server again.
        await host_ws.request("revoke_floor", conference_id=cid, site="op1")
        await lineup(op3_ws, cid, audio=["sup0", None, None])
        sent = room.sent_from("op1", "audio")
        received = room.publications["op1:audio"].packets_received
        await wait_until(
            lambda: room.publications["op1:audio"].packets_received >= received + 25,
            what="op1 still sending",
        )
        assert room.sent_from("op1", "audio") == sent


async def test_the_spotlight_switches_every_sites_video_and_the_moderator_sees_the_grid(
    conference_server: Server,
) -> None:
    host_ws, consoles, cid = await meeting(conference_server)
    op1_ws, op3_ws = consoles["op1"], consoles["op3"]
    async with media_of(cid, host_ws, op1_ws, op3_ws) as members:
        host, op1, _ = members
        # With nobody on the floor the chair is shown; the moderator sees the sites.
        await lineup(op1_ws, cid, spotlight="sup0")
        await lineup(host_ws, cid, spotlight=None, grid=["op1", "op3", *[None] * 14])
        await wait_until(lambda: "spotlight" in op1.media.tracks, what="op1's spotlight slot")
        spotlight = op1.media.tracks["spotlight"][0]
        await count_frames(spotlight, 5)
        # The moderator puts op3 in the spotlight: op1's one video track goes on, showing op3.
        await host_ws.request("spotlight", conference_id=cid, site="op3")
        await lineup(op1_ws, cid, spotlight="op3")
        frames = await count_frames(spotlight, 15)
        assert frames[-1].width == 640
        room = room_of(conference_server, cid)
        await wait_until(lambda: room.sent_from("op3", "video") > 0, what="op3's video sent")
        # media.fanout = "c" (the default): past the switch's keyframe, the C fan-out
        # carries op1's spotlight (the lane counts what it sent of every source).
        slot = room.peers["op1"].slots["spotlight"]
        await wait_until(lambda: slot.carried, what="the spotlight carried in C")
        assert slot.lane is not None
        assert 0 < slot.lane.sent() < slot.packets_sent
        await wait_until(lambda: "grid-0" in host.media.tracks, what="the grid")
        await count_frames(host.media.tracks["grid-0"][0], 5)


async def test_a_site_that_leaves_empties_its_slots_and_the_conference_end_closes_the_room(
    conference_server: Server,
) -> None:
    host_ws, consoles, cid = await meeting(conference_server)
    op1_ws, op3_ws = consoles["op1"], consoles["op3"]
    async with media_of(cid, host_ws, op1_ws, op3_ws):
        await host_ws.request("spotlight", conference_id=cid, site="op1")
        await lineup(op3_ws, cid, spotlight="op1")
        await op1_ws.request("leave_conference", conference_id=cid)
        await lineup(op3_ws, cid, spotlight="sup0")
        room = room_of(conference_server, cid)
        await wait_until(lambda: "op1" not in room.peers, what="op1's peer closed")
        await host_ws.request("end_conference", conference_id=cid)
        media: MediaService = conference_server.http.app[keys.MEDIA]
        await wait_until(lambda: cid not in media.rooms, what="the room closed")


async def test_media_for_a_conference_one_has_not_joined_is_refused(
    conference_server: Server,
) -> None:
    _, consoles, cid = await meeting(conference_server)
    op2 = consoles["op2"]  # rung, but did not join
    member = Member(op2, cid, [AudioStreamTrack()])
    try:
        sdp = await member.media.offer()
        error = await op2.error_for(await op2.send("offer", call_id=cid, sdp=sdp))
        assert error["code"] == "forbidden"
    finally:
        await member.close()


@pytest.fixture
async def durable_conference_server(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> AsyncIterator[Server]:
    """With its own SQLite trace and evidence store, so that recordings are kept."""
    ice.use_addresses(["127.0.0.1"])
    config = make_config(tmp_path / "var", media={"ice_addresses": ("127.0.0.1",)})
    http = await aiohttp_client(create_app(config))
    yield Server(http, config, MemoryRecorder())
    ice.use_addresses([])


async def test_a_recording_keeps_what_the_conference_heard_and_saw_as_its_evidence(
    durable_conference_server: Server,
) -> None:
    server = durable_conference_server
    host_ws, consoles, cid = await meeting(server)
    op1_ws, op3_ws = consoles["op1"], consoles["op3"]
    async with media_of(cid, host_ws, op1_ws, op3_ws) as members:
        trace = server.http.app[TRACE]
        await host_ws.request("grant_floor", conference_id=cid, site="op1")
        await lineup(op3_ws, cid, spotlight="op1")
        await host_ws.request("record_conference", conference_id=cid, on=True)
        update = await op3_ws.expect(
            "conference_update", where=lambda m: m["changes"].get("recording")
        )
        assert update["conference_id"] == cid
        await count_frames(members[2].media.tracks["spotlight"][0], 30)
        await host_ws.request("record_conference", conference_id=cid, on=False)

        async def recorded() -> list[dict[str, Any]]:
            found = await trace.find(kinds=[CALL_EVIDENCE], data_equals={"call": cid})
            return [r.data for r in found]

        async def three() -> bool:
            return len(await recorded()) == 3

        await wait_until(three, within=10.0, what="the chair's and op1's audio, op1's video")
        # Stopped: what is forwarded from now on is not recorded.
        await host_ws.request("spotlight", conference_id=cid, site="op3")
        await lineup(op1_ws, cid, spotlight="op3")
        room = room_of(server, cid)
        assert room.capture is not None
        assert room.capture.recorded() == []
    items = await recorded()
    assert sorted(i["media_type"] for i in items) == [
        "audio/x-matroska",
        "audio/x-matroska",
        "video/x-matroska",
    ]
    for item in items:
        assert item["case_number"] == cid
        data = (Path(server.config.server.data_dir) / "evidence" / item["sha256"]).read_bytes()
        with av.open(io.BytesIO(data), mode="r") as container:
            stream = container.streams[0]
            frames = list(container.decode(stream))
        assert frames, item
        if item["media_type"].startswith("video"):
            first = frames[0]
            assert isinstance(first, av.VideoFrame)
            assert first.width == 640
    marks = ["conference_recording_started", "conference_recording_stopped"]
    found = await trace.find(kinds=marks, data_equals={"conference": cid})
    assert [(r.kind, r.data["by"]) for r in found] == [(k, "sup0") for k in marks]


async def test_recording_needs_a_server_that_keeps_evidence(conference_server: Server) -> None:
    host_ws, _, cid = await meeting(conference_server)
    error = await host_ws.error_for(
        await host_ws.send("record_conference", conference_id=cid, on=True)
    )
    assert error["code"] == "media_unavailable"


async def test_an_operator_shows_the_call_they_answer_to_the_conference(
    conference_server: Server,
) -> None:
    host_ws, consoles, cid = await meeting(conference_server)
    op1_ws, op3_ws = consoles["op1"], consoles["op3"]
    officer_ws = await conference_server.connect("o-1", "officer", "P0101")
    officer, operator, call_id = await media_call(officer_ws, op1_ws)
    members = [await with_media(ws, cid) for ws in (host_ws, op3_ws)]
    try:
        await op1_ws.request("share_call", conference_id=cid, call_id=call_id)
        update = await op3_ws.expect("conference_update", where=lambda m: m["changes"].get("feeds"))
        assert update["changes"]["spotlight"]["id"] == "o-1"
        assert update["changes"]["feeds"][0]["officer"]["id"] == "o-1"
        # The officer is seen and heard by the sites, through the call's media.
        await lineup(op3_ws, cid, spotlight="o-1", audio=["sup0", "o-1", None])
        spotlight = members[1].media.tracks
        await wait_until(lambda: "spotlight" in spotlight, what="op3's spotlight slot")
        frames = await count_frames(spotlight["spotlight"][0], 10)
        assert frames[-1].width == 640
        room = room_of(conference_server, cid)
        await wait_until(lambda: room.sent_from("o-1", "audio") > 0, what="the officer heard")
        # The call ends: the feed goes, and the chair is shown again.
        await op1_ws.request("hangup", call_id=call_id)
        await lineup(op3_ws, cid, spotlight="sup0", audio=["sup0", None, None])
        ended = await op3_ws.expect(
            "conference_update", where=lambda m: m["changes"].get("feeds") == []
        )
        assert ended["changes"]["spotlight"] is None  # the media shows the chair meanwhile
    finally:
        for member in (*members, officer, operator):
            await member.close()


async def test_the_witness_of_an_action_watches_all_of_it_and_is_heard_by_nobody(
    conference_server: Server,
) -> None:
    """A concentrated enforcement action: the officers on it are sites, and a witness scoped
    to the action receives the grid of their video as the moderator does."""
    host_ws = await conference_server.connect("sup0", "supervisor", "P")
    created = await host_ws.request(
        "create_conference",
        reply="conference_created",
        title="Concentrated action",
        kind="action",
        invite_users=["o-1", "o-2"],
    )
    cid = created["conference"]["conference_id"]
    assert created["conference"]["kind"] == "action"
    await host_ws.request("join_conference", reply="conference_joined", conference_id=cid)
    officers = [await conference_server.connect(u, "officer", "P0101") for u in ("o-1", "o-2")]
    for ws in officers:
        await ws.request("join_conference", reply="conference_joined", conference_id=cid)
    witness_ws = await conference_server.connect(
        "w1", "witness", "P", scope=f"action:{cid}", name="Deputy Wang"
    )
    joined = await witness_ws.request(
        "join_conference", reply="conference_joined", conference_id=cid
    )
    assert joined["role"] == "witness"
    async with media_of(cid, host_ws, *officers, witness_ws) as members:
        told = await lineup(witness_ws, cid, grid=["o-1", "o-2", *[None] * 14])
        assert told["spotlight"] == "sup0"
        await wait_until(lambda: "grid-1" in members[3].media.tracks, what="the witness's grid")
        await count_frames(members[3].media.tracks["grid-1"][0], 5)
        # The officers see the spotlight only; nobody hears or sees the witness.
        await lineup(officers[0], cid, grid=[])
        room = room_of(conference_server, cid)
        assert "w1:audio" not in room.publications
        assert room.sent_from("w1", "video") == 0


async def test_the_moderators_see_who_speaks_even_without_the_floor(
    conference_server: Server,
) -> None:
    host_ws, consoles, cid = await meeting(conference_server)
    op1_ws = consoles["op1"]
    host = await with_media(host_ws, cid)
    talker = Member(op1_ws, cid, [VideoStreamTrack(), ToneTrack()])
    try:
        await talker.join()
        await talker.renegotiate()
        spoke = await host_ws.expect(
            "conference_speaking", timeout=5.0, where=lambda m: m["speaking"] == ["op1"]
        )
        assert spoke["conference_id"] == cid
        # Not on the floor: seen speaking, heard by nobody.
        room = room_of(conference_server, cid)
        assert room.sent_from("op1", "audio") == 0
        await talker.close()
        await host_ws.expect("conference_speaking", timeout=5.0, where=lambda m: not m["speaking"])
    finally:
        await host.close()
        await talker.close()


async def test_an_open_discussion_forwards_the_three_loudest_sites_by_their_audio_level(
    conference_server: Server,
) -> None:
    """Four sites speak at once, each at its own RFC 6464 level (aiortc's senders put the
    level of each packet's audio in the header extension); with the audio open, the three
    loudest take the audio slots and the quietest reaches nobody, though it is speaking."""
    host_ws, consoles, cid = await meeting(conference_server)
    more = {
        "op4": await conference_server.connect("op4", "operator", "P0101"),
        "op5": await conference_server.connect("op5", "operator", "P0102"),
    }
    for ws in more.values():
        await ws.request("join_conference", reply="conference_joined", conference_id=cid)
    await host_ws.request("unmute_all", conference_id=cid)
    loudness = {"op1": 12000, "op3": 6000, "op4": 3000, "op5": 600}  # about -12 ... -38 dBov
    sockets = {"op1": consoles["op1"], "op3": consoles["op3"], **more}
    # The chair listens (its microphone silent: never among the loudest).
    host = await with_media(host_ws, cid)
    talkers = [Member(sockets[u], cid, [ToneTrack(amplitude=a)]) for u, a in loudness.items()]
    try:
        for talker in talkers:
            await talker.join()
            await talker.renegotiate()
        room = room_of(conference_server, cid)
        loudest = ["op1", "op3", "op4"]
        await wait_until(
            lambda: room.speaking.now(room.clock()) == [*loudest, "op5"],
            within=10.0,
            what="all four speaking, ranked by level",
        )
        await wait_until(
            lambda: sorted(u for u in room.line.audio if u) == loudest,
            within=10.0,
            what="the three loudest in the audio slots",
        )
        # What the chair is told its slots carry says so too.
        await host_ws.expect(
            "conference_media",
            where=lambda m: sorted(u for u in m["audio"] if u) == loudest,
        )
        sent = {u: room.sent_from(u, "audio") for u in loudness}
        received = room.publications["op5:audio"].packets_received
        await wait_until(
            lambda: (
                all(room.sent_from(u, "audio") >= sent[u] + 25 for u in loudest)
                and room.publications["op5:audio"].packets_received >= received + 25
            ),
            within=10.0,
            what="the loudest forwarded while the quietest keeps sending",
        )
        assert room.sent_from("op5", "audio") == sent["op5"] == 0
    finally:
        await host.close()
        for talker in talkers:
            await talker.close()
