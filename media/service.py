"""The media server behind the hub's MediaPort: rooms of aiortc peer connections, one per
answered call, forwarding RTP between members and feeding each call's recording.

Each member's media messages are carried out one at a time, in the order they arrived
(an `ice_candidate` right behind its `offer` must find the peer connection made), with a
lock per member; different members and calls proceed concurrently.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final

import structlog

from media import fanout, ice
from media.capture import CallCapture, CallFacts, recover
from media.conference_room import ConferenceRoom
from media.errors import WrongState
from media.evidence_sink import EvidenceSink
from media.fabric import Fabric, FabricEndpoint
from media.forwarder import Publication
from media.room import Room
from media.settings import MediaConfig
from media.sink import SinkSpec
from media.span import Spans
from sessions.recorder import SessionRecorder, TraceEvent
from signalling import protocol as p
from signalling.core import actions
from signalling.errors import MediaUnavailable
from signalling.media_port import Deliver, MediaMessage

log = structlog.get_logger(__name__)

# Trace records of a call's video reaching a member and no longer reaching them (the call's
# "who watched"). Data: call, court, officer, user (who receives), owner (whose track), track.
VIDEO_WATCHED: Final = "video_watched"
VIDEO_UNWATCHED: Final = "video_unwatched"


def _repeated(names: Sequence[str]) -> set[str]:
    return {name for name, count in collections.Counter(names).items() if count > 1}


def _not_started(user: str, message: p.ServerMessage) -> None:
    raise RuntimeError("the media service delivers nothing before start()")


class MediaService:
    def __init__(
        self,
        *,
        config: MediaConfig,
        clock: Callable[[], float],
        evidence: EvidenceSink | None = None,
        recordings_dir: Path | None = None,
        recorder: SessionRecorder | None = None,
        fabric: FabricEndpoint | None = None,
    ) -> None:
        """`evidence`: where recordings and snapshots are filed (None: neither is taken).
        `recordings_dir`: where recordings are written while calls run (None: no recording).
        `recorder`: the trace, told whenever a call's video starts or stops reaching a member
        (`video_watched` / `video_unwatched`); None: not recorded. `fabric`: this media
        worker's index and the fabric's sockets, for conferences over several workers
        (media.span; None: one worker, index 0, alone)."""
        self.recorder = recorder
        self._recording: set[asyncio.Task[None]] = set()
        self.config = config
        self.deliver: Deliver = _not_started
        self.clock = clock
        self.evidence = evidence
        self.recordings_dir = recordings_dir if evidence is not None else None
        self.rooms: dict[str, Room] = {}
        self.captures: dict[str, CallCapture] = {}
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._closing: set[asyncio.Task[None]] = set()
        # Set once `start` has recovered what a previous run left (for /readyz).
        self.started = False
        ice.use_addresses(config.ice_addresses)
        ice.use_port_range(config.udp_port_min, config.udp_port_max)
        # This worker's share of the conferences that span several workers.
        self.spans = Spans(
            endpoint=fabric,
            config=config,
            clock=clock,
            room=self._conference,
            external=self._call_track,
        )
        missing = fanout.unavailable()
        if config.fanout == "c" and missing is not None:
            # Not refused: forwarding in Python is correct, only dearer per subscriber.
            log.warning("media fan-out in Python: the C fan-out cannot be loaded", why=missing)

    # ---- MediaPort --------------------------------------------------------------------

    def conference_placement(
        self,
        conference_id: str,
        home: int,
        where: dict[str, int],
        *,
        records: bool = True,
        feeds: dict[str, int] | None = None,
        stage: actions.Stage | None = None,
    ) -> None:
        """Where conference `conference_id`'s members are (user -> worker index) and which
        worker routes it (`home`): called before the conference's `room_changed`, and again
        whenever either changes, on every worker with sites of it and on home. Empty `where`:
        the conference has left this worker. `records`: whether home records it (not on a
        node other than the conference's home node). `feeds`: the worker of each shown call's
        officer (a worker with such a call and no site is told too); `stage`: the
        conference's, for a worker with no room of it to gate the feeds it exports by."""
        self.spans.place(conference_id, home, where, records=records, feeds=feeds, stage=stage)
        room = self.rooms.get(conference_id)
        if not where and room is not None and not room.members:
            del self.rooms[conference_id]
            self._close(room, None)

    def sinks(
        self, conference_id: str, add: Sequence[SinkSpec], remove: Sequence[str]
    ) -> dict[str, int]:
        """Bench-only (media.sink): remove, then add, pre-keyed sinks of a conference whose
        room is on this worker; the packets each of its sinks here has been sent. Raises
        WrongState without the room, ValueError (media.sink.SinkError) for a sink refused."""
        room = self._conference(conference_id)
        if room is None:
            raise WrongState("this conference has no media on this worker")
        for name in remove:
            room.remove_sink(name)
        names = [spec.name for spec in add]
        taken = sorted((set(names) & (set(room.sinks) | room.members)) | _repeated(names))
        if taken:
            # Checked before any is added: a request is carried out whole or not at all.
            raise ValueError(f"sink names in use: {', '.join(taken[:5])}")
        for spec in add:
            room.add_sink(spec)
        return {name: sink.packets_sent() for name, sink in room.sinks.items()}

    @property
    def fabric(self) -> Fabric | None:
        return self.spans.fabric

    def _conference(self, conference_id: str) -> ConferenceRoom | None:
        room = self.rooms.get(conference_id)
        return room if isinstance(room, ConferenceRoom) else None

    def room_changed(self, change: actions.Room) -> None:
        call_id = change.call_id
        room = self.rooms.get(call_id)
        # The router's worker keeps the room while the conference has sites elsewhere.
        if not change.members and not (change.stage is not None and self.spans.routes(call_id)):
            self.spans.left(call_id)
            if room is not None:
                del self.rooms[call_id]
                self._close(room, self.captures.pop(call_id, None))
            return
        if change.stage is not None:
            if room is None:
                facts = CallFacts(call_id, change.court, change.officer, None)
                room = ConferenceRoom(
                    conference_id=call_id,
                    config=self.config,
                    clock=self.clock,
                    send_offer=self._send_offer,
                    deliver=lambda user, message: self.deliver(user, message),
                    capture=lambda: self._capture(facts) if self.spans.records(call_id) else None,
                    external=self._call_track,
                )
                self.rooms[call_id] = room
                self.spans.adopt(call_id, room)
            assert isinstance(room, ConferenceRoom)
            room.update(frozenset(change.members), frozenset(change.silent), change.stage)
            return
        if room is None:
            capture = None
            # A watch is looked at, not kept: the call it may show is recorded as a call.
            if self.evidence is not None and not change.watch:
                facts = CallFacts(call_id, change.court, change.officer, change.case_number)
                capture = CallCapture(
                    facts=facts,
                    sink=self.evidence,
                    recordings_dir=self.recordings_dir,
                    clock=self.clock,
                )
                self.captures[call_id] = capture
            room = Room(
                call_id=call_id,
                config=self.config,
                clock=self.clock,
                send_offer=self._send_offer,
                on_publication=self._published_in_call(capture),
                # A wall's watch has its own facts (watch_started / watch_stopped, written by
                # the signalling core): who watched a call is the call's `video_watched`.
                on_watch=None
                if change.watch
                else self._watched_in_call(call_id, change.court, change.officer),
                kinds=frozenset({"video"}) if change.watch else frozenset({"audio", "video"}),
            )
            self.rooms[call_id] = room
        room.update(frozenset(change.members), frozenset(change.silent))

    async def signal(self, user: str, message: MediaMessage) -> None:
        self._room(message.call_id)
        # Kept while the call's room lives (dropped in _close), so every message of one
        # member queues on the same lock.
        lock = self._locks.setdefault((message.call_id, user), asyncio.Lock())
        async with lock:
            await self._carry_out(user, message)

    async def start(self, deliver: Deliver) -> None:
        """Deliver replies and offers to `deliver` from now on; register what a previous run
        left unfinished (see media.capture.recover)."""
        self.deliver = deliver
        self.spans.open()
        if self.evidence is not None and self.recordings_dir is not None:
            await recover(self.recordings_dir, self.evidence, self.clock)
        self.started = True

    def health(self) -> dict[str, object]:
        return {
            "media_rooms": len(self.rooms),
            "media_peers": sum(len(r.peers) for r in self.rooms.values()),
            **self.spans.health(),
        }

    async def stop(self) -> None:
        self.started = False
        for call_id in list(self.rooms):
            self._close(self.rooms.pop(call_id), self.captures.pop(call_id, None))
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)
        if self._recording:
            await asyncio.gather(*self._recording, return_exceptions=True)
        self.spans.close()

    # ---- internals --------------------------------------------------------------------

    async def _carry_out(self, user: str, message: MediaMessage) -> None:
        room = self._room(message.call_id)
        match message:
            case p.Offer():
                sdp = await room.offer(user, message.sdp)
                self.deliver(user, p.ServerAnswer(ref=message.id, call_id=room.call_id, sdp=sdp))
                # Queued behind the answer: the client must have applied it first.
                room.start_receiving(user)
            case p.Answer():
                await room.peer(user).accept_answer(message.sdp)
                self.deliver(user, p.Ack(ref=message.id))
            case p.IceCandidate():
                await room.peer(user).add_candidate(
                    message.candidate, message.sdp_mid, message.sdp_mline_index
                )
                self.deliver(user, p.Ack(ref=message.id))
            case p.Snapshot():
                if isinstance(room, ConferenceRoom):
                    raise WrongState("snapshots are taken in calls")
                capture = self.captures.get(room.call_id)
                if capture is None:
                    raise MediaUnavailable("snapshots need the evidence store")
                of = message.of or capture.facts.officer
                shot = await capture.snapshot(of, user)
                taken = p.SnapshotTaken(
                    ref=message.id,
                    call_id=room.call_id,
                    of=of,
                    evidence_id=shot.evidence_id,
                    sha256=shot.sha256,
                    taken_at=round(shot.taken_at * 1000.0, 3),
                )
                self.deliver(user, taken)

    def _room(self, call_id: str) -> Room:
        room = self.rooms.get(call_id)
        if room is None:
            raise WrongState("this call has no media")
        return room

    def _call_track(self, call_id: str, user: str, kind: str) -> Publication | None:
        """`user`'s `kind` track in call `call_id` on this server, for a conference showing
        the call (None: the call's media is elsewhere, or the track is not published)."""
        room = self.rooms.get(call_id)
        if room is None or isinstance(room, ConferenceRoom):
            return None
        return room.publications.get(f"{user}:{kind}")

    def _published_in_call(
        self, capture: CallCapture | None
    ) -> Callable[[Room, Publication], None]:
        def published(room: Room, pub: Publication) -> None:
            if capture is not None:
                capture.published(pub)
            # A conference showing this call takes the new track.
            for other in list(self.rooms.values()):
                if isinstance(other, ConferenceRoom) and room.call_id in other.feeds.values():
                    other.feed_published()
            # A conference on other workers showing it: this worker exports the track.
            self.spans.feed_published(room.call_id)

        return published

    def _watched_in_call(
        self, call_id: str, court: str, officer: str
    ) -> Callable[[str, Publication, bool], None]:
        def watched(user: str, pub: Publication, started: bool) -> None:
            recorder = self.recorder
            if recorder is None:
                return
            event = TraceEvent(
                VIDEO_WATCHED if started else VIDEO_UNWATCHED,
                self.clock(),
                {
                    "call": call_id,
                    "court": court,
                    "officer": officer,
                    "user": user,
                    "owner": pub.owner,
                    "track": pub.track_id,
                },
            )
            # Written beside the media, not in its way: forwarding does not wait for the
            # trace, and the record's time is when forwarding started or stopped.
            task = asyncio.get_running_loop().create_task(recorder.record([event]))
            self._recording.add(task)
            task.add_done_callback(self._recorded)

        return watched

    def _recorded(self, task: asyncio.Task[None]) -> None:
        self._recording.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("video watch not recorded", exc_info=task.exception())

    def _capture(self, facts: CallFacts) -> CallCapture | None:
        if self.evidence is None or self.recordings_dir is None:
            return None
        return CallCapture(
            facts=facts, sink=self.evidence, recordings_dir=self.recordings_dir, clock=self.clock
        )

    def _send_offer(self, user: str, call_id: str, sdp: str) -> None:
        self.deliver(user, p.ServerOffer(call_id=call_id, sdp=sdp))

    def _close(self, room: Room, capture: CallCapture | None) -> None:
        for key in [k for k in self._locks if k[0] == room.call_id]:
            del self._locks[key]

        async def close() -> None:
            await room.close()
            if capture is not None:
                await capture.close()

        task = asyncio.get_running_loop().create_task(close())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    def publications(self) -> list[Publication]:
        """Every track published in every call (for tests and health)."""
        return [pub for room in self.rooms.values() for pub in room.publications.values()]
