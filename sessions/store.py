"""The trace store's interface: an append-only, hash-chained log of `TraceEvent`s.

Each stored record carries `hash = SHA-256(prev_hash || canonical(record))`, so editing,
deleting, inserting or reordering any record breaks the chain from that record on, and
`commandcenter audit verify` names the first one. Two implementations: SQLite (default, a
file under data_dir) and PostgreSQL (asyncpg), chosen in the composition root from config.
The same test suite runs against both; `MemoryTraceStore` keeps the chain in a list.

The chain itself (canonical encoding, hashing, verification) is `sessions.trace`; the figures
are `sessions.statistics`. Every store serialises appends into one chain however many tasks
(or, for PostgreSQL, server processes) append at once, and commits concurrent appends
together (group commit).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

import msgspec

from sessions.checkpoint import Checkpoint, Reason
from sessions.recorder import TraceEvent
from sessions.statistics import Counts, StatsQuery
from sessions.subjects import INDEXED_KINDS, subjects_of
from sessions.trace import Head, Link

# Told how many records a reindex has filed so far.
Progress = Callable[[int], None]
# Records a reindex reads and files per transaction.
REINDEX_BATCH: Final = 10000
# Records the server's background reindex files per transaction (`reindex_batch`): small,
# so the write lock it holds costs appends a few milliseconds at most.
REINDEX_STEP: Final = 1000
# Most records one subject's audit view reads (a conference of 300 sites for a day stays
# far below it); the view says when it was cut.
MAX_ABOUT: Final = 50000
# The most checkpoints `latest_checkpoints` returns at once.
MAX_LATEST_CHECKPOINTS: Final = 1000


@dataclass(frozen=True)
class StoredRecord:
    seq: int  # 1, 2, 3, ... in append order
    kind: str
    at: float  # server time, seconds since the epoch
    data: Mapping[str, Any]
    prev_hash: str  # hex; the genesis value for seq 1
    hash: str  # hex


@dataclass(frozen=True)
class ReindexState:
    """How far the subject index covers the records written before it existed.

    `end` is the watermark: the head when the store first opened with the index (records
    after it file themselves as they are appended); records up to `done` have been filed.
    `busy`: another node holds the reindex lease, so this one did nothing."""

    done: int
    end: int
    busy: bool = False

    @property
    def remaining(self) -> int:
        # Seqs are 1, 2, 3, ... without gaps, so the difference is a count of records.
        return max(self.end - self.done, 0)


class TraceStore(Protocol):
    async def append(self, events: Sequence[TraceEvent]) -> list[StoredRecord]:
        """Append in order; durable (committed) when this returns. Raises UnencodableEvent
        (nothing appended) when an event has no canonical encoding.

        The events are handed to the writer before the first suspension point, so a caller
        that has reached `await append(...)` has begun its append, and cancelling it stops
        only its waiting: the events are committed whole all the same, in order, before any
        append begun later (unless the database refuses that commit, which is logged)."""
        ...

    async def append_links(self, events: Sequence[TraceEvent]) -> list[Link]:
        """Like `append`, returning the links as stored: for writers that need no records
        back (the hub's recorder), it saves decoding nothing and building no records."""
        ...

    async def records(self, *, after_seq: int = 0, limit: int = 10000) -> list[StoredRecord]:
        """Records with seq > after_seq, in order, at most `limit`."""
        ...

    async def find(
        self,
        *,
        kinds: Sequence[str],
        data_equals: Mapping[str, str] | None = None,
        since: float | None = None,
        until: float | None = None,
        subject: str | None = None,
        last: int | None = None,
    ) -> list[StoredRecord]:
        """Records of these kinds whose data[key] == value for every given pair, in order.
        `since` is inclusive and `until` exclusive, server time in seconds; keys are
        identifiers (letters, digits, `_`), and a value matches only a string equal to it.
        `subject`: only records whose derived subject column is that (sessions/facets.py),
        an indexed lookup where a `data_equals` filter would scan every record of the kinds.
        `last`: only the latest that many of them by time (then seq), oldest first: read
        from the end of the (kind, subject, at_us) index, so the latest of a subject with
        thousands of records costs one probe."""
        ...

    async def records_about(self, subject: str, *, limit: int = 10000) -> list[StoredRecord]:
        """The records filed under `subject` in the subject index (`sessions.subjects`:
        `call:<id>`, `conference:<id>`, `evidence:<id>`), in seq order, at most `limit`:
        one index range, however large the trace."""
        ...

    async def reindex(self, progress: Progress | None = None) -> int:
        """Rebuild the subject index from the records (for a trace written before it
        existed, or an index in doubt); `progress` is told the records read so far. Appends
        go on meanwhile. Returns the number of records read."""
        ...

    async def reindex_state(self) -> ReindexState:
        """How many records written before the subject index existed it has not covered
        yet (`ReindexState(0, 0)` for a trace that had the index from its first record)."""
        ...

    async def reindex_batch(
        self, *, node: str, now: float, lease_s: float, limit: int = REINDEX_STEP
    ) -> ReindexState:
        """File the next `limit` records below the watermark, in one transaction that also
        moves `done` (so a crash loses at most the batch, and a restart resumes after it).
        Only the node holding the lease (taken here, for `lease_s` from `now`) files: for
        another, this returns `busy` and files nothing. Appends go on meanwhile."""
        ...

    async def count(self) -> int: ...

    async def links(self, *, after_seq: int = 0, limit: int = 10000) -> list[Link]:
        """Records with seq > after_seq as stored (canonical data, derived columns), in seq
        order, at most `limit`: what `audit verify` reads."""
        ...

    async def head(self) -> Head:
        """The last record's seq and hash (`trace.GENESIS` when empty)."""
        ...

    async def counts(self, query: StatsQuery) -> Counts:
        """The statistics counts for `query` (see `sessions.statistics`)."""
        ...

    async def add_checkpoint(self, checkpoint: Checkpoint) -> None:
        """Keep a signed checkpoint of the head (sessions/checkpoint.py) beside the trace;
        durable when this returns. Checkpoints are not part of the chain."""
        ...

    async def checkpoints(self) -> list[Checkpoint]:
        """Every checkpoint kept, in the order they were added (none for a trace that
        predates them)."""
        ...

    async def latest_checkpoints(self, reason: Reason, *, limit: int = 1) -> list[Checkpoint]:
        """The last `limit` (1 to MAX_LATEST_CHECKPOINTS) checkpoints of `reason` added,
        newest first: what the incremental chain check reads. It reads those rows and no
        others however long the table grows (about 1,440 periodic checkpoints a day)."""
        ...

    async def highest_checkpoint(self) -> Checkpoint | None:
        """The checkpoint of the highest seq, the last added among those of the same seq and
        time (`checkpoint.latest` over them all): where a starting checkpointer resumes,
        read as one row."""
        ...

    @property
    def checkpoint_rows_read(self) -> int:
        """How many checkpoints this store has read back so far (every read, full or
        latest): how a test or a benchmark tells a bounded read from a whole-table one."""
        ...

    async def close(self) -> None:
        """Finish the appends already handed over, then release the database; later calls
        raise StoreClosed."""
        ...


# Keys `find` may match on: they end up in a JSON path, so nothing that could escape it.
_FIND_KEY: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


def check_latest_limit(limit: int) -> None:
    if not 1 <= limit <= MAX_LATEST_CHECKPOINTS:
        raise ValueError(f"limit must be 1 to {MAX_LATEST_CHECKPOINTS}, not {limit}")


def record_of(link: Link) -> StoredRecord:
    """The record a stored link holds, its data decoded."""
    return StoredRecord(
        seq=link.seq,
        kind=link.kind,
        at=link.at_us / 1_000_000,
        data=msgspec.json.decode(link.data),
        prev_hash=link.prev_hash,
        hash=link.hash,
    )


def subjects_of_text(kind: str, data: str) -> tuple[str, ...]:
    """The subjects of a stored record (its data as canonical text): what a reindex files."""
    if kind not in INDEXED_KINDS:
        return ()
    decoded = msgspec.json.decode(data)
    return subjects_of(kind, decoded) if isinstance(decoded, dict) else ()


def check_find_keys(data_equals: Mapping[str, str] | None) -> None:
    """Raise ValueError unless every key of `data_equals` is an identifier and every value a
    string, as `TraceStore.find` requires."""
    for key, value in (data_equals or {}).items():
        if not isinstance(key, str) or not _FIND_KEY.fullmatch(key):
            raise ValueError(f"find: key {key!r} is not an identifier")
        if not isinstance(value, str):
            raise ValueError(f"find: value of {key!r} is not a string")
