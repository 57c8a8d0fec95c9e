"""Open discussion over two media workers (media.loudest, media.span): six sites speak at
once, each at its own RFC 6464 level, four on the worker that is not home and two on home.
First with two real MediaServices in this process over their real fabric sockets (their
spans' counters at hand: tests.test_media_fabric), then in the real server with its two
worker processes (the pool's health reports what home took).

The worker that is not home sends home the audio of its three loudest sites only, and names
them in VOICES frames; home's final pick (and every worker's) is the three loudest of all."""

from __future__ import annotations

import collections
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path

import msgspec
import pytest
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import RtpPacket

from media import ice
from media import worker_wire as w
from media.conference_room import ConferenceRoom
from media.fabric import Fabric, FabricEndpoint
from media.forwarder import PacketSink, Publication
from media.placement import Placement
from media.span import ConferenceSpan
from signalling.core.actions import Stage
from tests.conftest import Serve
from tests.mediahelpers import Member, ToneTrack, count_frames
from tests.polling import wait_until
from tests.test_hub_conferences import meeting
from tests.test_media_conference import with_media
from tests.test_media_fabric import CONFIG, Site, chair_stage, conference, fabric_workers
from tests.test_media_workers import pool_of

# Peak amplitudes: 12000 is about -12 dBov, each halving about 6 dB quieter.
LOUDNESS = {"a": 12000, "b": 6000, "c": 3000, "d": 1500, "e": 400, "f": 250}
WHERE = {"chair": 0, "b": 0, "e": 0, "listener": 1, "a": 1, "c": 1, "d": 1, "f": 1}
LOUDEST = ["a", "b", "c"]
MEDIA = {"ice_addresses": ("127.0.0.1",), "workers": 2, "record": False}


# ---- the export sink itself: two spans over a real fabric, packets played in by hand ------

OPUS = RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48000, channels=2, payloadType=111)
OPEN = Stage(audible=("chair",), spotlight=None, moderators=("chair",), open=True)


@asynccontextmanager
async def two_spans(
    where: dict[str, int],
    home_room: ConferenceRoom | None = None,
    home_clock: Callable[[], float] = time.monotonic,
) -> AsyncIterator[tuple[ConferenceSpan, ConferenceSpan]]:
    """Home (0) and worker 1, each a span of conference "c" on its own fabric socket; home's
    span has `home_room` (default: none) and runs on `home_clock`."""
    with tempfile.TemporaryDirectory(prefix="open-") as directory:
        paths = {i: str(Path(directory) / f"w{i}.sock") for i in (0, 1)}
        fabrics = [Fabric(FabricEndpoint(i, paths[i], {1 - i: paths[1 - i]})) for i in (0, 1)]
        for fabric in fabrics:
            fabric.open()
        spans = [
            ConferenceSpan(
                conference_id="c",
                fabric=fabric,
                config=CONFIG,
                clock=home_clock if i == 0 else time.monotonic,
                room=(lambda: home_room) if i == 0 else (lambda: None),
            )
            for i, fabric in enumerate(fabrics)
        ]
        try:
            for i, span in enumerate(spans):
                span.place(Placement(i, 0, where), OPEN)
            yield spans[0], spans[1]
        finally:
            for span in spans:
                span.close()
            for fabric in fabrics:
                fabric.close()


class Microphone:
    """A site's audio on worker 1 as its Publication hands it to the span's export sink."""

    def __init__(self, span: ConferenceSpan, owner: str) -> None:
        pub = Publication(
            owner=owner, kind="audio", receiver=None, keyframe_interval=0.5, clock=time.monotonic
        )
        self.sink: PacketSink = span.export_sink(pub)
        self.seq = 0

    def say(self, level: int | None) -> None:
        packet = RtpPacket(payload_type=111, sequence_number=self.seq, timestamp=self.seq * 960)
        packet.payload = b"opus"
        if level is not None:
            packet.extensions.audio_level = (level < 127, level)
        self.sink(packet, OPUS, time.monotonic())
        self.seq += 1


