"""What the core puts in the trace: the shape of every record it makes, in one place.

The sub-cores decide *when* a fact happened; this module says *what* its record holds, so the
trace format (docs/trace.md, the statistics' facets) has one author. It also builds what the
cluster's journal keeps of a live call or session (`CallFacts`, `WaitingCall`,
`signed_out_data`): the records a successor authority writes if this one dies with them.
"""

from __future__ import annotations

from dataclasses import dataclass

from sessions.facets import POSITION
from sessions.recorder import TraceEvent
from signalling import protocol as p
from signalling.core.actions import Record
from signalling.core.call import Call
from signalling.protocol import Direction, EndReason


@dataclass(frozen=True)
class WaitingCall:
    """An officer's call to the center not yet answered, as a new authority re-queues it."""

    call_id: str
    officer: str
    court: str
    created_at: float
    case_number: str | None
    emergency: bool


@dataclass(frozen=True)
class CallFacts:
    """A live call as the cluster's journal keeps it: who to tell if it is lost, the data of
    its `call_ended` record then, and, while unanswered, what re-queues it."""

    notify: tuple[str, ...]
    ended: dict[str, object]
    waiting: WaitingCall | None


@dataclass(frozen=True)
class ConferenceFacts:
    """A conference not ended, as the cluster's journal keeps it: who to tell if it is lost,
    and the data of its `conference_ended` record then."""

    notify: tuple[str, ...]
    ended: dict[str, object]


class Facts:
    """Builds the core's records; `node_id` names the node that made them where it matters."""

    def __init__(self, node_id: str) -> None:
        self.node_id = node_id

    def record(self, kind: str, now: float, /, **data: object) -> Record:
        return Record(TraceEvent(kind=kind, at=now, data=data))

    # ---- sessions -----------------------------------------------------------------------

    def signed_in(
        self,
        kind: str,
        *,
        user: str,
        name: str,
        role: str,
        court: str,
        session: str,
        device: str,
        app_version: str,
        now: float,
        continues: str | None = None,
    ) -> Record:
        """`sign_in`; `session_continued` for a session that `continues` the user's last one
        (ended within the resume window); `session_adopted` for a session another authority
        opened. `name` is the display name the user signed in with (the token's), which the
        records views show for a user who is not an account (commandcenter/names_api.py)."""
        extra: dict[str, object] = {} if continues is None else {"continues": continues}
        return self.record(
            kind,
            now,
            user=user,
            name=name,
            role=role,
            court=court,
            session=session,
            device=device,
            app_version=app_version,
            node=self.node_id,
            **extra,
        )

    def signed_out_data(
        self, *, user: str, role: str, court: str, session: str, reason: str
    ) -> dict[str, object]:
        return {
            "user": user,
            "role": role,
            "court": court,
            "session": session,
            "reason": reason,
            "node": self.node_id,
        }

    def position(
        self, user: str, court: str, pos: p.GeoPosition, clock_offset_ms: float | None, now: float
    ) -> Record:
        # Built in place, not through `record`: made for every position an officer reports.
        data: dict[str, object] = {
            "user": user,
            "court": court,
            "lat": pos.lat,
            "lon": pos.lon,
            "accuracy_m": pos.accuracy_m,
            "device_time": pos.device_time,
            "clock_offset_ms": clock_offset_ms,
        }
        return Record(TraceEvent(POSITION, now, data))

    # ---- calls --------------------------------------------------------------------------

    def call_created(self, call: Call, now: float) -> Record:
        return self.record(
            "call_created",
            now,
            call=call.call_id,
            direction=call.direction.value,
            officer=call.officer,
            court=call.court,
            caller=call.caller,
            case_number=call.case_number,
            emergency=call.emergency,
            node=self.node_id,
        )

    def call_ended(self, call: Call, reason: EndReason, by: str | None, now: float) -> Record:
        return self.record("call_ended", now, **ended_data(call, reason, by))

    def call_facts(self, call: Call, ringing: frozenset[str]) -> CallFacts:
        """What the next authority needs to take `call` over, or end it, should this one
        die with it."""
        waiting = None
        # Unanswered, or sent back to the queue after it was answered.
        if call.direction is Direction.OFFICER_TO_CENTER and call.operator is None:
            waiting = WaitingCall(
                call_id=call.call_id,
                officer=call.officer,
                court=call.court,
                created_at=call.created_at,
                case_number=call.case_number,
                emergency=call.emergency,
            )
        return CallFacts(
            notify=tuple(sorted({*call.members(), *ringing})),
            ended=ended_data(call, EndReason.NODE_LOST, None),
            waiting=waiting,
        )

    # ---- conferences --------------------------------------------------------------------

    @staticmethod
    def conference_ended_data(
        conference: str, court: str, reason: str, by: str | None, sites: int
    ) -> dict[str, object]:
        return {
            "conference": conference,
            "court": court,
            "reason": reason,
            "by": by,
            "sites": sites,
        }

    # ---- emergencies --------------------------------------------------------------------

    def emergency_raised(
        self,
        officer: str,
        court: str,
        call: str | None,
        note: str | None,
        pos: p.GeoPosition | None,
        now: float,
    ) -> Record:
        return self.record(
            "emergency_raised",
            now,
            officer=officer,
            court=court,
            call=call,
            note=note,
            position=_position_data(pos),
        )


def ended_data(call: Call, reason: EndReason, by: str | None) -> dict[str, object]:
    """The data of a `call_ended` record."""
    return {
        "call": call.call_id,
        "reason": reason.value,
        "by": by,
        "direction": call.direction.value,
        "court": call.court,
        "officer": call.officer,
        "operator": call.operator if call.answered_at is not None else None,
        "answered": call.answered_at is not None,
        "emergency": call.emergency,
        "case_number": call.case_number,
        "monitored_by": sorted(call.supervisors),
    }


def _position_data(pos: p.GeoPosition | None) -> dict[str, float] | None:
    if pos is None:
        return None
    return {
        "lat": pos.lat,
        "lon": pos.lon,
        "accuracy_m": pos.accuracy_m,
        "device_time": pos.device_time,
    }
