"""The record kinds and data fields the statistics read, and the columns derived from them.

A store keeps four columns beside each record, derived from its kind and data (`Facets`): the
court, a subject (who or what the record is about), a tag and a flag. They are an index, not
part of the hash, so `audit verify` derives them again from the hashed data and reports a
record whose columns disagree as edited: the statistics only count what the chain vouches for.

Which field feeds which column, per kind (docs/statistics.md says what each figure makes of
them); every other kind has no facets:

| kind                 | court         | subject            | tag           | flag          |
| -------------------- | ------------- | ------------------ | ------------- | ------------- |
| `sign_in`            | `court`       | `user`             | `role`        |               |
| `call_created`       | `court`       | `call`             | `direction`   | `emergency`   |
| `call_answered`      |               | `call`             |               |               |
| `call_escalated`     |               | `call`             |               |               |
| `call_ended`         | `court`       | `call`             | `reason`      | `answered`    |
| `evidence_stored`    | `court`       | `case_number`      | `kind`        |               |
| `conference_started` | `court`       | `conference`       |               |               |
| `position`           | `court`       | `user`             |               |               |
| `instruction_sent`   | `court`       | `instruction`      |               | court-wide    |
| `instruction_delivered` | `court`    | `instruction`      |               |               |
| `instruction_read`   | `court`       | `instruction`      |               |               |
| `instruction_expired` | `court`      | `instruction`      |               | all read      |

(court-wide: `officer` is null; all read: `unread` is an empty list.)

Instruction records written before they had columns have none, and are accepted so, as
positions are; the statistics do not count them.

Positions are not counted by any figure: their columns let an officer's track be read by
the index (`TraceStore.find(subject=...)`) rather than by scanning every officer's. Position
records written before they had columns have none, and are accepted so
(`sessions.trace.facets_mismatch`); the track does not show them.

A field of the wrong type (a number where a string belongs), or a string with a NUL in it,
gives an empty column, so a malformed record is simply not counted rather than counted under
a wrong key.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import msgspec

SIGN_IN: Final = "sign_in"
CALL_CREATED: Final = "call_created"
CALL_ANSWERED: Final = "call_answered"
CALL_ESCALATED: Final = "call_escalated"
CALL_ENDED: Final = "call_ended"
# Written by the evidence feature: data {evidence_id, case_number, court, kind, sha256, ...}.
EVIDENCE_STORED: Final = "evidence_stored"
# Written once per conference when it starts (signalling/core/conferences.py): data
# {conference, court, host, by, kind}, where court is the hosting court and kind "meeting"
# (absent in records from before kinds existed) or "action" (a concentrated enforcement
# action).
CONFERENCE_STARTED: Final = "conference_started"
# An officer's sampled position (signalling/core/facts.py): data {user, court, lat, lon,
# accuracy_m, device_time, clock_offset_ms}.
POSITION: Final = "position"
# Text instructions (signalling/core/instructions.py): `instruction_sent` {instruction, by,
# court, officer (null: court-wide), text, expires_at}; `instruction_delivered` and
# `instruction_read` {instruction, officer, court}; `instruction_expired` {instruction, court,
# unread: the recipients who never read it}.
INSTRUCTION_SENT: Final = "instruction_sent"
INSTRUCTION_DELIVERED: Final = "instruction_delivered"
INSTRUCTION_READ: Final = "instruction_read"
INSTRUCTION_EXPIRED: Final = "instruction_expired"
INSTRUCTION_KINDS: Final = frozenset(
    {INSTRUCTION_SENT, INSTRUCTION_DELIVERED, INSTRUCTION_READ, INSTRUCTION_EXPIRED}
)

KINDS: Final = frozenset(
    {
        SIGN_IN,
        CALL_CREATED,
        CALL_ANSWERED,
        CALL_ESCALATED,
        CALL_ENDED,
        EVIDENCE_STORED,
        CONFERENCE_STARTED,
        POSITION,
        *INSTRUCTION_KINDS,
    }
)


# A Struct rather than a dataclass: one is built per record, and it holds no references
# that could form a cycle, so it need not be tracked by the garbage collector either.
class Facets(msgspec.Struct, frozen=True, gc=False):
    """The derived, unhashed columns kept beside one record."""

    court: str | None = None
    subject: str | None = None
    tag: str | None = None
    flag: bool | None = None


NO_FACETS: Final = Facets()


def _str(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    # A NUL cannot be stored in a PostgreSQL text column; no court, user or case has one.
    return value if isinstance(value, str) and "\x00" not in value else None


def _flag(data: Mapping[str, Any], key: str) -> bool:
    return data.get(key) is True


def facets_of(kind: str, data: Mapping[str, Any]) -> Facets:
    """The columns a store keeps for a record of `kind` with `data`."""
    if kind not in KINDS:
        return NO_FACETS
    if kind == SIGN_IN:
        return Facets(court=_str(data, "court"), subject=_str(data, "user"), tag=_str(data, "role"))
    if kind == CALL_CREATED:
        return Facets(
            court=_str(data, "court"),
            subject=_str(data, "call"),
            tag=_str(data, "direction"),
            flag=_flag(data, "emergency"),
        )
    if kind in (CALL_ANSWERED, CALL_ESCALATED):
        return Facets(subject=_str(data, "call"))
    if kind == CALL_ENDED:
        return Facets(
            court=_str(data, "court"),
            subject=_str(data, "call"),
            tag=_str(data, "reason"),
            flag=_flag(data, "answered"),
        )
    if kind == POSITION:
        return Facets(court=_str(data, "court"), subject=_str(data, "user"))
    if kind in INSTRUCTION_KINDS:
        flag: bool | None = None
        if kind == INSTRUCTION_SENT:
            flag = "officer" in data and data["officer"] is None
        elif kind == INSTRUCTION_EXPIRED:
            flag = data.get("unread") == []
        return Facets(court=_str(data, "court"), subject=_str(data, "instruction"), flag=flag)
    if kind == EVIDENCE_STORED:
        return Facets(
            court=_str(data, "court"), subject=_str(data, "case_number"), tag=_str(data, "kind")
        )
    return Facets(
        court=_str(data, "court"), subject=_str(data, "conference"), tag=_str(data, "kind")
    )


__all__ = [
    "CALL_ANSWERED",
    "CALL_CREATED",
    "CALL_ENDED",
    "CALL_ESCALATED",
    "CONFERENCE_STARTED",
    "EVIDENCE_STORED",
    "INSTRUCTION_DELIVERED",
    "INSTRUCTION_EXPIRED",
    "INSTRUCTION_KINDS",
    "INSTRUCTION_READ",
    "INSTRUCTION_SENT",
    "KINDS",
    "NO_FACETS",
    "POSITION",
    "SIGN_IN",
    "Facets",
    "facets_of",
]
