"""One conference over several media workers: this worker's share of it.

Sites of one conference may sit on several workers (media.placement). Each worker keeps its
own members' peer connections and slots (media.conference_room); this span moves between
workers only what the stage lets cross (`placement.crosses`), over the fabric (media.fabric):

- Uplink, gated at ingest: a local track that may cross gets a sink on its Publication that
  sends each packet to the home worker. A track that may not (a muted site's voice) has no
  such sink, so its packets never leave this worker; `exported` counts, per track, what did.
- The router (the span on the home worker): checks each site's packet against the stage
  again, feeds its own slots and its recording through a `RemotePublication`, and sends ONE
  copy to every other worker that has sites of the conference (not back to where it came
  from). The home's own members' tracks go out to those workers directly.
- Downlink: every other worker feeds the router's packets into a `RemotePublication` per
  source track; its local `Subscription`s renumber, protect, send and answer NACKs from their
  own history as for a local source.
- Open discussion, preselected (`media.open_audio_preselect`): a worker other than home sends
  home the audio of only its `conference_audio_slots` loudest sites (media.loudest, decided
  per packet, so a new candidate's packet that made it one is the first to go), and every
  `VOICES_EVERY_S` and whenever they change names them in a VOICES frame. Home's final pick is
  over at most that many sites per worker; a site a worker drops is forgotten by home's
  `Speaking` at once rather than after its hold.
- Shown calls (`Stage.feeds`): the worker that has the call exports the officer's tracks
  like a site's uplink, gated by the same stage (heard while audible, seen while the
  spotlight), even with no site of its own (the pool sends it the stage with the placement);
  the router fans them out like any site's.
- Keyframes, coalesced at two levels: a worker's `RemotePublication` asks home at most once
  per interval (media.rtp.KeyframeRequests); home's `RemotePublication` of the same source
  takes those requests with its own local ones and asks the source's worker at most once per
  interval, whose Publication asks the publisher through its own pacing. In the roll-in
  (placement.Rollin) home asks for the spotlight's keyframe periodically and holds the
  joiners' requests back.

Recording stays at home: the router sees every track that is forwarded anywhere.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable, Iterable
from typing import Final

import structlog
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import RtpPacket

from media.conference_room import ConferenceRoom
from media.fabric import Fabric, FabricEndpoint
from media.fabric_frames import (
    MAX_VOICES,
    Frame,
    KeyframeRequest,
    Packet,
    RollinNotice,
    Sites,
    Stop,
    Voices,
    encode,
    encode_packet,
    resend,
)
from media.forwarder import PacketSink, Publication
from media.loudest import Loudest
from media.placement import Placement, Rollin, crosses, owner_kind, track_of
from media.remote_publication import RemotePublication
from media.settings import MediaConfig
from signalling.core.actions import Stage

log = structlog.get_logger(__name__)

_NOBODY: Final = Stage((), None, ())
# Tracks whose route the router keeps: far more than a conference has, a bound whatever
# names a sender makes up.
_MAX_ROUTES: Final = 4096
# How often a worker names its candidates to home in an open conference (besides on a change):
# a lost VOICES frame is made good within this, and finished speakers expire on it.
VOICES_EVERY_S: Final = 0.5


class ConferenceSpan:
    def __init__(
        self,
        *,
        conference_id: str,
        fabric: Fabric,
        config: MediaConfig,
        clock: Callable[[], float],
        room: Callable[[], ConferenceRoom | None],
        external: Callable[[str, str, str], Publication | None] = lambda _c, _u, _k: None,
    ) -> None:
        """`external(call_id, user, kind)`: a track published in a call on this worker (a
        feed shown to the conference)."""
        self.conference_id = conference_id
        self._external = external
        # The stage as the pool last sent it with the placement: what a worker with the
        # shown call's media and no room of the conference gates its export by.
        self._placed_stage = _NOBODY
        self._conf = conference_id.encode()
        self.fabric = fabric
        self.config = config
        self.clock = clock
        self._room = room
        self.placement = Placement(fabric.index, fabric.index, {})
        self.stage = _NOBODY
        # Source tracks of members on other workers, by track id; each is in the room's
        # `remote` once its first packet has come (then the room can use it).
        self.remote: dict[str, RemotePublication] = {}
        # Local tracks leaving this worker now: track id -> (publication, its sink).
        self._exporting: dict[str, tuple[Publication, PacketSink]] = {}
        # The gate's proof: packets of each local track sent out of this worker.
        self.exported: collections.Counter[str] = collections.Counter()
        # Home: the workers that get the conference's packets: those the placement names,
        # and any that said they have sites (SITES), less those that said they no longer do
        # (STOP) since. The placement alone would miss a worker the pool has not told home
        # of yet; the frames alone, one whose SITES was sent before home listened.
        self._announced: set[int] = set()
        self._stopped: set[int] = set()
        self.sites: tuple[int, ...] = ()
        # Home: packets relayed to other workers, and site packets the stage did not allow.
        self.relayed = 0
        self.gated = 0
        # Track -> the worker its packets may come to the router from (`_source_of`).
        self._routes: dict[str, int | None] = {}
        # Home: its roll-in, whose periodic keyframe it asks for (`_asks`). Any other worker:
        # the roll-in home told it of, to hold its own subscribers' requests by.
        self.rollin: Rollin | None = None
        self._asks = False
        self.rollin_asks = 0
        # Keyframe requests other workers sent for this worker's own tracks.
        self.keyframes_asked = 0
        self._rollin_timer: asyncio.TimerHandle | None = None
        # Open discussion, any worker but home: its own sites' voices, ranked (media.loudest);
        # the owners whose audio crosses only as candidates (empty: no preselection now); the
        # candidates home was last told of; packets kept here, per track, as not candidates.
        self.loudest = Loudest(min(config.conference_audio_slots, MAX_VOICES))
        self._preselected: frozenset[str] = frozenset()
        self._told_voices: tuple[str, ...] = ()
        self.held_back: collections.Counter[str] = collections.Counter()
        self._voices_timer: asyncio.TimerHandle | None = None
        # Home: each worker's candidates as its last VOICES named them, and the audio packets
        # it took of each track from other workers (the preselection's proof).
        self.voices: dict[int, tuple[tuple[str, int], ...]] = {}
        self.audio_in: collections.Counter[str] = collections.Counter()
        self.closed = False
        fabric.handlers[conference_id] = self.take

    # ---- the pool's and the core's word ---------------------------------------------------

    def place(self, placement: Placement, stage: Stage | None = None) -> None:
        """The conference's placement (and its stage, when the pool sent it), as of now."""
        before = self.placement
        self.placement = placement
        if stage is not None:
            self._placed_stage = stage
        self._routes.clear()
        if placement.is_home:
            if not self._asks:
                self._asks = True
                self.rollin = Rollin(
                    self.clock(),
                    self.config.conference_rollin_s,
                    self.config.conference_rollin_keyframe_s,
                )
                self._arm_rollin()
        else:
            self._announced.clear()
            self._stopped.clear()
            if self._asks:
                # Home moved away: the new home runs its own roll-in (and tells us).
                self._cancel_rollin()
                self._asks = False
                self.rollin = None
            # Tell home whether to send this worker the conference's media.
            frame = Sites if placement.has_sites() else Stop
            self.fabric.send(placement.home, encode(frame(self.fabric.index, self.conference_id)))
        self._aim()
        for track, pub in list(self.remote.items()):
            worker = placement.worker_of(pub.owner)
            # Gone, come here, or moved to another worker (a new peer connection there, a
            # new stream): the slots let go, and take its next packets as a new source.
            if worker is None or worker == placement.here or worker != before.worker_of(pub.owner):
                self._withdraw(track)
        self.restage()

    def restage(self) -> None:
        room = self._room()
        if room is not None:
            room.restage()
        else:
            self.staged()

    def adopt(self, room: ConferenceRoom) -> None:
        """The conference's room on this worker (made after the span, or again): it uses the
        remote tracks that have come, and tells the span whenever it restages."""
        room.on_staged = self.staged
        for pub in self.remote.values():
            if pub.codec is not None and pub.track_id not in room.remote:
                room.remote_published(pub)

    def staged(self) -> None:
        """The room has put sources in slots: export what the stage lets cross, only that."""
        room = self._room()
        self.stage = room.stage if room is not None else self._placed_stage
        self._routes.clear()
        wanted: dict[str, Publication] = {}
        if self.placement.where:
            want_codec = {"audio": "audio/opus", "video": self.config.conference_video_codec}
            own = room.publications.items() if room is not None else ()
            silent = room.silent if room is not None else frozenset()
            for track, pub in [*own, *self._feeds_here()]:
                if pub.owner in silent or pub.codec is None:
                    continue
                if pub.codec.mimeType.lower() != want_codec.get(pub.kind, "").lower():
                    continue
                if self._may_cross(track):
                    wanted[track] = pub
        for track, (pub, sink) in list(self._exporting.items()):
            if wanted.get(track) is not pub:
                del self._exporting[track]
                if sink in pub.sinks:
                    pub.sinks.remove(sink)
        for track, pub in wanted.items():
            if track not in self._exporting:
                sink = self.export_sink(pub)
                pub.sinks.append(sink)
                self._exporting[track] = (pub, sink)
        self._preselect()
        self._hold_spotlight(room)

    def _preselect(self) -> None:
        """Which of this worker's sites' voices cross only as candidates: in an open
        conference, on a worker other than home, every site not audible by the stage itself
        (the chair, the floor's holders always cross)."""
        placement = self.placement
        on = (
            self.config.open_audio_preselect
            and self.stage.open
            and not placement.is_home
            and bool(placement.where)
        )
        here = {u for u, w in placement.where.items() if w == placement.here}
        self._preselected = frozenset(here - set(self.stage.audible)) if on else frozenset()
        for owner in self.loudest.known() - self._preselected:
            self.loudest.forget(owner)
        if self._preselected and self._voices_timer is None and not self.closed:
            self._voices_timer = asyncio.get_running_loop().call_later(
                VOICES_EVERY_S, self._voices_due
            )
        elif not self._preselected and self._voices_timer is not None:
            self._voices_timer.cancel()
            self._voices_timer = None

    def _voices_due(self) -> None:
        self._voices_timer = None
        if self.closed or not self._preselected:
            return
        self._tell_voices(self.clock(), always=True)
        self._voices_timer = asyncio.get_running_loop().call_later(VOICES_EVERY_S, self._voices_due)

    def _tell_voices(self, now: float, *, always: bool = False) -> None:
        """Name this worker's candidates to home, if they changed (or `always`)."""
        voices = tuple(self.loudest.candidates(now))
        names = tuple(u for u, _ in voices)
        if not always and names == self._told_voices:
            return
        self._told_voices = names
        frame = Voices(self.fabric.index, self.conference_id, voices)
        self.fabric.send(self.placement.home, encode(frame))

    def _feeds_here(self) -> list[tuple[str, Publication]]:
        """The tracks of the shown calls this worker has, by track id."""
        here = set(self.placement.feeds_here())
        found: list[tuple[str, Publication]] = []
        for officer, call_id in self.stage.feeds:
            if officer not in here:
                continue
            for kind in ("audio", "video"):
                pub = self._external(call_id, officer, kind)
                if pub is not None:
                    found.append((track_of(officer, kind), pub))
        return found

    def _local(self, track: str) -> Publication | None:
        """A track this worker terminates: a member's, or a shown call's."""
        room = self._room()
        pub = room.publications.get(track) if room is not None else None
        if pub is None:
            pub = dict(self._feeds_here()).get(track)
        return pub

    def shows(self, call_id: str) -> bool:
        """Whether the stage shows call `call_id` and this worker has it."""
        here = set(self.placement.feeds_here())
        return any(c == call_id and o in here for o, c in self.stage.feeds)

    def _may_cross(self, track: str) -> bool:
        placement = self.placement
        grid = self.config.conference_grid_slots
        return crosses(self.stage, placement.where, grid, track, placement.feeds)

    def _source_of(self, track: str) -> int | None:
        """The worker `track` may come to the router from (None: from none), kept until the
        stage or the placement changes: this runs for every packet in."""
        routes = self._routes
        if track in routes:
            return routes[track]
        owner, _ = owner_kind(track)
        worker = self.placement.worker_of(owner) if self._may_cross(track) else None
        if len(routes) >= _MAX_ROUTES:
            routes.clear()
        routes[track] = worker
        return worker

    # ---- uplink: this worker's tracks -----------------------------------------------------

    def export_sink(self, pub: Publication) -> PacketSink:
        """The sink that sends `pub`'s packets out of this worker (`staged` adds it to the
        tracks the stage lets cross; the benchmark drives it directly)."""
        track = pub.track_id
        name = track.encode()
        here = self.fabric.index
        conf = self._conf
        owner = pub.owner
        audio = pub.kind == "audio"

        def export(packet: RtpPacket, codec: RTCRtpCodecParameters, now: float) -> None:
            payload = packet.payload
            if not payload:
                return
            if audio and owner in self._preselected:
                level = packet.extensions.audio_level
                loudest = self.loudest
                was = loudest.changes
                if not loudest.heard(owner, None if level is None else level[1], now):
                    self.held_back[track] += 1
                    return
                if loudest.changes != was:
                    self._tell_voices(now)
            data = encode_packet(
                here,
                conf,
                name,
                sequence_number=packet.sequence_number,
                timestamp=packet.timestamp,
                marker=bool(packet.marker),
                payload_type=packet.payload_type,
                # Publication.forward parsed it already (True for audio).
                keyframe_start=pub.keyframe_starts,
                audio_level=packet.extensions.audio_level,
                payload=payload,
            )
            self.exported[track] += 1
            placement = self.placement
            if placement.is_home:
                for worker in self.sites:
                    self.fabric.send(worker, data)
            else:
                self.fabric.send(placement.home, data)

        return export

    # ---- frames from other workers --------------------------------------------------------

    def take(self, frame: Frame, data: bytes) -> None:
        placement = self.placement
        match frame:
            case Packet():
                if placement.is_home:
                    self._route(frame, data)
                elif frame.sender == placement.home:
                    self._feed(frame)
                else:
                    self.fabric.dropped["not_from_home"] += 1
            case KeyframeRequest():
                self._keyframe_asked(frame.track)
            case Sites():
                self._announced.add(frame.sender)
                self._stopped.discard(frame.sender)
                # Told again of the roll-in: a notice sent before the worker knew of the
                # conference (the pool tells the workers one after the other) was dropped
                # there, and without it the worker's joiners ask the publisher unheld.
                self._aim(tell=frozenset({frame.sender}))
            case Stop():
                self._announced.discard(frame.sender)
                self._stopped.add(frame.sender)
                self._aim()
            case RollinNotice():
                if frame.sender == placement.home and not placement.is_home:
                    self._told_rollin(frame)
            case Voices():
                if placement.is_home:
                    self._voices_named(frame)

    def _voices_named(self, frame: Voices) -> None:
        """Home: a worker's candidates. One it no longer names sends no more audio here, so
        home's ranking forgets it now instead of holding its slot for SPEAKING_HOLD_S."""
        before = self.voices.get(frame.sender, ())
        self.voices[frame.sender] = frame.voices
        named = {u for u, _ in frame.voices}
        room = self._room()
        if room is None:
            return
        for owner, _ in before:
            if owner not in named and self.placement.worker_of(owner) == frame.sender:
                room.speaking.forget(owner)

    def _aim(self, tell: frozenset[int] = frozenset()) -> None:
        """Home: which workers get the conference's packets (kept for the packet path); the
        roll-in is told to those added, and to `tell`."""
        placement = self.placement
        if not placement.is_home:
            self.sites = ()
            return
        named = set(placement.where.values()) | self._announced
        sites = tuple(sorted(named - self._stopped - {placement.here}))
        added = (set(sites) - set(self.sites)) | (tell & set(sites))
        self.sites = sites
        rollin = self.rollin
        now = self.clock()
        if rollin is not None and rollin.on(now) and added:
            notice = RollinNotice(
                placement.here,
                self.conference_id,
                int((rollin.started + rollin.length - now) * 1000),
                int(rollin.every * 1000),
            )
            for worker in sorted(added):
                self.fabric.send(worker, encode(notice))

    def _route(self, frame: Packet, data: bytes) -> None:
        """The router: a site's packet from its worker, checked, then to every worker."""
        if self._source_of(frame.track) != frame.sender:
            self.gated += 1
            return
        if frame.track.endswith(":audio"):
            self.audio_in[frame.track] += 1
        self._feed(frame)
        out = resend(data, self.fabric.index)
        for worker in self.sites:
            if worker != frame.sender:
                self.fabric.send(worker, out)
                self.relayed += 1

    def _feed(self, frame: Packet) -> None:
        pub = self.remote.get(frame.track)
        if pub is None:
            owner, _ = owner_kind(frame.track)
            worker = self.placement.worker_of(owner)
            if worker is None or worker == self.placement.here:
                self.fabric.dropped["not_remote"] += 1
                return
            pub = self._remote(frame.track)
        if pub.feed(frame):
            room = self._room()
            if room is not None:
                room.remote_published(pub)

    def _remote(self, track: str) -> RemotePublication:
        pub = self.remote.get(track)
        if pub is None:
            owner, kind = owner_kind(track)
            mime = "audio/opus" if kind == "audio" else self.config.conference_video_codec
            pub = RemotePublication(
                owner=owner,
                kind=kind,
                mime_type=mime,
                keyframe_interval=self.config.keyframe_interval_s,
                clock=self.clock,
                ask=self._ask,
            )
            self.remote[track] = pub
            self._hold_spotlight(self._room())
        return pub

    def _withdraw(self, track: str) -> None:
        pub = self.remote.pop(track)
        room = self._room()
        if room is not None:
            room.remote_withdrawn(pub)
        else:
            pub.close()

    # ---- keyframes ------------------------------------------------------------------------

    def _ask(self, pub: RemotePublication) -> None:
        """A RemotePublication's paced request: home asks the source's worker; any other
        worker asks home."""
        placement = self.placement
        to = placement.worker_of(pub.owner) if placement.is_home else placement.home
        if to is None or to == placement.here:
            return
        request = KeyframeRequest(placement.here, self.conference_id, pub.track_id)
        self.fabric.send(to, encode(request))

    def _keyframe_asked(self, track: str) -> None:
        owner, kind = owner_kind(track)
        placement = self.placement
        worker = placement.worker_of(owner)
        if worker == placement.here:
            self.keyframes_asked += 1
            pub = self._local(track)
            if pub is None:
                return
            if placement.is_home:
                # Other workers' requests, each paced there: held here in the roll-in.
                pub.need_keyframe()
            else:
                # Home's request: held and paced there already (its roll-in's own among them).
                pub.pace_keyframe()
        elif placement.is_home and worker is not None and kind == "video":
            self._remote(track).need_keyframe()

    def _told_rollin(self, notice: RollinNotice) -> None:
        """Home's roll-in, held to here one period short of its end: home asks for the
        spotlight's keyframe at least once after any request held before then."""
        every = notice.every_ms / 1000
        remaining = notice.remaining_ms / 1000 - every
        self.rollin = Rollin(self.clock(), max(0.0, remaining), every)
        self._hold_spotlight(self._room())

    def _hold_spotlight(self, room: ConferenceRoom | None) -> None:
        """In the roll-in: requests for the spotlight's keyframe wait for the periodic one."""
        spotlight = self.stage.spotlight
        rollin = self.rollin
        for pub in self._video_sources(room):
            if rollin is not None and pub.owner == spotlight:
                pub.held = self._holding
            elif pub.held is not None:
                pub.held = None

    def _holding(self) -> bool:
        return self.rollin is not None and self.rollin.holds(self.clock())

    def _video_sources(self, room: ConferenceRoom | None) -> Iterable[Publication]:
        yield from (p for p in self.remote.values() if p.kind == "video")
        if room is not None:
            yield from (p for p in room.publications.values() if p.kind == "video")

    def _arm_rollin(self) -> None:
        rollin = self.rollin
        if rollin is None or self.closed:
            return
        now = self.clock()
        due = rollin.next_ask(now)
        if due is None:
            self._hold_spotlight(self._room())
            return
        loop = asyncio.get_running_loop()
        self._rollin_timer = loop.call_later(max(0.0, due - now), self._rollin_due)

    def _rollin_due(self) -> None:
        self._rollin_timer = None
        spotlight = self.stage.spotlight
        if spotlight is not None:
            track = track_of(spotlight, "video")
            pub = self._local(track)
            worker = self.placement.worker_of(spotlight)
            if pub is None and worker is not None and worker != self.placement.here:
                pub = self._remote(track)
            if pub is not None:
                self.rollin_asks += 1
                pub.pace_keyframe()
        self._arm_rollin()

    def _cancel_rollin(self) -> None:
        if self._rollin_timer is not None:
            self._rollin_timer.cancel()
            self._rollin_timer = None

    # ---- end ------------------------------------------------------------------------------

    def close(self) -> None:
        """This worker leaves the conference: no more of its media in or out."""
        if self.closed:
            return
        self.closed = True
        self._cancel_rollin()
        if self._voices_timer is not None:
            self._voices_timer.cancel()
            self._voices_timer = None
        if self.fabric.handlers.get(self.conference_id) == self.take:
            del self.fabric.handlers[self.conference_id]
        placement = self.placement
        if not placement.is_home:
            self.fabric.send(placement.home, encode(Stop(self.fabric.index, self.conference_id)))
        for _track, (pub, sink) in self._exporting.items():
            if sink in pub.sinks:
                pub.sinks.remove(sink)
        self._exporting.clear()
        for track in list(self.remote):
            self._withdraw(track)


