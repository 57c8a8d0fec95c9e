"""The records side of the console, pure: what an evidence search asks for, an evidence
item's audit trail and a call's audit view (its timeline and who watched its video), all
read from trace records the caller has already fetched.

Nothing here reads the clock or the store: `EvidenceStore` and `commandcenter.records_api`
fetch the records and pass them in, so every rule is testable on plain lists. Who watched a
call is derived from the facts that put a user into the call's media room (the room forwards
the officer's video to every member): the operator answering or taking a transfer, a
supervisor joining, and `video_watched` / `video_unwatched` records where the media server
wrote them; a user's watch ends with their leaving, a transfer away, or the call's end.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from sessions import evidence as ev
from sessions.store import StoredRecord

# Page size of an evidence search: one screenful by default, never more than MAX_PAGE.
DEFAULT_PAGE: Final = 50
MAX_PAGE: Final = 200
# Longest search term accepted (an officer's id, a court code).
MAX_TERM_CHARS: Final = 64
# The calls of one listing, at most (newest first).
MAX_CALLS: Final = 500

# The media server's record of an evidence item taken from a call (media/evidence_sink.py
# writes it; the name is repeated here because sessions sits below media).
CALL_EVIDENCE: Final = "call_evidence"

# What an evidence item's audit trail is made of: every record naming its id.
EVIDENCE_AUDIT_KINDS: Final = (
    ev.STORED,
    ev.CORRECTED,
    ev.READ,
    ev.DOWNLOADED,
    ev.EXPORTED,
    ev.REJECTED,
    CALL_EVIDENCE,
)

CALL_CREATED: Final = "call_created"
CALL_ANSWERED: Final = "call_answered"
CALL_TRANSFERRED: Final = "call_transferred"
CALL_ENDED: Final = "call_ended"
SUPERVISOR_JOINED: Final = "supervisor_joined"
SUPERVISOR_LEFT: Final = "supervisor_left"
# The operator asked the supervisors over the court into the call: call, by, users.
SUPERVISOR_INVITED: Final = "supervisor_invited"
# Written by the media server when it starts and stops forwarding a call's video to a user.
VIDEO_WATCHED: Final = "video_watched"
VIDEO_UNWATCHED: Final = "video_unwatched"
# Someone looked at the call's audit view: call, court, user, role, user_court.
CALL_AUDIT_READ: Final = "call_audit_read"

# Every record kind that belongs to a call's timeline (each carries `call`).
CALL_AUDIT_KINDS: Final = (
    CALL_CREATED,
    "call_queued",
    "call_ringing",
    "call_declined",
    CALL_ANSWERED,
    "call_escalated",
    "call_taken_over",
    CALL_TRANSFERRED,
    "party_away",
    "party_back",
    SUPERVISOR_INVITED,
    SUPERVISOR_JOINED,
    SUPERVISOR_LEFT,
    VIDEO_WATCHED,
    VIDEO_UNWATCHED,
    CALL_EVIDENCE,
    CALL_ENDED,
    CALL_AUDIT_READ,
)


class RecordsQueryError(ev.BadRequest):
    """A search or listing parameter the client got wrong (400, `field` names it)."""


@dataclass(frozen=True)
class EvidenceSearch:
    """An evidence search: every given term must match; times are server time (seconds),
    [since, until)."""

    case_number: str | None = None
    officer: str | None = None
    court: str | None = None
    since: float | None = None
    until: float | None = None
    limit: int = DEFAULT_PAGE
    offset: int = 0


def parse_term(raw: str, field: str) -> str:
    value = unicodedata.normalize("NFC", raw.strip())
    if not value:
        raise RecordsQueryError("must not be empty", field)
    if len(value) > MAX_TERM_CHARS or not value.isprintable():
        raise RecordsQueryError(f"1 to {MAX_TERM_CHARS} printable characters", field)
    return value


def parse_count(raw: str | None, field: str, *, default: int, low: int, high: int) -> int:
    if raw is None:
        return default
    if not raw.isascii() or not raw.isdigit() or len(raw) > 9:
        raise RecordsQueryError(f"a whole number from {low} to {high}", field)
    value = int(raw)
    if not low <= value <= high:
        raise RecordsQueryError(f"a whole number from {low} to {high}", field)
    return value


def page(items: Sequence[ev.ItemHistory], search: EvidenceSearch) -> list[ev.ItemHistory]:
    """The page of `items` (newest first) that `search` asks for."""
    return list(items[search.offset : search.offset + search.limit])


def matches(item: ev.EvidenceItem, search: EvidenceSearch, subtree: frozenset[str] | None) -> bool:
    """Whether the item's current values match the search's terms (`subtree`: the courts of
    the court searched for, or None for any)."""
    if search.case_number is not None and item.case_number != search.case_number:
        return False
    if search.officer is not None and item.uploader != search.officer:
        return False
    return subtree is None or item.court in subtree


# --- audit trails ----------------------------------------------------------------------


def entry(record: StoredRecord) -> dict[str, Any]:
    """One record as an audit trail shows it: its place in the chain, its time, kind, data
    and hash (so a reader can check it against `audit verify`)."""
    return {
        "seq": record.seq,
        "at": record.at,
        "kind": record.kind,
        "hash": record.hash,
        "data": dict(record.data),
    }


def evidence_trail(records: Iterable[StoredRecord]) -> dict[str, Any]:
    """An item's audit trail, in seq order, and the call it was taken from, if any."""
    ordered = sorted(records, key=lambda r: r.seq)
    call = next((r.data.get("call") for r in ordered if r.kind == CALL_EVIDENCE), None)
    return {"call": call, "records": [entry(r) for r in ordered]}


