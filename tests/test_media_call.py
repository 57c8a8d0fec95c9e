"""Media through the server: aiortc clients in an answered call see and hear each other."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiortc import MediaStreamTrack, RTCRtpSender
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


def media_of(server: Server) -> MediaService:
    media: MediaService = server.http.app[keys.MEDIA]
    return media


async def video_call(server: Server) -> tuple[Member, Member, str]:
    """Officer publishing video+audio, operator publishing audio, both receiving."""
    officer_ws = await server.connect("o-1", "officer", "P0101")
    operator_ws = await server.connect("op-1", "operator", "P0101")
    return await media_call(officer_ws, operator_ws)


async def test_supervisor_joining_mid_call_gets_the_officers_video(media_server: Server) -> None:
    """A late subscriber starts on a keyframe the server asks the publisher for."""
    officer, operator, call_id = await video_call(media_server)
    sup_ws = await media_server.connect("sv-1", "supervisor", "P01")
    supervisor = Member(sup_ws, call_id, [])
    try:
        await count_frames(_track(operator, "o-1", "video"), 5)
        await sup_ws.request("join_call", call_id=call_id)
        await supervisor.join()
        await supervisor.renegotiate()
        await media_server.wait_for(lambda: "o-1" in supervisor.media.tracks, what="tracks")
        frames = await count_frames(_track(supervisor, "o-1", "video"), 5)
        assert frames[0].width == 640
        # Everyone else was offered the supervisor's (silent) section: nothing, since a
        # supervisor offering receive-only audio publishes nothing.
        pubs = {p.track_id for p in media_of(media_server).publications()}
        assert pubs == {"o-1:video", "o-1:audio", "op-1:audio"}
    finally:
        for m in (officer, operator, supervisor):
            await m.close()


async def test_call_end_closes_every_member_peer(media_server: Server) -> None:
    officer, operator, call_id = await video_call(media_server)
    try:
        media = media_of(media_server)
        peers = list(media.rooms[call_id].peers.values())
        assert len(peers) == 2
        await operator.ws.request("hangup", call_id=call_id)
        await media_server.wait_for(lambda: not media.rooms, what="room closed")
        await media_server.wait_for(
            lambda: all(p.pc.connectionState == "closed" for p in peers),
            what="both server-side peer connections closed",
        )
    finally:
        await officer.close()
        await operator.close()


async def test_member_who_drops_their_peer_stops_being_forwarded(media_server: Server) -> None:
    """Closing the peer connection without hanging up removes the member's tracks, and the
    others are offered the section as inactive."""
    officer, operator, call_id = await video_call(media_server)
    try:
        await count_frames(_track(operator, "o-1", "video"), 3)
        await officer.media.close()
        media = media_of(media_server)
        room = media.rooms[call_id]
        await media_server.wait_for(lambda: "o-1" not in room.peers, what="officer dropped")
        assert {p.track_id for p in room.publications.values()} == {"op-1:audio"}
        offer = await operator.ws.expect("offer", call_id=call_id)
        assert "a=inactive" in offer["sdp"]
    finally:
        await operator.close()


async def test_offer_again_replaces_the_media_session(media_server: Server) -> None:
    """A client whose network changed offers from a new peer connection and gets media again."""
    officer, operator, call_id = await video_call(media_server)
    again = Member(operator.ws, call_id, [AudioStreamTrack()])
    try:
        await count_frames(_track(operator, "o-1", "video"), 3)
        await operator.close()
        await again.join()
        await again.renegotiate()
        await media_server.wait_for(lambda: "o-1" in again.media.tracks, what="tracks again")
        await count_frames(_track(again, "o-1", "video"), 5)
    finally:
        await officer.close()
        await again.close()


async def test_a_publisher_who_comes_back_is_offered_again_with_a_new_msid(
    media_server: Server,
) -> None:
    """An officer's page reloaded (F5) offers from a new peer connection and publishes
    `o-1:video` again. The operator's next offer keeps the withdrawn section (inactive) beside
    the new one: each must carry its own msid, or a browser refuses the whole offer
    ("Duplicate a=msid lines detected") and the video never comes back."""
    officer, operator, call_id = await video_call(media_server)
    again = Member(officer.ws, call_id, [VideoStreamTrack(), AudioStreamTrack()])
    try:
        await count_frames(_track(operator, "o-1", "video"), 3)
        await officer.media.close()
        await again.join()
        msids: list[str] = []
        while sum(t.kind == "video" for t in operator.media.tracks["o-1"]) < 2:
            offer = await operator.ws.expect("offer", call_id=call_id)
            lines = [x for x in offer["sdp"].splitlines() if x.startswith("a=msid:")]
            assert len(lines) == len(set(lines)), lines
            msids = lines
            sdp = await operator.media.answer_offer(offer["sdp"])
            await operator.ws.request("answer", call_id=call_id, sdp=sdp)
        assert len([x for x in msids if x.startswith("a=msid:o-1 o-1:video")]) == 2
        video = [t for t in operator.media.tracks["o-1"] if t.kind == "video"][-1]
        await count_frames(video, 5)
    finally:
        await again.close()
        await operator.close()


async def test_covert_supervisor_is_heard_by_nobody(serve: Serve) -> None:
    ice.use_addresses(["127.0.0.1"])
    server = await serve(media=MEDIA, calls={"allow_covert_monitoring": True})
    officer, operator, call_id = await video_call(server)
    sup_ws = await server.connect("sv-1", "supervisor", "P01")
    supervisor = Member(sup_ws, call_id, [AudioStreamTrack()])
    try:
        await sup_ws.request("join_call", call_id=call_id, covert=True)
        await supervisor.join()
        await supervisor.renegotiate()
        await count_frames(_track(supervisor, "o-1", "video"), 3)
        room = media_of(server).rooms[call_id]
        assert "sv-1:audio" not in room.publications
        await operator.ws.assert_no("offer", within=0.5)
    finally:
        for m in (officer, operator, supervisor):
            await m.close()
        ice.use_addresses([])


async def test_h264_publisher_reaches_subscribers_in_h264(media_server: Server) -> None:
    """Subscribers are held to the publisher's codec: nothing is transcoded."""
    officer_ws, operator_ws, call_id = await answered_call(media_server)
    officer = Member(officer_ws, call_id, [VideoStreamTrack()])
    operator = Member(operator_ws, call_id, [AudioStreamTrack()])
    try:
        sdp = await officer.media.offer()
        for transceiver in officer.media.pc.getTransceivers():
            caps = RTCRtpSender.getCapabilities("video").codecs
            transceiver.setCodecPreferences([c for c in caps if c.mimeType == "video/H264"])
        await officer.media.pc.setLocalDescription(await officer.media.pc.createOffer())
        sdp = officer.media.pc.localDescription.sdp
        answer = await officer_ws.request("offer", reply="answer", call_id=call_id, sdp=sdp)
        await officer.media.accept_answer(answer["sdp"])
        await operator.join()
        offer = await operator_ws.expect("offer", call_id=call_id)
        assert "H264/90000" in offer["sdp"]
        assert "VP8/90000" not in offer["sdp"]
        sdp = await operator.media.answer_offer(offer["sdp"])
        await operator_ws.request("answer", call_id=call_id, sdp=sdp)
        await media_server.wait_for(lambda: "o-1" in operator.media.tracks, what="tracks")
        frames = await count_frames(_track(operator, "o-1", "video"), 5)
        assert frames[0].width == 640
    finally:
        await officer.close()
        await operator.close()


