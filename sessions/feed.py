"""The event feed for case-management systems, pure: which trace facts a court scope sees, how
each is written as a line, and how many streams may be open.

Theory of operation. `GET /api/feed?after=<seq>` (commandcenter/feed_api.py) reads the trace
in seq order from `after + 1` and sends every fact of the caller's court scope as one JSON
line, then goes on with facts as they are appended. A fact's court is the court it belongs
to:

1. the `court` (and, for evidence, `case_court`) its data names: the officer's court for a
   sign-in or a call, the evidence's court and the court of its case, the hosting court of
   a conference;
2. for a fact that names none but refers to a call or a conference (`call_answered`,
   `floor_granted`, ...), the court of that call's `call_created` or that conference's
   `conference_created` (`conference_started`), which `ScopeFilter` learns as the stream
   passes them and the driver looks up in the trace for those created before `after`;
3. none (`server_started`): such facts go only to a caller whose scope is every court.

Every line carries the fact's `seq`, so a client resumes with `after=<last seq>` and gets
everything from there at least once; a heartbeat line names the last seq examined, in scope
or not, so a client of a quiet court resumes past what it was never going to be sent.

Nothing here reads the trace, a socket or the clock.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

import msgspec

from sessions.trace import Link

# The largest `after` accepted: seqs are SQLite and PostgreSQL bigints.
MAX_AFTER: Final = 2**63
# The record written when a stream opens: data {user, role, court, courts, after}.
FEED_OPENED: Final = "feed_opened"
RefKind = Literal["call", "conference"]
# The kinds whose court is the court of the call or conference they create, and so of every
# later fact that refers to it.
ORIGINS: Final[Mapping[RefKind, tuple[str, ...]]] = {
    "call": ("call_created",),
    "conference": ("conference_created", "conference_started"),
}
_ORIGIN_KINDS: Final[Mapping[str, RefKind]] = {
    kind: ref for ref, kinds in ORIGINS.items() for kind in kinds
}
# Data fields that name a court the fact belongs to.
_COURT_FIELDS: Final = ("court", "case_court")
# Remembered call and conference courts; beyond this the least recent are forgotten (and
# looked up again should a fact refer to them).
MAX_REMEMBERED: Final = 65536


class BadAfter(ValueError):
    """`after` is not a seq: `reason` says why, without echoing it."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def parse_after(raw: str | None) -> int:
    """The `after` parameter: absent means 0 (from the first fact); else a non-negative
    integer in ASCII digits, at most `MAX_AFTER`."""
    if raw is None:
        return 0
    # Bounded before converting: int() of a million digits is slow, and a seq has 19 at most.
    if not raw or len(raw) > 19 or not raw.isascii() or not raw.isdigit():
        raise BadAfter("must be a non-negative integer")
    value = int(raw)
    if value > MAX_AFTER:
        raise BadAfter(f"must be at most {MAX_AFTER}")
    return value


@dataclass(frozen=True)
class Ref:
    """A call or conference a fact refers to, whose court is that of the fact."""

    kind: RefKind
    id: str


def _courts_named(data: Mapping[str, Any]) -> frozenset[str]:
    return frozenset(
        value for key in _COURT_FIELDS if isinstance(value := data.get(key), str) and value
    )


def _refs(data: Mapping[str, Any]) -> tuple[Ref, ...]:
    refs: list[Ref] = []
    call, conference = data.get("call"), data.get("conference")
    if isinstance(call, str) and call:
        refs.append(Ref("call", call))
    if isinstance(conference, str) and conference:
        refs.append(Ref("conference", conference))
    return tuple(refs)


def origin_court(kind: str, data: Mapping[str, Any], ref: Ref) -> str | None:
    """The court a record of an origin kind gives `ref`, or None if it is no such record."""
    if _ORIGIN_KINDS.get(kind) != ref.kind or data.get(ref.kind) != ref.id:
        return None
    court = data.get("court")
    return court if isinstance(court, str) and court else None


