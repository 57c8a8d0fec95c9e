"""Provincial conferences: hosting, invitations, joining and leaving, and how a conference
follows its members' connections. The floor and the moderators' actions are in
`signalling.core.moderation`; one conference's record and its state table in
`signalling.core.conference`.

Theory of operation
-------------------
An operator, supervisor or admin hosts a conference for a court of their scope, now or at a
set time, inviting courts (one by one, or every court under one) and users. When it starts,
every signed-in console (operator, supervisor, admin) of an invited court and every invited
user who is signed in is rung (`conference_invitation`); the first console of a court to join
answers for the court and the court's other consoles stop ringing, as with a call. An
invitation nobody answers within `conferences.ring_s` counts as not answered; anyone invited
may still join from the list. The host, the co-moderators, consoles of invited courts,
invited users, supervisors and admins over the host court, and witnesses whose token names the
conference may join (`signalling.core.admission`); auditors, who read the record afterwards,
and the banned may not, nor anyone but a moderator once it is locked or full.

A site whose connection drops stays in the conference, shown away, and is back when it
resumes (no new join). When its user signs out it leaves. When the chair drops, a connected
co-moderator takes the chair; with none, the conference goes on for
`conferences.chairless_grace_s` and ends unless a moderator comes back. The same grace starts
with the conference: it ends if no moderator has joined by then.

Sites are let into a conference's media at a pace (`conferences.joins_per_s` per media
worker, `signalling.core.join_pace`): a site that has to wait is told `conference_waiting`
with its place and an estimate, and `conference_joined` when its turn comes. It may still
leave the queue (`leave_conference`, signing out); a conference that ends tells those
waiting for it. Moderators are never kept waiting: they run the conference.

What sites are told never lists the other sites: the conference's state (the chair, the
holders, the spotlight, a count of sites) and their own floor. The moderators' view of every
site goes in batches (`signalling.core.moderator_view`).

This module owns the conference table, which conferences each user has joined, the join
pace and its timer (`JoinTurn`), and the conferences' start timer (`ConferenceStart`; the
chairless grace is moderation's, the invitations and their timer are
`signalling.core.invitations`'; the floor's `FloorTimer` is speakers').
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from identity import Courts
from signalling import protocol as p
from signalling.core.actions import Action, Send
from signalling.core.admission import HOST_ROLES, invited_courts, role_in, sees
from signalling.core.conference import (
    Conference,
    ConferenceEffect,
    ConferenceEvent,
    ConferenceStatus,
    Invitation,
    Site,
    conference_info,
    conference_state,
    floor_info,
    invitation_info,
    site_info,
)
from signalling.core.deadlines import Deadlines
from signalling.core.facts import ConferenceFacts
from signalling.core.floor import Floor, FloorMode, FloorPolicy
from signalling.core.join_pace import LOCAL_WORKER, JoinPace, JoinTurn, Waiter
from signalling.core.presence import Session
from signalling.errors import Forbidden, InvalidState, NotFound, error_reply
from signalling.settings import ConferencesConfig

if TYPE_CHECKING:
    from signalling.core.switchboard import Switchboard


@dataclass(frozen=True, slots=True)
class ConferenceStart:
    """Deadline: a scheduled conference starts."""

    conference_id: str


@dataclass(frozen=True, slots=True)
class AdoptionGrace:
    """Deadline: the sites of a conference taken over from a dead authority that have not
    come back leave it (`node_lost`)."""

    conference_id: str


@dataclass(frozen=True, slots=True)
class ChairGrace:
    """Deadline: a conference without a connected moderator ends."""

    conference_id: str


class Conferences:
    def __init__(
        self,
        board: Switchboard,
        courts: Courts,
        config: ConferencesConfig,
        new_id: Callable[[], str],
        deadlines: Deadlines,
    ) -> None:
        self._board = board
        self._courts = courts
        self.config = config
        self._new_id = new_id
        self._deadlines = deadlines
        self.table: dict[str, Conference] = {}
        # user -> conferences they have joined.
        self._joined: dict[str, set[str]] = {}
        self.pace = JoinPace(config.joins_per_s)
        # conference -> the state its sites were last sent (`broadcast` sends what changed).
        self._broadcast: dict[str, p.ConferenceState] = {}

    # ---- queries ------------------------------------------------------------------------

    def get(self, conference_id: str) -> Conference:
        conf = self.table.get(conference_id)
        if conf is None:
            raise NotFound("no such conference", field="conference_id")
        return conf

    def joined(self, user: str) -> frozenset[str]:
        return frozenset(self._joined.get(user, ()))

    def facts(self, conference_id: str) -> ConferenceFacts | None:
        """What the cluster's journal keeps of a conference not ended (None: none here)."""
        conf = self.table.get(conference_id)
        if conf is None or conf.status is ConferenceStatus.ENDED:
            return None
        notify = tuple(dict.fromkeys((*conf.members(), *conf.moderators)))
        ended = self._board.facts.conference_ended_data(
            conf.conference_id, conf.court, "node_lost", None, len(conf.sites)
        )
        return ConferenceFacts(notify, ended)

    def info(self, conf: Conference, user: str | None = None) -> p.ConferenceInfo:
        """`conf` as `user` is shown it: whom it invites only to its moderators (None: to
        everyone told at once, sites among them), as that list grows with the conference."""
        full = user is not None and user in conf.moderators
        return conference_info(conf, self._board.presence.info, invited=full)

    def listed(self, session: Session, msg: p.ListConferences) -> p.Conferences:
        listed = [
            self.info(conf, session.user_id)
            for conf in sorted(self.table.values(), key=lambda c: (c.starts_at, c.conference_id))
            if conf.status is not ConferenceStatus.ENDED and sees(self._courts, session, conf)
        ]
        return p.Conferences(ref=msg.id, conferences=listed)

    # ---- hosting ------------------------------------------------------------------------

    def create(
        self, session: Session, msg: p.CreateConference, now: float, out: list[Action]
    ) -> None:
        board = self._board
        if session.role not in HOST_ROLES:
            raise Forbidden("only the command center hosts conferences")
        court = msg.court or session.identity.court
        invited = invited_courts(self._courts, session, court, msg)
        starts_at = now if msg.starts_at is None else max(now, msg.starts_at / 1000.0)
        if starts_at - now > self.config.max_schedule_ahead_s:
            raise InvalidState("too far ahead", field="starts_at")
        open_ = sum(1 for c in self.table.values() if c.status is not ConferenceStatus.ENDED)
        if open_ >= self.config.max_open:
            raise InvalidState("too many conferences open at once")
        policy = FloorPolicy(
            mode=FloorMode.MODERATED,
            max_speakers=msg.max_speakers,
            max_talk_s=msg.max_talk_s,
            revoke_grace_s=self.config.revoke_grace_s,
            max_queue=self.config.max_queue,
        )
        host = session.user_id
        conf = Conference(
            conference_id=self._new_id(),
            title=msg.title,
            court=court,
            host=host,
            created_at=now,
            starts_at=starts_at,
            floor=Floor(policy),
            invited_courts=invited,
            invited_users=tuple(dict.fromkeys(u for u in msg.invite_users if u != host)),
            moderators=[host],
            chair=host,
            kind=msg.kind,
        )
        self.table[conf.conference_id] = conf
        for code in conf.invited_courts:
            conf.invitations[f"court:{code}"] = Invitation(code, "court")
        for user in conf.invited_users:
            conf.invitations[f"user:{user}"] = Invitation(user, "user")
        out.append(
            board.facts.record(
                "conference_created",
                now,
                conference=conf.conference_id,
                court=court,
                host=host,
                title=conf.title,
                starts_at=starts_at,
                invited_courts=list(conf.invited_courts),
                invited_users=list(conf.invited_users),
                kind=conf.kind,
            )
        )
        if starts_at <= now:
            self.start(conf, host, now, out)
        else:
            self._deadlines.set(ConferenceStart(conf.conference_id), starts_at)
        created = p.ConferenceCreated(ref=msg.id, conference=self.info(conf, host))
        out.append(Send((host,), created))

    def start(self, conf: Conference, by: str | None, now: float, out: list[Action]) -> None:
        """`conf` starts: recorded (the conferences figure counts it), invitations ring; it
        ends unless a moderator joins within the chairless grace."""
        self._perform(conf, conf.apply(ConferenceEvent.START, now), now, out)
        conf.starts_at = now
        conf.changed()
        # What the first `conference_update` counts its changes from (a site joining gets
        # the whole state).
        self._broadcast[conf.conference_id] = conference_state(conf, self._board.presence.info)
        self._board.moderation.await_chair(conf, now)
        out.append(
            self._board.facts.record(
                "conference_started",
                now,
                conference=conf.conference_id,
                court=conf.court,
                host=conf.host,
                by=by,
                kind=conf.kind,
            )
        )

    def start_due(self, conference_id: str, now: float, out: list[Action]) -> None:
        conf = self.table.get(conference_id)
        if conf is not None and conf.status is ConferenceStatus.SCHEDULED:
            self.start(conf, None, now, out)

    def start_early(
        self, session: Session, msg: p.StartConference, now: float, out: list[Action]
    ) -> None:
        conf = self.get(msg.conference_id)
        if session.user_id not in conf.moderators:
            raise Forbidden("only a moderator starts the conference")
        if conf.status is not ConferenceStatus.SCHEDULED:
            raise InvalidState(f"conference is {conf.status.value}")
        self.start(conf, session.user_id, now, out)

    def end(
        self,
        conf: Conference,
        reason: p.ConferenceEndReason,
        by: str | None,
        now: float,
        out: list[Action],
    ) -> None:
        board = self._board
        members = conf.members()
        moderators = tuple(u for u in conf.moderators if u not in members)
        self._perform(conf, conf.apply(ConferenceEvent.END, now), now, out)
        conf.changed()
        for user in members:
            _discard(self._joined, user, conf.conference_id)
        board.moderator_views.forget(conf)
        self._broadcast.pop(conf.conference_id, None)
        # Those still waiting to be let in are told too: they are waiting for nothing now.
        waiting = tuple(w.user for w in self.pace.cancel_conference(conf.conference_id))
        ended = board.facts.conference_ended_data(
            conf.conference_id, conf.court, reason, by, len(members)
        )
        out.append(board.facts.record("conference_ended", now, **ended))
        told = tuple(dict.fromkeys((*members, *moderators, *waiting)))
        out.append(Send(told, p.ConferenceEnded(conf.conference_id, reason, by)))
        # Ended conferences are kept only as long as something may still refer to them.
        del self.table[conf.conference_id]

    def end_all(self, reason: p.ConferenceEndReason, now: float, out: list[Action]) -> None:
        for conf in list(self.table.values()):
            self.end(conf, reason, None, now, out)

    def _perform(
        self, conf: Conference, effects: tuple[ConferenceEffect, ...], now: float, out: list[Action]
    ) -> None:
        cid = conf.conference_id
        for effect in effects:
            match effect:
                case ConferenceEffect.STOP_START_TIMER:
                    self._deadlines.cancel(ConferenceStart(cid))
                case ConferenceEffect.RING_INVITATIONS:
                    self._board.invitations.ring(conf, now, out)
                case ConferenceEffect.STOP_INVITATIONS:
                    self._board.invitations.stop(conf, "ended", None, now, out)
                case ConferenceEffect.STOP_TIMERS:
                    self._board.moderation.forget(conf)
                    self._board.speakers.forget(conf)

    # ---- joining and leaving ------------------------------------------------------------

    def join(self, session: Session, msg: p.JoinConference, now: float, out: list[Action]) -> None:
        conf = self.get(msg.conference_id)
        user = session.user_id
        if conf.status is not ConferenceStatus.RUNNING:
            raise InvalidState(f"conference is {conf.status.value}")
        site = conf.sites.get(user)
        if site is None:
            role = self._may_join(session, conf)
            if role != "moderator":
                waiter = Waiter(conf.conference_id, user, msg.id)
                worker = self.worker_of(user)
                place = self.pace.arrive(worker, waiter, now)
                if place is not None:
                    self._arm_turn(worker, now)
                    out.append(
                        Send(
                            (user,),
                            p.ConferenceWaiting(
                                ref=msg.id,
                                conference_id=conf.conference_id,
                                place=place.place,
                                wait_s=round(place.wait_s, 3),
                            ),
                        )
                    )
                    return
            site = self._admit(session, conf, role, now, out)
        out.append(Send((user,), self._joined_reply(conf, site, msg.id)))

    def worker_of(self, user: str) -> str:
        """The media worker `user`'s site will be served by: the join pace is per worker.
        One for now (this node's media); media worker processes will name theirs."""
        return LOCAL_WORKER

    def turn_due(self, key: JoinTurn, now: float, out: list[Action]) -> None:
        """A worker may let the sites waiting first in: each is joined now, if it still may."""
        for waiter in self.pace.turn(key.worker, now):
            conf = self.table.get(waiter.conference_id)
            session = self._board.presence.session(waiter.user)
            if conf is None or session is None or conf.status is not ConferenceStatus.RUNNING:
                continue
            site = conf.sites.get(waiter.user)
            try:
                if site is None:
                    role = self._may_join(session, conf)
                    site = self._admit(session, conf, role, now, out)
                    # Its connection dropped while it waited: it joins away, as if it had
                    # dropped just after joining.
                    if not session.connected:
                        self.member_away(waiter.user, now, out, only=conf.conference_id)
            except (Forbidden, InvalidState, NotFound) as exc:
                out.append(Send((waiter.user,), error_reply(exc, waiter.ref)))
                continue
            out.append(Send((waiter.user,), self._joined_reply(conf, site, waiter.ref)))
        self._arm_turn(key.worker, now)

    def _arm_turn(self, worker: str, now: float) -> None:
        at = self.pace.next_turn(worker, now)
        if at is None:
            self._deadlines.cancel(JoinTurn(worker))
        else:
            self._deadlines.set(JoinTurn(worker), at)

    def _may_join(self, session: Session, conf: Conference) -> p.ConferenceRole:
        """What `session`'s user would join `conf` as now; raises if they may not."""
        role = role_in(self._courts, session, conf)
        if session.user_id in conf.banned:
            raise Forbidden("you were removed from this conference")
        # Moderators come in whatever the room: they run it.
        if conf.locked and role != "moderator":
            raise InvalidState("conference is locked")
        if len(conf.sites) >= self.config.max_sites and role != "moderator":
            raise InvalidState("conference is full")
        return role

    def _admit(
        self,
        session: Session,
        conf: Conference,
        role: p.ConferenceRole,
        now: float,
        out: list[Action],
    ) -> Site:
        user = session.user_id
        site = Site(user=user, court=session.identity.court, role=role, joined_at=now)
        conf.sites[user] = site
        self._joined.setdefault(user, set()).add(conf.conference_id)
        out.append(
            self._board.facts.record(
                "site_joined",
                now,
                conference=conf.conference_id,
                user=user,
                court=site.court,
                role=role,
            )
        )
        self._board.invitations.answer(conf, session, now, out)
        if role == "moderator" and conf.chair is None:
            self._board.moderation.take_chair(conf, user, "back", now, out)
        elif role == "moderator" and conf.chair == user:
            self._board.moderation.chair_here(conf)
        self.site_changed(conf, site, now, out)
        return site

    def _joined_reply(self, conf: Conference, site: Site, ref: str) -> p.ConferenceJoined:
        info = self._board.presence.info
        moderator = site.role == "moderator"
        return p.ConferenceJoined(
            ref=ref,
            conference=self.info(conf, site.user),
            state=conference_state(conf, info),
            role=site.role,
            floor=floor_info(conf, site.user),
            sites=[site_info(conf, s, info) for s in conf.sites.values()] if moderator else [],
            invitations=(
                [invitation_info(i, info) for i in conf.invitations.values()] if moderator else []
            ),
        )

    def leave(
        self, session: Session, msg: p.LeaveConference, now: float, out: list[Action]
    ) -> None:
        conf = self.get(msg.conference_id)
        if session.user_id not in conf.sites:
            # Waiting to be let in: it stops waiting.
            gone = self.pace.cancel(conf.conference_id, session.user_id)
            if not gone:
                raise InvalidState("you are not in this conference")
            for worker, _ in gone:
                self._arm_turn(worker, now)
            return
        self.remove(conf, session.user_id, "left", None, now, out)

    def remove(
        self,
        conf: Conference,
        user: str,
        reason: str,
        by: str | None,
        now: float,
        out: list[Action],
    ) -> None:
        """`user`'s site leaves `conf` (left, removed, signed out)."""
        del conf.sites[user]
        _discard(self._joined, user, conf.conference_id)
        out.append(
            self._board.facts.record(
                "site_left", now, conference=conf.conference_id, user=user, reason=reason, by=by
            )
        )
        self._board.speakers.site_left(conf, user, reason, now, out)
        if conf.chair == user:
            self._board.moderation.chair_lost(conf, now, out)
        self._board.moderator_views.sites(conf, [user])

    # ---- following the members' connections -----------------------------------------------

    def member_away(
        self, user: str, now: float, out: list[Action], *, only: str | None = None
    ) -> None:
        for cid in sorted(self.joined(user)) if only is None else [only]:
            conf = self.table[cid]
            site = conf.sites[user]
            site.away = True
            self.site_changed(conf, site, now, out)
            if conf.chair == user:
                self._board.moderation.chair_lost(conf, now, out)

    def member_back(self, user: str, now: float, out: list[Action]) -> None:
        for cid in sorted(self.joined(user)):
            conf = self.table[cid]
            site = conf.sites[user]
            site.away = False
            self.site_changed(conf, site, now, out)
            if site.role == "moderator" and conf.chair is None:
                self._board.moderation.take_chair(conf, user, "back", now, out)

    def member_gone(self, user: str, now: float, out: list[Action]) -> None:
        """`user` signed out: they leave every conference, and none rings at them."""
        self._board.invitations.forget_user(user)
        for worker, _ in self.pace.cancel(None, user):
            self._arm_turn(worker, now)
        for cid in sorted(self.joined(user)):
            self.remove(self.table[cid], user, "signed_out", None, now, out)

    # ---- taken over from a dead authority (docs/cluster.md, *Failure*) ------------------

    def adopt(self, conf: Conference, now: float, out: list[Action]) -> None:
        """`conf`, restored from a dead authority's journal, runs on here as it was: its
        floor's timers run on, and its members keep their places while they come back (their
        gateways' resync, or a new sign-in) within `presence.grace_s`; `adoption_grace_over`
        then lets go of the others. Recorded `conference_adopted`."""
        cid = conf.conference_id
        if cid in self.table:
            return
        board = self._board
        self.table[cid] = conf
        for user, site in conf.sites.items():
            self._joined.setdefault(user, set()).add(cid)
            session = board.presence.session(user)
            if session is not None:
                site.away = not session.connected
        for invitation in conf.invitations.values():
            # Its ringing (and the timer ending it) were the dead authority's.
            invitation.ringing.clear()
        board.speakers.adopted(conf)
        self._broadcast[cid] = conference_state(conf, board.presence.info)
        if conf.status is ConferenceStatus.SCHEDULED:
            self._deadlines.set(ConferenceStart(cid), max(now, conf.starts_at))
        else:
            self._deadlines.set(AdoptionGrace(cid), now + board.presence.config.grace_s)
            if not any(not conf.sites[u].away for u in conf.moderators_here()):
                board.moderation.await_chair(conf, now)
        out.append(
            board.facts.record(
                "conference_adopted",
                now,
                conference=cid,
                court=conf.court,
                sites=len(conf.sites),
                holders=list(conf.floor.holders()),
                mode=conf.floor.policy.mode.value,
                revision=conf.revision,
            )
        )
        board.moderator_views.sites(conf, list(conf.sites))

    def adoption_grace_over(self, conference_id: str, now: float, out: list[Action]) -> None:
        """The sites of an adopted conference whose user has no session here (not back since
        the authority died) leave `node_lost`; with nobody back at all, it ends `node_lost`."""
        conf = self.table.get(conference_id)
        if conf is None or conf.status is not ConferenceStatus.RUNNING:
            return
        presence = self._board.presence
        lost = [u for u in conf.sites if presence.session(u) is None]
        if len(lost) == len(conf.sites):
            self.end(conf, "node_lost", None, now, out)
            return
        for user in lost:
            out.append(Send((user,), p.ConferenceLeft(conference_id, "node_lost", None)))
            self.remove(conf, user, "node_lost", None, now, out)
        if lost:
            self.broadcast(conf, out)

    # ---- telling ------------------------------------------------------------------------

    def broadcast(self, conf: Conference, out: list[Action]) -> None:
        """Every site sees the conference's state as it is now: what changed since the last
        broadcast. A site that joined since has the state as of its join, which differs from
        that broadcast only in `sites` (joins send no update), so the changes apply to it too."""
        if conf.sites:
            state = conference_state(conf, self._board.presence.info)
            before = self._broadcast.get(conf.conference_id)
            self._broadcast[conf.conference_id] = state
            changes = p.ConferenceChanges(
                **{
                    name: getattr(state, name)
                    for name in p.ConferenceChanges.__struct_fields__
                    if before is None or getattr(state, name) != getattr(before, name)
                }
            )
            update = p.ConferenceUpdate(conf.conference_id, state.revision, changes)
            out.append(Send(conf.members(), update))

    def site_changed(self, conf: Conference, site: Site, now: float, out: list[Action]) -> None:
        self._board.moderator_views.sites(conf, [site.user])


def _discard(index: dict[str, set[str]], key: str, value: str) -> None:
    values = index.get(key)
    if values is not None:
        values.discard(value)
        if not values:
            del index[key]
