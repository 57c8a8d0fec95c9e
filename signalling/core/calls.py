"""The call table: every live call, who takes part in it, and what happens to an answered one.

A call has two parties, the officer and the operator answering for the center (or calling
the officer), and any number of supervisors who join it, openly or, where policy allows,
covertly (they hear and see, nobody hears or sees them, and the trace says so). The operator
may hand the call to another free operator of the court; a party who loses their connection
is *away* until they come back or their grace runs out. Whoever joins a call while a party is
away is told so, with the time left.

This module owns the `Call` records (their states move only along `signalling.core.call`'s
table, through `move`), which call each user is a party to, and which calls each supervisor
monitors. Ringing and queueing are the dispatcher's (`signalling.core.dispatch`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from identity import Courts, Role
from sessions.timings import HUMAN_BOUNDS, Timings
from signalling import protocol as p
from signalling.core.actions import Action, Negotiate, Room, Send
from signalling.core.call import Call, CallEvent, CallState, call_info, room_of
from signalling.core.facts import CallFacts
from signalling.core.presence import MONITOR_ROLES, Session
from signalling.errors import Forbidden, InvalidState, MediaUnavailable, NotFound
from signalling.protocol import Direction, EndReason
from signalling.settings import CallsConfig, supervisor_join

if TYPE_CHECKING:
    from signalling.core.switchboard import Switchboard

CENTER_ROLES: Final = frozenset({Role.OPERATOR, Role.SUPERVISOR, Role.ADMIN})


class Calls:
    def __init__(
        self,
        board: Switchboard,
        courts: Courts,
        config: CallsConfig,
        new_call_id: Callable[[], str],
        *,
        media: bool,
    ) -> None:
        self._board = board
        self._courts = courts
        self.config = config
        self._new_call_id = new_call_id
        # Whether a media server stands behind the driver (Room / Negotiate actions).
        self.media = media
        self.table: dict[str, Call] = {}
        # user -> the live call they are a party to (officer, answering operator, caller).
        self._party: dict[str, str] = {}
        # supervisor -> the calls they monitor.
        self._monitoring: dict[str, set[str]] = {}
        # From a call being placed to its answer, queue included (what the caller waits).
        self.ring_times = Timings(HUMAN_BOUNDS)

    # ---- queries ------------------------------------------------------------------------

    def get(self, call_id: str) -> Call:
        call = self.table.get(call_id)
        if call is None:
            raise NotFound("no such call", field="call_id")
        return call

    def call_id_of(self, user: str) -> str | None:
        """The live call `user` is a party to, if any."""
        return self._party.get(user)

    def call_of(self, user: str) -> Call | None:
        call_id = self._party.get(user)
        return None if call_id is None else self.table[call_id]

    def monitoring(self, user: str) -> frozenset[str]:
        return frozenset(self._monitoring.get(user, ()))

    def live(self) -> list[Call]:
        return [c for c in self.table.values() if c.is_live()]

    def count_by_state(self) -> dict[CallState, int]:
        """How many calls are in each state now (every state named, ended ones are gone)."""
        counts = dict.fromkeys(CallState, 0)
        for call in self.table.values():
            counts[call.state] += 1
        return counts

    def unanswered(self) -> list[Call]:
        return [c for c in self.table.values() if c.state in (CallState.QUEUED, CallState.RINGING)]

    def facts(self, call_id: str) -> CallFacts | None:
        """What the cluster's journal keeps of a live call (None: not live here)."""
        call = self.table.get(call_id)
        if call is None or not call.is_live():
            return None
        return self._board.facts.call_facts(call, self._board.dispatch.ringing(call_id))

    # ---- creating and moving calls ------------------------------------------------------

    def create(
        self,
        *,
        direction: Direction,
        officer: str,
        court: str,
        caller: str,
        now: float,
        case_number: str | None,
        emergency: bool = False,
        call_id: str | None = None,
        created_at: float | None = None,
    ) -> Call:
        call = Call(
            call_id=call_id if call_id is not None else self._new_call_id(),
            direction=direction,
            officer=officer,
            court=court,
            caller=caller,
            created_at=now if created_at is None else created_at,
            case_number=case_number,
            emergency=emergency,
            operator=caller if direction is Direction.CENTER_TO_OFFICER else None,
        )
        self.table[call.call_id] = call
        return call

    def join_as_party(self, call: Call, user: str) -> None:
        self._party[user] = call.call_id

    def move(self, call: Call, event: CallEvent, now: float) -> None:
        """Move `call` along the table; its timer effects are the dispatcher's."""
        dispatch = self._board.dispatch
        for effect in call.apply(event, now):
            dispatch.perform(call, effect, now)

    def answered(self, call: Call, user: str, now: float) -> None:
        """`user`'s accept won: the call is ACTIVE, and (for an officer's call) `user` is
        its operator."""
        self.move(call, CallEvent.ACCEPT, now)
        call.answered_at = now
        self.ring_times.observe(now - call.created_at)
        if call.direction is Direction.OFFICER_TO_CENTER:
            call.operator = user
            self._party[user] = call.call_id

    def escalate(self, call: Call, now: float, out: list[Action]) -> None:
        """The officer raised an emergency on `call`."""
        if not call.emergency:
            call.emergency = True
            out.append(self._board.facts.record("call_escalated", now, call=call.call_id))

    def end(
        self, call: Call, reason: EndReason, by: str | None, now: float, out: list[Action]
    ) -> None:
        board = self._board
        # An open transfer offer lapses first, recorded while the call is still live.
        board.transfers.call_ended(call.call_id, now, out)
        self.move(call, CallEvent.END, now)
        call.ended_at = now
        call.end_reason = reason
        call.ended_by = by
        ringing = board.dispatch.forget(call)
        members = call.members()
        for u in (*members, call.caller):
            # Not `call.caller` in the notice below: a caller who transferred the call is
            # out of it, and one who has not is a member.
            if self._party.get(u) == call.call_id:
                del self._party[u]
            _discard(self._monitoring, u, call.call_id)
        out.append(board.facts.call_ended(call, reason, by, now))
        notify = {*members, *ringing}
        if call.direction is Direction.CENTER_TO_OFFICER and call.answered_at is None:
            # An officer who never rang (busy, unavailable) is not told of the attempt.
            notify -= {call.officer} - set(ringing)
        out.append(
            Send(tuple(sorted(notify)), p.CallEnded(call_id=call.call_id, reason=reason, by=by))
        )
        officer = board.presence.session(call.officer)
        if officer is not None and officer.role is Role.OFFICER:
            out.extend(board.views.officer_changed(officer))
        if call.answered_at is not None:
            out.append(Room(call.call_id, (), (), call.court, call.officer, call.case_number))
        board.feeds.call_ended(call.call_id, now, out)
        # Ended calls are kept only as long as something may still refer to them.
        del self.table[call.call_id]

    # ---- what members ask -----------------------------------------------------------------

    def hangup(self, session: Session, call: Call, now: float, out: list[Action]) -> None:
        user = session.user_id
        if user in call.supervisors:
            self._leave(call, user, now, out)
        elif call.state is CallState.ACTIVE and user in call.parties():
            self.end(call, EndReason.HANGUP, user, now, out)
        elif call.state in (CallState.QUEUED, CallState.RINGING) and user == call.caller:
            self.end(call, EndReason.CANCELLED, user, now, out)
        elif call.state is CallState.RINGING and user in self._board.dispatch.ringing(call.call_id):
            self._board.dispatch.decline(session, call, now, out)
        else:
            raise InvalidState("you are not in this call")

    def join(
        self, session: Session, call: Call, covert: bool, now: float, out: list[Action]
    ) -> None:
        user = session.user_id
        if session.role not in MONITOR_ROLES:
            raise Forbidden("only supervisors join calls")
        if not self._courts.in_scope(session.identity, call.court):
            raise Forbidden("call is outside your scope")
        policy = supervisor_join(self.config)
        if policy == "silent":
            # Policy: supervisors only ever watch unseen and unheard (room_of keeps it so).
            covert = True
        elif covert and policy == "visible":
            raise Forbidden("covert monitoring is not allowed", field="covert")
        if user in call.members():
            raise InvalidState("you are already in this call")
        if call.state is not CallState.ACTIVE:
            raise InvalidState(f"call is {call.state.value}")
        call.supervisors[user] = covert
        self._monitoring.setdefault(user, set()).add(call.call_id)
        out.append(
            self._board.facts.record(
                "supervisor_joined", now, call=call.call_id, user=user, covert=covert
            )
        )
        info = self._board.presence.info(user)
        msg = p.ParticipantJoined(call_id=call.call_id, user=info, covert=covert)
        out.append(Send((user,), p.CallAnswered(call=call_info(call, self._board.presence.info))))
        told = (user,) if covert else call.members()
        out.append(Send(told, msg))
        _room(call, out)
        self.tell_away(call, user, now, out)

    def leave(self, session: Session, call: Call, now: float, out: list[Action]) -> None:
        if session.user_id not in call.supervisors:
            raise InvalidState("you are not monitoring this call")
        self._leave(call, session.user_id, now, out)

    def leave_all(self, user: str, now: float, out: list[Action]) -> None:
        """`user` signs out: they leave every call they monitor."""
        for call_id in sorted(self.monitoring(user)):
            self._leave(self.table[call_id], user, now, out)

    def _leave(self, call: Call, user: str, now: float, out: list[Action]) -> None:
        covert = call.supervisors.get(user, False)
        msg = p.ParticipantLeft(call_id=call.call_id, user=self._board.presence.info(user))
        told = (user,) if covert else call.members()
        del call.supervisors[user]
        call.cameras_off.discard(user)
        _discard(self._monitoring, user, call.call_id)
        out.append(
            self._board.facts.record(
                "supervisor_left", now, call=call.call_id, user=user, covert=covert
            )
        )
        out.append(Send(told, msg))
        _room(call, out)

    def hand_over(self, call: Call, user: str, to: str, now: float, out: list[Action]) -> None:
        """`to` accepted the transfer of `call` that its operator `user` offered
        (`signalling.core.transfers` checked both): `to` is its operator now."""
        board = self._board
        call.operator = to
        call.cameras_off.discard(user)
        del self._party[user]
        self._party[to] = call.call_id
        board.dispatch.stop_ringing_all(to, "busy", now, out)
        out.append(board.facts.record("call_transferred", now, call=call.call_id, by=user, to=to))
        msg = p.CallTransferred(
            call=call_info(call, self._board.presence.info), from_operator=board.presence.info(user)
        )
        out.append(Send(tuple(sorted({user, *call.members()})), msg))
        board.feeds.operator_left(call, user, "transferred", now, out)
        _room(call, out)
        self.tell_away(call, to, now, out)

    def send_back(self, call: Call, user: str, now: float, out: list[Action]) -> None:
        """`user`, the operator of answered `call`, puts it back in the queue: they leave it,
        the officer stays (and stays in its media, so nothing is lost while it waits), and
        everyone in it is told. The dispatcher rings it again."""
        board = self._board
        board.transfers.call_ended(call.call_id, now, out)
        told = tuple(sorted(call.members()))
        out.append(
            board.facts.record("call_sent_back", now, call=call.call_id, by=user, answered=True)
        )
        call.operator = None
        call.away.discard(user)
        call.cameras_off.discard(user)
        del self._party[user]
        board.dispatch.requeue(call, now, out)
        out.append(Send(told, p.CallRequeued(call_id=call.call_id, by=board.presence.info(user))))
        board.feeds.operator_left(call, user, "sent_back", now, out)
        _room(call, out)
        officer = board.presence.session(call.officer)
        if officer is not None:
            out.extend(board.views.officer_changed(officer))

    def media_call(self, user: str, call_id: str) -> Call:
        """The active call `user` may negotiate media for; raises otherwise."""
        call = self.get(call_id)
        if user not in call.members():
            raise Forbidden("you are not in this call")
        if call.state is not CallState.ACTIVE:
            raise InvalidState(f"call is {call.state.value}")
        return call

    def negotiate(self, session: Session, msg: p.MediaMessage) -> Negotiate:
        """A member's media message, checked, for the driver's media port."""
        call = self.media_call(session.user_id, msg.call_id)
        if isinstance(msg, p.Snapshot):
            if session.role not in CENTER_ROLES:
                raise Forbidden("only the command center takes snapshots")
            if msg.of is not None and msg.of not in call.members():
                raise NotFound("no such member in this call", field="of")
        if not self.media:
            raise MediaUnavailable("media is not available on this server")
        return Negotiate(session.user_id, msg)

    # ---- parties away and back ----------------------------------------------------------

    def party_away(self, user: str, grace_s: float, now: float, out: list[Action]) -> None:
        call = self.call_of(user)
        if call is None:
            return
        call.away.add(user)
        out.append(self._board.facts.record("party_away", now, call=call.call_id, user=user))
        others = tuple(m for m in call.members() if m != user)
        if others:
            # Whoever joins later (an operator answering a ringing call, a supervisor) is
            # told on joining: see `tell_away`.
            info = self._board.presence.info(user)
            out.append(Send(others, p.PartyAway(call_id=call.call_id, user=info, grace_s=grace_s)))
        _room(call, out)

    def party_back(self, user: str, now: float, out: list[Action]) -> None:
        call = self.call_of(user)
        if call is None or user not in call.away:
            return
        call.away.discard(user)
        out.append(self._board.facts.record("party_back", now, call=call.call_id, user=user))
        others = tuple(m for m in call.members() if m != user)
        if others:
            msg = p.PartyBack(call_id=call.call_id, user=self._board.presence.info(user))
            out.append(Send(others, msg))
        _room(call, out)

    def tell_away(self, call: Call, newcomer: str, now: float, out: list[Action]) -> None:
        """Tell someone who just joined `call` which parties are away, and for how much
        longer they may come back: they were not there when it was announced."""
        presence = self._board.presence
        for u in sorted(call.away):
            if u == newcomer:
                continue
            left = presence.grace_left(u, now)
            msg = p.PartyAway(call_id=call.call_id, user=presence.info(u), grace_s=round(left, 3))
            out.append(Send((newcomer,), msg))


def _room(call: Call, out: list[Action]) -> None:
    """Tell the media server who may have media in `call` now."""
    room = room_of(call)
    if room is not None:
        out.append(room)


def _discard(index: dict[str, set[str]], key: str, value: str) -> None:
    values = index.get(key)
    if values is not None:
        values.discard(value)
        if not values:
            del index[key]