def _track(member: Member, owner: str, kind: str) -> MediaStreamTrack:
    return next(t for t in member.media.tracks[owner] if t.kind == kind)


async def test_subscriber_nack_is_answered_from_the_servers_history(
    media_server: Server,
) -> None:
    """A NACK from the subscriber (real RTCP over the wire) makes the server resend the
    packet it sent that subscriber; PLI from the subscriber reaches the publisher."""
    officer, operator, call_id = await video_call(media_server)
    try:
        video = _track(operator, "o-1", "video")
        await count_frames(video, 5)
        room = media_of(media_server).rooms[call_id]
        sub = room.publications["o-1:video"].subscriptions["op-1"]
        receiver = next(
            t.receiver for t in operator.media.pc.getTransceivers() if t.receiver.track is video
        )
        last = sub.numbering.last_out
        assert last is not None
        before = sub.retransmitted
        await receiver._send_rtcp_nack(sub.tap.ssrc, [(last - 1) & 0xFFFF])
        await media_server.wait_for(lambda: sub.retransmitted > before, what="retransmission")

        pub = room.publications["o-1:video"]
        asked = pub.keyframes_requested
        # Within the pacing interval it is held back, then sent: either way it goes up.
        await receiver._send_rtcp_pli(sub.tap.ssrc)
        await media_server.wait_for(lambda: pub.keyframes_requested > asked, what="PLI upstream")
    finally:
        await officer.close()
        await operator.close()


