"""The conference benchmark's clients (`bench.conference`): the moderator and the speaker in
one worker process (`ChairProcess`), the receive-only sites in others (`SitesProcess`), all
speaking the hub protocol of docs/protocol.md (*Conferences*, *Conference media*) through
`bench._media.CcClient`.

- The moderator, a supervisor of `HOST_COURT`, creates the conference inviting the speaker
  and every site by id, joins it as its chair, and publishes nothing: the sites hear and see
  only the speaker. It grants and revokes the speaker's floor on command (`cycle`) and notes
  when it sent each grant.
- The speaker, an invited operator, publishes `bench._media`'s synthetic 640x480@30 VP8 clip
  (encoded once, looped as packets) and Opus from aiortc's `AudioStreamTrack` (silence, one
  packet every 20 ms); its RTP sender's `packetsSent` is what the sites' audio is compared
  with.
- A site joins receive-only (one recvonly audio section, then the slots the server offers),
  counts the spotlight's video frames without decoding them (`Subscriber`), and counts the
  packets of its audio slots at RTP arrival (media.hooks.tap_receiver: nothing decoded, no
  jitter buffer delay), noting when each talk burst began: the first packet after
  `SILENCE_S` without one.

Commands over the pipe, one reply each: to the chair `publish` (create, join, publish, grant;
replies with the conference id), `stats` (the speaker's counters), `cycle` (revoke, then
grant, `times` times; replies with when each grant was sent); to the sites `subscribe` (join
and negotiate), `counts` (frames and audio packets so far, when they were read, the clients'
errors) and `timings` (per site, join to first frame and its bursts' starts); `stop` to both.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any, Final

import aiohttp
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCRtpSender
from aiortc.mediastreams import AudioStreamTrack
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import RtpPacket

from bench._common import BenchError, Reply, Worker, raise_nofile_limit
from bench._media import (
    NEGOTIATION_TIMEOUT_S,
    CcClient,
    ClipTrack,
    Subscriber,
    TargetSpec,
    count_frames_without_decoding,
    encode_clip,
    new_peer_connection,
    prefer_vp8,
    restrict_ice,
    send_clip,
    serve_commands,
    wait_connected,
)
from commandcenter.auth import Role
from media.hooks import tap_receiver

HOST_COURT: Final = "P01"
SITE_COURT: Final = "P0101"
MODERATOR: Final = "chair-1"
SPEAKER: Final = "speaker-1"
# A gap this long between two audio packets ends a talk burst.
SILENCE_S: Final = 0.25


def site_user(index: int) -> str:
    return f"site-{index}"


# ---- counting a site's audio ----------------------------------------------------------------


class AudioTap:
    """The audio packets a peer connection receives, counted at RTP arrival; how many were
    sent to it (`expected`: the advance of each slot's highest sequence number, which the
    server numbers as the speaker's plus an offset, without a gap when the source changes);
    and when each talk burst began (`time.monotonic()` of its first packet)."""

    def __init__(self, pc: RTCPeerConnection) -> None:
        self.pc = pc
        self.packets = 0
        self.burst_starts: list[float] = []
        self._last = -1e9
        # Per SSRC: (first, highest) extended sequence number.
        self._seqs: dict[int, tuple[int, int]] = {}
        pc.on("track", self._on_track)

    @property
    def expected(self) -> int:
        return sum(high - first + 1 for first, high in self._seqs.values())

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind != "audio":
            return
        # The track event comes before aiortc starts the receiver: tapped in time.
        for transceiver in self.pc.getTransceivers():
            if transceiver.receiver.track is track:
                tap_receiver(transceiver.receiver, self._on_rtp)

    def _on_rtp(self, packet: RtpPacket, codec: RTCRtpCodecParameters) -> None:
        now = time.monotonic()
        if now - self._last >= SILENCE_S:
            self.burst_starts.append(now)
        self._last = now
        self.packets += 1
        seen = self._seqs.get(packet.ssrc)
        if seen is None:
            self._seqs[packet.ssrc] = (packet.sequence_number, packet.sequence_number)
            return
        first, high = seen
        # The extended number nearest the highest so far (16-bit wrap-around).
        seq = high + ((packet.sequence_number - high + 0x8000) & 0xFFFF) - 0x8000
        self._seqs[packet.ssrc] = (min(first, seq), max(high, seq))


# ---- the moderator and the speaker ----------------------------------------------------------


class Speaker:
    """The site that talks: the clip's video and Opus audio, sent from the start; the server
    forwards them while it holds the floor."""

    def __init__(self, http: aiohttp.ClientSession, spec: TargetSpec, track: ClipTrack) -> None:
        self.track = track
        self.pc = new_peer_connection()
        video = self.pc.addTransceiver(track, direction="sendonly")
        prefer_vp8(video)
        send_clip(video, track)
        self.audio: RTCRtpSender = self.pc.addTransceiver(
            AudioStreamTrack(), direction="sendonly"
        ).sender
        self.cc = CcClient(http, spec, SPEAKER, Role.OPERATOR, SITE_COURT, self.pc)
        self.floor: asyncio.Queue[str] = asyncio.Queue()

        def on_push(msg: dict[str, Any]) -> None:
            if msg.get("type") == "floor_status":
                self.floor.put_nowait(msg["floor"]["state"])

        self.cc.on_push = on_push

    async def join(self, conference_id: str) -> None:
        await self.cc.connect()
        await self.cc.request({"type": "join_conference", "conference_id": conference_id})
        await self.cc.offer(conference_id)
        await wait_connected(self.pc)

    async def floor_becomes(self, state: str) -> None:
        while await asyncio.wait_for(self.floor.get(), NEGOTIATION_TIMEOUT_S) != state:
            pass

    async def audio_sent(self) -> int:
        report = await self.audio.getStats()
        # The sender's report holds the whole transport's counters too.
        return sum(s.packetsSent for s in report.values() if s.type == "outbound-rtp")


class Chair:
    """The moderator, who creates and runs the conference, and the speaker it gives the
    floor to."""

    def __init__(self, http: aiohttp.ClientSession, spec: TargetSpec, track: ClipTrack) -> None:
        self.moderator = CcClient(
            http, spec, MODERATOR, Role.SUPERVISOR, HOST_COURT, new_peer_connection()
        )
        self.speaker = Speaker(http, spec, track)
        self.conference_id = ""

    async def start(self, sites: int) -> str:
        await self.moderator.connect()
        created = await self.moderator.request(
            {
                "type": "create_conference",
                "title": "Benchmark: a provincial video conference",
                "invite_users": [SPEAKER, *(site_user(i) for i in range(sites))],
            }
        )
        cid: str = created["conference"]["conference_id"]
        self.conference_id = cid
        await self.moderator.request({"type": "join_conference", "conference_id": cid})
        await self.speaker.join(cid)
        await self.grant()
        return cid

    async def grant(self) -> float:
        """Give the speaker the floor; returns when the grant was sent."""
        sent = time.monotonic()
        await self.moderator.request(
            {"type": "grant_floor", "conference_id": self.conference_id, "site": SPEAKER}
        )
        await self.speaker.floor_becomes("permitted")
        return sent

    async def revoke(self) -> None:
        """Take the floor back, and return once the grace is over and the floor taken."""
        await self.moderator.request(
            {"type": "revoke_floor", "conference_id": self.conference_id, "site": SPEAKER}
        )
        await self.speaker.floor_becomes("not_permitted")

    async def cycle(self, times: int, quiet_s: float, talk_s: float) -> list[float]:
        """Revoke and grant `times` times: each grant after `quiet_s` of silence, each talk
        `talk_s` long. Returns when each grant was sent."""
        grants: list[float] = []
        for _ in range(times):
            await self.revoke()
            await asyncio.sleep(quiet_s)
            grants.append(await self.grant())
            await asyncio.sleep(talk_s)
        return grants

    async def close(self) -> None:
        for cc in (self.speaker.cc, self.moderator):
            await cc.close()
        for pc in (self.speaker.pc, self.moderator.pc):
            await pc.close()


class _ChairWorker:
    def __init__(self, spec: TargetSpec) -> None:
        self.spec = spec
        self.http = aiohttp.ClientSession()
        self.chair: Chair | None = None

    def _need(self) -> Chair:
        if self.chair is None:
            raise BenchError("publish first")
        return self.chair

    async def run(self, cmd: str, args: dict[str, Any]) -> Reply:
        match cmd:
            case "publish":
                clip = await asyncio.get_running_loop().run_in_executor(None, encode_clip)
                self.chair = Chair(self.http, self.spec, ClipTrack(clip))
                cid = await asyncio.wait_for(
                    self.chair.start(args["sites"]), NEGOTIATION_TIMEOUT_S * 2
                )
                return {
                    "published": {"conference_id": cid},
                    "clip_kbit_s": round(clip.bits_per_s() / 1e3),
                }
            case "stats":
                speaker = self._need().speaker
                return {
                    "t": time.monotonic(),
                    "audio_sent": await speaker.audio_sent(),
                    "frames_sent": speaker.track.frames_sent,
                    "keyframe_requests": speaker.track.keyframe_requests,
                    "keyframe_request_times": speaker.track.keyframe_request_times,
                    "keyframes_sent": speaker.track.keyframes_sent,
                    "errors": self._need().moderator.errors + speaker.cc.errors,
                }
            case "cycle":
                grants = await self._need().cycle(args["times"], args["quiet_s"], args["talk_s"])
                return {"grants": grants}
            case "stop":
                await self.close()
                return {}
        raise BenchError(f"unknown command {cmd!r}")

    async def close(self) -> None:
        if self.chair is not None:
            await self.chair.close()
        await self.http.close()


# ---- the receive-only sites -------------------------------------------------------------------


class Site:
    """One receive-only site: its video frames and audio packets, and when it asked to join.
    Told `media_restart` (its media worker died), it does what a client does: a new peer
    connection, offered again (`restarted_at`, and its first frame since)."""

    def __init__(self, http: aiohttp.ClientSession, spec: TargetSpec, index: int) -> None:
        self.index = index
        self.sub = Subscriber(name=site_user(index))
        self.audio = AudioTap(self.sub.pc)
        self.cc = CcClient(http, spec, site_user(index), Role.OPERATOR, SITE_COURT, self.sub.pc)
        self.cc.on_push = self._on_push
        self.join_sent_at: float | None = None
        self.conference_id = ""
        self.restarted_at: float | None = None
        self.errors: list[str] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self, conference_id: str) -> None:
        self.conference_id = conference_id
        await self.cc.connect()
        # Nothing to send: one recvonly audio section; the server then offers the slots.
        self.sub.pc.addTransceiver("audio", direction="recvonly")
        self.join_sent_at = time.monotonic()
        await self.cc.request({"type": "join_conference", "conference_id": conference_id})
        await self.cc.offer(conference_id)

    def start_soon(self, conference_id: str) -> None:
        """`start` in the background (a join storm does not wait for each join)."""
        self._spawn(self.start(conference_id), "joining")

    def _spawn(self, coro: Any, what: str) -> None:
        async def run() -> None:
            try:
                await asyncio.wait_for(coro, NEGOTIATION_TIMEOUT_S * 2)
            except Exception as exc:
                self.errors.append(f"{site_user(self.index)}: {what}: {exc!r}")

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _on_push(self, msg: dict[str, Any]) -> None:
        if msg.get("type") == "media_restart" and msg.get("call_id") == self.conference_id:
            self.restarted_at = time.monotonic()
            self._spawn(self._restart(), "offering again after media_restart")

    async def _restart(self) -> None:
        old = self.sub
        self.sub = Subscriber(name=site_user(self.index))
        self.audio = AudioTap(self.sub.pc)
        self.cc.pc = self.sub.pc
        await old.close()
        self.sub.pc.addTransceiver("audio", direction="recvonly")
        await self.cc.offer(self.conference_id)

    def restart_to_first_frame_s(self) -> float | None:
        """From `media_restart` to the first frame on the new peer connection."""
        if self.restarted_at is None or self.sub.first_frame_at is None:
            return None
        return self.sub.first_frame_at - self.restarted_at

    def join_to_first_frame_s(self) -> float | None:
        if self.join_sent_at is None or self.sub.first_frame_at is None:
            return None
        return self.sub.first_frame_at - self.join_sent_at

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await self.cc.close()
        await self.sub.close()


class _SitesWorker:
    def __init__(self, spec: TargetSpec) -> None:
        self.spec = spec
        self.http = aiohttp.ClientSession()
        self.sites: list[Site] = []

    async def run(self, cmd: str, args: dict[str, Any]) -> Reply:
        match cmd:
            case "subscribe":
                new = [Site(self.http, self.spec, i) for i in args["indexes"]]
                self.sites.extend(new)
                cid = args["published"]["conference_id"]
                await asyncio.wait_for(
                    asyncio.gather(*(s.start(cid) for s in new)), NEGOTIATION_TIMEOUT_S * 2
                )
                return {}
            case "join":
                # Each in the background: replies at once.
                for i in args["indexes"]:
                    site = Site(self.http, self.spec, i)
                    self.sites.append(site)
                    site.start_soon(args["published"]["conference_id"])
                return {}
            case "counts":
                return {
                    # The system-wide monotonic clock, compared across processes.
                    "t": time.monotonic(),
                    "frames": {str(s.index): s.sub.frames for s in self.sites},
                    "audio": {str(s.index): s.audio.packets for s in self.sites},
                    "audio_expected": {str(s.index): s.audio.expected for s in self.sites},
                    "errors": [e for s in self.sites for e in [*s.cc.errors, *s.errors]],
                    "first_frame_at": {str(s.index): s.sub.first_frame_at for s in self.sites},
                    "restarted_at": {str(s.index): s.restarted_at for s in self.sites},
                }
            case "timings":
                return {
                    "join_s": {str(s.index): s.join_to_first_frame_s() for s in self.sites},
                    "bursts": {str(s.index): s.audio.burst_starts for s in self.sites},
                }
            case "stop":
                await self.close()
                return {}
        raise BenchError(f"unknown command {cmd!r}")

    async def close(self) -> None:
        closing = [s.close() for s in self.sites]
        if closing:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*closing, return_exceptions=True), 10.0)
        await self.http.close()


# ---- the worker processes ---------------------------------------------------------------------


def _main(conn: Any, spec: TargetSpec, sites: bool) -> None:
    raise_nofile_limit()
    restrict_ice(spec.ice_address)
    # The speaker is offered the (empty) slots too: nothing of it is ever decoded.
    count_frames_without_decoding()
    worker = _SitesWorker if sites else _ChairWorker
    asyncio.run(serve_commands(conn, lambda: worker(spec)))


class ChairProcess(Worker):
    """The process of the moderator and the speaker."""

    def __init__(self, name: str, spec: TargetSpec) -> None:
        super().__init__(name, _main, spec, False)


class SitesProcess(Worker):
    """A process of receive-only sites (up to `bench._media.SUBSCRIBERS_PER_PROCESS`)."""

    def __init__(self, name: str, spec: TargetSpec) -> None:
        super().__init__(name, _main, spec, True)


__all__ = ["MODERATOR", "SPEAKER", "AudioTap", "ChairProcess", "SitesProcess", "site_user"]
