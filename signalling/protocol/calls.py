"""Sessions, presence and calls: what officers and the command center say to each other
through the hub, and the shapes they share (docs/protocol.md documents each)."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

import msgspec

from signalling.protocol.base import (
    _TEXT,
    AccuracyM,
    CallId,
    CaseNumber,
    CourtCode,
    EpochMs,
    Latitude,
    Longitude,
    Note,
    RttMs,
    UserId,
    UserInfo,
    _ClientMessage,
    _ServerMessage,
)

EmergencyOutcome = Literal["resolved", "false_alarm"]
EmergencyReason = Annotated[str, msgspec.Meta(min_length=1, max_length=256, pattern=_TEXT)]

# --- client to server --------------------------------------------------------------------


class Heartbeat(_ClientMessage, tag="heartbeat", frozen=True):
    """Device clock, so the server learns its offset; rtt_ms is the device's measurement of
    the previous heartbeat's round trip (absent on the first)."""

    device_time: EpochMs
    rtt_ms: RttMs | None = None


class Position(_ClientMessage, tag="position", frozen=True):
    lat: Latitude
    lon: Longitude
    accuracy_m: AccuracyM
    device_time: EpochMs


class CallCenter(_ClientMessage, tag="call_center", frozen=True):
    """An officer's one-touch call to their court's command center."""

    case_number: CaseNumber | None = None


class Emergency(_ClientMessage, tag="emergency", frozen=True):
    """SOS: rings everyone in scope with priority; stays flagged until an operator clears it."""

    case_number: CaseNumber | None = None
    note: Note | None = None


class EmergencyNote(_ClientMessage, tag="emergency_note", frozen=True):
    """The officer adds (or replaces) the short note of their raised emergency."""

    note: Annotated[str, msgspec.Meta(min_length=1, max_length=256, pattern=_TEXT)]


class CallOfficer(_ClientMessage, tag="call_officer", frozen=True):
    officer: UserId
    case_number: CaseNumber | None = None


class Accept(_ClientMessage, tag="accept", frozen=True):
    call_id: CallId


class Decline(_ClientMessage, tag="decline", frozen=True):
    call_id: CallId


class Cancel(_ClientMessage, tag="cancel", frozen=True):
    call_id: CallId


class Hangup(_ClientMessage, tag="hangup", frozen=True):
    call_id: CallId


class JoinCall(_ClientMessage, tag="join_call", frozen=True):
    call_id: CallId
    covert: bool = False


class LeaveCall(_ClientMessage, tag="leave_call", frozen=True):
    call_id: CallId


class Transfer(_ClientMessage, tag="transfer", frozen=True):
    call_id: CallId
    to: UserId


class ClearEmergency(_ClientMessage, tag="clear_emergency", frozen=True):
    officer: UserId
    # How it ended: the danger is over, or there was none; a false alarm needs a reason.
    outcome: EmergencyOutcome = "resolved"
    reason: EmergencyReason | None = None


class AcknowledgeEmergency(_ClientMessage, tag="acknowledge_emergency", frozen=True):
    """One operator takes the emergency on: the others and the officer are told who."""

    officer: UserId


class GetRoster(_ClientMessage, tag="get_roster", frozen=True):
    # Absent: every court in the requester's scope.
    court: CourtCode | None = None


# --- shared shapes -----------------------------------------------------------------------


class Direction(StrEnum):
    OFFICER_TO_CENTER = "officer_to_center"
    CENTER_TO_OFFICER = "center_to_officer"


class EndReason(StrEnum):
    HANGUP = "hangup"
    CANCELLED = "cancelled"
    MISSED = "missed"  # rang until calls.ring_timeout_s
    QUEUE_TIMEOUT = "queue_timeout"  # waited in the queue until calls.queue_timeout_s
    DECLINED = "declined"
    BUSY = "busy"
    UNAVAILABLE = "unavailable"  # the called officer is not signed in
    QUEUE_FULL = "queue_full"
    PARTY_LOST = "party_lost"  # a party stayed away past presence.grace_s
    NODE_LOST = "node_lost"
    SHUTDOWN = "shutdown"  # the server was stopped


class GeoPosition(msgspec.Struct, frozen=True):
    lat: float
    lon: float
    accuracy_m: float
    device_time: float


PresenceStatus = Literal["online", "away", "offline"]
RingStopReason = Literal["busy", "away"]


