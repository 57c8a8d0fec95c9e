"""What a server that died without stopping left open in the trace, and the records that close it.

A clean stop ends every call and conference and signs everyone out (`Switchboard.shutdown`),
so the trace holds no sign-in without its sign-out. A SIGKILL, a power cut or an OOM kill
writes none of that: the sessions, calls and conferences of that run stay open for ever, in
the trace and in the statistics (an unanswered call is "unfinished" for good). A single
server therefore writes `server_started` each time it starts, and before serving it reads
the records since the previous one and closes what was left open, with reason
`server_restart` and the restart's time (the real end is unknown; it was no later than
that). In a cluster the authority does this for a node declared dead (`node_lost`).

Pure: the records and the time are arguments; `commandcenter.app` reads and appends.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any, Final

from sessions.recorder import TraceEvent
from sessions.store import StoredRecord

SERVER_STARTED: Final = "server_started"
REASON: Final = "server_restart"
SESSION_OPENED: Final = frozenset({"sign_in", "session_continued", "session_adopted"})
KINDS: Final = (
    *sorted(SESSION_OPENED),
    "sign_out",
    "call_created",
    "call_answered",
    "call_ended",
    "conference_started",
    "conference_ended",
)


@dataclasses.dataclass(frozen=True, slots=True)
class LeftOpen:
    sessions: tuple[Mapping[str, Any], ...]
    # (call_created data, the user who answered it or None)
    calls: tuple[tuple[Mapping[str, Any], str | None], ...]
    conferences: tuple[Mapping[str, Any], ...]

    def __bool__(self) -> bool:
        return bool(self.sessions or self.calls or self.conferences)


def left_open(records: Iterable[StoredRecord]) -> LeftOpen:
    """The sessions, calls and conferences opened in `records` (one run's, in order) and
    never closed in them."""
    sessions: dict[str, Mapping[str, Any]] = {}
    calls: dict[str, Mapping[str, Any]] = {}
    answered: dict[str, str | None] = {}
    conferences: dict[str, Mapping[str, Any]] = {}
    for record in records:
        kind, data = record.kind, record.data
        if kind in SESSION_OPENED:
            sessions[str(data["session"])] = data
        elif kind == "sign_out":
            sessions.pop(str(data["session"]), None)
        elif kind == "call_created":
            calls[str(data["call"])] = data
        elif kind == "call_answered":
            answered[str(data["call"])] = data.get("by")
        elif kind == "call_ended":
            calls.pop(str(data["call"]), None)
        elif kind == "conference_started":
            conferences[str(data["conference"])] = data
        elif kind == "conference_ended":
            conferences.pop(str(data["conference"]), None)
    return LeftOpen(
        sessions=tuple(sessions.values()),
        calls=tuple((data, answered.get(call)) for call, data in calls.items()),
        conferences=tuple(conferences.values()),
    )


def closing_events(left: LeftOpen, now: float, node: str) -> list[TraceEvent]:
    """The records that close what `left` holds, as the switchboard would have written them
    had it stopped cleanly at `now`: calls and conferences first, then the sessions."""
    out: list[TraceEvent] = []
    for created, operator in left.calls:
        out.append(
            TraceEvent(
                "call_ended",
                now,
                {
                    "call": created["call"],
                    "reason": REASON,
                    "by": None,
                    "direction": created.get("direction"),
                    "court": created.get("court"),
                    "officer": created.get("officer"),
                    "operator": operator,
                    "answered": operator is not None,
                    "emergency": created.get("emergency", False),
                    "case_number": created.get("case_number"),
                    "monitored_by": [],
                },
            )
        )
    for started in left.conferences:
        out.append(
            TraceEvent(
                "conference_ended",
                now,
                {
                    "conference": started["conference"],
                    "court": started.get("court"),
                    "reason": REASON,
                    "by": None,
                    # How many had joined when it died is not in the records it left.
                    "sites": None,
                },
            )
        )
    for opened in left.sessions:
        out.append(
            TraceEvent(
                "sign_out",
                now,
                {
                    "user": opened["user"],
                    "role": opened.get("role"),
                    "court": opened.get("court"),
                    "session": opened["session"],
                    "reason": REASON,
                    "node": node,
                },
            )
        )
    return out


__all__ = ["KINDS", "REASON", "SERVER_STARTED", "LeftOpen", "closing_events", "left_open"]