@dataclass(frozen=True)
class Watch:
    """A user who received the call's video, from `since` to `until` (None: still)."""

    user: str
    role: str
    since: float
    since_seq: int
    until: float | None = None
    until_seq: int | None = None
    covert: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "user": self.user,
            "role": self.role,
            "since": self.since,
            "since_seq": self.since_seq,
            "until": self.until,
            "until_seq": self.until_seq,
            "covert": self.covert,
        }


def who_watched(records: Sequence[StoredRecord]) -> list[Watch]:
    """Every span a user received the call's video, in the order they began.

    Where the media server recorded it (`video_watched` / `video_unwatched`: forwarding of
    the officer's video to a member began and stopped), that is the answer. Otherwise (a
    call without media on this server, or from before those records) it is the room: the
    officer publishes, and everyone else in it receives: the operator who answers (or, for a
    call the center placed, the operator who placed it, from the answer on), the operator a
    call is transferred to, and every supervisor who joins, each until they leave, hand the
    call on, or it ends. Roles come from the call's records either way."""
    ordered = sorted(records, key=lambda r: r.seq)
    created = next((r for r in ordered if r.kind == CALL_CREATED), None)
    officer = created.data.get("officer") if created is not None else None
    caller = created.data.get("caller") if created is not None else None
    direction = created.data.get("direction") if created is not None else None
    media = any(r.kind == VIDEO_WATCHED for r in ordered)
    roles: dict[str, tuple[str, bool]] = {}
    open_: dict[str, Watch] = {}
    done: list[Watch] = []

    def start(user: object, record: StoredRecord) -> None:
        if not isinstance(user, str) or user == officer or user in open_:
            return
        role, covert = roles.get(user, ("", False))
        open_[user] = Watch(user, role, record.at, record.seq, covert=covert)

    def stop(user: object, record: StoredRecord) -> None:
        if not isinstance(user, str):
            return
        watch = open_.pop(user, None)
        if watch is not None:
            done.append(_ended(watch, record))

    for record in ordered:
        d = record.data
        match record.kind:
            case "call_answered":
                operator = caller if direction == "center_to_officer" else d.get("by")
                if isinstance(operator, str):
                    roles[operator] = ("operator", False)
                if not media:
                    start(operator, record)
            case "call_transferred":
                to = d.get("to")
                if isinstance(to, str):
                    roles[to] = ("operator", False)
                if not media:
                    stop(d.get("by"), record)
                    start(to, record)
            case "supervisor_joined":
                user = d.get("user")
                if isinstance(user, str):
                    roles[user] = ("supervisor", d.get("covert") is True)
                if not media:
                    start(user, record)
            case "supervisor_left":
                if not media:
                    stop(d.get("user"), record)
            case "video_watched":
                # The officer's video only: a member also receives the operator's audio.
                if d.get("owner") == officer:
                    start(d.get("user"), record)
            case "video_unwatched":
                if d.get("owner") == officer:
                    stop(d.get("user"), record)
    ended = next((r for r in ordered if r.kind == CALL_ENDED), None)
    if ended is not None:
        # A node that died before writing `video_unwatched`: the call's end ended it.
        for user in list(open_):
            stop(user, ended)
    watches = done + list(open_.values())
    return sorted(watches, key=lambda w: (w.since_seq, w.user))


def _ended(watch: Watch, record: StoredRecord) -> Watch:
    return Watch(
        watch.user,
        watch.role,
        watch.since,
        watch.since_seq,
        until=record.at,
        until_seq=record.seq,
        covert=watch.covert,
    )


def call_summary(created: StoredRecord, ended: StoredRecord | None) -> dict[str, Any]:
    """A call as a listing shows it: from its `call_created` and, if any, `call_ended`."""
    d: Mapping[str, Any] = created.data
    e: Mapping[str, Any] = ended.data if ended is not None else {}
    return {
        "call_id": d.get("call"),
        "direction": d.get("direction"),
        "officer": d.get("officer"),
        "court": d.get("court"),
        "caller": d.get("caller"),
        "case_number": d.get("case_number"),
        "emergency": d.get("emergency") is True,
        "created_at": created.at,
        "created_seq": created.seq,
        "ended_at": ended.at if ended is not None else None,
        "end_reason": e.get("reason"),
        "answered": e.get("answered") if ended is not None else None,
    }


def call_audit(records: Sequence[StoredRecord]) -> dict[str, Any]:
    """A call's audit view: its summary, its timeline in seq order, who watched its video
    and the evidence taken from it. `records` are the call's own (each names it)."""
    ordered = sorted(records, key=lambda r: r.seq)
    created = next(r for r in ordered if r.kind == CALL_CREATED)
    ended = next((r for r in ordered if r.kind == CALL_ENDED), None)
    return {
        "call": call_summary(created, ended),
        "timeline": [entry(r) for r in ordered],
        "watched": [w.to_json() for w in who_watched(ordered)],
        "evidence": [
            {
                "evidence_id": r.data.get("evidence_id"),
                "media": r.data.get("media"),
                "sha256": r.data.get("sha256"),
                "seq": r.seq,
                "at": r.at,
            }
            for r in ordered
            if r.kind == CALL_EVIDENCE
        ],
    }


__all__ = [
    "CALL_AUDIT_KINDS",
    "CALL_AUDIT_READ",
    "CALL_EVIDENCE",
    "DEFAULT_PAGE",
    "EVIDENCE_AUDIT_KINDS",
    "MAX_CALLS",
    "MAX_PAGE",
    "EvidenceSearch",
    "RecordsQueryError",
    "Watch",
    "call_audit",
    "call_summary",
    "evidence_trail",
    "matches",
    "page",
    "parse_count",
    "parse_term",
    "who_watched",
]