# omit_defaults: the emergency's note and who took it on are sent only while there is one,
# so an entry without an emergency reads as it did before the fields existed.
class RosterEntry(msgspec.Struct, frozen=True, omit_defaults=True):
    officer: UserInfo
    status: PresenceStatus
    call_id: str | None
    emergency: bool
    position: GeoPosition | None
    device: str
    since: float  # server time (ms) of sign-in
    emergency_note: str | None = None
    emergency_taken_by: UserInfo | None = None


# omit_defaults: `cameras_off` is sent only when a camera is off, so a call whose cameras
# are all on reads as it did before the field existed.
class CallInfo(msgspec.Struct, frozen=True, omit_defaults=True):
    call_id: str
    direction: Direction
    state: Literal["queued", "ringing", "active", "ended"]
    court: str
    officer: UserInfo
    operator: UserInfo | None
    case_number: str | None
    emergency: bool
    supervisors: list[UserInfo]
    created_at: float  # server time (ms)
    # Members who said their camera is off (`set_camera`), by id: what a page that joins or
    # reloads mid-call shows until the next `camera_changed`.
    cameras_off: list[str] = msgspec.field(default_factory=list)


# --- server to client --------------------------------------------------------------------


class Welcome(_ServerMessage, tag="welcome", frozen=True):
    protocol: int
    session_id: str
    resume_token: str
    resumed: bool
    user: UserInfo
    node_id: str
    server_time: float
    heartbeat_interval_s: float
    grace_s: float
    calls: list[CallInfo]
    court_name: str


class HeartbeatAck(_ServerMessage, tag="heartbeat_ack", frozen=True):
    ref: str
    device_time: float
    server_time: float
    # Device clock minus server clock, corrected by half the round trip when known.
    offset_ms: float
    rtt_ms: float | None


class CallPlaced(_ServerMessage, tag="call_placed", frozen=True):
    ref: str
    call_id: str


class Roster(_ServerMessage, tag="roster", frozen=True):
    ref: str
    officers: list[RosterEntry]


class RosterUpdate(_ServerMessage, tag="roster_update", frozen=True):
    entry: RosterEntry


class CallRinging(_ServerMessage, tag="call_ringing", frozen=True):
    call: CallInfo


class CallQueued(_ServerMessage, tag="call_queued", frozen=True):
    call_id: str
    position: int  # 1 = next to ring


class CallRingingCenter(_ServerMessage, tag="call_ringing_center", frozen=True):
    """To the officer: their call to the center rings at operators now (placed, or out of
    the queue), so the phone can show "ringing" rather than "waiting"."""

    call_id: str


class EmergencyCleared(_ServerMessage, tag="emergency_cleared", frozen=True):
    """To the officer: the center cleared their emergency flag."""

    by: UserInfo
    outcome: EmergencyOutcome = "resolved"


class EmergencyAcknowledged(_ServerMessage, tag="emergency_acknowledged", frozen=True):
    """To the officer and to everyone watching their court: who took the emergency on."""

    officer: UserInfo
    by: UserInfo


class EmergencyNoted(_ServerMessage, tag="emergency_noted", frozen=True):
    """To everyone watching the officer's court (and the court it was escalated to): the
    officer's note on their emergency, raised with it or added after."""

    officer: UserInfo
    note: str


class CallTaken(_ServerMessage, tag="call_taken", frozen=True):
    call_id: str
    by: UserInfo


class RingStopped(_ServerMessage, tag="ring_stopped", frozen=True):
    """The call still goes on, but no longer rings for you: you took another call or
    placed one ("busy"), or your connection dropped ("away")."""

    call_id: str
    reason: RingStopReason


class CallAnswered(_ServerMessage, tag="call_answered", frozen=True):
    call: CallInfo


class CallEnded(_ServerMessage, tag="call_ended", frozen=True):
    call_id: str
    reason: EndReason
    by: str | None = None


class ParticipantJoined(_ServerMessage, tag="participant_joined", frozen=True):
    call_id: str
    user: UserInfo
    covert: bool = False


class ParticipantLeft(_ServerMessage, tag="participant_left", frozen=True):
    call_id: str
    user: UserInfo


class CallTransferred(_ServerMessage, tag="call_transferred", frozen=True):
    call: CallInfo
    from_operator: UserInfo


class PartyAway(_ServerMessage, tag="party_away", frozen=True):
    call_id: str
    user: UserInfo
    grace_s: float


class PartyBack(_ServerMessage, tag="party_back", frozen=True):
    call_id: str
    user: UserInfo
