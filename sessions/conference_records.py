"""Conferences as the records side shows them, pure: a conference's summary (title, court,
when it ran, who moderated, how many sites, floor grants, recording) and its audit trail,
both read from the conference's own trace records (the subject index files them under
`conference:<id>`, sessions/subjects.py), and the rules of a conference listing.

Nothing here reads the clock or the store: `commandcenter.records_api` fetches the records
and passes them in. The listing counts conferences exactly as `commandcenter stats` does
(`conference_started` records of the period and courts: `kind` `action` an enforcement
action, any other a conference), so the figures it shows are the statistics'.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from sessions.records import entry
from sessions.statistics import ACTION
from sessions.store import StoredRecord

CONFERENCE_CREATED: Final = "conference_created"
CONFERENCE_STARTED: Final = "conference_started"
CONFERENCE_ENDED: Final = "conference_ended"
SITE_JOINED: Final = "site_joined"
SITE_LEFT: Final = "site_left"
FLOOR_GRANTED: Final = "floor_granted"
MODERATOR_NAMED: Final = "moderator_named"
RECORDING_STARTED: Final = "conference_recording_started"
# Someone looked at the conference's audit view: conference, court, user, role, user_court.
CONFERENCE_AUDIT_READ: Final = "conference_audit_read"

# A listing's page: one screenful by default, never more than MAX_PAGE.
DEFAULT_PAGE: Final = 20
MAX_PAGE: Final = 100
# The furthest a listing may page (conferences of one period, newest first).
MAX_OFFSET: Final = 10000
# Longest text searched for in titles and ids.
MAX_TEXT_CHARS: Final = 64


@dataclass(frozen=True)
class Figures:
    """What `commandcenter stats` counts of the listed period and courts."""

    conferences: int
    enforcement_actions: int

    def to_json(self) -> dict[str, int]:
        return {"conferences": self.conferences, "enforcement_actions": self.enforcement_actions}


def figures(started: Iterable[StoredRecord]) -> Figures:
    """The statistics' two conference figures over these `conference_started` records."""
    meetings = actions = 0
    for record in started:
        if record.data.get("kind") == ACTION:
            actions += 1
        else:
            meetings += 1
    return Figures(meetings, actions)


def normalised(text: str) -> str:
    return unicodedata.normalize("NFC", text).casefold()


def matches(conference_id: str, title: object, text: str | None) -> bool:
    """Whether a conference matches a listing's `text` (in its title or its id)."""
    if text is None:
        return True
    wanted = normalised(text)
    return wanted in normalised(conference_id) or (
        isinstance(title, str) and wanted in normalised(title)
    )


def _first(ordered: Sequence[StoredRecord], kind: str) -> StoredRecord | None:
    return next((r for r in ordered if r.kind == kind), None)


def summary(conference_id: str, records: Iterable[StoredRecord]) -> dict[str, Any]:
    """A conference as a listing shows it, from its own records (any order)."""
    ordered = sorted(records, key=lambda r: r.seq)
    created = _first(ordered, CONFERENCE_CREATED)
    started = _first(ordered, CONFERENCE_STARTED)
    ended = _first(ordered, CONFERENCE_ENDED)
    c: Mapping[str, Any] = created.data if created is not None else {}
    s: Mapping[str, Any] = started.data if started is not None else {}
    e: Mapping[str, Any] = ended.data if ended is not None else {}
    host = c.get("host", s.get("host"))
    moderators = [host] if isinstance(host, str) else []
    sites: set[str] = set()
    grants = 0
    recording = False
    for r in ordered:
        if r.kind == MODERATOR_NAMED:
            user = r.data.get("user")
            if isinstance(user, str) and user not in moderators:
                moderators.append(user)
        elif r.kind == SITE_JOINED:
            user = r.data.get("user")
            if isinstance(user, str):
                sites.add(user)
        elif r.kind == FLOOR_GRANTED:
            grants += 1
        elif r.kind == RECORDING_STARTED:
            recording = True
    return {
        "conference_id": conference_id,
        "title": c.get("title"),
        "court": c.get("court", s.get("court")),
        "kind": s.get("kind", c.get("kind")),
        "host": host,
        "moderators": moderators,
        "created_at": created.at if created is not None else None,
        "started_at": started.at if started is not None else None,
        "started_seq": started.seq if started is not None else None,
        "ended_at": ended.at if ended is not None else None,
        "end_reason": e.get("reason"),
        "running": started is not None and ended is None,
        "sites": len(sites),
        "floor_grants": grants,
        "recording": recording,
    }


def audit(conference_id: str, records: Sequence[StoredRecord], *, cut: bool) -> dict[str, Any]:
    """A conference's audit view: its summary and its whole trail in time (seq) order.
    `cut`: the trail was longer than what was read."""
    ordered = sorted(records, key=lambda r: r.seq)
    return {
        "conference": summary(conference_id, ordered),
        "timeline": [entry(r) for r in ordered],
        "truncated": cut,
    }


def court_of(records: Iterable[StoredRecord]) -> str | None:
    """The court hosting the conference (whose scope may read its records)."""
    for record in sorted(records, key=lambda r: r.seq):
        if record.kind in (CONFERENCE_CREATED, CONFERENCE_STARTED):
            court = record.data.get("court")
            return court if isinstance(court, str) else None
    return None


__all__ = [
    "CONFERENCE_AUDIT_READ",
    "CONFERENCE_CREATED",
    "CONFERENCE_STARTED",
    "DEFAULT_PAGE",
    "MAX_OFFSET",
    "MAX_PAGE",
    "MAX_TEXT_CHARS",
    "Figures",
    "audit",
    "court_of",
    "figures",
    "matches",
    "summary",
]
