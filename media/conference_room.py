"""A conference's media: every member publishes to the server, and receives through slots.

The core sends the room's members and its `Stage` (who is audible, the spotlight, the
moderators); this room keeps each member's slots fed accordingly (media.stage decides which
source goes in which slot; media.forwarder.Subscription.switch moves a slot to it). A member
gets their slots once the answer to their first offer is out (`start_receiving`): one server
offer adds them all, and later changes of source need no renegotiation. A member named
moderator gets the grid with one more offer.

Each member is told whose media their slots carry (`conference_media`) whenever that
changes for them. Witnesses publish nothing (the core makes them `silent`).

While a moderator has recording on, what the conference forwards is recorded, without
transcoding, one file per source track as in calls (media.capture): the voices in the audio
slots and the spotlight's video, each from when it comes on until it goes off (or recording
stops), registered as evidence under the conference's id.

All forwarding decisions for a conference live in this one object, so the fan-out can move
to worker processes (the next step) behind the same MediaPort.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from typing import Final

import structlog

from media.capture import CallCapture
from media.forwarder import Publication, Subscription
from media.peer import MemberPeer
from media.room import Room
from media.settings import MediaConfig
from media.sink import SenderFactory, SinkSite, SinkSpec
from media.stage import (
    SPOTLIGHT,
    Lineup,
    Speaking,
    audio_slot,
    grid_slot,
    lineup,
    seen_by,
)
from signalling import protocol as p
from signalling.core.actions import Stage

log = structlog.get_logger(__name__)

# RTP clock rates: Opus is always 48 kHz on the wire (RFC 7587); video 90 kHz.
_RATE: Final = {"audio": 48_000, "video": 90_000}
# One packet's worth of time, the least a switch moves the timestamps on.
_STEP_S: Final = {"audio": 0.02, "video": 1 / 30}
# How often the room looks again at who is speaking, while someone is (or it is open).
_SPEAKING_POLL_S: Final = 0.2
# The moderators are told who speaks at most this often, as their view of the sites is batched
# (conferences.moderator_delta_s): with hundreds of sites in an open discussion, voices come
# and go many times a second.
SPEAKING_TELL_S: Final = 0.5
_NOBODY: Final = Stage((), None, ())


class ConferenceRoom(Room):
    def __init__(
        self,
        *,
        conference_id: str,
        config: MediaConfig,
        clock: Callable[[], float],
        send_offer: Callable[[str, str, str], None],
        deliver: Callable[[str, p.ServerMessage], None],
        capture: Callable[[], CallCapture | None] = lambda: None,
        external: Callable[[str, str, str], Publication | None] = lambda _c, _u, _k: None,
    ) -> None:
        """`capture`: makes the conference's recording when it is first switched on (None:
        this server keeps no evidence, and nothing is recorded). `external(call_id, user,
        kind)`: a track published in a call on this server (a feed shared with the
        conference)."""
        self._external = external
        # Feeds' publications this room listens to the end of.
        self._watched: set[int] = set()
        super().__init__(call_id=conference_id, config=config, clock=clock, send_offer=send_offer)
        self._new_capture = capture
        self.capture: CallCapture | None = None
        self.stage = _NOBODY
        self.feeds: dict[str, str] = {}
        self.line = Lineup.empty(config.conference_audio_slots, config.conference_grid_slots)
        self.speaking = Speaking()
        # Who the moderators were last told is speaking.
        self._said_speaking: list[str] = []
        self._said_at = -math.inf
        self.codecs = {"audio": "audio/opus", "video": config.conference_video_codec}
        self._deliver = deliver
        # What each member was last told their slots carry.
        self._told: dict[str, Lineup] = {}
        # When each slot (by subscription key) went idle: its timestamps move on by as much.
        self._idle_since: dict[str, float] = {}
        self._restage_soon: asyncio.Handle | None = None
        self._poll: asyncio.TimerHandle | None = None
        # Tracks of members on other media workers, by track id (media.span keeps them: the
        # same dict), used as this worker's members' own.
        self.remote: dict[str, Publication] = {}
        # Told after every restage (media.span: what leaves this worker follows the stage).
        self.on_staged: Callable[[], None] | None = None
        # The benchmark's pre-keyed sinks (media.sink), by name: sites the core does not know
        # of, whose slots this room fills as a site's. Only a server started with
        # `media.bench_sink_socket` ever adds one (media.sink_control).
        self.sinks: dict[str, SinkSite] = {}
        self._senders = SenderFactory()

    # ---- the core's word ------------------------------------------------------------------

    def update(
        self, members: frozenset[str], silent: frozenset[str], stage: Stage | None = None
    ) -> None:
        super().update(members, silent)
        for user in [u for u in self._told if u not in members]:
            del self._told[user]
        for key in [
            k
            for k in self._idle_since
            if k.split("/", 1)[0] not in members and k.split("/", 1)[0] not in self.sinks
        ]:
            del self._idle_since[key]
        self.stage = stage if stage is not None else _NOBODY
        self.feeds = dict(self.stage.feeds)
        for user in self.stage.moderators:
            peer = self.peers.get(user)
            if peer is not None and peer.ready:
                peer.open_slots(self._slots_for(user), self.codecs)
        if self.stage.open:
            self._arm_poll()
        if self.stage.record and self.capture is None:
            self.capture = self._new_capture()
        self.restage()

    # ---- Room's hooks ---------------------------------------------------------------------

    def _deliver_existing(self, peer: MemberPeer) -> None:
        peer.open_slots(self._slots_for(peer.user), self.codecs)
        self.restage()

    def _distribute(self, pub: Publication) -> None:
        if pub.kind == "audio":
            # Who speaks: shown to the moderators, and in an open conference who is heard.
            pub.on_level = self._heard
        self.restage()

    def _withdraw(self, pub: Publication) -> None:
        if self.publications.get(pub.track_id) is pub:
            del self.publications[pub.track_id]
        self.speaking.forget(pub.owner)
        # Every slot leaves it before it closes.
        self.restage()
        now = self.clock()
        for sub in self._every_slot():
            if sub.publication is pub:
                self._switch(sub, None, pub.kind, now)
        pub.close()

    # ---- slots ----------------------------------------------------------------------------

    def _sees_grid(self, user: str) -> bool:
        """Moderators; and in a concentrated enforcement action, its witnesses, who watch
        all of it."""
        return user in self.stage.moderators or (self.stage.action and user in self.silent)

    def _slots_for(self, user: str) -> list[tuple[str, str]]:
        slots = [(audio_slot(i), "audio") for i in range(len(self.line.audio))]
        slots.append((SPOTLIGHT, "video"))
        if self._sees_grid(user):
            slots += [(grid_slot(i), "video") for i in range(len(self.line.grid))]
        return slots

    def _usable(self, kind: str) -> dict[str, Publication]:
        """Publications of `kind` in the conference's codec, by owner: the members', then
        the feeds' (taken from their calls)."""
        want = self.codecs[kind].lower()
        usable: dict[str, Publication] = {}
        own = [p for p in self.publications.values() if p.owner not in self.silent]
        own += self.remote.values()
        found = (self._external(call_id, officer, kind) for officer, call_id in self.feeds.items())
        feeds = [f for f in found if f is not None]
        for pub in [*own, *feeds]:
            if pub.kind != kind or pub.codec is None:
                continue
            if pub.codec.mimeType.lower() == want:
                usable[pub.owner] = pub
        for feed in feeds:
            if id(feed) not in self._watched:
                self._watched.add(id(feed))
                feed.on_close.append(self._on_feed_close(feed))
        return usable

    def _on_feed_close(self, pub: Publication) -> Callable[[], None]:
        return lambda: self._feed_closed(pub)

    def _feed_closed(self, pub: Publication) -> None:
        """A feed's track ends (its call ended, or its officer offered again): every slot
        leaves it before it closes (the call's room no longer lists it)."""
        self._watched.discard(id(pub))
        now = self.clock()
        for sub in self._every_slot():
            if sub.publication is pub:
                self._switch(sub, None, pub.kind, now)
        if self._capture_of(pub):
            assert self.capture is not None
            self.capture.stop(pub)
        self.restage()

    def feed_published(self) -> None:
        """A call shared with this conference has a new track."""
        self.restage()

    def _capture_of(self, pub: Publication) -> bool:
        return self.capture is not None and pub in self.capture.recorded()

    def restage(self) -> None:
        """Put every source in its slot, for every member; tell those whose slots changed."""
        if self.closed:
            return
        audio, video = self._usable("audio"), self._usable("video")
        now = self.clock()
        speaking = self.speaking.now(now) if self.stage.open else []
        self.line = lineup(
            self.stage,
            audio=audio.keys(),
            video=[u for u in (*self.members, *self._remote_owners(), *self.feeds) if u in video],
            speaking=speaking,
            previous=self.line,
        )
        sources = {"audio": audio, "video": video}
        for user, peer in self.peers.items():
            if not peer.slots:
                continue
            view = seen_by(self.line, user, moderator=self._sees_grid(user))
            self._fill(peer.slots, view, sources, now)
            if self._told.get(user) != view:
                self._told[user] = view
                self._deliver(user, _told(self.call_id, view, peer.slots))
        for name, sink in self.sinks.items():
            # Filled as a site's; nobody to tell.
            self._fill(sink.slots, seen_by(self.line, name, moderator=False), sources, now)
        self._record(audio, video)
        if self.on_staged is not None:
            self.on_staged()

    def _fill(
        self,
        slots: dict[str, Subscription],
        view: Lineup,
        sources: dict[str, dict[str, Publication]],
        now: float,
    ) -> None:
        """Switch each of one member's slots to the source `view` puts in it."""
        for name, source in view.slots().items():
            sub = slots.get(name)
            if sub is None:
                continue
            kind = "audio" if name.startswith("audio") else "video"
            pub = sources[kind].get(source) if source is not None else None
            if sub.publication is not pub:
                self._switch(sub, pub, kind, now)

    def _every_slot(self) -> list[Subscription]:
        """The slots of every member and every sink."""
        slots = [sub for peer in self.peers.values() for sub in peer.slots.values()]
        slots += [sub for sink in self.sinks.values() for sub in sink.slots.values()]
        return slots

    # ---- the benchmark's sinks (media.sink) -----------------------------------------------

    def add_sink(self, spec: SinkSpec) -> SinkSite:
        """A pre-keyed sink joins as a receive-only site: a site's slots, filled at once."""
        if self.closed:
            raise ValueError("the conference's media has ended")
        if spec.name in self.sinks or spec.name in self.members:
            raise ValueError(f"sink {spec.name}: the name is in use")
        addresses = self.config.ice_addresses
        sink = SinkSite(
            spec,
            slots=self._slots_for(spec.name),
            bind_address=addresses[0] if addresses else "0.0.0.0",
            max_backlog=self.config.max_subscriber_backlog_bytes,
            engine=self.config.fanout,
            senders=self._senders,
        )
        self.sinks[spec.name] = sink
        self.restage()
        return sink

    def remove_sink(self, name: str) -> None:
        sink = self.sinks.pop(name, None)
        if sink is None:
            return
        for key in [k for k in self._idle_since if k.split("/", 1)[0] == name]:
            del self._idle_since[key]
        sink.close()

    def _remote_owners(self) -> list[str]:
        return sorted({pub.owner for pub in self.remote.values()})

    def remote_published(self, pub: Publication) -> None:
        """A track of a member on another worker has come (media.span)."""
        self.remote[pub.track_id] = pub
        if pub.kind == "audio":
            pub.on_level = self._heard
        self.restage()

    def remote_withdrawn(self, pub: Publication) -> None:
        """A track of a member on another worker is gone (left, or moved here)."""
        if self.remote.get(pub.track_id) is pub:
            del self.remote[pub.track_id]
        self._withdraw(pub)

    def _record(self, audio: dict[str, Publication], video: dict[str, Publication]) -> None:
        """Record what is forwarded now, and nothing else."""
        capture = self.capture
        if capture is None:
            return
        wanted: list[Publication] = []
        if self.stage.record:
            wanted = [audio[u] for u in self.line.audio if u is not None and u in audio]
            spotlight = self.line.spotlight
            if spotlight is not None and spotlight in video:
                wanted.append(video[spotlight])
        for pub in capture.recorded():
            if pub not in wanted:
                capture.stop(pub)
        for pub in wanted:
            capture.record(pub)

    def _switch(self, sub: Subscription, pub: Publication | None, kind: str, now: float) -> None:
        # The member's stream goes on as if the time the slot stood idle had passed.
        idle = self._idle_since.pop(sub.key, None)
        gap = max(_STEP_S[kind], now - idle) if idle is not None else _STEP_S[kind]
        sub.switch(pub, int(gap * _RATE[kind]))
        if pub is None:
            self._idle_since[sub.key] = now

    # ---- who speaks ------------------------------------------------------------------------

    def _heard(self, owner: str, level: int) -> None:
        if self.speaking.heard(owner, level, self.clock()) and self._restage_soon is None:
            # Not from inside the packet loop: the slots' subscriptions may change.
            self._restage_soon = asyncio.get_running_loop().call_soon(self._speaking_changed)

    def _speaking_changed(self) -> None:
        """Tell the moderators who speaks now, if that changed; in an open conference the
        speakers take the free audio slots."""
        self._restage_soon = None
        if self.closed:
            return
        now = self.clock()
        speaking = self.speaking.now(now)
        told = sorted(speaking) == sorted(self._said_speaking)
        if not told and now - self._said_at >= SPEAKING_TELL_S:
            self._said_speaking, self._said_at, told = speaking, now, True
            message = p.ConferenceSpeaking(conference_id=self.call_id, speaking=sorted(speaking))
            for moderator in self.stage.moderators:
                self._deliver(moderator, message)
        if self.stage.open:
            self.restage()
        if speaking or self.stage.open or not told:
            self._arm_poll()

    def _arm_poll(self) -> None:
        if self._poll is None and not self.closed:
            self._poll = asyncio.get_running_loop().call_later(_SPEAKING_POLL_S, self._polled)

    def _polled(self) -> None:
        self._poll = None
        self._speaking_changed()

    async def close(self) -> None:
        for handle in (self._restage_soon, self._poll):
            if handle is not None:
                handle.cancel()
        for name in list(self.sinks):
            self.remove_sink(name)
        await super().close()
        if self.capture is not None:
            await self.capture.close()

    def sent_from(self, owner: str, kind: str) -> int:
        """Packets of `owner`'s audio or video sent to the members connected now (a test's
        proof of the gate)."""
        return sum(
            sub.sent_from(owner)
            for peer in self.peers.values()
            for name, sub in peer.slots.items()
            if (name.startswith("audio")) == (kind == "audio")
        )


def _told(conference_id: str, view: Lineup, slots: dict[str, Subscription]) -> p.ConferenceMedia:
    """What a member is told: only the grid they have slots for."""
    grid = [u for i, u in enumerate(view.grid) if grid_slot(i) in slots]
    return p.ConferenceMedia(
        conference_id=conference_id, audio=list(view.audio), spotlight=view.spotlight, grid=grid
    )
