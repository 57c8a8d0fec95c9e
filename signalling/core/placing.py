"""How calls are placed: an officer's call or emergency to the center, the center's call to an
officer, a caller cancelling, and a dead authority's waiting call taken over.

Placing decides whether a call may exist (roles, scope, busy, a full queue), creates it in the
call table and hands it to the dispatcher, which rings it or queues it. An emergency flags
the officer (shown on every roster in scope until someone in the center clears it) and either
escalates the call they are in or places a new one, which the dispatcher rings ahead of
everything else. This module keeps no state of its own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from identity import Courts, Role
from signalling import protocol as p
from signalling.core.actions import Action, Send
from signalling.core.alarms import EmergencyFacts, carries
from signalling.core.call import Call, CallState
from signalling.core.calls import CENTER_ROLES
from signalling.core.facts import WaitingCall
from signalling.core.presence import Session
from signalling.errors import Busy, Forbidden, InvalidMessage, InvalidState, NotFound
from signalling.protocol import Direction, EndReason
from signalling.settings import CallsConfig

if TYPE_CHECKING:
    from signalling.core.switchboard import Switchboard


class Placing:
    def __init__(self, board: Switchboard, courts: Courts, config: CallsConfig) -> None:
        self._board = board
        self._courts = courts
        self.config = config

    def call_center(
        self,
        session: Session,
        case_number: str | None,
        emergency: bool,
        ref: str,
        now: float,
        out: list[Action],
    ) -> Call:
        board = self._board
        if board.calls.call_id_of(session.user_id) is not None:
            raise Busy("you are already in a call")
        officer = session.identity
        call = board.calls.create(
            direction=Direction.OFFICER_TO_CENTER,
            officer=officer.user_id,
            court=officer.court,
            caller=officer.user_id,
            now=now,
            case_number=case_number,
            emergency=emergency,
        )
        board.calls.join_as_party(call, officer.user_id)
        out.append(board.facts.call_created(call, now))
        out.append(Send((officer.user_id,), p.CallPlaced(ref=ref, call_id=call.call_id)))
        out.extend(board.views.officer_changed(session))
        dispatch = board.dispatch
        waiting = dispatch.line_length(call) - 1
        if not emergency and not dispatch.candidates(call) and waiting >= self.config.max_queue:
            board.calls.end(call, EndReason.QUEUE_FULL, None, now, out)
            return call
        dispatch.wait(call, now + self.config.queue_timeout_s)
        out.append(board.facts.record("call_queued", now, call=call.call_id))
        # `run` (after every message) rings it or tells the officer its position.
        return call

    def emergency(self, session: Session, msg: p.Emergency, now: float, out: list[Action]) -> None:
        board = self._board
        user = session.user_id
        call = board.calls.call_of(user)
        if board.presence.set_emergency(session, True):
            session.emergency_note = msg.note
            board.alarms.raised(user, now)
            out.append(
                board.facts.emergency_raised(
                    user,
                    session.identity.court,
                    call.call_id if call is not None else None,
                    msg.note,
                    session.position,
                    now,
                )
            )
            if msg.note:
                out.append(self._noted(session))
        if call is None:
            self.call_center(session, msg.case_number, True, msg.id, now, out)
            return
        board.calls.escalate(call, now, out)
        out.append(Send((user,), p.CallPlaced(ref=msg.id, call_id=call.call_id)))
        out.extend(board.views.officer_changed(session))

    def emergency_note(
        self, session: Session, msg: p.EmergencyNote, now: float, out: list[Action]
    ) -> None:
        """The officer adds a note to their raised emergency (typed after the SOS went out,
        so the alarm is not held back by typing); a later note replaces it."""
        if session.role is not Role.OFFICER:
            raise Forbidden("only officers note their emergencies")
        if not session.emergency:
            raise InvalidState("you have no emergency raised")
        session.emergency_note = msg.note
        out.append(
            self._board.facts.record(
                "emergency_noted",
                now,
                officer=session.user_id,
                court=session.identity.court,
                note=msg.note,
            )
        )
        out.append(self._noted(session))

    def _noted(self, session: Session) -> Send:
        """`emergency_noted` to those who are alarmed about `session`'s officer."""
        board = self._board
        user = session.user_id
        told = dict.fromkeys(
            (
                *board.views.watchers_of(session.identity.court),
                *board.alarms.escalated_consoles(user),
            )
        )
        note = session.emergency_note or ""
        return Send(tuple(told), p.EmergencyNoted(officer=board.presence.info(user), note=note))

    def carry_over_emergency(self, facts: EmergencyFacts, now: float) -> list[Action]:
        """A dead authority's raised emergency, for an officer whose session this one took
        over: flagged again as it was (`flag_carried`), and the consoles shown it again. An
        officer gone or signed in anew since is left alone (the sign-out ends it)."""
        board = self._board
        out: list[Action] = []
        session = board.presence.session(facts.officer)
        if session is None or not carries(session, facts):
            return out
        self.flag_carried(session, facts, now, out)
        out.extend(board.views.officer_changed(session))
        self.show_escalated(session, out)
        return out

    def flag_carried(
        self, session: Session, facts: EmergencyFacts, now: float, out: list[Action]
    ) -> None:
        """Flag `session` with a dead authority's emergency as it was (its note, who took it
        on, its alarm's escalation and repeats) and record `emergency_carried_over`; showing
        it is the caller's (an adoption flags the session before it is first shown, so that
        no console ever sees the officer without the flag)."""
        board = self._board
        session.emergency = True
        session.emergency_note = facts.note
        session.emergency_taken_by = facts.taken_by
        board.alarms.adopt(facts, now)
        out.append(
            board.facts.record(
                "emergency_carried_over",
                now,
                officer=facts.officer,
                court=facts.court,
                raised_at=facts.raised_at,
                acknowledged_by=facts.taken_by,
                escalated_to=facts.escalated_to,
                repeats=facts.repeats,
                node=board.node_id,
            )
        )

    def show_escalated(self, session: Session, out: list[Action]) -> None:
        """The consoles of the court a carried emergency was escalated to see the officer
        (its own court's watchers are told by `officer_changed`)."""
        board = self._board
        escalated = board.alarms.escalated_consoles(session.user_id)
        if escalated:
            out.append(Send(escalated, p.RosterUpdate(entry=board.views.entry(session))))

    def _emergency_of(self, session: Session, officer: str, what: str) -> Session:
        """The officer whose emergency `session` acts on, checked: their role, scope, flag."""
        board = self._board
        if session.role not in CENTER_ROLES:
            raise Forbidden(f"only the command center {what} emergencies")
        target = board.presence.session(officer)
        if target is None or target.role is not Role.OFFICER:
            raise NotFound("no such officer signed in", field="officer")
        escalated = board.alarms.escalated_to(officer) == session.identity.court
        if not escalated and not self._courts.in_scope(session.identity, target.identity.court):
            raise Forbidden("officer is outside your scope", field="officer")
        if not target.emergency:
            raise InvalidState("officer has no emergency", field="officer")
        return target

    def acknowledge_emergency(
        self, session: Session, officer: str, now: float, out: list[Action]
    ) -> None:
        """One person takes the alarm on; the officer and every watcher of the court are
        told who, so that nobody else runs to it and the officer knows help is coming."""
        board = self._board
        target = self._emergency_of(session, officer, "acknowledges")
        taken = target.emergency_taken_by
        if taken is not None:
            who = board.presence.info(taken).name if taken != session.user_id else "you"
            raise InvalidState(f"already acknowledged by {who}", field="officer")
        target.emergency_taken_by = session.user_id
        board.alarms.taken_on(officer)
        out.append(
            board.facts.record(
                "emergency_acknowledged",
                now,
                officer=officer,
                court=target.identity.court,
                by=session.user_id,
            )
        )
        told = p.EmergencyAcknowledged(
            officer=board.presence.info(officer), by=board.presence.info(session.user_id)
        )
        watchers = board.views.watchers_of(target.identity.court)
        escalated = board.alarms.escalated_consoles(officer)
        out.append(Send(tuple(dict.fromkeys((officer, *watchers, *escalated))), told))

    def clear_emergency(
        self, session: Session, msg: p.ClearEmergency, now: float, out: list[Action]
    ) -> None:
        board = self._board
        officer = msg.officer
        if msg.outcome == "false_alarm" and not msg.reason:
            raise InvalidMessage("a false alarm needs a reason", field="reason")
        target = self._emergency_of(session, officer, "clears")
        taken_by = target.emergency_taken_by
        escalated = board.alarms.escalated_consoles(officer)
        board.alarms.forget(officer)
        board.presence.set_emergency(target, False)
        out.append(
            board.facts.record(
                "emergency_cleared",
                now,
                officer=officer,
                court=target.identity.court,
                by=session.user_id,
                outcome=msg.outcome,
                reason=msg.reason,
                acknowledged_by=taken_by,
            )
        )
        # The officer's phone stops showing the alarm as raised.
        cleared = p.EmergencyCleared(by=board.presence.info(session.user_id), outcome=msg.outcome)
        out.append(Send((officer,), cleared))
        out.extend(board.views.officer_changed(target))
        if escalated:
            # The court above was told of it: it learns it is over the same way.
            out.append(Send(escalated, p.RosterUpdate(entry=board.views.entry(target))))

    def call_officer(
        self, session: Session, msg: p.CallOfficer, now: float, out: list[Action]
    ) -> None:
        board = self._board
        if session.role not in CENTER_ROLES:
            raise Forbidden("only the command center calls officers")
        caller = session.user_id
        if msg.officer == caller:
            raise InvalidState("cannot call yourself", field="officer")
        target = board.presence.session(msg.officer)
        if target is not None and target.role is not Role.OFFICER:
            # Calling a user who is no officer ends like calling one who is not signed in,
            # so the answer does not reveal which ids exist.
            target = None
        court = target.identity.court if target is not None else None
        if court is not None and not self._courts.in_scope(session.identity, court):
            raise Forbidden("officer is outside your scope", field="officer")
        if target is None and session.role is Role.OPERATOR:
            # Unknown officers are reported like offline ones, without revealing which.
            court = session.identity.court
        if board.calls.call_id_of(caller) is not None:
            raise Busy("you are already in a call")
        call = board.calls.create(
            direction=Direction.CENTER_TO_OFFICER,
            officer=msg.officer,
            court=court or session.identity.court,
            caller=caller,
            now=now,
            case_number=msg.case_number,
        )
        out.append(board.facts.call_created(call, now))
        out.append(Send((caller,), p.CallPlaced(ref=msg.id, call_id=call.call_id)))
        if target is None or not target.connected:
            board.calls.end(call, EndReason.UNAVAILABLE, None, now, out)
            return
        if board.calls.call_id_of(msg.officer) is not None:
            board.calls.end(call, EndReason.BUSY, None, now, out)
            return
        # The caller stops ringing for incoming calls while placing this one.
        board.calls.join_as_party(call, caller)
        board.dispatch.stop_ringing_all(caller, "busy", now, out)
        board.calls.join_as_party(call, msg.officer)
        board.dispatch.ring(call, [msg.officer], now, out)
        out.extend(board.views.officer_changed(target))

    def take_over(self, waiting: WaitingCall, now: float) -> list[Action]:
        """Queue again an officer's unanswered call that a dead authority held (the next one
        took its sessions on first): it rings as it would have, in its old place in the
        queue (by `created_at`), and the officer is welcomed again to see it. An officer no
        longer here, or in another call by now, has it ended with `node_lost`."""
        board = self._board
        out: list[Action] = []
        if waiting.call_id in board.calls.table:
            return out
        session = board.presence.session(waiting.officer)
        call = board.calls.create(
            direction=Direction.OFFICER_TO_CENTER,
            officer=waiting.officer,
            court=waiting.court,
            caller=waiting.officer,
            now=now,
            case_number=waiting.case_number,
            emergency=waiting.emergency,
            call_id=waiting.call_id,
            created_at=waiting.created_at,
        )
        if session is None or board.calls.call_id_of(waiting.officer) is not None:
            board.calls.end(call, EndReason.NODE_LOST, None, now, out)
            return out
        board.calls.join_as_party(call, waiting.officer)
        if waiting.emergency and board.presence.set_emergency(session, True):
            board.alarms.raised(waiting.officer, now)
        out.append(
            board.facts.record("call_taken_over", now, call=call.call_id, node=board.node_id)
        )
        deadline = waiting.created_at + self.config.queue_timeout_s
        board.dispatch.wait(call, max(now, deadline))
        out.extend(board.views.officer_changed(session))
        board.dispatch.run(now, out)
        out.append(Send((session.user_id,), board.presence.welcome(session, resumed=True, now=now)))
        return out

    def cancel(self, session: Session, call: Call, now: float, out: list[Action]) -> None:
        if call.caller != session.user_id:
            raise Forbidden("only the caller may cancel")
        if call.state not in (CallState.QUEUED, CallState.RINGING):
            raise InvalidState(f"cannot cancel a call that is {call.state.value}")
        self._board.calls.end(call, EndReason.CANCELLED, session.user_id, now, out)