class ScopeFilter:
    """Decides, fact by fact in seq order, whether a stream of scope `courts` sends it.

    `unknown(data)` names the references the driver must look up (`learn`) before `admits`
    can decide; `admits` learns from origin facts as they pass."""

    def __init__(
        self, courts: Iterable[str], *, every_court: bool, remember: int = MAX_REMEMBERED
    ) -> None:
        self.courts = frozenset(courts)
        # Facts of no court go only to a caller who sees every court.
        self.every_court = every_court
        self._remember = remember
        self._known: OrderedDict[Ref, str | None] = OrderedDict()

    def unknown(self, data: Mapping[str, Any]) -> tuple[Ref, ...]:
        if _courts_named(data):
            return ()
        return tuple(ref for ref in _refs(data) if ref not in self._known)

    def learn(self, ref: Ref, court: str | None) -> None:
        """`ref`'s court (None: its origin is not in the trace)."""
        self._known[ref] = court
        self._known.move_to_end(ref)
        while len(self._known) > self._remember:
            self._known.popitem(last=False)

    def courts_of(self, kind: str, data: Mapping[str, Any]) -> frozenset[str]:
        named = _courts_named(data)
        if named:
            origin = _ORIGIN_KINDS.get(kind)
            court = data.get("court")
            ref_id = data.get(origin) if origin else None
            if origin and isinstance(ref_id, str) and isinstance(court, str) and court:
                self.learn(Ref(origin, ref_id), court)
            return named
        found: set[str] = set()
        for ref in _refs(data):
            court = self._known.get(ref)
            if court is not None:
                self._known.move_to_end(ref)
                found.add(court)
        return frozenset(found)

    def admits(self, kind: str, data: Mapping[str, Any]) -> bool:
        courts = self.courts_of(kind, data)
        if not courts:
            return self.every_court
        return not courts.isdisjoint(self.courts)


def fact_line(link: Link) -> bytes:
    """One fact as a line of NDJSON: `{"seq", "at_us", "kind", "hash", "prev_hash", "data"}`.

    `data` is the record's canonical text exactly as it was hashed, spliced in unchanged, so
    a client may check the hash by hand as docs/trace.md shows."""
    head = msgspec.json.encode(
        {"seq": link.seq, "at_us": link.at_us, "kind": link.kind, "hash": link.hash}
    )
    prev = msgspec.json.encode(link.prev_hash)
    return b'%s,"prev_hash":%s,"data":%s}\n' % (head[:-1], prev, link.data.encode())


def heartbeat_line(seq: int) -> bytes:
    """`{"heartbeat": seq}`: nothing to send up to `seq`; resuming after it loses nothing."""
    return b'{"heartbeat":%d}\n' % seq


# --- how many streams --------------------------------------------------------------------

Refusal = Literal["too_many_streams", "too_many_streams_for_user"]


class StreamSlots:
    """Streams open at once: at most `total`, and `per_user` for one user (a user id within
    its court: ids are each court's own)."""

    def __init__(self, *, total: int, per_user: int) -> None:
        self.total = total
        self.per_user = per_user
        self._open: dict[tuple[str, str], int] = {}
        self.count = 0

    def take(self, user: tuple[str, str]) -> Refusal | None:
        """Take a slot for `user`, or say why not."""
        if self.count >= self.total:
            return "too_many_streams"
        if self._open.get(user, 0) >= self.per_user:
            return "too_many_streams_for_user"
        self._open[user] = self._open.get(user, 0) + 1
        self.count += 1
        return None

    def give_back(self, user: tuple[str, str]) -> None:
        left = self._open[user] - 1
        if left:
            self._open[user] = left
        else:
            del self._open[user]
        self.count -= 1


__all__ = [
    "FEED_OPENED",
    "MAX_AFTER",
    "ORIGINS",
    "BadAfter",
    "Ref",
    "RefKind",
    "Refusal",
    "ScopeFilter",
    "StreamSlots",
    "fact_line",
    "heartbeat_line",
    "origin_court",
    "parse_after",
]
