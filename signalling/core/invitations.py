"""Invitations to a conference: ringing the invited courts' consoles and the invited users when
it starts, answers (the first console of a court to join answers for it; a court declines
when everyone it rang at declined), and the end of ringing after `conferences.ring_s`. A
console or an invited user who signs in while an invitation for them still rings is rung too;
one who resumes is sent again what still rings at them (pushes made while away are lost).

This module owns which conferences ring at each user and the `InvitationExpiry` timer; each
conference's `Invitation` records are kept with it (`signalling.core.conference`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from identity import Role
from signalling import protocol as p
from signalling.core.actions import Action, Send
from signalling.core.conference import (
    Conference,
    ConferenceStatus,
    Invitation,
    moderated,
)
from signalling.core.deadlines import Deadlines
from signalling.core.presence import CONSOLE_ROLES, Session
from signalling.errors import Busy, Forbidden, InvalidState, NotFound
from signalling.settings import ConferencesConfig

if TYPE_CHECKING:
    from signalling.core.switchboard import Switchboard


@dataclass(frozen=True, slots=True)
class InvitationExpiry:
    """Deadline: the invitations of a conference that started stop ringing."""

    conference_id: str


class Invitations:
    def __init__(self, board: Switchboard, config: ConferencesConfig, deadlines: Deadlines) -> None:
        self._board = board
        self.config = config
        self._deadlines = deadlines
        # user -> conferences ringing at them now.
        self._ringing: dict[str, set[str]] = {}

    def ringing_at(self, user: str) -> frozenset[str]:
        return frozenset(self._ringing.get(user, ()))

    def forget_user(self, user: str) -> None:
        """`user` signed out: nothing rings at them any more."""
        for cid in self._ringing.pop(user, set()):
            conf = self._board.conferences.table.get(cid)
            if conf is not None:
                for inv in conf.invitations.values():
                    inv.ringing.discard(user)

    def signed_in(self, session: Session, out: list[Action]) -> None:
        """A new session: the invitations still ringing for its court or its user ring at it
        too (the rest of the court was rung when the conference started)."""
        user = session.user_id
        console = session.role in CONSOLE_ROLES
        for conf in self._board.conferences.table.values():
            if conf.status is not ConferenceStatus.RUNNING or user in conf.sites:
                continue
            hit = False
            for inv in conf.invitations.values():
                if inv.state != "ringing":
                    continue
                if inv.kind == "court":
                    mine = console and inv.invitee == session.identity.court and user != conf.host
                else:
                    mine = inv.invitee == user and session.role is not Role.AUDITOR
                if mine:
                    inv.ringing.add(user)
                    self._ringing.setdefault(user, set()).add(conf.conference_id)
                    hit = True
            if hit:
                info = self._board.conferences.info(conf)
                out.append(Send((user,), p.ConferenceInvitation(conference=info)))

    def remind(self, user: str, out: list[Action]) -> None:
        """`user` resumed: what still rings at them is sent again."""
        table = self._board.conferences.table
        for cid in sorted(self._ringing.get(user, ())):
            info = self._board.conferences.info(table[cid])
            out.append(Send((user,), p.ConferenceInvitation(conference=info)))

    def ring(self, conf: Conference, now: float, out: list[Action]) -> None:
        presence = self._board.presence
        rung: list[str] = []
        for inv in conf.invitations.values():
            if inv.kind == "court":
                users = [u for u in presence.consoles(inv.invitee) if u != conf.host]
            else:
                session = presence.session(inv.invitee)
                # Auditors read the record afterwards: not rung, and they may not join.
                invited = session is not None and session.role is not Role.AUDITOR
                users = [inv.invitee] if invited else []
            for user in users:
                inv.ringing.add(user)
                self._ringing.setdefault(user, set()).add(conf.conference_id)
                rung.append(user)
        if rung:
            invitation = p.ConferenceInvitation(conference=self._board.conferences.info(conf))
            out.append(Send(tuple(dict.fromkeys(rung)), invitation))
        if conf.invitations:
            # Also when it rang at nobody (no console of a court signed in): unanswered at the
            # end of the ring time all the same.
            self._deadlines.set(InvitationExpiry(conf.conference_id), now + self.config.ring_s)

    def invite(
        self, session: Session, msg: p.InviteToConference, now: float, out: list[Action]
    ) -> None:
        """A moderator invites a signed-in user to the running conference: it rings at them
        now and, unanswered, stops with the others at the end of a new ring time (which the
        invitations still ringing share)."""
        conf = moderated(
            self._board.conferences.get(msg.conference_id), session.user_id, msg.revision
        )
        user = msg.user
        if user in conf.sites:
            raise InvalidState("already in the conference", field="user")
        if user in conf.banned:
            raise Forbidden("removed from this conference and banned", field="user")
        key = f"user:{user}"
        inv = conf.invitations.get(key)
        if inv is not None and inv.state == "ringing":
            raise InvalidState("already invited and ringing", field="user")
        invitee = self._board.presence.session(user)
        if invitee is None:
            raise NotFound("not signed in", field="user")
        if invitee.role in (Role.AUDITOR, Role.WITNESS):
            raise Forbidden("auditors and witnesses are not invited as sites", field="user")
        if inv is None and len(conf.invitations) >= self.config.max_invitations:
            raise Busy(f"at most {self.config.max_invitations} invitations", field="user")
        inv = Invitation(user, "user")
        conf.invitations[key] = inv
        if user not in conf.invited_users:
            conf.invited_users = (*conf.invited_users, user)
        out.append(
            self._board.facts.record(
                "conference_invited",
                now,
                conference=conf.conference_id,
                user=user,
                by=session.user_id,
            )
        )
        inv.ringing.add(user)
        self._ringing.setdefault(user, set()).add(conf.conference_id)
        info = self._board.conferences.info(conf)
        out.append(Send((user,), p.ConferenceInvitation(conference=info)))
        self._deadlines.set(InvitationExpiry(conf.conference_id), now + self.config.ring_s)
        self.tell(conf, [inv], now, out)

    def withdraw(
        self, session: Session, msg: p.WithdrawInvitation, now: float, out: list[Action]
    ) -> None:
        """A moderator withdraws a user's invitation not answered by joining: it stops
        ringing and the user is no longer invited (a court's invitation is not withdrawn)."""
        conf = moderated(
            self._board.conferences.get(msg.conference_id), session.user_id, msg.revision
        )
        inv = conf.invitations.get(f"user:{msg.user}")
        if inv is None or inv.state == "withdrawn":
            raise NotFound("no such invitation", field="user")
        if inv.state == "joined":
            raise InvalidState("answered by joining: remove the site instead", field="user")
        if inv.ringing:
            users = tuple(sorted(inv.ringing))
            for user in users:
                _discard(self._ringing, user, conf.conference_id)
            inv.ringing.clear()
            by = self._board.presence.info(session.user_id)
            out.append(Send(users, p.InvitationStopped(conf.conference_id, "withdrawn", by)))
        inv.state, inv.by = "withdrawn", session.user_id
        conf.invited_users = tuple(u for u in conf.invited_users if u != msg.user)
        out.append(
            self._board.facts.record(
                "conference_invitation_withdrawn",
                now,
                conference=conf.conference_id,
                user=msg.user,
                by=session.user_id,
            )
        )
        self.tell(conf, [inv], now, out)

    def expired(self, conference_id: str, now: float, out: list[Action]) -> None:
        conf = self._board.conferences.table.get(conference_id)
        if conf is not None:
            self.stop(conf, "expired", None, now, out)

    def stop(
        self,
        conf: Conference,
        reason: p.InvitationStopReason,
        answered: Invitation | None,
        now: float,
        out: list[Action],
    ) -> None:
        """Stop ringing for `conf`: one invitation's (answered), or every one (expired or
        ended); those left unanswered at the end of the ring time count as not answered."""
        changed: list[Invitation] = []
        for inv in [answered] if answered is not None else list(conf.invitations.values()):
            if inv.state == "ringing" and reason == "expired":
                inv.state = "no_answer"
                changed.append(inv)
            if not inv.ringing:
                continue
            users = tuple(sorted(inv.ringing))
            for user in users:
                _discard(self._ringing, user, conf.conference_id)
            inv.ringing.clear()
            by = self._board.presence.info(inv.by) if inv.by is not None else None
            stopped = p.InvitationStopped(conf.conference_id, reason, by)
            out.append(Send(users, stopped))
        if changed:
            self.tell(conf, changed, now, out)

    def decline(
        self, session: Session, msg: p.DeclineConference, now: float, out: list[Action]
    ) -> None:
        conf = self._board.conferences.get(msg.conference_id)
        user = session.user_id
        ringing = [i for i in conf.invitations.values() if user in i.ringing]
        if not ringing:
            raise InvalidState("the conference is not ringing for you")
        for inv in ringing:
            inv.ringing.discard(user)
        _discard(self._ringing, user, conf.conference_id)
        out.append(
            self._board.facts.record(
                "conference_declined",
                now,
                conference=conf.conference_id,
                user=user,
                court=session.identity.court,
            )
        )
        declined = [i for i in ringing if not i.ringing and i.state == "ringing"]
        for inv in declined:
            # Everyone it rang at has said no.
            inv.state, inv.by = "declined", user
        if declined:
            self.tell(conf, declined, now, out)

    def tell(
        self, conf: Conference, invitations: list[Invitation], now: float, out: list[Action]
    ) -> None:
        """The moderators' view: these invitations' answers changed."""
        keys = [f"{i.kind}:{i.invitee}" for i in invitations]
        self._board.moderator_views.invitations(conf, keys)

    def answer(self, conf: Conference, session: Session, now: float, out: list[Action]) -> None:
        """`session`'s user joined `conf`: their invitation, or their court's, is answered."""
        user = session.user_id
        for key in (f"user:{user}", f"court:{session.identity.court}"):
            inv = conf.invitations.get(key)
            if inv is None or inv.state == "joined":
                continue
            if key.startswith("court:") and (
                session.role not in CONSOLE_ROLES or user == conf.host
            ):
                # The host does not answer for its colleagues: they are invited too.
                continue
            inv.state, inv.by = "joined", user
            inv.ringing.discard(user)
            _discard(self._ringing, user, conf.conference_id)
            # The court's other consoles stop ringing: someone answered for it.
            self.stop(conf, "answered", inv, now, out)
            self.tell(conf, [inv], now, out)


def _discard(index: dict[str, set[str]], key: str, value: str) -> None:
    values = index.get(key)
    if values is not None:
        values.discard(value)
        if not values:
            del index[key]