@pytest.mark.parametrize("fanout", ["c", "python"])
async def test_subscriber_that_cannot_keep_up_restarts_on_a_keyframe(
    serve: Serve, tmp_path: Path, fanout: str
) -> None:
    """When a subscriber's socket is full its packets are dropped, not queued, and it
    starts again clean on the next keyframe (asked of the publisher), whether the C fan-out
    or the Python path was sending to it."""
    ice.use_addresses(["127.0.0.1"])
    media_server = await serve(media={**MEDIA, "fanout": fanout})
    officer, operator, call_id = await video_call(media_server)
    stuck = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        video = _track(operator, "o-1", "video")
        await count_frames(video, 5)
        sub = media_of(media_server).rooms[call_id].publications["o-1:video"].subscriptions["op-1"]
        # A peer that never reads: its queue fills and sendto raises BlockingIOError, as a
        # real subscriber's full socket buffer does.
        path = str(tmp_path / "stuck.sock")
        stuck.bind(path)
        sender.setblocking(False)
        real_sock, real_addr = sub._sock, sub._addr
        assert real_sock is not None
        await media_server.wait_for(lambda: sub.carried == (fanout == "c"), what="steady")
        sub.redirect(sender, path)
        await media_server.wait_for(lambda: sub.restarts > 0, what="subscriber restarted")
        assert sub.numbering.waiting
        assert not sub.carried
        sub.redirect(real_sock, real_addr)
        await media_server.wait_for(lambda: not sub.numbering.waiting, what="keyframe again")
        if fanout == "c":
            await media_server.wait_for(lambda: sub.carried, what="carried in C again")
        frames = await count_frames(video, 10)
        assert frames[-1].width == 640
    finally:
        stuck.close()
        sender.close()
        await officer.close()
        await operator.close()
        ice.use_addresses([])


async def test_operator_pulls_video_by_calling_an_officer(media_server: Server) -> None:
    """A call from the center to an officer carries the officer's video once answered."""
    officer_ws = await media_server.connect("o-1", "officer", "P0101")
    operator_ws = await media_server.connect("op-1", "operator", "P0101")
    placed = await operator_ws.request("call_officer", reply="call_placed", officer="o-1")
    call_id = placed["call_id"]
    await officer_ws.expect("call_ringing")
    await officer_ws.request("accept", call_id=call_id)
    await operator_ws.expect("call_answered")
    officer = Member(officer_ws, call_id, [VideoStreamTrack()])
    operator = Member(operator_ws, call_id, [])
    try:
        await officer.join()
        await operator.join()
        await operator.renegotiate()
        await media_server.wait_for(lambda: "o-1" in operator.media.tracks, what="tracks")
        frames = await count_frames(_track(operator, "o-1", "video"), 5)
        assert frames[0].width == 640
    finally:
        await officer.close()
        await operator.close()


async def test_malformed_candidate_is_negotiation_failed(media_server: Server) -> None:
    officer, operator, call_id = await video_call(media_server)
    try:
        for bad in ("candidate:1 1 udp", "candidate:x y z w v u t s", "not a candidate at all"):
            msg_id = await operator.ws.send("ice_candidate", call_id=call_id, candidate=bad)
            assert (await operator.ws.error_for(msg_id))["code"] == "negotiation_failed", bad
        # An mDNS candidate is acknowledged and ignored; the end-of-candidates marker too.
        mdns = (
            "candidate:1 1 udp 2122260223 0b5c7a1e-2d4f-4c1b-9a3e-1f2e3d4c5b6a.local 5000 typ host"
        )
        for fine in (mdns, ""):
            await operator.ws.request("ice_candidate", call_id=call_id, candidate=fine)
    finally:
        await officer.close()
        await operator.close()


async def test_who_receives_the_officers_video_is_recorded_from_start_to_stop(
    media_server: Server,
) -> None:
    """`video_watched` when the server starts forwarding the officer's video to a member,
    `video_unwatched` when it stops (a supervisor leaving, the call ending): the call's
    "who watched"."""
    officer, operator, call_id = await video_call(media_server)
    sup_ws = await media_server.connect("sv-1", "supervisor", "P01")
    supervisor = Member(sup_ws, call_id, [])
    try:
        await count_frames(_track(operator, "o-1", "video"), 3)
        await sup_ws.request("join_call", call_id=call_id)
        await supervisor.join()
        await supervisor.renegotiate()
        await count_frames(_track(supervisor, "o-1", "video"), 3)
        watched = media_server.recorder.of_kind("video_watched")
        assert {(e.data["user"], e.data["owner"]) for e in watched} >= {
            ("op-1", "o-1"),
            ("sv-1", "o-1"),
        }
        assert all(e.data["call"] == call_id and e.data["court"] == "P0101" for e in watched)
        await sup_ws.request("leave_call", call_id=call_id)
        await media_server.wait_recorded("video_unwatched", user="sv-1", owner="o-1")
        await operator.ws.request("hangup", call_id=call_id)
        await media_server.wait_recorded("video_unwatched", user="op-1", owner="o-1")
        # The officer's own video is never "watched" by the officer.
        assert not [e for e in watched if e.data["user"] == "o-1" and e.data["owner"] == "o-1"]
    finally:
        for m in (officer, operator, supervisor):
            await m.close()
