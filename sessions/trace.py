"""The trace's hash chain, pure: canonical encoding, sealing new records, and verification.

Nothing here touches a file, a database or the clock; the stores (`sessions.sqlite_store`,
`sessions.postgres_store`, `sessions.memory_store`) call `entry_of` and `seal` inside their
write transaction, and `commandcenter audit verify` feeds what they read back to `Verifier`.

Canonical encoding
------------------
A record is hashed as the UTF-8 bytes of the JSON text

    {"at_us":<int>,"data":<data>,"kind":<string>,"seq":<int>}

keys in that (sorted) order, no whitespace, `<data>` the record's data encoded the same way:
msgspec with `order="sorted"`, so nested objects have sorted keys too, strings stay UTF-8
(only what JSON requires is escaped). What removes the usual ambiguities:

- Time is an integer count of microseconds since the epoch (`at_us`), never a float, so the
  hash never depends on how a float prints. `TraceEvent.at` is rounded to the nearest
  microsecond on the way in; `StoredRecord.at` is `at_us / 1e6`.
- Numbers inside data keep their type: `1` and `1.0` are different records. Floats are
  written in the shortest form that reads back as the same IEEE-754 double (as Python's
  `repr` and JavaScript do); NaN and the infinities have no JSON form and are refused (msgspec
  would silently write `null`), as are non-string keys and values JSON cannot hold.
- The store keeps exactly these data bytes, and verification hashes what is stored, never a
  re-encoding of decoded values: no verifier has to reproduce anybody's float formatting.

Chain
-----
`hash = SHA-256(bytes.fromhex(prev_hash) || canonical)`, written as 64 lowercase hex digits.
Seqs run 1, 2, 3, ... without gaps; record 1's `prev_hash` is `GENESIS_HASH`.

Verification
------------
Records are read in seq order. Record `s` is intact when its seq is the one expected, its
hash is the hash of its own content and stored prev_hash, and that prev_hash is the hash of
record `s - 1`. The first record that is not intact is named, with a diagnosis drawn from
the seq its content does hash under (searched within `DIAGNOSIS_WINDOW` of its place) and
from the records that follow it (read up to the same window, then verification stops):

- `deleted`: a gap in the seqs (the first missing seq is named); or the record's content
  hashes correctly only under a later seq and so does the next one's, shifted alike (records
  were deleted and the rest renumbered to close the gap).
- `reordered`: the record's content hashes correctly only under another seq, and the records
  around it do not show a consistent shift (two records swapped, or one moved: a record
  written under one of the seemingly deleted seqs turns up a little later); or a seq comes
  again.
- `inserted`: the record's content matches no seq but the next record is the one that was
  written under this seq; or this record was written under an earlier seq and the records
  before it are newcomers that took its place.
- `edited`: the record's content matches no seq (its data, kind, time or hash column was
  changed); or it is intact but chained to a different predecessor, which names the
  predecessor as edited (changed and its hash recomputed to look intact); or its derived
  columns disagree with its data (see `sessions.facets`).

What a chain alone cannot show: records cut off the end, or a log rewritten from some record
on with every later hash recomputed, since SHA-256 needs no key. `audit verify` prints the
head (last seq and hash); an auditor who keeps it outside the database passes it back as an
anchor (`--anchor SEQ:HASH`), and a later run reports a missing or different anchored record.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

import msgspec

from sessions.errors import UnencodableEvent
from sessions.facets import INSTRUCTION_KINDS, KINDS, NO_FACETS, POSITION, Facets, facets_of
from sessions.recorder import TraceEvent

GENESIS_HASH: Final = hashlib.sha256(b"commandcenter trace v1").hexdigest()
MAX_KIND_CHARS: Final = 64
# at_us stays below 2**53, so any JSON reader (JavaScript included) holds it exactly.
MAX_ABS_AT_S: Final = 9.0e9
# How far from its place a record's original seq is searched for when diagnosing.
DIAGNOSIS_WINDOW: Final = 64

Problem = Literal["edited", "deleted", "inserted", "reordered"]

# Kinds are names (sign_in, evidence_stored): nothing a column or a log line could trip on.
_KIND = re.compile(rf"[A-Za-z0-9_.:-]{{1,{MAX_KIND_CHARS}}}")
_encoder = msgspec.json.Encoder(order="sorted")
_decoder = msgspec.json.Decoder()


# Entry, Link and Head are msgspec Structs, not dataclasses: a store builds several per
# record, on the path every event takes, and Structs are built ten times faster and are not
# tracked by the garbage collector (they hold no references that could form a cycle).


class Entry(msgspec.Struct, frozen=True, gc=False):
    """An event in canonical form, ready to be chained."""

    kind: str
    at_us: int
    data: str  # canonical JSON of the event's data
    facets: Facets = NO_FACETS


class Link(msgspec.Struct, frozen=True, gc=False):
    """One record as stored: its canonical content, its place in the chain, and the derived
    columns kept beside it."""

    seq: int
    at_us: int
    kind: str
    data: str
    prev_hash: str
    hash: str
    facets: Facets = NO_FACETS


class Head(msgspec.Struct, frozen=True, gc=False):
    """The last record of a chain: where the next append continues from."""

    seq: int
    hash: str


GENESIS: Final = Head(0, GENESIS_HASH)


@dataclass(frozen=True)
class Tampering:
    seq: int
    problem: Problem
    detail: str

    def message(self) -> str:
        return f"record {self.seq} {self.problem}: {self.detail}"


@dataclass(frozen=True)
class VerifyResult:
    # Records found intact, in order, before the first problem (all of them when ok).
    records: int
    # The last intact record (GENESIS when there is none).
    head: Head
    tampering: Tampering | None = None

    @property
    def ok(self) -> bool:
        return self.tampering is None


# --- encoding ----------------------------------------------------------------------------


def _check_value(value: Any, path: str) -> None:
    # msgspec would accept all of these, but not faithfully: NaN becomes null and int keys
    # become strings, so the record would not say what the caller meant.
    if value is None or isinstance(value, str | bool | int):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise UnencodableEvent(f"{path}: {value!r} has no JSON form")
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise UnencodableEvent(f"{path}: key {key!r} is not a string")
            _check_value(item, f"{path}.{key}")
        return
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            _check_value(item, f"{path}[{i}]")
        return
    raise UnencodableEvent(f"{path}: a {type(value).__name__} has no JSON form")


def encode_data(data: Mapping[str, Any]) -> str:
    """The canonical JSON text of a record's data; raises UnencodableEvent."""
    try:
        encoded = _encoder.encode(data if isinstance(data, dict) else dict(data))
    except (TypeError, ValueError, OverflowError):
        encoded = None
    # Fast path, all in C: the data reads back equal to itself. NaN never equals anything
    # and an int key reads back as a string, so only faithful encodings pass; what fails
    # (those, or merely a tuple, which reads back as a list) gets the exact walk below.
    if encoded is None or _decoder.decode(encoded) != data:
        _check_value(data, "data")
        if encoded is None:
            raise UnencodableEvent("data: has no JSON form (an integer beyond 64 bits?)")
    return encoded.decode("utf-8")


