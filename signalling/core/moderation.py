"""The moderators of a running conference and what they do with the room: spotlight a site,
remove one (banned or not), lock the conference, name co-moderators, hand the chair over,
end it; and the chair, which a connected co-moderator takes when the chair drops, and without
which the conference ends after the chairless grace. What they do with the floor is
`signalling.core.speakers`'. A moderator's message quoting a `revision` older than the
conference's is refused `conflict` (`signalling.core.conference.moderated`): of two moderators
acting at once on the same state, one wins, the other is told.

This module owns the chairless grace (`ChairGrace`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from identity import Courts
from signalling import protocol as p
from signalling.core.actions import Action, Send
from signalling.core.conference import (
    Conference,
    ConferenceStatus,
    check_revision,
    invitation_info,
    moderated,
    site_info,
    target,
)
from signalling.core.conferences import ChairGrace
from signalling.core.deadlines import Deadlines
from signalling.core.presence import Session
from signalling.errors import Forbidden, InvalidState, MediaUnavailable, NotFound
from signalling.settings import ConferencesConfig

if TYPE_CHECKING:
    from signalling.core.switchboard import Switchboard

TimerKind = Literal["talk", "revoke"]


class Moderation:
    def __init__(
        self, board: Switchboard, courts: Courts, config: ConferencesConfig, deadlines: Deadlines
    ) -> None:
        self._board = board
        self._courts = courts
        self.config = config
        self._deadlines = deadlines
        # conference -> its floor timers armed now.

    def _conference(self, conference_id: str) -> Conference:
        return self._board.conferences.get(conference_id)

    # ---- what moderators do with the room ---------------------------------------------------

    def spotlight(self, session: Session, msg: p.Spotlight, now: float, out: list[Action]) -> None:
        conf = moderated(self._conference(msg.conference_id), session.user_id, msg.revision)
        if msg.site is not None and conf.feed_of(msg.site) is None:
            target(conf, msg.site, witness_ok=False, moderator_ok=True)
        conf.spotlight = msg.site
        self._record(conf, "conference_spotlight", now, out, by=session.user_id, user=msg.site)
        self._changed(conf, out)

    def remove(self, session: Session, msg: p.RemoveSite, now: float, out: list[Action]) -> None:
        conf = moderated(self._conference(msg.conference_id), session.user_id, msg.revision)
        site = conf.sites.get(msg.site)
        if site is None:
            raise NotFound("no such site in this conference", field="site")
        if site.role == "moderator":
            raise Forbidden("a moderator cannot be removed", field="site")
        if msg.ban:
            conf.banned.add(site.user)
        reason: p.LeftReason = "banned" if msg.ban else "removed"
        out.append(
            Send((site.user,), p.ConferenceLeft(conf.conference_id, reason, session.user_id))
        )
        self._board.conferences.remove(conf, site.user, reason, session.user_id, now, out)

    def lock(self, session: Session, msg: p.LockConference, now: float, out: list[Action]) -> None:
        conf = moderated(self._conference(msg.conference_id), session.user_id, msg.revision)
        conf.locked = msg.locked
        self._record(conf, "conference_locked", now, out, by=session.user_id, locked=msg.locked)
        self._changed(conf, out)

    def record(
        self, session: Session, msg: p.RecordConference, now: float, out: list[Action]
    ) -> None:
        conf = moderated(self._conference(msg.conference_id), session.user_id, msg.revision)
        if msg.on and not self._board.stages.recording:
            raise MediaUnavailable("this server does not record")
        if conf.recording == msg.on:
            raise InvalidState("already recording" if msg.on else "not recording", field="on")
        conf.recording = msg.on
        kind = "conference_recording_started" if msg.on else "conference_recording_stopped"
        self._record(conf, kind, now, out, by=session.user_id)
        self._changed(conf, out)

    def name_moderator(
        self, session: Session, msg: p.NameModerator, now: float, out: list[Action]
    ) -> None:
        conf = moderated(
            self._conference(msg.conference_id), session.user_id, msg.revision, chair=True
        )
        site = conf.sites.get(msg.user)
        if site is not None and site.role == "moderator":
            raise InvalidState("already a moderator", field="user")
        site = target(conf, msg.user, field="user")
        site.role = "moderator"
        conf.moderators.append(site.user)
        self._record(conf, "moderator_named", now, out, by=session.user_id, user=site.user)
        # A moderator is always heard: out of the floor's queue and holders.
        self._board.speakers.leave_floor(conf, site.user, "promoted", now, out)
        # What every moderator sees, whole, once: all the sites and every invitation's
        # answer; then the batched changes, as the other moderators.
        info = self._board.presence.info
        everyone = [site_info(conf, s, info) for s in conf.sites.values()]
        invitations = [invitation_info(i, info) for i in conf.invitations.values()]
        view = p.SitesChanged(conf.conference_id, conf.revision, everyone, [], invitations)
        out.append(Send((site.user,), view))
        self._board.conferences.site_changed(conf, site, now, out)

    def remove_moderator(
        self, session: Session, msg: p.RemoveModerator, now: float, out: list[Action]
    ) -> None:
        conf = moderated(
            self._conference(msg.conference_id), session.user_id, msg.revision, chair=True
        )
        if msg.user == session.user_id:
            raise InvalidState(
                "the chair stays a moderator; hand the chair over first", field="user"
            )
        if msg.user not in conf.moderators:
            raise NotFound("no such moderator", field="user")
        conf.moderators.remove(msg.user)
        self._record(conf, "moderator_removed", now, out, by=session.user_id, user=msg.user)
        site = conf.sites.get(msg.user)
        if site is not None:
            # A site again: heard only with the floor, as any other.
            site.role = "site"
            # No longer among the moderators the batched changes go to: told at once, with
            # its own site, so its pages leave the moderator view (as `name_moderator`'s
            # whole view told it to enter one).
            info = self._board.presence.info
            own = p.SitesChanged(
                conf.conference_id, conf.revision, [site_info(conf, site, info)], [], []
            )
            out.append(Send((site.user,), own))
            self._board.conferences.site_changed(conf, site, now, out)

    def hand_over(self, session: Session, msg: p.HandOver, now: float, out: list[Action]) -> None:
        conf = moderated(
            self._conference(msg.conference_id), session.user_id, msg.revision, chair=True
        )
        site = conf.sites.get(msg.to)
        if site is None or site.role != "moderator" or site.away:
            raise NotFound("no such moderator here", field="to")
        if msg.to == session.user_id:
            raise InvalidState("you already hold the chair", field="to")
        self.take_chair(conf, msg.to, "handed_over", now, out, by=session.user_id)

    def end(self, session: Session, msg: p.EndConference, now: float, out: list[Action]) -> None:
        conf = self._board.conferences.get(msg.conference_id)
        if session.user_id not in conf.moderators:
            raise Forbidden("only a moderator ends the conference")
        if conf.status is ConferenceStatus.RUNNING:
            check_revision(conf, msg.revision)
        self._board.conferences.end(conf, "ended", session.user_id, now, out)

    # ---- the chair ------------------------------------------------------------------------

    def chair_lost(self, conf: Conference, now: float, out: list[Action]) -> None:
        """The chair dropped or left: a connected co-moderator takes over; with none, the
        conference goes on without a chair for the grace period."""
        gone = conf.chair
        for user in conf.moderators:
            site = conf.sites.get(user)
            if user != gone and site is not None and not site.away:
                self.take_chair(conf, user, "takeover", now, out)
                return
        conf.chair = None
        conf.changed()
        self._record(conf, "chair_changed", now, out, chair=None, reason="dropped", by=gone)
        grace = ChairGrace(conf.conference_id)
        self._deadlines.set(grace, now + self.config.chairless_grace_s)
        self._board.conferences.broadcast(conf, out)

    def take_chair(
        self,
        conf: Conference,
        user: str,
        reason: str,
        now: float,
        out: list[Action],
        *,
        by: str | None = None,
    ) -> None:
        self._deadlines.cancel(ChairGrace(conf.conference_id))
        conf.chair = user
        conf.changed()
        self._record(conf, "chair_changed", now, out, chair=user, reason=reason, by=by)
        self._board.conferences.broadcast(conf, out)

    def chair_grace_over(self, conference_id: str, now: float, out: list[Action]) -> None:
        conf = self._board.conferences.table.get(conference_id)
        if conf is None or conf.status is not ConferenceStatus.RUNNING:
            return
        if not any(not conf.sites[u].away for u in conf.moderators_here()):
            self._board.conferences.end(conf, "no_moderator", None, now, out)

    def forget(self, conf: Conference) -> None:
        """`conf` ended: its chairless grace does not run out."""
        self._deadlines.cancel(ChairGrace(conf.conference_id))

    def _changed(self, conf: Conference, out: list[Action]) -> None:
        conf.changed()
        self._board.conferences.broadcast(conf, out)

    def _record(
        self, conf: Conference, kind: str, now: float, out: list[Action], **data: object
    ) -> None:
        out.append(self._board.facts.record(kind, now, conference=conf.conference_id, **data))

    def await_chair(self, conf: Conference, now: float) -> None:
        """`conf` started with no moderator joined yet: it ends unless one joins within the
        grace."""
        self._deadlines.set(ChairGrace(conf.conference_id), now + self.config.chairless_grace_s)

    def chair_here(self, conf: Conference) -> None:
        """The chair joined (or came back) before any grace ran out."""
        self._deadlines.cancel(ChairGrace(conf.conference_id))
