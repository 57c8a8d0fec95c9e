"""Who watches whom: the roster the command center sees, and the deltas that keep it current.

Operators watch the officers of their court, supervisors and admins every court below
theirs. A watcher asks for the roster once (`get_roster`) and is then sent a `roster_update`
whenever an officer of a court in its scope signs in or out, goes away or comes back, enters
or leaves a call, raises or clears an emergency, or moves. Positions are fanned out (and
recorded) at most every `presence.position_interval_s` per officer: a phone reporting every
second must not cost every watcher a frame a second.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from identity import Courts, Identity, Role
from signalling import protocol as p
from signalling.core.actions import Action, Send
from signalling.core.deadlines import Deadlines
from signalling.core.presence import WATCHER_ROLES, Session
from signalling.errors import Forbidden, NotFound

if TYPE_CHECKING:
    from signalling.core.switchboard import Switchboard


@dataclass(frozen=True, slots=True)
class PositionDue:
    """Deadline: `user`'s latest position, held back by the interval, is fanned out."""

    user: str


class Views:
    def __init__(
        self, board: Switchboard, courts: Courts, position_interval_s: float, deadlines: Deadlines
    ) -> None:
        self._board = board
        self._courts = courts
        self._interval = position_interval_s
        self._deadlines = deadlines
        # court -> users (online or away) whose roster scope includes it.
        self._watchers: dict[str, set[str]] = {}
        # officer -> when their position was last fanned out; officers with one held back.
        self._position_sent_at: dict[str, float] = {}
        self._position_pending: set[str] = set()

    def watch(self, ident: Identity, *, add: bool) -> None:
        """`ident` signed in (or out): it watches the courts of its scope (or no longer)."""
        if ident.role not in WATCHER_ROLES:
            return
        user = ident.user_id
        for court in self._courts.scope(ident):
            if add:
                self._watchers.setdefault(court, set()).add(user)
                continue
            users = self._watchers.get(court)
            if users is not None:
                users.discard(user)
                if not users:
                    del self._watchers[court]

    def forget(self, user: str) -> None:
        """`user` signs out: nothing of theirs is held back any more."""
        self._deadlines.cancel(PositionDue(user))
        self._position_sent_at.pop(user, None)
        self._position_pending.discard(user)

    # ---- the roster ---------------------------------------------------------------------

    def entry(self, session: Session, status: p.PresenceStatus | None = None) -> p.RosterEntry:
        if status is None:
            status = "online" if session.connected else "away"
        return p.RosterEntry(
            officer=self._board.presence.info_of(session.identity),
            status=status,
            call_id=self._board.calls.call_id_of(session.user_id),
            emergency=session.emergency,
            position=session.position,
            device=session.device,
            since=p.epoch_ms(session.signed_in_at),
            emergency_note=session.emergency_note if session.emergency else None,
            emergency_taken_by=(
                self._board.presence.info(session.emergency_taken_by)
                if session.emergency and session.emergency_taken_by is not None
                else None
            ),
        )

    def officer_changed(self, session: Session) -> list[Action]:
        """The delta for `session`'s officer, to everyone who watches their court."""
        watchers = self.watchers_of(session.identity.court)
        if not watchers:
            return []
        return [Send(watchers, p.RosterUpdate(entry=self.entry(session)))]

    def officer_gone(self, session: Session) -> list[Action]:
        """`session`'s officer signed out: shown offline to their court's watchers."""
        watchers = self.watchers_of(session.identity.court)
        if not watchers:
            return []
        return [Send(watchers, p.RosterUpdate(entry=self.entry(session, status="offline")))]

    def watchers_of(self, court: str) -> tuple[str, ...]:
        """Who watches `court`'s officers: its operators and the supervisors over it."""
        return tuple(self._watchers.get(court, ()))

    def roster(self, session: Session, msg: p.GetRoster) -> p.Roster:
        if session.role not in WATCHER_ROLES:
            raise Forbidden("only the command center sees the roster")
        scope = self._courts.scope(session.identity)
        if msg.court is not None:
            if msg.court not in self._courts:
                raise NotFound("unknown court", field="court")
            if msg.court not in scope:
                raise Forbidden("court is outside your scope", field="court")
            courts: Iterable[str] = (msg.court,)
        else:
            courts = scope
        presence = self._board.presence
        courts = sorted(courts)
        entries = [
            self.entry(presence.sessions[u]) for court in courts for u in presence.officers(court)
        ]
        # An emergency escalated to one of these courts: its consoles were told of the
        # officer by push, and a console that opens (or reconnects) later must see it too.
        listed = {e.officer.id for e in entries}
        for officer in self._board.alarms.escalated_into(courts):
            escalated = presence.sessions.get(officer)
            if officer not in listed and escalated is not None:
                entries.append(self.entry(escalated))
        return p.Roster(ref=msg.id, officers=entries)

    # ---- positions ----------------------------------------------------------------------

    def position(self, session: Session, msg: p.Position, now: float) -> list[Action]:
        if session.role is not Role.OFFICER:
            raise Forbidden("only officers report positions")
        user = session.user_id
        session.position = p.GeoPosition(
            lat=msg.lat, lon=msg.lon, accuracy_m=msg.accuracy_m, device_time=msg.device_time
        )
        out: list[Action] = []
        last = self._position_sent_at.get(user)
        if last is None or now - last >= self._interval:
            out.extend(self._publish_position(session, now))
        elif user not in self._position_pending:
            self._position_pending.add(user)
            self._deadlines.set(PositionDue(user), last + self._interval)
        out.append(Send((user,), p.Ack(ref=msg.id)))
        return out

    def position_due(self, user: str, now: float) -> list[Action]:
        session = self._board.presence.session(user)
        if session is None or user not in self._position_pending:
            return []
        return self._publish_position(session, now)

    def _publish_position(self, session: Session, now: float) -> list[Action]:
        user = session.user_id
        if user in self._position_pending:
            self._position_pending.discard(user)
            self._deadlines.cancel(PositionDue(user))
        self._position_sent_at[user] = now
        pos = session.position
        assert pos is not None
        record = self._board.facts.position(
            user, session.identity.court, pos, session.clock_offset_ms, now
        )
        return [record, *self.officer_changed(session)]