def at_micros(at: float) -> int:
    """Seconds since the epoch to the integer microseconds the chain hashes."""
    if (
        isinstance(at, bool)
        or not isinstance(at, int | float)
        or not math.isfinite(at)
        or abs(at) > MAX_ABS_AT_S
    ):
        raise UnencodableEvent(f"at: {at!r} is not a time")
    return round(at * 1_000_000)


def entry_of(event: TraceEvent, facets_of: Callable[[str, Mapping[str, Any]], Facets]) -> Entry:
    """`event` in canonical form, with the derived columns `facets_of` gives it."""
    kind = event.kind
    if not isinstance(kind, str) or not _KIND.fullmatch(kind):
        raise UnencodableEvent(
            f"kind: must be 1 to {MAX_KIND_CHARS} letters, digits or any of _ . : -"
        )
    return Entry(kind, at_micros(event.at), encode_data(event.data), facets_of(kind, event.data))


def canonical(seq: int, at_us: int, kind: str, data: str) -> bytes:
    """The bytes a record is hashed as (see the module docstring)."""
    # Built by hand rather than by encoding a dict: `data` is already canonical text, and
    # re-encoding it would make the hash depend on decoding it first.
    return b"".join(
        (
            b'{"at_us":',
            str(at_us).encode(),
            b',"data":',
            data.encode("utf-8"),
            b',"kind":',
            _encoder.encode(kind),
            b',"seq":',
            str(seq).encode(),
            b"}",
        )
    )


