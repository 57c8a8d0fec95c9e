"""Who speaks in a conference: the sites' hands and the floor, as the moderators give and
take it.

Sites raise and lower hands and give the floor back; the moderators grant the floor (to a
site that did not ask: a roll call), revoke it (after the revoke grace), mute or unmute all
and set the floor's limits and mode. Whose turn it is, is decided by the conference's pure
`Floor` (signalling/core/floor.py, docs/floor.md); this module turns what it decides into
messages, trace records and typed timers, and checks who may ask what first, so that a
refusal changes nothing.

This module owns the floor's timers (`FloorTimer`).
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
    Site,
    floor_info,
    moderated,
    target,
)
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
from signalling.errors import Forbidden, InvalidState
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


class Speakers:
    def __init__(
        self, board: Switchboard, courts: Courts, config: ConferencesConfig, deadlines: Deadlines
    ) -> None:
        self._board = board
        self._courts = courts
        self.config = config
        self._deadlines = deadlines
        # conference -> its floor timers armed now.
        self._timers: dict[str, set[FloorTimer]] = {}

    def _conference(self, conference_id: str) -> Conference:
        return self._board.conferences.get(conference_id)

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

    # ---- what moderators do with the floor --------------------------------------------------

    def grant(self, session: Session, msg: p.GrantFloor, now: float, out: list[Action]) -> None:
        conf = moderated(self._conference(msg.conference_id), session.user_id, msg.revision)
        site = target(conf, msg.site)
        if site.away:
            raise InvalidState("the site's connection is down", field="site")
        called = conf.floor.position(site.user) is None
        effects = conf.floor.grant(site.user, now)
        if not _denied(effects):
            site.called = called
        self._apply(conf, effects, session.user_id, now, out)

    def revoke(self, session: Session, msg: p.RevokeFloor, now: float, out: list[Action]) -> None:
        conf = moderated(self._conference(msg.conference_id), session.user_id, msg.revision)
        site = target(conf, msg.site)
        effects = conf.floor.revoke(site.user, now)
        if not _denied(effects) and effects:
            # Taken at the end of the grace: the record then says who revoked it.
            conf.revoked_by[site.user] = session.user_id
        self._apply(conf, effects, session.user_id, now, out)

    def mute_all(self, session: Session, msg: p.MuteAll, now: float, out: list[Action]) -> None:
        conf = moderated(self._conference(msg.conference_id), session.user_id, msg.revision)
        conf.audio = "floor"
        self._record(conf, "conference_muted", now, out, by=session.user_id, audio="floor")
        effects: list[FloorEffect] = []
        policy = conf.floor.policy
        if policy.mode is FloorMode.OPEN:
            # An open floor would hand the freed places straight to the raised hands: mute
            # all is silence, so the moderator grants again from now on.
            quiet = dataclasses.replace(policy, mode=FloorMode.MODERATED)
            self._record_policy(conf, quiet, session.user_id, now, out)
            effects += conf.floor.set_policy(quiet, now)
        effects += conf.floor.revoke_all(now)
        self._apply(conf, effects, session.user_id, now, out, changed=True)

    def unmute_all(self, session: Session, msg: p.UnmuteAll, now: float, out: list[Action]) -> None:
        conf = moderated(self._conference(msg.conference_id), session.user_id, msg.revision)
        conf.audio = "open"
        self._record(conf, "conference_muted", now, out, by=session.user_id, audio="open")
        self._apply(conf, [], session.user_id, now, out, changed=True)

    def set_floor(self, session: Session, msg: p.SetFloor, now: float, out: list[Action]) -> None:
        conf = moderated(self._conference(msg.conference_id), session.user_id, msg.revision)
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

    # ---- following the sites and the timers -------------------------------------------------

    def site_left(
        self, conf: Conference, user: str, reason: str, now: float, out: list[Action]
    ) -> None:
        """`user`'s site left `conf` (`reason`: left, removed, banned, signed out)."""
        spotlit = conf.spotlight == user
        if spotlit:
            conf.spotlight = None
        conf.revoked_by.pop(user, None)
        effects = conf.floor.leave(user, now, reason)
        self._apply(conf, effects, None, now, out, gone=user, changed=spotlit)

    def leave_floor(
        self, conf: Conference, user: str, reason: str, now: float, out: list[Action]
    ) -> None:
        """`user` stays in `conf` but out of its floor (named a moderator: always heard)."""
        self._apply(conf, conf.floor.leave(user, now, reason), None, now, out)

    def timer_fired(self, key: FloorTimer, now: float, out: list[Action]) -> None:
        conf = self._board.conferences.table.get(key.conference_id)
        timers = self._timers.get(key.conference_id)
        if conf is None or timers is None or key not in timers:
            return
        timers.discard(key)
        self._apply(conf, conf.floor.timer_fired(key.kind, key.site, now), None, now, out)

    def adopted(self, conf: Conference) -> None:
        """`conf` was restored from a dead authority's journal: its holders' talk times and
        revocations run on here, each to the time its snapshot left it."""
        cid = conf.conference_id
        parts = conf.floor.parts()
        keys = [(FloorTimer(cid, "talk", site), at) for site, at in parts.talk_until]
        keys += [(FloorTimer(cid, "revoke", site), at) for site, at, _ in parts.revoking]
        for key, at in keys:
            self._timers.setdefault(cid, set()).add(key)
            self._deadlines.set(key, at)

    def forget(self, conf: Conference) -> None:
        """`conf` ended: none of its timers fires."""
        for key in self._timers.pop(conf.conference_id, set()):
            self._deadlines.cancel(key)

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
        # Sites whose only change is their place in the queue: the moderators get the queue.
        moved_only: set[str] = set()
        direct: set[str] = set()
        cid = conf.conference_id
        for effect in effects:
            match effect:
                case Granted(site=site):
                    called = conf.sites[site].called if site in conf.sites else False
                    self._record(conf, "floor_granted", now, out, user=site, by=by, called=called)
                    touched[site] = None
                    direct.add(site)
                    changed = True
                case Queued(site=site):
                    self._record(conf, "floor_requested", now, out, user=site)
                    touched[site] = None
                    direct.add(site)
                case Revoking(site=site, reason=reason):
                    touched[site] = reason
                    direct.add(site)
                    changed = True
                case Revoked(site=site, reason=reason):
                    self._taken(conf, site)
                    # At the end of a moderator's grace: that moderator; otherwise whoever
                    # acted now (mute all, a new grant superseding it).
                    revoked_by = conf.revoked_by.pop(site, None)
                    revoker = revoked_by if reason == "moderator" and revoked_by else by
                    self._record(
                        conf, "floor_revoked", now, out, user=site, reason=reason, by=revoker
                    )
                    touched[site] = reason
                    direct.add(site)
                    changed = True
                case Released(site=site, reason=reason):
                    self._taken(conf, site)
                    conf.revoked_by.pop(site, None)
                    self._record(conf, "floor_released", now, out, user=site, reason=reason)
                    touched[site] = None
                    direct.add(site)
                    changed = True
                case Lowered(site=site):
                    self._record(conf, "hand_lowered", now, out, user=site)
                    touched[site] = None
                    direct.add(site)
                case Positions(changed=moved):
                    for site, _ in moved:
                        moved_only.add(site)
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
        sites: list[str] = []
        for user, why in touched.items():
            if user not in conf.sites or user == gone:
                continue
            floor = floor_info(conf, user)
            out.append(Send((user,), p.FloorStatus(cid, floor, why)))
            if user in moved_only and user not in direct:
                self._board.moderator_views.queue_moved(conf)
            else:
                sites.append(user)
        if sites:
            self._board.moderator_views.sites(conf, sites)
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