class Spans:
    """This worker's share of every conference whose sites span several workers, and the
    fabric they share (MediaService's part of it, kept here so the service only asks)."""

    def __init__(
        self,
        *,
        endpoint: FabricEndpoint | None,
        config: MediaConfig,
        clock: Callable[[], float],
        room: Callable[[str], ConferenceRoom | None],
        external: Callable[[str, str, str], Publication | None] = lambda _c, _u, _k: None,
    ) -> None:
        self.endpoint = endpoint
        self.config = config
        self.clock = clock
        self._room = room
        self._external = external
        self.fabric: Fabric | None = None
        self.by_conference: dict[str, ConferenceSpan] = {}
        # Conferences another node records (the home node of a cascade, media.cascade).
        self._not_recorded: set[str] = set()
        # Each routed conference's audio packets in as of the last `audio_sites_in`.
        self._audio_seen: dict[str, collections.Counter[str]] = {}

    def open(self) -> None:
        if self.endpoint is not None and self.fabric is None:
            self.fabric = Fabric(self.endpoint)
            self.fabric.open()

    def close(self) -> None:
        for span in self.by_conference.values():
            span.close()
        self.by_conference.clear()
        if self.fabric is not None:
            self.fabric.close()
            self.fabric = None

    def place(
        self,
        conference_id: str,
        home: int,
        where: dict[str, int],
        *,
        records: bool = True,
        feeds: dict[str, int] | None = None,
        stage: Stage | None = None,
    ) -> None:
        """MediaService.conference_placement; bad worker indices are a ValueError."""
        feeds = feeds or {}
        if records:
            self._not_recorded.discard(conference_id)
        else:
            self._not_recorded.add(conference_id)
        fabric = self.fabric
        if not where:
            self._not_recorded.discard(conference_id)
            span = self.by_conference.pop(conference_id, None)
            if span is not None:
                span.close()
            return
        if fabric is None:
            if home != 0 or any(w != 0 for w in (*where.values(), *feeds.values())):
                raise RuntimeError("a conference over several workers needs the fabric, started")
            return
        known = {fabric.index, *fabric.endpoint.siblings}
        unknown = sorted({home, *where.values(), *feeds.values()} - known)
        if unknown:
            raise ValueError(f"conference {conference_id}: no such media worker {unknown}")
        span = self.by_conference.get(conference_id)
        if span is None:
            span = ConferenceSpan(
                conference_id=conference_id,
                fabric=fabric,
                config=self.config,
                clock=self.clock,
                room=lambda: self._room(conference_id),
                external=self._external,
            )
            self.by_conference[conference_id] = span
            room = self._room(conference_id)
            if room is not None:
                span.adopt(room)
        span.place(Placement(fabric.index, home, dict(where), dict(feeds)), stage)

    def adopt(self, conference_id: str, room: ConferenceRoom) -> None:
        """The conference's room was made on this worker."""
        span = self.by_conference.get(conference_id)
        if span is not None:
            span.adopt(room)

    def routes(self, conference_id: str) -> bool:
        """Whether this worker routes a conference that has sites (its room stays, for the
        router's recording, when none of its own members are left)."""
        span = self.by_conference.get(conference_id)
        return span is not None and span.placement.is_home and bool(span.placement.where)

    def records(self, conference_id: str) -> bool:
        """A conference is recorded by its router's worker only."""
        if conference_id in self._not_recorded:
            return False
        span = self.by_conference.get(conference_id)
        return span is None or span.placement.is_home

    def left(self, conference_id: str) -> None:
        """The conference's last site here left (not home): no more of its media here."""
        span = self.by_conference.get(conference_id)
        if span is not None and not span.placement.is_home:
            if span.placement.feeds_here():
                # It still exports a shown call's tracks (the pool sends the stage).
                return
            del self.by_conference[conference_id]
            span.close()

    def feed_published(self, call_id: str) -> None:
        """Call `call_id` has a new track: the conferences showing it from here export it."""
        for span in list(self.by_conference.values()):
            if span.shows(call_id):
                span.restage()

    def audio_sites_in(self) -> dict[int, int]:
        """Per other worker, the most sites of one conference routed here whose audio came
        from it since the last call (the preselection's figure for the pool's health)."""
        most: dict[int, int] = {}
        seen = self._audio_seen
        for conference_id, span in self.by_conference.items():
            if not span.placement.is_home:
                continue
            before = seen.get(conference_id, collections.Counter())
            per_worker: collections.Counter[int] = collections.Counter()
            for track, count in span.audio_in.items():
                if count > before[track]:
                    worker = span.placement.worker_of(owner_kind(track)[0])
                    if worker is not None:
                        per_worker[worker] += 1
            seen[conference_id] = collections.Counter(span.audio_in)
            for worker, sites in per_worker.items():
                most[worker] = max(most.get(worker, 0), sites)
        for gone in set(seen) - set(self.by_conference):
            del seen[gone]
        return most

    def health(self) -> dict[str, object]:
        if self.fabric is None:
            return {}
        return {"fabric_dropped": dict(self.fabric.dropped)}
