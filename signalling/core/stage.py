"""What each running conference's media forwards, and who may negotiate media for it.

The floor, the moderators and the spotlight decide whose media may flow; this sub-core turns
a conference's state into the `Room` its media server follows (`room_of`) and, after every
input the switchboard handles, emits the rooms that changed (`sync`). Enforcement is the media
server's: audio of a site that is not `audible` has no slot to go to and never leaves the
server (media.stage). Sites whose connection is down are out of the room until they are back,
as call parties are; witnesses receive but publish nothing.

This module owns the last room sent for each conference.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from signalling import protocol as p
from signalling.core.actions import Action, Negotiate, Room, Stage
from signalling.core.conference import Conference, ConferenceStatus
from signalling.core.presence import Session
from signalling.errors import Forbidden, InvalidState, MediaUnavailable

if TYPE_CHECKING:
    from signalling.core.switchboard import Switchboard


def room_of(conf: Conference) -> Room | None:
    """The media `conf` forwards now: None before it starts, once it ended, and while none of
    its sites is connected."""
    if conf.status is not ConferenceStatus.RUNNING:
        return None
    members = tuple(u for u, site in conf.sites.items() if not site.away)
    if not members:
        return None
    silent = tuple(u for u in members if conf.sites[u].role == "witness")
    moderators = tuple(u for u in conf.moderators if u in conf.sites)
    # The chair first: with more voices than slots, the one leading is never cut.
    chair = (conf.chair,) if conf.chair in moderators else ()
    voices = chair + tuple(u for u in moderators if u != conf.chair)
    audible = voices + tuple(u for u in conf.floor.holders() if u not in voices)
    spotlight = conf.shown_spotlight() or conf.chair
    feeds = tuple((f.officer, f.call_id) for f in conf.feeds.values())
    if spotlight is not None and conf.feed_of(spotlight) is not None:
        # A shared call is heard while it is shown.
        audible += (spotlight,)
    stage = Stage(
        audible,
        spotlight,
        moderators,
        open=conf.audio == "open",
        record=conf.recording,
        feeds=feeds,
        action=conf.kind == "action",
    )
    return Room(conf.conference_id, members, silent, conf.court, conf.host, None, stage)


class Stages:
    def __init__(self, board: Switchboard, *, media: bool, recording: bool) -> None:
        self._board = board
        self.media = media
        # Whether this server keeps recordings (media on, `media.record`, an evidence store).
        self.recording = recording
        self._sent: dict[str, Room] = {}

    def negotiate(self, session: Session, msg: p.MediaMessage) -> Negotiate:
        """A site's media message for a conference (its id in `call_id`), checked."""
        conf = self._board.conferences.get(msg.call_id)
        site = conf.sites.get(session.user_id)
        if site is None:
            raise Forbidden("you are not in this conference")
        if conf.status is not ConferenceStatus.RUNNING:
            raise InvalidState(f"conference is {conf.status.value}")
        if isinstance(msg, p.Snapshot):
            raise InvalidState("snapshots are taken in calls")
        if not self.media:
            raise MediaUnavailable("media is not available on this server")
        return Negotiate(session.user_id, msg)

    def sync(self, out: list[Action]) -> None:
        """Emit the room of every conference whose media changed since the last call."""
        table = self._board.conferences.table
        for cid in [*self._sent, *(c for c in table if c not in self._sent)]:
            conf = table.get(cid)
            room = room_of(conf) if conf is not None else None
            sent = self._sent.get(cid)
            if room == sent:
                continue
            if room is None:
                assert sent is not None
                del self._sent[cid]
                out.append(Room(cid, (), (), sent.court, sent.officer, None, sent.stage))
            else:
                self._sent[cid] = room
                out.append(room)