def chain_hash(prev_hash: str, content: bytes) -> str:
    return hashlib.sha256(bytes.fromhex(prev_hash) + content).hexdigest()


def seal(head: Head, entries: Sequence[Entry]) -> list[Link]:
    """The links that append `entries`, in order, after `head`."""
    links: list[Link] = []
    seq, prev = head.seq, head.hash
    for e in entries:
        seq += 1
        digest = chain_hash(prev, canonical(seq, e.at_us, e.kind, e.data))
        links.append(Link(seq, e.at_us, e.kind, e.data, prev, digest, e.facets))
        prev = digest
    return links


def head_of(links: Sequence[Link], head: Head) -> Head:
    return Head(links[-1].seq, links[-1].hash) if links else head


# --- verification ------------------------------------------------------------------------


def _content_ok(link: Link, seq: int) -> bool:
    try:
        return chain_hash(link.prev_hash, canonical(seq, link.at_us, link.kind, link.data)) == (
            link.hash
        )
    except ValueError:
        # prev_hash is not hex: the column was edited.
        return False


def written_as(link: Link, around: int) -> int | None:
    """The seq under which `link`'s content hashes to its stored hash, searched outwards from
    `around`; None when its content matches no nearby seq (it was edited)."""
    if _content_ok(link, around):
        return around
    for distance in range(1, DIAGNOSIS_WINDOW + 1):
        for seq in (around + distance, around - distance):
            if seq >= 1 and _content_ok(link, seq):
                return seq
    return None


def _legacy_unindexed(link: Link) -> bool:
    # Positions had no derived columns before the track read them, nor instructions before
    # their statistics (sessions/facets.py); their data is hashed as ever, only the index is
    # missing.
    return (link.kind == POSITION or link.kind in INSTRUCTION_KINDS) and link.facets == NO_FACETS


def facets_mismatch(link: Link) -> str | None:
    """What is wrong with `link`'s derived columns, or None when they agree with its data."""
    if link.kind not in KINDS:
        return None if link.facets == NO_FACETS else "derived columns set on a record without any"
    try:
        data = msgspec.json.decode(link.data)
    except msgspec.DecodeError:
        return "data is not JSON"
    if not isinstance(data, dict):
        return "data is not a JSON object"
    if facets_of(link.kind, data) != link.facets and not _legacy_unindexed(link):
        return "derived columns (court, subject, tag, flag) disagree with the data"
    return None


