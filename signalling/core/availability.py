"""The operators' own availability, and how the other consoles see it.

An operator is *free*, *busy* (in a call), *away* (they said so, or their connection dropped)
or *offline* (signed out). Saying `away` stops new calls ringing at them (emergencies still
do: an SOS reaches everyone who could answer it) and stops the normal calls ringing there
now; saying `available` puts them back in line. The consoles of an operator's court, and the
supervisors over it, are told whenever an operator's status changes (`sync`, run after every
message and deadline that may change who is in a call, like the queue positions in
`signalling.core.dispatch`). `operator_away` and `operator_back` are trace facts.

This module owns the set of operators who said they are away and the statuses last told.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from identity import Role
from signalling import protocol as p
from signalling.core.actions import Action, Send
from signalling.core.presence import WATCHER_ROLES, Session
from signalling.errors import Forbidden, NotFound

if TYPE_CHECKING:
    from identity import Courts
    from signalling.core.switchboard import Switchboard


class Availability:
    def __init__(self, board: Switchboard, courts: Courts) -> None:
        self._board = board
        self._courts = courts
        self._away: set[str] = set()
        # operator -> (how shown, status) last told to the consoles of their court.
        self._told: dict[str, tuple[p.UserInfo, p.OperatorState]] = {}

    # ---- queries ------------------------------------------------------------------------

    def is_away(self, user: str) -> bool:
        return user in self._away

    def away(self) -> list[str]:
        """The operators who said they are away."""
        return sorted(self._away)

    def status(self, user: str) -> p.OperatorState:
        session = self._board.presence.session(user)
        if session is None:
            return "offline"
        if self._board.calls.call_id_of(user) is not None:
            return "busy"
        if user in self._away or not session.connected:
            return "away"
        return "free"

    def operators(self, session: Session, msg: p.GetOperators) -> p.Operators:
        if session.role not in WATCHER_ROLES:
            raise Forbidden("only the command center sees the operators")
        court = msg.court if msg.court is not None else session.identity.court
        # Unknown and out-of-scope courts answer alike: nothing tells them apart.
        if court not in self._courts or not self._courts.in_scope(session.identity, court):
            raise NotFound("unknown court", field="court")
        presence = self._board.presence
        entries = [self._entry(u) for u in sorted(presence.operators(court))]
        return p.Operators(ref=msg.id, court=court, operators=entries)

    # ---- what operators ask -------------------------------------------------------------

    def set(self, session: Session, msg: p.SetAvailability, now: float, out: list[Action]) -> None:
        if session.role is not Role.OPERATOR:
            raise Forbidden("only operators set their availability")
        user = session.user_id
        board = self._board
        court = session.identity.court
        if msg.status == "away" and user not in self._away:
            self._away.add(user)
            out.append(board.facts.record("operator_away", now, user=user, court=court))
            dispatch = board.dispatch
            for call_id in sorted(dispatch.ringing_at(user)):
                call = board.calls.table[call_id]
                if not call.emergency:
                    dispatch.stop_ringing(call, user, "away", now, out)
        elif msg.status == "available" and user in self._away:
            self._away.discard(user)
            out.append(board.facts.record("operator_back", now, user=user, court=court))

    def signed_out(self, user: str) -> None:
        self._away.discard(user)

    # ---- telling the consoles -----------------------------------------------------------

    def sync(self, out: list[Action]) -> None:
        """Tell the consoles of each operator's court whose status changed since last told."""
        presence = self._board.presence
        signed_in = {
            s.user_id: presence.info_of(s.identity)
            for s in presence.sessions.values()
            if s.role is Role.OPERATOR
        }
        for user in sorted(set(self._told) | set(signed_in)):
            info = signed_in.get(user) or self._told[user][0]
            status = self.status(user)
            if self._told.get(user) == (info, status):
                continue
            if status == "offline":
                del self._told[user]
            else:
                self._told[user] = (info, status)
            told = set(presence.consoles(info.court)) | presence.monitors(info.court)
            told.discard(user)
            if told:
                entry = p.OperatorEntry(user=info, status=status)
                out.append(Send(tuple(sorted(told)), p.OperatorStatus(entry=entry)))

    def _entry(self, user: str) -> p.OperatorEntry:
        return p.OperatorEntry(user=self._board.presence.info(user), status=self.status(user))
