"""The trace's subject index, pure: which records are about which call, conference or
evidence item.

A store keeps a side table of (subject, seq) rows beside the trace, written in the same
transaction as the records (`TraceStore.records_about` reads it): an audit view of one call,
conference or item then reads its few records by the index instead of scanning every record
of its kinds. A subject is `call:<id>`, `conference:<id>` or `evidence:<id>`, taken from the
record's `call`, `conference` and `evidence_id` fields; a record of an indexed kind is filed
under each of them it has (`call_shared` under its call and its conference, `call_evidence`
under its call and its item). Records of other kinds, and fields that are not strings, are
not filed. The table is an index, not part of the chain: for a trace written before it
existed the server files the older records itself, in the background (sessions/reindexer.py),
and `commandcenter trace reindex` rebuilds it from the records offline.

`tests/test_subjects.py` reads the code for every kind it records and checks that each one
about a call, conference or item is in `INDEXED_KINDS`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

# What a subject key starts with, and the record field its id is read from.
CALL: Final = "call"
CONFERENCE: Final = "conference"
EVIDENCE: Final = "evidence"
FIELDS: Final = ((CALL, "call"), (CONFERENCE, "conference"), (EVIDENCE, "evidence_id"))
# Longest id filed (ids are far shorter; a longer one is not an id the server made).
MAX_ID_CHARS: Final = 200

CALL_KINDS: Final = frozenset(
    {
        "call_created",
        "call_queued",
        "call_ringing",
        "call_declined",
        "call_answered",
        "call_escalated",
        "call_taken_over",
        "call_transferred",
        "call_sent_back",
        "call_shared",
        "call_unshared",
        "call_ended",
        "call_evidence",
        "call_audit_read",
        "party_away",
        "party_back",
        "supervisor_invited",
        "supervisor_joined",
        "supervisor_left",
        "transfer_offered",
        "transfer_accepted",
        "transfer_declined",
        "transfer_expired",
        "transfer_cancelled",
        "transfer_ended",
        "transfer_unavailable",
        "video_watched",
        "video_unwatched",
        "emergency_raised",
    }
)

CONFERENCE_KINDS: Final = frozenset(
    {
        "conference_created",
        "conference_adopted",
        "conference_started",
        "conference_ended",
        "conference_declined",
        "conference_locked",
        "conference_muted",
        "conference_spotlight",
        "conference_recording_started",
        "conference_recording_stopped",
        "conference_audit_read",
        "site_joined",
        "site_left",
        "floor_requested",
        "floor_granted",
        "floor_revoked",
        "floor_released",
        "floor_policy",
        "hand_lowered",
        "moderator_named",
        "moderator_removed",
        "conference_invited",
        "conference_invitation_withdrawn",
        "witness_invited",
        "witness_revoked",
        "chair_changed",
        "call_shared",
        "call_unshared",
    }
)

EVIDENCE_KINDS: Final = frozenset(
    {
        "evidence_stored",
        "evidence_corrected",
        "evidence_read",
        "evidence_downloaded",
        "evidence_exported",
        "evidence_rejected",
        "call_evidence",
    }
)

INDEXED_KINDS: Final = CALL_KINDS | CONFERENCE_KINDS | EVIDENCE_KINDS


def subject(what: str, ident: str) -> str:
    """The key of `ident`'s subject of type `what` (CALL, CONFERENCE, EVIDENCE)."""
    return f"{what}:{ident}"


def subjects_of(kind: str, data: Mapping[str, Any]) -> tuple[str, ...]:
    """The subjects a record of `kind` with `data` is filed under (none for other kinds)."""
    if kind not in INDEXED_KINDS:
        return ()
    found: list[str] = []
    for what, field in FIELDS:
        value = data.get(field)
        if isinstance(value, str) and 0 < len(value) <= MAX_ID_CHARS and "\x00" not in value:
            found.append(f"{what}:{value}")
    return tuple(found)


__all__ = [
    "CALL",
    "CALL_KINDS",
    "CONFERENCE",
    "CONFERENCE_KINDS",
    "EVIDENCE",
    "EVIDENCE_KINDS",
    "INDEXED_KINDS",
    "subject",
    "subjects_of",
]