class Verifier:
    """Checks a chain fed in seq order, one link at a time, and names the first bad record.

    `anchors` maps seqs to the hashes an auditor saw there before. `check` looks at an
    otherwise intact link and returns what is wrong with it, or None; by default it holds the
    derived columns to the data. `start`: a head an earlier check vouched for (a signed
    `verified` checkpoint): the links after it are fed, and the records up to it count as
    intact without being read again (an incremental check).
    """

    def __init__(
        self,
        *,
        anchors: Mapping[int, str] | None = None,
        check: Callable[[Link], str | None] | None = facets_mismatch,
        start: Head = GENESIS,
    ) -> None:
        self._anchors = {seq: h for seq, h in (anchors or {}).items() if seq > start.seq}
        self._check = check
        self._head = start
        # The latest intact heads: a diagnosis may find that the last few were forged.
        self._recent: deque[Head] = deque([start], maxlen=DIAGNOSIS_WINDOW + 2)
        self._records = start.seq
        # A link that failed, and the links read after it to explain how (up to a window).
        self._pending: Link | None = None
        self._following: list[Link] = []
        self._found: Tampering | None = None

    @property
    def done(self) -> bool:
        """True once a problem is found: later links change nothing."""
        return self._found is not None

    def add(self, link: Link) -> bool:
        """Check the next link; returns False once the verdict is in (stop feeding)."""
        if self._found is not None:
            return False
        if self._pending is not None:
            self._following.append(link)
            if len(self._following) < DIAGNOSIS_WINDOW:
                return True
            self._found = self._diagnose(self._pending, self._following)
            return False
        expected = self._head.seq + 1
        if link.seq > expected:
            missing = f"{expected}" if link.seq == expected + 1 else f"{expected} to {link.seq - 1}"
            self._found = Tampering(
                expected, "deleted", f"record {missing} missing: the next stored is {link.seq}"
            )
            return False
        if link.seq < expected:
            self._found = Tampering(
                expected,
                "reordered",
                f"the record stored after {expected - 1} carries seq {link.seq} again",
            )
            return False
        if not _content_ok(link, link.seq) or link.prev_hash != self._head.hash:
            self._pending = link
            return True
        if self._check is not None:
            why = self._check(link)
            if why is not None:
                self._found = Tampering(link.seq, "edited", why)
                return False
        anchored = self._anchors.pop(link.seq, None)
        if anchored is not None and anchored != link.hash:
            self._found = Tampering(
                link.seq,
                "edited",
                "hash differs from the anchor: the log was rewritten at or before this record",
            )
            return False
        self._head = Head(link.seq, link.hash)
        self._recent.append(self._head)
        self._records += 1
        return True

    def result(self) -> VerifyResult:
        """The verdict over everything fed so far, taken as the whole log."""
        if self._found is None and self._pending is not None:
            self._found = self._diagnose(self._pending, self._following)
        if self._found is None and self._anchors:
            seq = min(self._anchors)
            self._found = Tampering(
                seq, "deleted", f"anchored record missing: the log ends at {self._head.seq}"
            )
        if self._found is not None and self._found.seq <= self._head.seq:
            # Records that looked intact on their own turned out forged or changed: only
            # those before the named one are vouched for.
            before = self._found.seq - 1
            # Named seqs lie within the diagnosis window, so their predecessor is recent.
            known = next((h for h in self._recent if h.seq == before), None)
            # Before the start of an incremental check nothing was read: vouch for nothing.
            self._head = known if known is not None else GENESIS
            self._records = before if known is not None else 0
        return VerifyResult(self._records, self._head, self._found)

    def _diagnose(self, link: Link, following: Sequence[Link]) -> Tampering:
        s = link.seq
        orig = written_as(link, s)
        after = following[0] if following else None
        next_orig = written_as(after, after.seq) if after is not None else None
        if orig == s:
            # Intact itself, but chained to something other than what now precedes it.
            if s == 1:
                return Tampering(s, "edited", "record 1 does not start from the genesis hash")
            return Tampering(
                s - 1,
                "edited",
                f"record {s} was chained to a different record {s - 1}: "
                f"{s - 1} was changed and its hash recomputed",
            )
        if orig is None:
            if next_orig == s:
                return Tampering(s, "inserted", f"the record written as {s} follows it, renumbered")
            return Tampering(s, "edited", "content does not match its hash")
        if orig > s:
            # Renumbered after a deletion, unless a record written as one of the "deleted"
            # seqs turns up a little later: then it was moved.
            moved = next(
                (f for f in following if any(_content_ok(f, x) for x in range(s, orig))), None
            )
            if moved is not None:
                return Tampering(
                    s, "reordered", f"records moved: the one stored as {moved.seq} belongs here"
                )
            if after is None or next_orig == orig + 1:
                gap = orig - s
                return Tampering(
                    s,
                    "deleted",
                    f"{gap} record(s) deleted here and the later records renumbered "
                    f"(this one was written as {orig})",
                )
            return Tampering(s, "reordered", f"the record stored here was written as {orig}")
        # orig < s: the records now at orig .. s-1 took this one's place.
        if after is None or next_orig == orig + 1:
            return Tampering(
                orig,
                "inserted",
                f"{s - orig} record(s) inserted at {orig}: the record written as {orig} "
                f"is now stored as {s}",
            )
        return Tampering(s, "reordered", f"the record stored here was written as {orig}")


def verify(
    links: Iterable[Link],
    *,
    anchors: Mapping[int, str] | None = None,
    check: Callable[[Link], str | None] | None = facets_mismatch,
) -> VerifyResult:
    """Verify a whole chain given in seq order."""
    verifier = Verifier(anchors=anchors, check=check)
    for link in links:
        if not verifier.add(link):
            break
    return verifier.result()


__all__ = [
    "GENESIS",
    "GENESIS_HASH",
    "Entry",
    "Head",
    "Link",
    "Problem",
    "Tampering",
    "Verifier",
    "VerifyResult",
    "at_micros",
    "canonical",
    "chain_hash",
    "encode_data",
    "entry_of",
    "facets_mismatch",
    "head_of",
    "seal",
    "verify",
    "written_as",
]
