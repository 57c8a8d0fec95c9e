"""Who rings: ringing, the queue, first accept wins, emergencies first.

Theory of operation
-------------------
An operator is *free* when signed in, connected, not in a call and not placing one. An
officer's call to the center rings every free operator of the officer's court (or, with
`calls.fallback_to_parent` and no operator of that court signed in, of the nearest ancestor
court that has one). A normal call rings an operator only while no other call rings them, so
that a court's calls are taken in queue order; a call that finds nobody free is QUEUED and
its officer is told its position among the calls waiting for the same operators (courts that
fall back to one parent share its line; `calls.max_queue` bounds each line). The first to
accept gets the call; the others are told who took it.

Emergencies go ahead of every queue and ring every operator in scope who is not in a call,
whatever else rings them (pre-emption), and every supervisor or admin whose scope covers the
court. Whenever anyone becomes free, `run` rings the queued calls in order (emergencies first,
then oldest first).

This module owns who rings for which call, who declined it, the positions told to queued
officers, and the ring and queue timers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from identity import Courts
from signalling import protocol as p
from signalling.core.actions import Action, Send
from signalling.core.call import Call, CallEvent, CallState, Effect, call_info, room_of
from signalling.core.deadlines import Deadlines
from signalling.core.presence import Session
from signalling.errors import Busy, CallAlreadyTaken, InvalidState
from signalling.protocol import Direction, EndReason
from signalling.settings import CallsConfig

if TYPE_CHECKING:
    from signalling.core.switchboard import Switchboard


@dataclass(frozen=True, slots=True)
class RingTimeout:
    """Deadline: `call_id`, ringing unanswered, is missed."""

    call_id: str


@dataclass(frozen=True, slots=True)
class SendBackHold:
    """Deadline: `user`, who sent `call_id` back to the queue, may be rung for it again."""

    call_id: str
    user: str


@dataclass(frozen=True, slots=True)
class QueueTimeout:
    """Deadline: `call_id`, queued, gives up waiting."""

    call_id: str


class Dispatch:
    def __init__(
        self, board: Switchboard, courts: Courts, config: CallsConfig, deadlines: Deadlines
    ) -> None:
        self._board = board
        self._courts = courts
        self.config = config
        self._deadlines = deadlines
        # call -> users ringing for it now; user -> calls ringing at them.
        self._ringing: dict[str, set[str]] = {}
        self._ringing_at: dict[str, set[str]] = {}
        # call -> users who declined it (never rung again for it).
        self._declined: dict[str, set[str]] = {}
        # call -> queue position last told to its officer.
        self._told_position: dict[str, int] = {}
        # call -> users who sent it back to the queue, not rung for it until their hold ends.
        self._held: dict[str, set[str]] = {}

    # ---- queries ------------------------------------------------------------------------

    def ringing(self, call_id: str) -> frozenset[str]:
        return frozenset(self._ringing.get(call_id, ()))

    def ringing_at(self, user: str) -> frozenset[str]:
        return frozenset(self._ringing_at.get(user, ()))

    def declined(self, call_id: str) -> frozenset[str]:
        return frozenset(self._declined.get(call_id, ()))

    def held(self, call_id: str) -> frozenset[str]:
        """Who sent `call_id` back and is not rung for it yet."""
        return frozenset(self._held.get(call_id, ()))

    def line_length(self, call: Call) -> int:
        """How many queued calls wait in `call`'s line (itself included, if queued)."""
        return len(self._lines().get(self.center_court(call), []))

    def position(self, call_id: str) -> int | None:
        """The place in its line last told to a queued call's officer."""
        return self._told_position.get(call_id)

    def queue(self, court: str) -> list[Call]:
        """Queued calls of officers of `court`, in the order they will ring."""
        waiting = [
            c
            for c in self._board.calls.table.values()
            if c.state is CallState.QUEUED and c.court == court
        ]
        return sorted(waiting, key=_queue_order)

    # ---- answering ----------------------------------------------------------------------

    def accept(self, session: Session, call: Call, now: float, out: list[Action]) -> None:
        board = self._board
        user = session.user_id
        if call.state is CallState.ACTIVE and user not in call.members():
            raise CallAlreadyTaken("call was taken by someone else")
        if call.state is not CallState.RINGING:
            raise InvalidState(f"call is {call.state.value}")
        if user not in self._ringing.get(call.call_id, ()):
            raise InvalidState("call is not ringing for you")
        mine = board.calls.call_id_of(user)
        if mine is not None and mine != call.call_id:
            raise Busy("you are already in a call")
        others = tuple(u for u in sorted(self._ringing[call.call_id]) if u != user)
        self._clear_ringing(call.call_id)
        board.calls.answered(call, user, now)
        if call.direction is Direction.OFFICER_TO_CENTER:
            # The new operator stops ringing for every other call.
            self.stop_ringing_all(user, "busy", now, out)
        out.append(board.facts.record("call_answered", now, call=call.call_id, by=user))
        if others:
            taken = p.CallTaken(call_id=call.call_id, by=board.presence.info(user))
            out.append(Send(others, taken))
        out.append(Send(call.parties(), p.CallAnswered(call=call_info(call, board.presence.info))))
        room = room_of(call)
        if room is not None:
            out.append(room)
        if call.direction is Direction.OFFICER_TO_CENTER:
            # An officer answering the center was a party all along and has been told.
            board.calls.tell_away(call, user, now, out)

    def decline(self, session: Session, call: Call, now: float, out: list[Action]) -> None:
        board = self._board
        user = session.user_id
        ringing = self._ringing.get(call.call_id, set())
        if call.state is not CallState.RINGING or user not in ringing:
            raise InvalidState("call is not ringing for you")
        if call.direction is Direction.CENTER_TO_OFFICER:
            board.calls.end(call, EndReason.DECLINED, user, now, out)
            return
        self._unring(call.call_id, user)
        self._declined.setdefault(call.call_id, set()).add(user)
        out.append(board.facts.record("call_declined", now, call=call.call_id, by=user))
        if self._ringing.get(call.call_id):
            return
        if self._answerers(call) <= self._declined[call.call_id]:
            # Everyone who could answer has said no: tell the officer now, not at timeout.
            board.calls.end(call, EndReason.DECLINED, user, now, out)
        else:
            self._requeue(call, now, out)

    # ---- sending back to the queue --------------------------------------------------------

    def send_back(self, session: Session, call: Call, now: float, out: list[Action]) -> None:
        """The operator of an answered officer's call, or one it rings at, puts it back in
        the queue: it rings at the court's other free operators, not at them for
        `calls.send_back_hold_s`."""
        board = self._board
        user = session.user_id
        if call.direction is not Direction.OFFICER_TO_CENTER:
            raise InvalidState("only an officer's call to the center goes back to the queue")
        if call.state is CallState.ACTIVE and call.operator == user:
            board.calls.send_back(call, user, now, out)
        elif call.state is CallState.RINGING and user in self._ringing.get(call.call_id, ()):
            self._unring(call.call_id, user)
            out.append(
                board.facts.record(
                    "call_sent_back", now, call=call.call_id, by=user, answered=False
                )
            )
            out.append(
                Send((user,), p.CallRequeued(call_id=call.call_id, by=board.presence.info(user)))
            )
            if not self._ringing.get(call.call_id):
                self._requeue(call, now, out)
        else:
            raise InvalidState("the call is neither yours nor ringing for you")
        self._held.setdefault(call.call_id, set()).add(user)
        self._deadlines.set(SendBackHold(call.call_id, user), now + self.config.send_back_hold_s)

    def hold_over(self, key: SendBackHold) -> None:
        _discard(self._held, key.call_id, key.user)

    # ---- ringing ------------------------------------------------------------------------

    def run(self, now: float, out: list[Action]) -> None:
        """Ring whatever can ring: queued calls in order, and free users for ringing calls.
        Then tell queued officers their (new) positions."""
        live = self._board.calls.unanswered()
        if not live:
            return
        # Queued calls take free operators before ringing calls spread to them, so that a
        # court with two waiting calls and two operators works on both.
        for call in sorted(
            (c for c in live if c.direction is Direction.OFFICER_TO_CENTER),
            key=lambda c: (
                not c.emergency,
                c.state is not CallState.QUEUED,
                c.created_at,
                c.call_id,
            ),
        ):
            candidates = self.candidates(call)
            if candidates:
                self.ring(call, candidates, now, out)
        for line in self._lines().values():
            for pos, call in enumerate(line, start=1):
                if self._told_position.get(call.call_id) != pos:
                    self._told_position[call.call_id] = pos
                    out.append(
                        Send((call.officer,), p.CallQueued(call_id=call.call_id, position=pos))
                    )

    def _free(self, user: str, *, emergency: bool) -> bool:
        s = self._board.presence.session(user)
        if s is None or not s.connected or self._board.calls.call_id_of(user) is not None:
            return False
        if emergency:
            return True
        # An operator who said they are away is rung for emergencies only.
        return not self._board.availability.is_away(user) and not self._ringing_at.get(user)

    def center_court(self, call: Call) -> str:
        """The court whose operators answer `call`: the officer's own, or with fallback the
        nearest ancestor with an operator signed in."""
        presence = self._board.presence
        if presence.has_operators(call.court) or not self.config.fallback_to_parent:
            return call.court
        for court in self._courts.ancestors(call.court):
            if presence.has_operators(court):
                return court
        return call.court

    def _answerers(self, call: Call) -> frozenset[str]:
        """Everyone who may answer `call`: the center court's operators, and in an
        emergency the supervisors and admins over the officer's court."""
        presence = self._board.presence
        users = presence.operators(self.center_court(call))
        if call.emergency:
            users |= presence.monitors(call.court)
        return users

    def candidates(self, call: Call) -> list[str]:
        """Who `call` would ring now."""
        declined = self._declined.get(call.call_id, ())
        ringing = self._ringing.get(call.call_id, ())
        held = self._held.get(call.call_id, ())
        return sorted(
            u
            for u in self._answerers(call)
            if u not in declined
            and u not in ringing
            and u not in held
            and self._free(u, emergency=call.emergency)
        )

    def wait(self, call: Call, until: float) -> None:
        """`call`, created queued, gives up waiting at `until`."""
        self._deadlines.set(QueueTimeout(call.call_id), until)

    def ring(self, call: Call, users: list[str], now: float, out: list[Action]) -> None:
        board = self._board
        # Rung afresh (placed, or out of the queue), not spreading to more operators.
        starts = not self._ringing.get(call.call_id)
        if call.state is CallState.QUEUED:
            board.calls.move(call, CallEvent.RING, now)
            call.ring_started_at = now
            self._told_position.pop(call.call_id, None)
        for u in users:
            self._ringing.setdefault(call.call_id, set()).add(u)
            self._ringing_at.setdefault(u, set()).add(call.call_id)
        out.append(board.facts.record("call_ringing", now, call=call.call_id, users=sorted(users)))
        out.append(Send(tuple(users), p.CallRinging(call=call_info(call, board.presence.info))))
        if starts and call.direction is Direction.OFFICER_TO_CENTER:
            out.append(Send((call.officer,), p.CallRingingCenter(call_id=call.call_id)))

    def stop_ringing(
        self, call: Call, user: str, reason: p.RingStopReason, now: float, out: list[Action]
    ) -> None:
        """`user` no longer rings for `call` (busy elsewhere or gone); requeue if nobody
        else rings. A center-to-officer call whose officer stops ringing is ended instead."""
        self._unring(call.call_id, user)
        out.append(Send((user,), p.RingStopped(call_id=call.call_id, reason=reason)))
        if self._ringing.get(call.call_id) or call.state is not CallState.RINGING:
            return
        if call.direction is Direction.CENTER_TO_OFFICER:
            self._board.calls.end(call, EndReason.PARTY_LOST, user, now, out)
        else:
            self._requeue(call, now, out)

    def stop_ringing_all(
        self, user: str, reason: p.RingStopReason, now: float, out: list[Action]
    ) -> None:
        table = self._board.calls.table
        for call_id in sorted(self.ringing_at(user)):
            self.stop_ringing(table[call_id], user, reason, now, out)

    def signed_out(self, user: str, now: float, out: list[Action]) -> None:
        """`user` signs out: a call to them ends, the others stop ringing at them."""
        calls = self._board.calls
        for call_id in sorted(self.ringing_at(user)):
            call = calls.table[call_id]
            if call.direction is Direction.CENTER_TO_OFFICER:
                calls.end(call, EndReason.PARTY_LOST, user, now, out)
            else:
                self.stop_ringing(call, user, "away", now, out)

    def _unring(self, call_id: str, user: str) -> None:
        _discard(self._ringing, call_id, user)
        _discard(self._ringing_at, user, call_id)

    def _clear_ringing(self, call_id: str) -> tuple[str, ...]:
        users = tuple(self._ringing.pop(call_id, ()))
        for u in users:
            _discard(self._ringing_at, u, call_id)
        return users

    def forget(self, call: Call) -> tuple[str, ...]:
        """`call` ended: nothing rings for it any more. Returns who rang."""
        self._told_position.pop(call.call_id, None)
        self._declined.pop(call.call_id, None)
        for user in self._held.pop(call.call_id, ()):
            self._deadlines.cancel(SendBackHold(call.call_id, user))
        return self._clear_ringing(call.call_id)

    def _lines(self) -> dict[str, list[Call]]:
        """Queued calls by the court whose operators will answer them, in ring order.

        Calls of courts that fall back to a common parent wait in one line, so a position
        told to an officer counts every call that will ring before theirs."""
        lines: dict[str, list[Call]] = {}
        for call in self._board.calls.table.values():
            if call.state is CallState.QUEUED:
                lines.setdefault(self.center_court(call), []).append(call)
        for line in lines.values():
            line.sort(key=_queue_order)
        return lines

    def requeue(self, call: Call, now: float, out: list[Action]) -> None:
        """`call` waits again (from ringing, or sent back once answered)."""
        self._requeue(call, now, out)

    def _requeue(self, call: Call, now: float, out: list[Action]) -> None:
        self._board.calls.move(call, CallEvent.REQUEUE, now)
        out.append(self._board.facts.record("call_queued", now, call=call.call_id))

    # ---- timers -------------------------------------------------------------------------

    def perform(self, call: Call, effect: Effect, now: float) -> None:
        """A timer effect of one of `call`'s transitions."""
        match effect:
            case Effect.STOP_QUEUE_TIMER:
                self._deadlines.cancel(QueueTimeout(call.call_id))
            case Effect.START_QUEUE_TIMER:
                when = call.created_at + self.config.queue_timeout_s
                self._deadlines.set(QueueTimeout(call.call_id), when)
            case Effect.START_REQUEUE_TIMER:
                self._deadlines.set(QueueTimeout(call.call_id), now + self.config.queue_timeout_s)
            case Effect.STOP_RING_TIMER:
                self._deadlines.cancel(RingTimeout(call.call_id))
            case Effect.START_RING_TIMER:
                self._deadlines.set(RingTimeout(call.call_id), now + self.config.ring_timeout_s)

    def timed_out(self, key: RingTimeout | QueueTimeout, now: float, out: list[Action]) -> None:
        """A ringing call nobody answered is missed; a queued one gives up waiting."""
        call = self._board.calls.table.get(key.call_id)
        if call is None:
            return
        if isinstance(key, RingTimeout) and call.state is CallState.RINGING:
            self._board.calls.end(call, EndReason.MISSED, None, now, out)
        elif isinstance(key, QueueTimeout) and call.state is CallState.QUEUED:
            self._board.calls.end(call, EndReason.QUEUE_TIMEOUT, None, now, out)


def _ring_order(call: Call) -> tuple[bool, bool, float, str]:
    return (not call.emergency, call.state is not CallState.QUEUED, call.created_at, call.call_id)


def _queue_order(call: Call) -> tuple[bool, float, str]:
    return (not call.emergency, call.created_at, call.call_id)


def _discard(index: dict[str, set[str]], key: str, value: str) -> None:
    values = index.get(key)
    if values is not None:
        values.discard(value)
        if not values:
            del index[key]
