"""The console's call flow beyond answering: a transfer offered to another operator, who
accepts or declines it, and the operators' own availability (free, busy, away), shown to the
other consoles of their court, a supervisor invited into a call, and a party's camera
turned off or on (docs/protocol.md documents each)."""

from __future__ import annotations

from typing import Literal

import msgspec

from signalling.protocol.base import (
    CallId,
    CourtCode,
    UserInfo,
    _ClientMessage,
    _ServerMessage,
)
from signalling.protocol.calls import CallInfo

# What an operator may set: `away` stops new calls ringing at them, `available` undoes it.
AvailabilityChoice = Literal["away", "available"]
# How others see an operator: `busy` while in a call, `offline` once signed out.
OperatorState = Literal["free", "busy", "away", "offline"]
# How a transfer offer ended without the call changing hands.
TransferOutcome = Literal["declined", "expired", "cancelled", "ended", "unavailable"]

# --- client to server --------------------------------------------------------------------


class AcceptTransfer(_ClientMessage, tag="accept_transfer", frozen=True):
    """The operator offered a transfer takes the call over."""

    call_id: CallId


class DeclineTransfer(_ClientMessage, tag="decline_transfer", frozen=True):
    call_id: CallId


class CancelTransfer(_ClientMessage, tag="cancel_transfer", frozen=True):
    """The offering operator withdraws the offer; the call stays theirs."""

    call_id: CallId


class SetAvailability(_ClientMessage, tag="set_availability", frozen=True):
    status: AvailabilityChoice


class SendBack(_ClientMessage, tag="send_back", frozen=True):
    """Put an officer's call back in the queue: the answered call you hold, or one ringing
    at you; it rings at the court's other free operators first."""

    call_id: CallId


class GetOperators(_ClientMessage, tag="get_operators", frozen=True):
    # Absent: the requester's own court.
    court: CourtCode | None = None


class GetQueue(_ClientMessage, tag="get_queue", frozen=True):
    # Absent: the requester's own court.
    court: CourtCode | None = None


class InviteSupervisor(_ClientMessage, tag="invite_supervisor", frozen=True):
    """The call's operator asks the supervisors over the call's court to join it; each
    answers, or not, with `join_call`."""

    call_id: CallId


class SetCamera(_ClientMessage, tag="set_camera", frozen=True):
    """A party says its camera is off (it sends no video) or on again, so that the others
    show "camera off" instead of a frozen picture."""

    call_id: CallId
    on: bool


# --- shared shapes -----------------------------------------------------------------------


class OperatorEntry(msgspec.Struct, frozen=True):
    user: UserInfo
    status: OperatorState


class QueueEntry(msgspec.Struct, frozen=True):
    """An officer's call to the center not answered yet: `call.state` is `queued` (waiting
    for a free operator, `position` in its line) or `ringing` (at `ringing` consoles now;
    `position` null). Its waiting time counts from `call.created_at`, whoever saw it when."""

    call: CallInfo
    position: int | None
    ringing: int


# --- server to client --------------------------------------------------------------------


class TransferOffered(_ServerMessage, tag="transfer_offered", frozen=True):
    """To the operator a call is offered to: accept or decline within `expires_in_s`."""

    call: CallInfo
    from_operator: UserInfo
    expires_in_s: float


class TransferEnded(_ServerMessage, tag="transfer_ended", frozen=True):
    """To both operators: the offer is over and the call did not change hands."""

    call_id: str
    outcome: TransferOutcome
    by: str | None = None


class CallRequeued(_ServerMessage, tag="call_requeued", frozen=True):
    """To everyone in the call (and the operator who sent it back): it waits in the queue
    again; `call_queued` or `call_ringing_center` follow for the officer."""

    call_id: str
    by: UserInfo


class EmergencyAlarm(_ServerMessage, tag="emergency_alarm", frozen=True):
    """To everyone watching the officer's court (and, once escalated, the consoles of the
    court above): the officer's emergency is still not taken on; alarm again."""

    officer: UserInfo
    repeat: int  # 1 for the first repeat
    waiting_s: float  # since it was raised
    escalated_to: str | None = None


class Operators(_ServerMessage, tag="operators", frozen=True):
    ref: str
    court: str
    operators: list[OperatorEntry]


class OperatorStatus(_ServerMessage, tag="operator_status", frozen=True):
    """To the consoles of the operator's court: their status changed."""

    entry: OperatorEntry


class Queue(_ServerMessage, tag="queue", frozen=True):
    """Reply to `get_queue`: `court`'s waiting calls, in the order they will be answered."""

    ref: str
    court: str
    calls: list[QueueEntry]


class QueueUpdate(_ServerMessage, tag="queue_update", frozen=True):
    """To the consoles of `court` and the supervisors over it (and a parent court's consoles
    its calls fall back to): `court`'s waiting calls changed; `calls` is the whole list now
    (bounded by `calls.max_queue` and the ringing calls)."""

    court: str
    calls: list[QueueEntry]


class SupervisorInvited(_ServerMessage, tag="supervisor_invited", frozen=True):
    """To each supervisor and administrator signed in over the call's court: the operator
    asks them into the call (`join_call`, as policy allows)."""

    call: CallInfo
    by: UserInfo


class CameraChanged(_ServerMessage, tag="camera_changed", frozen=True):
    """To the call's other members: `user`'s camera went off or on."""

    call_id: str
    user: str
    on: bool


CALLFLOW_CLIENT_MESSAGES = (
    AcceptTransfer,
    DeclineTransfer,
    CancelTransfer,
    SetAvailability,
    GetOperators,
    SendBack,
    GetQueue,
    InviteSupervisor,
    SetCamera,
)
