"""The durable session recorder: the hub's `SessionRecorder` over a `TraceStore`, and the
choice of store from the configuration.

`DurableRecorder` is built synchronously in the composition root and opens its store when
the app starts, so one object can be handed to the hub (as its recorder) and to everything
that reads the trace (evidence, statistics, as a `TraceStore`) before any database exists.
`record` returns once the events are committed: the hub awaits it before telling any client,
so nothing a client was told about is missing from the trace after a crash.

An event with no canonical encoding (a NaN in its data, say) must not take the rest of its
batch down with it: it is replaced by an `unencodable_event` record naming its kind and what
was wrong, so the trace shows that something was lost instead of silently dropping it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import zoneinfo
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Final

from identity import Courts
from sessions.checkpoint import Checkpoint, Reason
from sessions.errors import StoreClosed, UnencodableEvent
from sessions.facets import facets_of
from sessions.recorder import TraceEvent
from sessions.statistics import Counts, Period, Report, StatsQuery, figures_of
from sessions.store import REINDEX_STEP, Progress, ReindexState, StoredRecord, TraceStore
from sessions.timings import STORE_BOUNDS, Timings
from sessions.trace import (
    GENESIS,
    Head,
    Link,
    Tampering,
    Verifier,
    VerifyResult,
    at_micros,
    entry_of,
)

UNENCODABLE: Final = "unencodable_event"
# Records read per query while verifying: big enough to amortise the round trip.
VERIFY_PAGE: Final = 20000


def zone_of(name: str) -> dt.tzinfo:
    """The configured statistics time zone (config.py has checked that it exists)."""
    return dt.UTC if name == "UTC" else zoneinfo.ZoneInfo(name)


async def statistics_report(
    store: TraceStore, courts: Courts, period: Period, court: str | None
) -> Report:
    """The figures for `period` and `court` with every court below it (None: every record).
    The caller has checked that `court` exists and may be seen."""
    subtree = None if court is None else courts.subtree(court)
    counts = await store.counts(StatsQuery(period.since_us, period.until_us, subtree))
    return Report(period=period, court=court, courts=subtree, figures=figures_of(counts))


async def verify_store(
    store: TraceStore,
    *,
    anchors: Mapping[int, str] | None = None,
    page: int = VERIFY_PAGE,
    progress: Callable[[int], None] | None = None,
    start: Head = GENESIS,
) -> VerifyResult:
    """Verify the stored chain, reading it page by page; `progress` is called with the
    number of records read so far after each page. `start`: a head an earlier check
    vouched for (incremental): the record stored at its seq must still carry its hash, and
    only the records after it are read; records before it are not looked at."""
    if start.seq > 0:
        held = await store.links(after_seq=start.seq - 1, limit=1)
        if not held or held[0].seq != start.seq:
            return VerifyResult(
                0,
                GENESIS,
                Tampering(start.seq, "deleted", "the record the last check ended at is gone"),
            )
        if held[0].hash != start.hash:
            return VerifyResult(
                0,
                GENESIS,
                Tampering(
                    start.seq,
                    "edited",
                    "hash differs from the last check's signed position: the log was "
                    "rewritten at or before this record",
                ),
            )
    verifier = Verifier(anchors=anchors, start=start)
    after = start.seq
    read = 0
    while True:
        links = await store.links(after_seq=after, limit=page)
        if not links:
            break
        for link in links:
            if not verifier.add(link):
                return verifier.result()
        read += len(links)
        after = links[-1].seq
        if progress is not None:
            progress(read)
    return verifier.result()


def _stand_in(event: TraceEvent, reason: str) -> TraceEvent:
    kind = event.kind if isinstance(event.kind, str) else repr(event.kind)
    try:
        at_micros(event.at)
        at = event.at
    except UnencodableEvent:
        # Not a time at all: the stand-in is dated at the epoch, its reason says why.
        at = 0.0
    return TraceEvent(UNENCODABLE, at, {"kind": kind[:64], "error": reason[:256]})


class DurableRecorder:
    """A `SessionRecorder` that appends to a `TraceStore`, and that store to its readers."""

    def __init__(self, open_store: Callable[[], Awaitable[TraceStore]]) -> None:
        self._open_store = open_store
        self._store: TraceStore | None = None
        self._opening = asyncio.Lock()
        self._closed = False
        # How long each append of the hub's events took to commit (a group of them at
        # once), read by the metrics endpoint: clients wait this long for every fact.
        self.append_times = Timings(STORE_BOUNDS)

    @classmethod
    def over(cls, store: TraceStore) -> DurableRecorder:
        """A recorder over a store that is already open."""

        async def given() -> TraceStore:
            return store

        recorder = cls(given)
        recorder._store = store
        return recorder

    async def start(self) -> None:
        """Open the store now (the app calls this at startup, so a database that cannot be
        reached stops the server instead of its first sign-in). Idempotent."""
        await self._ready()

    @property
    def is_open(self) -> bool:
        """The store was opened and not closed since."""
        return self._store is not None and not self._closed

    @property
    def store(self) -> TraceStore:
        if self._store is None:
            raise StoreClosed("the trace store is not open yet")
        return self._store

    async def _ready(self) -> TraceStore:
        if self._closed:
            raise StoreClosed("the trace store is closed")
        if self._store is None:
            async with self._opening:
                if self._store is None:
                    self._store = await self._open_store()
        return self._store

    # ---- SessionRecorder ----------------------------------------------------------------

    async def record(self, events: Sequence[TraceEvent]) -> None:
        store = await self._ready()
        started = time.perf_counter()
        try:
            await store.append_links(events)
        except UnencodableEvent:
            await store.append_links(self._encodable(events))
        self.append_times.observe(time.perf_counter() - started)

    @staticmethod
    def _encodable(events: Sequence[TraceEvent]) -> list[TraceEvent]:
        out: list[TraceEvent] = []
        for event in events:
            try:
                entry_of(event, facets_of)
            except UnencodableEvent as exc:
                out.append(_stand_in(event, exc.reason))
            else:
                out.append(event)
        return out

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._store is not None:
            await self._store.close()

    # ---- TraceStore, for readers ----------------------------------------------------------

    async def append(self, events: Sequence[TraceEvent]) -> list[StoredRecord]:
        return await (await self._ready()).append(events)

    async def append_links(self, events: Sequence[TraceEvent]) -> list[Link]:
        return await (await self._ready()).append_links(events)

    async def records(self, *, after_seq: int = 0, limit: int = 10000) -> list[StoredRecord]:
        return await (await self._ready()).records(after_seq=after_seq, limit=limit)

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
        store = await self._ready()
        return await store.find(
            kinds=kinds,
            data_equals=data_equals,
            since=since,
            until=until,
            subject=subject,
            last=last,
        )

    async def records_about(self, subject: str, *, limit: int = 10000) -> list[StoredRecord]:
        return await (await self._ready()).records_about(subject, limit=limit)

    async def reindex(self, progress: Progress | None = None) -> int:
        return await (await self._ready()).reindex(progress)

    async def reindex_state(self) -> ReindexState:
        return await (await self._ready()).reindex_state()

    async def reindex_batch(
        self, *, node: str, now: float, lease_s: float, limit: int = REINDEX_STEP
    ) -> ReindexState:
        return await (await self._ready()).reindex_batch(
            node=node, now=now, lease_s=lease_s, limit=limit
        )

    async def count(self) -> int:
        return await (await self._ready()).count()

    async def links(self, *, after_seq: int = 0, limit: int = 10000) -> list[Link]:
        return await (await self._ready()).links(after_seq=after_seq, limit=limit)

    async def head(self) -> Head:
        return await (await self._ready()).head()

    async def counts(self, query: StatsQuery) -> Counts:
        return await (await self._ready()).counts(query)

    async def add_checkpoint(self, checkpoint: Checkpoint) -> None:
        await (await self._ready()).add_checkpoint(checkpoint)

    async def checkpoints(self) -> list[Checkpoint]:
        return await (await self._ready()).checkpoints()

    async def latest_checkpoints(self, reason: Reason, *, limit: int = 1) -> list[Checkpoint]:
        return await (await self._ready()).latest_checkpoints(reason, limit=limit)

    async def highest_checkpoint(self) -> Checkpoint | None:
        return await (await self._ready()).highest_checkpoint()

    @property
    def checkpoint_rows_read(self) -> int:
        return 0 if self._store is None else self._store.checkpoint_rows_read


__all__ = [
    "UNENCODABLE",
    "DurableRecorder",
    "statistics_report",
    "verify_store",
    "zone_of",
]
