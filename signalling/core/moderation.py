"""The floor and the moderators' actions in a running conference.

Sites raise and lower hands and give the floor back; the moderators (the chair and the
co-moderators it names) grant the floor (to a site that did not ask: a roll call), revoke it
(after the revoke grace), mute or unmute all, spotlight a site, remove one (banned or not),
lock the conference, change the floor's limits, name co-moderators, hand the chair over and
end the conference. Whose turn it is, is decided by the conference's pure `Floor`
(signalling/core/floor.py, docs/floor.md); this module turns what it decides into messages,
trace records and typed timers, and checks who may ask what first, so that a refusal changes
nothing. A moderator's message quoting a `revision` older than the conference's is refused
`conflict`: of two moderators acting at once on the same state, one wins, the other is told.

This module owns the floor's timers (`FloorTimer`) and the chairless grace (`ChairGrace`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from identity import Courts
from signalling import protocol as p
from signalling.core.actions import Action, Send
from signalling.core.conference import (
    Conference,
    ConferenceStatus,
    Site,
    floor_info,
    invitation_info,
    site_info,
)
from signalling.core.conferences import ChairGrace
from signalling.core.deadlines import Deadlines
from signalling.core.floor import (
    Denied,
    FloorEffect,
    FloorMode,
    FloorPolicy,
    Granted,
    Lowered,
    Positions,
    Queued,
    Released,
    Revoked,
    Revoking,
    StartTimer,
    StopTimer,
)
from signalling.core.presence import Session
from signalling.errors import Conflict, Forbidden, InvalidState, NotFound
from signalling.settings import ConferencesConfig

if TYPE_CHECKING:
    from signalling.core.switchboard import Switchboard

TimerKind = Literal["talk", "revoke"]


@dataclass(frozen=True, slots=True)
class FloorTimer:
    """Deadline: a holder's talk time is over ("talk"), or a revoke's grace ("revoke")."""

    conference_id: str
    kind: TimerKind
    site: str


class Moderation:
    def __init__(
        self, board: Switchboard, courts: Courts, config: ConferencesConfig, deadlines: Deadlines
    ) -> None:
        self._board = board
        self._courts = courts
        self.config = config
        self._deadlines = deadlines
        # conference -> its floor timers armed now.
        self._timers: dict[str, set[FloorTimer]] = {}

    # ---- what sites ask ---------------------------------------------------------------------

    def raise_hand(self, session: Session, msg: p.RaiseHand, now: float, out: list[Action]) -> None:
        conf, site = self._site(session, msg.conference_id)
        if conf.floor.position(site.user) is not None:
            # Raised already: its place again, nothing new to record.
            floor = floor_info(conf, site.user)
            out.append(Send((site.user,), p.FloorStatus(conf.conference_id, floor, None)))
            return
        priority = len(self._courts.ancestors(site.court)) if site.court in self._courts else 9
        self._apply(conf, conf.floor.request(site.user, priority, now), None, now, out)

    def lower_hand(self, session: Session, msg: p.LowerHand, now: float, out: list[Action]) -> None:
        conf, site = self._site(session, msg.conference_id)
        self._apply(conf, conf.floor.cancel(site.user, now), None, now, out)

    def release(self, session: Session, msg: p.ReleaseFloor, now: float, out: list[Action]) -> None:
        conf, site = self._site(session, msg.conference_id)
        self._apply(conf, conf.floor.release(site.user, now), None, now, out)

    def _site(self, session: Session, conference_id: str) -> tuple[Conference, Site]:
        conf = self._board.conferences.get(conference_id)
        site = conf.sites.get(session.user_id)
        if site is None:
            raise InvalidState("you are not in this conference")
        if site.role == "witness":
            raise Forbidden("witnesses watch; they do not speak")
        if site.role == "moderator":
            raise InvalidState("moderators are always heard")
        return conf, site

    # ---- what moderators do -----------------------------------------------------------------

    def grant(self, session: Session, msg: p.GrantFloor, now: float, out: list[Action]) -> None:
        conf = self._moderated(session, msg.conference_id, msg.revision)
        site = self._target(conf, msg.site)
        if site.away:
            raise InvalidState("the site's connection is down", field="site")
        called = conf.floor.position(site.user) is None
        effects = conf.floor.grant(site.user, now)
        if not _denied(effects):
            site.called = called
        self._apply(conf, effects, session.user_id, now, out)

    def revoke(self, session: Session, msg: p.RevokeFloor, now: float, out: list[Action]) -> None:
        conf = self._moderated(session, msg.conference_id, msg.revision)
        site = self._target(conf, msg.site)
        effects = conf.floor.revoke(site.user, now)
        if not _denied(effects) and effects:
            # Taken at the end of the grace: the record then says who revoked it.
            conf.revoked_by[site.user] = session.user_id
        self._apply(conf, effects, session.user_id, now, out)

    def mute_all(self, session: Session, msg: p.MuteAll, now: float, out: list[Action]) -> None:
        conf = self._moderated(session, msg.conference_id, msg.revision)
        conf.audio = "floor"
        self._record(conf, "conference_muted", now, out, by=session.user_id, audio="floor")
        effects: list[FloorEffect] = []
        policy = conf.floor.policy
        if policy.mode is FloorMode.OPEN:
            # An open floor would hand the freed places straight to the raised hands: mute
            # all is silence, so the moderator grants again from now on.
            moderated = dataclasses.replace(policy, mode=FloorMode.MODERATED)
            self._record_policy(conf, moderated, session.user_id, now, out)
            effects += conf.floor.set_policy(moderated, now)
        effects += conf.floor.revoke_all(now)
        self._apply(conf, effects, session.user_id, now, out, changed=True)

    def unmute_all(self, session: Session, msg: p.UnmuteAll, now: float, out: list[Action]) -> None:
        conf = self._moderated(session, msg.conference_id, msg.revision)
        conf.audio = "open"
        self._record(conf, "conference_muted", now, out, by=session.user_id, audio="open")
        self._apply(conf, [], session.user_id, now, out, changed=True)

    def spotlight(self, session: Session, msg: p.Spotlight, now: float, out: list[Action]) -> None:
        conf = self._moderated(session, msg.conference_id, msg.revision)
        if msg.site is not None:
            self._target(conf, msg.site, witness_ok=False, moderator_ok=True)
        conf.spotlight = msg.site
        self._record(conf, "conference_spotlight", now, out, by=session.user_id, user=msg.site)
        self._apply(conf, [], session.user_id, now, out, changed=True)

    def remove(self, session: Session, msg: p.RemoveSite, now: float, out: list[Action]) -> None:
        conf = self._moderated(session, msg.conference_id, msg.revision)
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
        conf = self._moderated(session, msg.conference_id, msg.revision)
        conf.locked = msg.locked
        self._record(conf, "conference_locked", now, out, by=session.user_id, locked=msg.locked)
        self._apply(conf, [], session.user_id, now, out, changed=True)

    def set_floor(self, session: Session, msg: p.SetFloor, now: float, out: list[Action]) -> None:
        conf = self._moderated(session, msg.conference_id, msg.revision)
        policy = FloorPolicy(
            mode=FloorMode(msg.mode),
            max_speakers=msg.max_speakers,
            max_talk_s=msg.max_talk_s,
            revoke_grace_s=self.config.revoke_grace_s,
            max_queue=self.config.max_queue,
        )
        self._record_policy(conf, policy, session.user_id, now, out)
        effects = conf.floor.set_policy(policy, now)
        self._apply(conf, effects, session.user_id, now, out, changed=True)

    def name_moderator(
        self, session: Session, msg: p.NameModerator, now: float, out: list[Action]
    ) -> None:
        conf = self._moderated(session, msg.conference_id, msg.revision, chair=True)
        site = conf.sites.get(msg.user)
        if site is not None and site.role == "moderator":
            raise InvalidState("already a moderator", field="user")
        site = self._target(conf, msg.user, field="user")
        site.role = "moderator"
        conf.moderators.append(site.user)
        self._record(conf, "moderator_named", now, out, by=session.user_id, user=site.user)
        # A moderator is always heard: out of the floor's queue and holders.
        self._apply(conf, conf.floor.leave(site.user, now, "promoted"), None, now, out)
        conf.changed()
        # What every moderator sees: all the sites and every invitation's answer.
        info = self._board.presence.info
        everyone = [site_info(conf, s, info) for s in conf.sites.values()]
        out.append(
            Send((site.user,), p.SitesChanged(conf.conference_id, conf.revision, everyone, []))
        )
        invitations = [invitation_info(i, info) for i in conf.invitations.values()]
        if invitations:
            changed = p.InvitationsChanged(conf.conference_id, invitations)
            out.append(Send((site.user,), changed))
        self._board.conferences.site_changed(conf, site, out)
        self._board.conferences.broadcast(conf, out)

    def hand_over(self, session: Session, msg: p.HandOver, now: float, out: list[Action]) -> None:
        conf = self._moderated(session, msg.conference_id, msg.revision, chair=True)
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
            self._check_revision(conf, msg.revision)
        self._board.conferences.end(conf, "ended", session.user_id, now, out)

    def _moderated(
        self, session: Session, conference_id: str, revision: int | None, *, chair: bool = False
    ) -> Conference:
        """The running conference `session`'s user moderates (or chairs), at `revision`."""
        conf = self._board.conferences.get(conference_id)
        user = session.user_id
        if user not in conf.moderators:
            raise Forbidden("only a moderator may do this")
        if chair and conf.chair != user:
            raise Forbidden("only the chair may do this")
        if conf.status is not ConferenceStatus.RUNNING:
            raise InvalidState(f"conference is {conf.status.value}")
        self._check_revision(conf, revision)
        return conf

    @staticmethod
    def _check_revision(conf: Conference, revision: int | None) -> None:
        if revision is not None and revision != conf.revision:
            raise Conflict(
                f"the conference changed since revision {revision} (now {conf.revision})",
                field="revision",
            )

    @staticmethod
    def _target(
        conf: Conference,
        user: str,
        *,
        field: str = "site",
        witness_ok: bool = False,
        moderator_ok: bool = False,
    ) -> Site:
        site = conf.sites.get(user)
        if site is None:
            raise NotFound("no such site in this conference", field=field)
        if site.role == "witness" and not witness_ok:
            raise Forbidden("witnesses watch; they do not speak", field=field)
        if site.role == "moderator" and not moderator_ok:
            raise InvalidState("moderators are always heard", field=field)
        return site

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

    # ---- the floor ------------------------------------------------------------------------

    def site_left(
        self, conf: Conference, user: str, reason: str, now: float, out: list[Action]
    ) -> None:
        if conf.spotlight == user:
            conf.spotlight = None
        conf.revoked_by.pop(user, None)
        effects = conf.floor.leave(user, now, reason)
        self._apply(conf, effects, None, now, out, gone=user)

    def timer_fired(self, key: FloorTimer, now: float, out: list[Action]) -> None:
        conf = self._board.conferences.table.get(key.conference_id)
        timers = self._timers.get(key.conference_id)
        if conf is None or timers is None or key not in timers:
            return
        timers.discard(key)
        self._apply(conf, conf.floor.timer_fired(key.kind, key.site, now), None, now, out)

    def await_chair(self, conf: Conference, now: float) -> None:
        """`conf` started with no moderator joined yet: it ends unless one joins within the
        grace."""
        self._deadlines.set(ChairGrace(conf.conference_id), now + self.config.chairless_grace_s)

    def chair_here(self, conf: Conference) -> None:
        """The chair joined (or came back) before any grace ran out."""
        self._deadlines.cancel(ChairGrace(conf.conference_id))

    def forget(self, conf: Conference) -> None:
        """`conf` ended: none of its timers fires."""
        for key in self._timers.pop(conf.conference_id, set()):
            self._deadlines.cancel(key)
        self._deadlines.cancel(ChairGrace(conf.conference_id))

    def _apply(
        self,
        conf: Conference,
        effects: list[FloorEffect],
        by: str | None,
        now: float,
        out: list[Action],
        *,
        changed: bool = False,
        gone: str | None = None,
    ) -> None:
        """Perform what the floor decided: a lone `Denied` is the asker's refusal (nothing
        changed); otherwise each site concerned hears of its own floor, the trace gets the
        facts, and every site the new state."""
        if _denied(effects):
            denied = effects[0]
            assert isinstance(denied, Denied)
            raise InvalidState(_DENIED.get(denied.reason, denied.reason))
        touched: dict[str, str | None] = {}
        cid = conf.conference_id
        for effect in effects:
            match effect:
                case Granted(site=site):
                    called = conf.sites[site].called if site in conf.sites else False
                    self._record(conf, "floor_granted", now, out, user=site, by=by, called=called)
                    touched[site] = None
                    changed = True
                case Queued(site=site):
                    self._record(conf, "floor_requested", now, out, user=site)
                    touched[site] = None
                case Revoking(site=site, reason=reason):
                    touched[site] = reason
                    changed = True
                case Revoked(site=site, reason=reason):
                    self._taken(conf, site)
                    revoker = conf.revoked_by.pop(site, by)
                    self._record(
                        conf, "floor_revoked", now, out, user=site, reason=reason, by=revoker
                    )
                    touched[site] = reason
                    changed = True
                case Released(site=site, reason=reason):
                    self._taken(conf, site)
                    self._record(conf, "floor_released", now, out, user=site, reason=reason)
                    touched[site] = None
                    changed = True
                case Lowered(site=site):
                    self._record(conf, "hand_lowered", now, out, user=site)
                    touched[site] = None
                case Positions(changed=moved):
                    for site, _ in moved:
                        touched.setdefault(site, None)
                case StartTimer(kind=kind, site=site, at=at):
                    key = FloorTimer(cid, kind, site)
                    self._timers.setdefault(cid, set()).add(key)
                    self._deadlines.set(key, at)
                case StopTimer(kind=kind, site=site):
                    key = FloorTimer(cid, kind, site)
                    self._timers.get(cid, set()).discard(key)
                    self._deadlines.cancel(key)
                case _:
                    # FloorTaken / FloorIdle: the state broadcast below says it.
                    changed = True
        if not touched and not changed:
            return
        if changed:
            # What every site sees changed (holders, spotlight, ...): not a hand or a place.
            conf.changed()
        info = self._board.presence.info
        sites: list[p.SiteInfo] = []
        for user, why in touched.items():
            member = conf.sites.get(user)
            if member is None or user == gone:
                continue
            floor = floor_info(conf, user)
            out.append(Send((user,), p.FloorStatus(cid, floor, why)))
            sites.append(site_info(conf, member, info))
        moderators = conf.moderators_here()
        if sites and moderators:
            out.append(Send(moderators, p.SitesChanged(cid, conf.revision, sites, [])))
        if changed:
            self._board.conferences.broadcast(conf, out)

    def _record_policy(
        self, conf: Conference, policy: FloorPolicy, by: str, now: float, out: list[Action]
    ) -> None:
        self._record(
            conf,
            "floor_policy",
            now,
            out,
            by=by,
            mode=policy.mode.value,
            max_speakers=policy.max_speakers,
            max_talk_s=policy.max_talk_s,
        )

    def _taken(self, conf: Conference, site: str) -> None:
        s = conf.sites.get(site)
        if s is not None:
            s.called = False

    def _record(
        self, conf: Conference, kind: str, now: float, out: list[Action], **data: object
    ) -> None:
        out.append(self._board.facts.record(kind, now, conference=conf.conference_id, **data))


# What a refusal of the floor tells the client.
_DENIED = {
    "already_permitted": "the floor is held already",
    "queue_full": "too many hands are raised; try again later",
    "not_queued": "no hand is raised",
    "not_permitted": "the floor is not held",
}


def _denied(effects: list[FloorEffect]) -> bool:
    return len(effects) == 1 and isinstance(effects[0], Denied)
