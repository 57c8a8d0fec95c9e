"""`MemoryTraceStore`: the hash-chained trace kept in a list, for `recorder.backend = "memory"`
and for tests. Same chain, same answers as the database stores; nothing survives the process.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence

import msgspec

from sessions.checkpoint import Checkpoint, Reason, latest
from sessions.errors import StoreClosed
from sessions.facets import facets_of
from sessions.recorder import TraceEvent
from sessions.statistics import Counts, StatsQuery, reference_counts
from sessions.store import (
    REINDEX_STEP,
    Progress,
    ReindexState,
    StoredRecord,
    check_find_keys,
    check_latest_limit,
    record_of,
    subjects_of_text,
)
from sessions.subjects import subjects_of
from sessions.trace import GENESIS, Head, Link, entry_of, head_of, seal


class MemoryTraceStore:
    def __init__(self) -> None:
        self._links: list[Link] = []
        self._head = GENESIS
        self._checkpoints: list[Checkpoint] = []
        # The same checkpoints by reason, in the order added: the databases' index on
        # (reason, id), so the latest `verified` one is found without walking the periodic
        # ones added since.
        self._by_reason: dict[str, list[Checkpoint]] = {}
        self._highest: Checkpoint | None = None
        self.checkpoint_rows_read = 0
        # The subject index (sessions/subjects.py): subject -> seqs, in order.
        self._about: dict[str, list[int]] = {}
        self._closed = False

    def _open(self) -> None:
        if self._closed:
            raise StoreClosed("the trace store is closed")

    async def append(self, events: Sequence[TraceEvent]) -> list[StoredRecord]:
        return [record_of(link) for link in await self.append_links(events)]

    async def append_links(self, events: Sequence[TraceEvent]) -> list[Link]:
        self._open()
        # Encoded before anything changes, so an unencodable event appends nothing.
        entries = [entry_of(e, facets_of) for e in events]
        links = seal(self._head, entries)
        self._links.extend(links)
        for link, event in zip(links, events, strict=True):
            for subject in subjects_of(event.kind, event.data):
                self._about.setdefault(subject, []).append(link.seq)
        self._head = head_of(links, self._head)
        # Yield once, as a database store would, so callers cannot come to rely on append
        # completing without a suspension point.
        await asyncio.sleep(0)
        return links

    async def records(self, *, after_seq: int = 0, limit: int = 10000) -> list[StoredRecord]:
        return [record_of(link) for link in await self.links(after_seq=after_seq, limit=limit)]

    async def links(self, *, after_seq: int = 0, limit: int = 10000) -> list[Link]:
        self._open()
        # Seqs are 1..n at positions 0..n-1.
        start = max(after_seq, 0)
        return self._links[start : start + max(limit, 0)]

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
        self._open()
        check_find_keys(data_equals)
        wanted = set(kinds)
        since_us = None if since is None else round(since * 1_000_000)
        until_us = None if until is None else round(until * 1_000_000)
        out: list[StoredRecord] = []
        for link in self._links:
            if link.kind not in wanted:
                continue
            if since_us is not None and link.at_us < since_us:
                continue
            if until_us is not None and link.at_us >= until_us:
                continue
            if subject is not None and link.facets.subject != subject:
                continue
            if data_equals:
                data = msgspec.json.decode(link.data)
                if any(data.get(k) != v for k, v in data_equals.items()):
                    continue
            out.append(record_of(link))
        if last is None:
            return out
        out.sort(key=lambda r: (r.at, r.seq))
        return out[len(out) - min(max(last, 0), len(out)) :]

    async def records_about(self, subject: str, *, limit: int = 10000) -> list[StoredRecord]:
        self._open()
        seqs = self._about.get(subject, [])[: max(limit, 0)]
        return [record_of(self._links[seq - 1]) for seq in seqs]

    async def reindex(self, progress: Progress | None = None) -> int:
        self._open()
        about: dict[str, list[int]] = {}
        for link in self._links:
            for subject in subjects_of_text(link.kind, link.data):
                about.setdefault(subject, []).append(link.seq)
        self._about = about
        if progress is not None:
            progress(len(self._links))
        return len(self._links)

    async def reindex_state(self) -> ReindexState:
        # Nothing in memory predates its index.
        self._open()
        return ReindexState(0, 0)

    async def reindex_batch(
        self, *, node: str, now: float, lease_s: float, limit: int = REINDEX_STEP
    ) -> ReindexState:
        self._open()
        return ReindexState(0, 0)

    async def count(self) -> int:
        self._open()
        return len(self._links)

    async def head(self) -> Head:
        self._open()
        return self._head

    async def counts(self, query: StatsQuery) -> Counts:
        self._open()
        return reference_counts(((x.kind, x.at_us, x.facets) for x in self._links), query)

    async def add_checkpoint(self, checkpoint: Checkpoint) -> None:
        self._open()
        self._checkpoints.append(checkpoint)
        self._by_reason.setdefault(checkpoint.reason, []).append(checkpoint)
        self._highest = latest([cp for cp in (self._highest, checkpoint) if cp is not None])
        await asyncio.sleep(0)

    async def checkpoints(self) -> list[Checkpoint]:
        self._open()
        self.checkpoint_rows_read += len(self._checkpoints)
        return list(self._checkpoints)

    async def latest_checkpoints(self, reason: Reason, *, limit: int = 1) -> list[Checkpoint]:
        self._open()
        check_latest_limit(limit)
        found = self._by_reason.get(reason, [])[-limit:][::-1]
        self.checkpoint_rows_read += len(found)
        return found

    async def highest_checkpoint(self) -> Checkpoint | None:
        self._open()
        self.checkpoint_rows_read += self._highest is not None
        return self._highest

    async def close(self) -> None:
        self._closed = True


__all__ = ["MemoryTraceStore"]
