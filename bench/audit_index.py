"""Audit views by the subject index: `python -m bench.audit_index [--quick] [options]`.

A conference's audit view (`GET /api/conferences/<id>/audit`) reads every record of one
conference. With the trace's subject index (sessions/subjects.py) that is one index range
(`TraceStore.records_about`); without it, a scan of every record of the conference kinds
for the ones naming it (`TraceStore.find(kinds=..., data_equals={"conference": id})`, what
the views did before). Builds a trace (SQLite in a temporary directory, or with
`--postgres DSN` a schema of its own there, dropped afterwards) of `--records` (200,000)
records: conferences of about 100 records each (created, started, sites joining, asking for
and given the floor, leaving, ended), fifty running at once so each one's records are
scattered; then reads `--reads` (20) conferences' trails both ways, checks they are the same
records, and prints one JSON line per phase, the LAST the summary.

Goal: one audit read by the index under 50 ms (median) at 200,000 records.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import secrets
import statistics
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Final

import asyncpg

from bench._common import emit
from sessions.postgres_store import PostgresTraceStore
from sessions.recorder import TraceEvent
from sessions.sqlite_store import SqliteTraceStore
from sessions.store import TraceStore
from sessions.subjects import CONFERENCE, CONFERENCE_KINDS, subject

GOAL_MS: Final = 50.0
T0: Final = 1_780_000_000.0
PER_CONFERENCE: Final = 100
AT_ONCE: Final = 50
BATCH: Final = 5000


def conference_events(cid: str, at: float) -> list[TraceEvent]:
    """About PER_CONFERENCE records of one conference, as the hub writes them."""
    d: dict[str, Any] = {"conference": cid}
    out = [
        TraceEvent("conference_created", at, {**d, "court": "P01", "host": "s1", "title": cid}),
        TraceEvent(
            "conference_started", at, {**d, "court": "P01", "host": "s1", "kind": "meeting"}
        ),
    ]
    for i in range(32):
        out.append(TraceEvent("site_joined", at, {**d, "user": f"op{i}", "court": "P0101"}))
    for i in range(32):
        out.append(TraceEvent("floor_requested", at, {**d, "user": f"op{i}"}))
    for i in range(16):
        out.append(TraceEvent("floor_granted", at, {**d, "user": f"op{i}", "by": "s1"}))
    for i in range(PER_CONFERENCE - len(out) - 1):
        out.append(TraceEvent("site_left", at, {**d, "user": f"op{i}", "reason": "left"}))
    out.append(TraceEvent("conference_ended", at, {**d, "court": "P01", "reason": "ended"}))
    return out


def workload(records: int) -> tuple[list[TraceEvent], list[str]]:
    """Conferences interleaved AT_ONCE at a time, in time order."""
    n = max(1, records // PER_CONFERENCE)
    ids = [f"k-{i:06d}" for i in range(n)]
    events: list[TraceEvent] = []
    for start in range(0, n, AT_ONCE):
        group = [conference_events(cid, T0 + start) for cid in ids[start : start + AT_ONCE]]
        for step in range(PER_CONFERENCE):
            events.extend(g[step] for g in group)
    return events[:records], ids


@contextlib.asynccontextmanager
async def opened(postgres: str | None) -> AsyncIterator[TraceStore]:
    if postgres is None:
        with tempfile.TemporaryDirectory(prefix="cc-bench-audit-") as tmp:
            store = await SqliteTraceStore.open(Path(tmp) / "trace.sqlite3")
            try:
                yield store
            finally:
                await store.close()
        return
    schema = f"bench_{secrets.token_hex(5)}"
    pg = await PostgresTraceStore.open(postgres, schema=schema)
    try:
        yield pg
    finally:
        await pg.close()
        conn = await asyncpg.connect(postgres)
        try:
            await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
        finally:
            await conn.close()


async def reads(store: TraceStore, ids: list[str], indexed: bool) -> tuple[list[float], list[int]]:
    """Milliseconds per audit read, and how many records each found."""
    times, sizes = [], []
    kinds = sorted(CONFERENCE_KINDS)
    for cid in ids:
        started = time.perf_counter()
        if indexed:
            found = await store.records_about(subject(CONFERENCE, cid))
        else:
            found = await store.find(kinds=kinds, data_equals={"conference": cid})
        times.append((time.perf_counter() - started) * 1000)
        sizes.append(len(found))
    return times, sizes


async def run(args: argparse.Namespace) -> dict[str, Any]:
    backend = "sqlite" if args.postgres is None else "postgres"
    async with opened(args.postgres) as store:
        started = time.monotonic()
        events, ids = workload(args.records)
        for start in range(0, len(events), BATCH):
            await store.append(events[start : start + BATCH])
        if isinstance(store, PostgresTraceStore):
            await store.vacuum()
        emit(
            {
                "phase": "load",
                "backend": backend,
                "records": await store.count(),
                "conferences": len(ids),
                "s": round(time.monotonic() - started, 1),
            }
        )
        chosen = random.Random(7).sample(ids, min(args.reads, len(ids)))
        with_index, sizes = await reads(store, chosen, indexed=True)
        emit(
            {
                "phase": "read_indexed",
                "reads": len(chosen),
                "median_ms": round(statistics.median(with_index), 3),
                "max_ms": round(max(with_index), 3),
            }
        )
        scanned, scanned_sizes = await reads(store, chosen, indexed=False)
        emit(
            {
                "phase": "read_scanning",
                "reads": len(chosen),
                "median_ms": round(statistics.median(scanned), 3),
                "max_ms": round(max(scanned), 3),
            }
        )
        if sizes != scanned_sizes:
            raise RuntimeError(f"the index and the scan disagree: {sizes} != {scanned_sizes}")
        records = await store.count()
    median = statistics.median(with_index)
    return {
        "phase": "summary",
        "backend": backend,
        "records": records,
        "records_per_audit": round(statistics.mean(sizes), 1),
        "with_index_median_ms": round(median, 3),
        "without_index_median_ms": round(statistics.median(scanned), 3),
        "speedup": round(statistics.median(scanned) / max(median, 1e-6), 1),
        "goal_ms": GOAL_MS,
        "goal_met": median < GOAL_MS,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="20,000 records, 5 reads")
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--reads", type=int, default=20)
    parser.add_argument(
        "--postgres", metavar="DSN", help="run on PostgreSQL (a schema of its own) at DSN"
    )
    args = parser.parse_args()
    if args.quick:
        args.records, args.reads = 20_000, 5
    summary = asyncio.run(run(args))
    emit(summary)
    return 0 if summary["goal_met"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
