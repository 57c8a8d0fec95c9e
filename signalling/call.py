"""One call's life, as data: its states, the events that move it, and the table between them.

Theory of operation
-------------------
A call is created QUEUED or RINGING. An officer's call to the center rings every free
operator of the court at once (RINGING); when none is free it waits in the court's queue
(QUEUED) and starts ringing the moment one frees up. A call from the center rings one officer.
The first `ACCEPT` makes it ACTIVE; supervisors may then join and leave, the operator may hand
it to another operator, and either party may go away and come back within the grace period.
Every ending (hangup, cancel, missed, declined, busy, party lost, ...) is one `END` event whose
reason says why; ENDED is final.

The table below is the only place that says which event may happen in which state. A
(state, event) pair missing from it raises `InvalidState` and leaves the call unchanged, so a
late or duplicate client message can never corrupt a call. This module does no I/O and never
reads the clock: times are passed in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from signalling.errors import InvalidState
from signalling.protocol import Direction, EndReason


class CallState(StrEnum):
    QUEUED = "queued"
    RINGING = "ringing"
    ACTIVE = "active"
    ENDED = "ended"


class CallEvent(StrEnum):
    RING = "ring"  # (re)start ringing a set of users
    REQUEUE = "requeue"  # everyone ringing declined or became busy; wait for another
    RING_MORE = "ring_more"  # another free operator starts ringing too
    DECLINE = "decline"  # one ringing user declines; others keep ringing
    ACCEPT = "accept"
    SUPERVISOR_JOIN = "supervisor_join"
    SUPERVISOR_LEAVE = "supervisor_leave"
    TRANSFER = "transfer"
    PARTY_AWAY = "party_away"
    PARTY_BACK = "party_back"
    ESCALATE = "escalate"  # the officer raised an emergency on this call
    END = "end"


Q, R, A, E = CallState.QUEUED, CallState.RINGING, CallState.ACTIVE, CallState.ENDED

TRANSITIONS: dict[tuple[CallState, CallEvent], CallState] = {
    (Q, CallEvent.RING): R,
    (Q, CallEvent.ESCALATE): Q,
    (Q, CallEvent.PARTY_AWAY): Q,
    (Q, CallEvent.PARTY_BACK): Q,
    (Q, CallEvent.END): E,
    (R, CallEvent.RING_MORE): R,
    (R, CallEvent.DECLINE): R,
    (R, CallEvent.REQUEUE): Q,
    (R, CallEvent.ACCEPT): A,
    (R, CallEvent.ESCALATE): R,
    (R, CallEvent.PARTY_AWAY): R,
    (R, CallEvent.PARTY_BACK): R,
    (R, CallEvent.END): E,
    (A, CallEvent.SUPERVISOR_JOIN): A,
    (A, CallEvent.SUPERVISOR_LEAVE): A,
    (A, CallEvent.TRANSFER): A,
    (A, CallEvent.ESCALATE): A,
    (A, CallEvent.PARTY_AWAY): A,
    (A, CallEvent.PARTY_BACK): A,
    (A, CallEvent.END): E,
}


def next_state(state: CallState, event: CallEvent) -> CallState:
    """The state `event` leads to from `state`; raises InvalidState if it may not happen."""
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        raise InvalidState(f"cannot {event.value} a call that is {state.value}") from None


@dataclass
class Call:
    """A call's record. Mutated only through `apply`, which consults the table first."""

    call_id: str
    direction: Direction
    officer: str
    court: str  # the officer's court
    caller: str
    created_at: float
    case_number: str | None = None
    emergency: bool = False
    state: CallState = CallState.QUEUED
    # The user answering for the center (an operator, or a supervisor in an emergency).
    operator: str | None = None
    # Users ringing now, and users who declined (never rung again for this call).
    ringing: set[str] = field(default_factory=set)
    declined: set[str] = field(default_factory=set)
    # Supervisor id -> covert flag.
    supervisors: dict[str, bool] = field(default_factory=dict)
    away: set[str] = field(default_factory=set)
    ring_started_at: float | None = None
    answered_at: float | None = None
    ended_at: float | None = None
    end_reason: EndReason | None = None
    ended_by: str | None = None
    history: list[tuple[float, CallEvent, CallState]] = field(default_factory=list)

    def apply(self, event: CallEvent, now: float) -> CallState:
        """Move to the state the table gives for `event`; unchanged if it raises."""
        new = next_state(self.state, event)
        self.state = new
        self.history.append((now, event, new))
        return new

    def parties(self) -> tuple[str, ...]:
        """The officer and the answering operator (once there is one)."""
        return (self.officer,) if self.operator is None else (self.officer, self.operator)

    def members(self) -> tuple[str, ...]:
        """Everyone in the call: parties and supervisors."""
        return self.parties() + tuple(self.supervisors)

    def is_live(self) -> bool:
        return self.state is not CallState.ENDED
