"""The calls waiting for the center, as the consoles see them.

An operator is rung only for the calls that ring at them (signalling.core.dispatch): a
console would otherwise not know of a call ringing at the other operators, nor of one queued
because nobody is free, nor for how long each has waited. So each court's waiting calls
(officers' calls to the center, queued or ringing, emergencies first then oldest first, as
they will be answered) are shown to the consoles of that court and the supervisors over it,
and to the consoles of a parent court the calls fall back to: `get_queue` asks for one
court's list, and `queue_update` tells the whole list again whenever it changes (`sync`,
run after every message and deadline, like the operators' statuses in
signalling.core.availability). A list is short: `calls.max_queue` queued calls at most per
line, plus the ringing ones. Waiting times count from the call's `created_at`, so a call sent
back shows how long the officer has waited, not when a console first saw it.

This module owns the lists last told; it reads the calls, the ringing and the positions from
their owners.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from signalling import protocol as p
from signalling.core.actions import Action, Send
from signalling.core.call import Call, CallState, call_info
from signalling.core.presence import WATCHER_ROLES, Session
from signalling.errors import Forbidden, NotFound
from signalling.protocol import Direction

if TYPE_CHECKING:
    from identity import Courts
    from signalling.core.switchboard import Switchboard


class QueueViews:
    def __init__(self, board: Switchboard, courts: Courts) -> None:
        self._board = board
        self._courts = courts
        # court -> the list last told its consoles.
        self._told: dict[str, tuple[p.QueueEntry, ...]] = {}

    def queue(self, session: Session, msg: p.GetQueue) -> p.Queue:
        if session.role not in WATCHER_ROLES:
            raise Forbidden("only the command center sees the queue")
        court = msg.court if msg.court is not None else session.identity.court
        # Unknown and out-of-scope courts answer alike: nothing tells them apart.
        if court not in self._courts or not self._courts.in_scope(session.identity, court):
            raise NotFound("unknown court", field="court")
        waiting = self._waiting().get(court, [])
        return p.Queue(ref=msg.id, court=court, calls=list(self._entries(waiting)))

    def sync(self, out: list[Action]) -> None:
        """Tell the consoles of each court whose list of waiting calls changed (a console
        that opens later asks with `get_queue`)."""
        waiting = self._waiting()
        for court in sorted(set(self._told) | set(waiting)):
            calls = waiting.get(court, [])
            entries = self._entries(calls)
            if self._told.get(court, ()) == entries:
                continue
            if entries:
                self._told[court] = entries
            else:
                del self._told[court]
            told = self._recipients(court, calls)
            if told:
                update = p.QueueUpdate(court=court, calls=list(entries))
                out.append(Send(tuple(sorted(told)), update))

    def _waiting(self) -> dict[str, list[Call]]:
        """Unanswered officers' calls to the center, by the officer's court."""
        by_court: dict[str, list[Call]] = {}
        for call in self._board.calls.unanswered():
            if call.direction is Direction.OFFICER_TO_CENTER:
                by_court.setdefault(call.court, []).append(call)
        for calls in by_court.values():
            calls.sort(key=lambda c: (not c.emergency, c.created_at, c.call_id))
        return by_court

    def _entries(self, calls: list[Call]) -> tuple[p.QueueEntry, ...]:
        board = self._board
        dispatch = board.dispatch
        return tuple(
            p.QueueEntry(
                call=call_info(call, board.presence.info),
                position=dispatch.position(call.call_id)
                if call.state is CallState.QUEUED
                else None,
                ringing=len(dispatch.ringing(call.call_id)),
            )
            for call in calls
        )

    def _recipients(self, court: str, calls: list[Call]) -> frozenset[str]:
        presence = self._board.presence
        told = set(presence.consoles(court)) | presence.monitors(court)
        for call in calls:
            center = self._board.dispatch.center_court(call)
            if center != court:
                told.update(presence.consoles(center))
        return frozenset(told)


__all__ = ["QueueViews"]