async def test_a_site_becoming_a_candidate_reaches_home_from_its_first_loud_packet() -> None:
    """Decided per packet: of a site that was silent, home takes every packet from the very
    one that made it a candidate (no gap); a quieter one waits while the places are taken,
    the chair's voice (audible by the stage) always crosses, and VOICES names the candidates."""
    where = {"chair": 1, "a": 1, "b": 1, "c": 1, "d": 1, "e": 1, "s0": 0}
    async with two_spans(where) as (home, worker):
        mics = {u: Microphone(worker, u) for u in ("chair", "a", "b", "c", "d", "e")}
        for _ in range(5):
            for user in ("a", "b", "c", "d", "e"):
                mics[user].say(127)
            mics["chair"].say(None)
        for _ in range(10):
            for user, level in {"a": 20, "b": 22, "c": 24, "d": 40}.items():
                mics[user].say(level)
            mics["e"].say(None)
        for _ in range(10):
            mics["e"].say(5)
        await wait_until(lambda: home.audio_in["e:audio"] == 10, what="e's ten packets at home")
        # The silent packets stayed; a, b, c took the places with their first loud packet; d,
        # 16 dB quieter than c, waited; e, 19 dB louder than c, took c's place at once.
        assert dict(home.audio_in) == {
            "chair:audio": 5,
            "a:audio": 10,
            "b:audio": 10,
            "c:audio": 10,
            "e:audio": 10,
        }
        assert worker.held_back["d:audio"] == 15
        # Its silent packets and those without a level stayed.
        assert worker.held_back["e:audio"] == 15
        await wait_until(lambda: 1 in home.voices, what="worker 1's VOICES at home")
        await wait_until(
            lambda: [u for u, _ in home.voices[1]] == ["e", "a", "b"], what="e, a, b named"
        )


async def test_home_forgets_at_once_a_speaker_its_worker_no_longer_names() -> None:
    """A site that worker 1's VOICES stops naming (a louder one took its place) sends home no
    more audio: home's Speaking drops it when the frame comes, not SPEAKING_HOLD_S after its
    last packet. Home's clock stands still, so only the VOICES frame can drop it."""
    frozen = 1000.0
    room = ConferenceRoom(
        conference_id="c",
        config=CONFIG,
        clock=lambda: frozen,
        send_offer=lambda _u, _k, _s: None,
        deliver=lambda _u, _m: None,
    )
    where = {"chair": 1, "a": 1, "b": 1, "c": 1, "e": 1, "s0": 0}
    try:
        async with two_spans(where, room, lambda: frozen) as (home, worker):
            # Home's room, as the service makes it: the span's, staged open (its own site
            # not joined: the ranking is what is looked at).
            home.adopt(room)
            room.update(frozenset(), frozenset(), OPEN)
            mics = {u: Microphone(worker, u) for u in ("a", "b", "c", "e")}
            for _ in range(10):
                for user, level in {"a": 20, "b": 22, "c": 24}.items():
                    mics[user].say(level)
            await wait_until(
                lambda: sorted(room.speaking.now(frozen)) == ["a", "b", "c"],
                what="a, b, c speaking at home",
            )
            await wait_until(
                lambda: [u for u, _ in home.voices.get(1, ())] == ["a", "b", "c"],
                what="a, b, c named",
            )
            # e, 19 dB louder than c, takes c's place with its first packet; VOICES names e,
            # a, b at once.
            for _ in range(5):
                mics["e"].say(5)
            await wait_until(
                lambda: [u for u, _ in home.voices[1]] == ["e", "a", "b"], what="e, a, b named"
            )
            assert worker.held_back["c:audio"] == 0
            # Dropped, though its last packet is no older by home's clock than a's and b's.
            await wait_until(
                lambda: sorted(room.speaking.now(frozen)) == ["a", "b", "e"],
                what="c forgotten at home, e speaking",
            )
    finally:
        await room.close()


def slotted(room: ConferenceRoom) -> bool:
    return sorted(u for u in room.line.audio if u) == LOUDEST


def told_loudest(site: Site) -> bool:
    return bool(site.told) and sorted(u for u in site.told[-1].audio if u) == LOUDEST


