"""Emergencies nobody took on: the alarm repeats, then reaches the court above.

Theory of operation
-------------------
An officer's emergency is raised (`raised`) and, until someone in the center acknowledges or
clears it, or answers the officer's call, it is pushed again (`emergency_alarm`) every
`emergency.repeat_after_s` to everyone who watches the officer's court, so that a console
that reconnected, was silenced or was not looked at alarms again. Once it has gone
unacknowledged for `emergency.escalate_after_s` it is escalated: the consoles of the parent
court are told as well (the officer's roster entry, then every repeat), and may take it on.
Each repeat is a trace fact (`emergency_repeated`), and so is the escalation
(`emergency_escalated`). Acknowledging (`taken_on`), clearing or the officer signing out
(`forget`) stops it.

The repeat timer is one deadline per officer (`AlarmDue`), like the calls' ring timeouts;
this module owns them and what it has escalated, and never reads the clock.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING

from identity import Role
from signalling import protocol as p
from signalling.core.actions import Action, Send
from signalling.core.call import CallState
from signalling.core.deadlines import Deadlines
from signalling.settings import EmergencyConfig

if TYPE_CHECKING:
    from identity import Courts
    from signalling.core.presence import Session
    from signalling.core.switchboard import Switchboard


@dataclass(frozen=True, slots=True)
class AlarmDue:
    """Deadline: `officer`'s emergency, still not taken on, alarms again."""

    officer: str


@dataclass(frozen=True, slots=True)
class EmergencyFacts:
    """An officer's raised emergency, as the next authority needs it to carry it on should
    this one die (the cluster's journal): the flag's state on the session and the alarm's."""

    officer: str
    court: str
    session_id: str
    raised_at: float
    note: str | None
    taken_by: str | None
    escalated_to: str | None
    repeats: int
    repeating: bool


def carries(session: Session, facts: EmergencyFacts) -> bool:
    """Whether a dead authority's emergency `facts` is `session`'s to carry on: the same
    officer's same session (one signed in anew since left the emergency behind)."""
    return (
        session.user_id == facts.officer
        and session.session_id == facts.session_id
        and session.role is Role.OFFICER
    )


@dataclass
class _Alarm:
    raised_at: float
    repeats: int = 0
    # The court whose consoles it was escalated to, once it was: kept after it is taken on,
    # so that they learn how it ends.
    escalated_to: str | None = None
    repeating: bool = True


class Alarms:
    def __init__(
        self, board: Switchboard, courts: Courts, config: EmergencyConfig, deadlines: Deadlines
    ) -> None:
        self._board = board
        self._courts = courts
        self.config = config
        self._deadlines = deadlines
        self._alarms: dict[str, _Alarm] = {}

    # ---- queries ------------------------------------------------------------------------

    def escalated_to(self, officer: str) -> str | None:
        alarm = self._alarms.get(officer)
        return None if alarm is None else alarm.escalated_to

    def escalated_consoles(self, officer: str) -> tuple[str, ...]:
        """The consoles of the court `officer`'s emergency was escalated to (none if not)."""
        court = self.escalated_to(officer)
        return () if court is None else tuple(self._board.presence.consoles(court))

    def escalated_into(self, courts: Collection[str]) -> list[str]:
        """Officers (of other courts) whose emergency was escalated to one of `courts`, and
        not yet cleared: those courts' consoles list them as their own."""
        return sorted(o for o, alarm in self._alarms.items() if alarm.escalated_to in courts)

    def facts(self, officer: str) -> EmergencyFacts | None:
        """`officer`'s emergency while it is raised, for the journal; None when there is none."""
        alarm = self._alarms.get(officer)
        session = self._board.presence.session(officer)
        if alarm is None or session is None or not session.emergency:
            return None
        return EmergencyFacts(
            officer=officer,
            court=session.identity.court,
            session_id=session.session_id,
            raised_at=alarm.raised_at,
            note=session.emergency_note,
            taken_by=session.emergency_taken_by,
            escalated_to=alarm.escalated_to,
            repeats=alarm.repeats,
            repeating=alarm.repeating,
        )

    def pending(self) -> list[str]:
        """Officers whose alarm still repeats."""
        return sorted(o for o, alarm in self._alarms.items() if alarm.repeating)

    def taken(self) -> list[str]:
        """Officers whose emergency someone took on, not yet cleared."""
        return sorted(o for o, alarm in self._alarms.items() if not alarm.repeating)

    # ---- what happens ---------------------------------------------------------------------

    def raised(self, officer: str, now: float) -> None:
        self._alarms[officer] = _Alarm(raised_at=now)
        self._deadlines.set(AlarmDue(officer), now + self.config.repeat_after_s)

    def adopt(self, facts: EmergencyFacts, now: float) -> None:
        """Carry on an alarm another authority held: its waited time and repeats count on
        from where they were, and the next repeat falls where it would have (at once if
        that time passed while no authority was alive)."""
        alarm = _Alarm(
            raised_at=facts.raised_at,
            repeats=facts.repeats,
            escalated_to=facts.escalated_to,
            repeating=facts.repeating,
        )
        self._alarms[facts.officer] = alarm
        if alarm.repeating:
            due = facts.raised_at + (facts.repeats + 1) * self.config.repeat_after_s
            self._deadlines.set(AlarmDue(facts.officer), max(now, due))

    def taken_on(self, officer: str) -> None:
        """Someone acknowledged it: no more repeats (the escalation is remembered)."""
        alarm = self._alarms.get(officer)
        if alarm is not None:
            alarm.repeating = False
            self._deadlines.cancel(AlarmDue(officer))

    def forget(self, officer: str) -> None:
        """Cleared, or the officer is gone."""
        if self._alarms.pop(officer, None) is not None:
            self._deadlines.cancel(AlarmDue(officer))

    def due(self, key: AlarmDue, now: float, out: list[Action]) -> None:
        board = self._board
        alarm = self._alarms.get(key.officer)
        session = board.presence.session(key.officer)
        if alarm is None or not alarm.repeating:
            return
        if session is None or not session.emergency or session.emergency_taken_by is not None:
            self.taken_on(key.officer)
            return
        call = board.calls.call_of(key.officer)
        self._deadlines.set(AlarmDue(key.officer), now + self.config.repeat_after_s)
        if call is not None and call.state is CallState.ACTIVE and call.emergency:
            # Someone is on the line with the officer: they know; check again later.
            return
        court = session.identity.court
        alarm.repeats += 1
        waited = now - alarm.raised_at
        parent = self._courts.parent(court)
        if (
            alarm.escalated_to is None
            and parent is not None
            and waited >= self.config.escalate_after_s
        ):
            alarm.escalated_to = parent
            out.append(
                board.facts.record(
                    "emergency_escalated", now, officer=key.officer, court=court, to=parent
                )
            )
            # The parent court's consoles learn of the officer as their own watchers do.
            entry = board.views.entry(session)
            consoles = self.escalated_consoles(key.officer)
            if consoles:
                out.append(Send(consoles, p.RosterUpdate(entry=entry)))
        out.append(
            board.facts.record(
                "emergency_repeated",
                now,
                officer=key.officer,
                court=court,
                repeat=alarm.repeats,
                escalated_to=alarm.escalated_to,
            )
        )
        told = dict.fromkeys(
            (*board.views.watchers_of(court), *self.escalated_consoles(key.officer))
        )
        if told:
            msg = p.EmergencyAlarm(
                officer=board.presence.info(key.officer),
                repeat=alarm.repeats,
                waiting_s=round(waited, 3),
                escalated_to=alarm.escalated_to,
            )
            out.append(Send(tuple(told), msg))
