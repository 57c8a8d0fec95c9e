"""One call's life, as data: its states, the events that move it, and the table between them.

Theory of operation
-------------------
A call is created QUEUED. An officer's call to the center rings every free operator of the
court at once (RING); when none is free it stays QUEUED in the court's line and rings the
moment one frees up. Everyone ringing declined or went busy: it waits again (REQUEUE). A
call from the center rings its one officer at once. The first ACCEPT makes it ACTIVE.
Every ending (hangup, cancel, missed, declined, busy, party lost, ...) is one END event
whose reason says why; ENDED is final.

The operator of an answered officer's call may send it back to the queue (REQUEUE from
ACTIVE): it waits and rings again like a new call, in its original place in the line (its
`created_at` is kept), while the officer stays connected to the call's media.

The table holds only what changes the state, with what each change asks of the call's
owners (`Effect`): the dispatcher's ring and queue timers. What happens to a
call without changing its state (another operator starts ringing, a decline while others
still ring, a supervisor joins, a transfer, a party goes away, an emergency escalates it) is
not a transition: `signalling.core.calls` and `signalling.core.dispatch` check the state
those need before acting. A (state, event) pair missing from the table raises
`IllegalTransition` and leaves the call unchanged: it is our bug, never the client's (the
client's requests are checked against the state before any event is applied).

This module does no I/O and never reads the clock: times are passed in.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final

from signalling import protocol as p
from signalling.core.actions import Room
from signalling.errors import SignallingError
from signalling.protocol import Direction, EndReason


class CallState(StrEnum):
    QUEUED = "queued"
    RINGING = "ringing"
    ACTIVE = "active"
    ENDED = "ended"


class CallEvent(StrEnum):
    RING = "ring"  # start ringing (from the queue, or at once for a call to an officer)
    REQUEUE = "requeue"  # everyone ringing declined or became busy, or the operator sent
    # the answered call back to the queue (`send_back`); wait for another
    ACCEPT = "accept"
    END = "end"


class Effect(StrEnum):
    """What a transition asks of the call's owners, performed in the order listed."""

    STOP_QUEUE_TIMER = "stop_queue_timer"
    START_QUEUE_TIMER = "start_queue_timer"  # at created_at + calls.queue_timeout_s
    STOP_RING_TIMER = "stop_ring_timer"
    START_RING_TIMER = "start_ring_timer"  # at now + calls.ring_timeout_s
    # An answered call sent back waits afresh: at now + calls.queue_timeout_s.
    START_REQUEUE_TIMER = "start_requeue_timer"


class IllegalTransition(SignallingError):
    """A (state, event) pair the table does not have: a bug in the core, reported to the
    client as `internal_error`, never as its own fault."""


Q, R, A, E = CallState.QUEUED, CallState.RINGING, CallState.ACTIVE, CallState.ENDED

TRANSITIONS: Final[dict[tuple[CallState, CallEvent], tuple[CallState, tuple[Effect, ...]]]] = {
    (Q, CallEvent.RING): (R, (Effect.STOP_QUEUE_TIMER, Effect.START_RING_TIMER)),
    (Q, CallEvent.END): (E, (Effect.STOP_QUEUE_TIMER,)),
    (R, CallEvent.REQUEUE): (Q, (Effect.STOP_RING_TIMER, Effect.START_QUEUE_TIMER)),
    (R, CallEvent.ACCEPT): (A, (Effect.STOP_RING_TIMER,)),
    (R, CallEvent.END): (E, (Effect.STOP_RING_TIMER,)),
    (A, CallEvent.REQUEUE): (Q, (Effect.START_REQUEUE_TIMER,)),
    (A, CallEvent.END): (E, ()),
}


def transition(state: CallState, event: CallEvent) -> tuple[CallState, tuple[Effect, ...]]:
    """The state `event` leads to from `state` and its effects; IllegalTransition if none."""
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        raise IllegalTransition(f"call cannot {event.value} while {state.value}") from None


@dataclass
class Call:
    """A call's record, owned by `signalling.core.calls`. Its state moves only through
    `apply`, which consults the table first. Who rings for it, and who declined, is the
    dispatcher's (`signalling.core.dispatch`), not kept here."""

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
    # Supervisor id -> covert flag.
    supervisors: dict[str, bool] = field(default_factory=dict)
    away: set[str] = field(default_factory=set)
    # Members whose camera is off (`set_camera`); a member who leaves takes theirs along.
    cameras_off: set[str] = field(default_factory=set)
    ring_started_at: float | None = None
    answered_at: float | None = None
    ended_at: float | None = None
    end_reason: EndReason | None = None
    ended_by: str | None = None
    history: list[tuple[float, CallEvent, CallState]] = field(default_factory=list)

    def apply(self, event: CallEvent, now: float) -> tuple[Effect, ...]:
        """Move to the state the table gives for `event` and return its effects; the call
        is unchanged if it raises."""
        new, effects = transition(self.state, event)
        self.state = new
        self.history.append((now, event, new))
        return effects

    def parties(self) -> tuple[str, ...]:
        """The officer and the answering operator (once there is one)."""
        return (self.officer,) if self.operator is None else (self.officer, self.operator)

    def members(self) -> tuple[str, ...]:
        """Everyone in the call: parties and supervisors."""
        return self.parties() + tuple(self.supervisors)

    def is_live(self) -> bool:
        return self.state is not CallState.ENDED


def room_of(call: Call) -> Room | None:
    """Who may have media in `call` now: its members who are not away, once it is answered
    (None before that, and once it ended); covert supervisors receive but are never sent."""
    if call.answered_at is None or call.state is CallState.ENDED:
        return None
    members = tuple(m for m in call.members() if m not in call.away)
    silent = tuple(u for u, covert in call.supervisors.items() if covert)
    return Room(call.call_id, members, silent, call.court, call.officer, call.case_number)


def call_info(call: Call, info: Callable[[str], p.UserInfo]) -> p.CallInfo:
    """`call` as the protocol shows it, its users shown by `info`; covert supervisors are
    not shown."""
    return p.CallInfo(
        call_id=call.call_id,
        direction=call.direction,
        state=call.state.value,
        court=call.court,
        officer=info(call.officer),
        operator=info(call.operator) if call.operator is not None else None,
        case_number=call.case_number,
        emergency=call.emergency,
        supervisors=[info(u) for u, covert in call.supervisors.items() if not covert],
        created_at=p.epoch_ms(call.created_at),
        cameras_off=sorted(call.cameras_off),
    )