@pytest.mark.parametrize("preselect", [True, False])
async def test_home_takes_at_most_three_voices_per_worker_and_every_site_hears_the_loudest(
    preselect: bool,
) -> None:
    config = msgspec.structs.replace(CONFIG, open_audio_preselect=preselect)
    async with fabric_workers(2, config) as workers, conference(workers, 0, WHERE) as conf:
        conf.stage(chair_stage(open=True))
        chair = await conf.join("chair")
        listener = await conf.join("listener")
        # Loudest first, so the quiet ones find the places taken (hysteresis keeps them).
        for user in sorted(LOUDNESS, key=lambda u: -LOUDNESS[u]):
            await conf.join(user, [ToneTrack(amplitude=LOUDNESS[user])])
        home, other = workers[0].span(), workers[1].span()

        for worker in workers:
            await wait_until(
                partial(slotted, worker.room()),
                within=15.0,
                what=f"the three loudest in worker {worker.index}'s audio slots",
            )
        for site in (chair, listener):
            await wait_until(
                partial(told_loudest, site),
                within=10.0,
                what=f"{site.user} told it hears the three loudest",
            )
        # They are heard: packets of each flow to the listener's slots (b through home).
        room1 = workers[1].room()
        sent = {u: room1.sent_from(u, "audio") for u in LOUDEST}
        await wait_until(
            lambda: all(room1.sent_from(u, "audio") >= sent[u] + 25 for u in LOUDEST),
            within=10.0,
            what="the three loudest forwarded to the listener",
        )

        # What home takes from worker 1 now, over a second of speech.
        before = collections.Counter(home.audio_in)
        await wait_until(
            lambda: home.audio_in["a:audio"] >= before["a:audio"] + 50,
            within=10.0,
            what="a second of a's audio at home",
        )
        taken = {t for t, n in home.audio_in.items() if n > before[t]}
        if preselect:
            assert taken == {"a:audio", "c:audio", "d:audio"}, taken
            assert other.held_back["f:audio"] > 0
            assert home.audio_in["f:audio"] == 0
            await wait_until(
                lambda: [u for u, _ in home.voices.get(1, ())] == ["a", "c", "d"],
                within=5.0,
                what="worker 1's VOICES naming a, c, d loudest first",
            )
            levels = [lvl for _, lvl in home.voices[1]]
            assert levels == sorted(levels), levels
            assert levels[0] < 20, levels
        else:
            # The switch off: every site's audio goes home, as before.
            assert taken == {"a:audio", "c:audio", "d:audio", "f:audio"}, taken
            assert not other.held_back
            assert home.voices == {}


@pytest.mark.slow
async def test_in_the_real_server_home_takes_at_most_three_voices_from_the_other_worker(
    serve: Serve,
) -> None:
    """Ten sites and the chair spread over two worker processes; six sites speak, four of
    them on the worker that is not home. The chair is told of and receives the three
    loudest; home's worker reports audio from three sites of the other worker, never more."""
    ice.use_addresses(["127.0.0.1"])
    members: list[Member] = []
    try:
        server = await serve(media=MEDIA)
        pool = pool_of(server)
        assert await pool.ready()
        host_ws, consoles, cid = await meeting(server)
        sockets = {"op1": consoles["op1"], "op3": consoles["op3"]}
        for i in range(4, 12):
            ws = await server.connect(f"op{i}", "operator", "P0101" if i % 2 else "P0102")
            await ws.request("join_conference", reply="conference_joined", conference_id=cid)
            sockets[ws.user] = ws
        await host_ws.request("unmute_all", conference_id=cid)
        host = await with_media(host_ws, cid)
        members.append(host)
        # Silent until the placement is known (a tone of amplitude 0 is level 127).
        tones = {user: ToneTrack(amplitude=0) for user in sockets}
        for user, ws in sockets.items():
            member = Member(ws, cid, [tones[user]])
            members.append(member)
            await member.join()
            await member.renegotiate()
        home = pool.home[cid]
        where = pool.where[cid]
        there = [u for u in sorted(tones) if where[u] != home]
        here = [u for u in sorted(tones) if where[u] == home]
        assert len(there) >= 4, where
        assert len(here) >= 2, where
        (other,) = {where[u] for u in there}
        # Ranked loudest first, 6 dB apart: two on home among them.
        ranked = [there[0], here[0], there[1], here[1], there[2], there[3]]
        for user, amplitude in zip(ranked, (12000, 6000, 3000, 1500, 750, 375), strict=True):
            tones[user].amplitude = amplitude
        loudest = sorted(ranked[:3])

        await host_ws.expect(
            "conference_media",
            timeout=20.0,
            where=lambda m: sorted(u for u in m["audio"] if u) == loudest,
        )
        # Heard: each of the chair's three audio slots carries packets (a slot with no source
        # sends none).
        slots = ("audio-0", "audio-1", "audio-2")
        await wait_until(
            lambda: all(s in host.media.tracks for s in slots), what="the chair's audio slots"
        )
        for slot in slots:
            await count_frames(host.media.tracks[slot][0], 10)

        # Each report of home's worker (one a second, and one per health look).
        loads: list[w.Load] = []

        def reported() -> list[dict[int, int]]:
            pool.health()
            load = pool.workers[home].load
            if load is not None and (not loads or loads[-1] is not load):
                loads.append(load)
            return [load.audio_sites_in for load in loads]

        await wait_until(
            lambda: reported()[-1].get(other) == 3,
            within=10.0,
            what="home reporting audio from three sites of the other worker",
        )
        start = len(loads)
        await wait_until(lambda: len(reported()) >= start + 3, within=10.0, what="3 reports")
        later = reported()[start - 1 :]
        assert all(r.get(other, 0) <= 3 for r in later), later
    finally:
        for member in members:
            await member.close()
        ice.use_addresses([])
