"""The chain check, full and incremental: `python -m bench.chain_check [--records N]`.

The console's chain check (`POST /api/trace/verify`) signs where it ended (a `verified`
checkpoint) and the next check reads only the records after it; `full=1` reads every record
from 1 (docs/trace.md, *The chain check from the console*). This measures both over a real
SQLite trace (a file in a temporary directory): `--records` (1,000,000) sign-ins written,
then a full check; `--added` (10,000) more written, then an incremental check from the
head the full check reached (what the console's next check does), and a full check again
for comparison.

Then the incremental check's start: `--checkpoints` (500,000, about a year of periodic
checkpoints, one `verified` a day among them) are written to the `checkpoints` table, and
finding the last check's signed position is timed as it was done before (the whole table
read, the last `verified` one picked in Python) and as it is now (`latest_checkpoints`, one
row from the (reason, id) index), with the rows each read.

`--backend postgres` runs it all on PostgreSQL (`--postgres-dsn`, a schema of its own,
dropped afterwards) instead of a SQLite file.

Prints one JSON line per phase; the LAST line is the summary with the goals and whether
they were met, and `contended` when other processes took more than 20% of a core meanwhile.

Goals: the incremental check after 10,000 new records under 2 s, whatever the trace's size;
its start found among the checkpoints in under 50 ms, whatever the table's size.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import sqlite3
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Final

import asyncpg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bench._common import MachineMeter, emit
from sessions.checkpoint import Checkpoint, last_verified, sign
from sessions.durable import verify_store
from sessions.facets import SIGN_IN
from sessions.postgres_store import PostgresTraceStore
from sessions.recorder import TraceEvent
from sessions.sqlite_store import SqliteTraceStore
from sessions.store import TraceStore
from sessions.trace import GENESIS, Head

GOAL_S: Final = 2.0
CHECKPOINT_GOAL_S: Final = 0.05
# A periodic checkpoint a minute; a chain check (a `verified` one) a day.
CHECKPOINTS_A_DAY: Final = 1440
# Reads of the latest `verified` checkpoint timed: the first, and the best of them.
REPEATS: Final = 5
PG_DSN: Final = "postgresql://postgres@127.0.0.1:5432/test"
# Where write_checkpoints finds the table: a SQLite file, or a PostgreSQL DSN and schema.
Target = Path | tuple[str, str]
_CHECKPOINT_COLUMNS: Final = (
    "seq",
    "hash",
    "at_us",
    "node",
    "reason",
    "key_id",
    "signature",
    "tsa_token",
)
CONTENDED_PCT: Final = 20.0
T0: Final = 1_780_000_000.0
BATCH: Final = 5000


def sign_in(n: int) -> TraceEvent:
    """A `sign_in` record as the hub writes it (signalling/core/facts.py)."""
    return TraceEvent(
        SIGN_IN,
        T0 + n / 100,
        {
            "user": f"o-{n % 5000:04d}",
            "name": f"警员 {n % 5000}",
            "role": "officer",
            "court": "P0101",
            "session": f"s-{n:016x}",
            "device": "phone",
            "app_version": "1.0",
            "node": "bench",
        },
    )


async def fill(store: TraceStore, first: int, count: int) -> None:
    for start in range(first, first + count, BATCH):
        await store.append_links(
            [sign_in(n) for n in range(start, min(start + BATCH, first + count))]
        )


async def timed_check(store: TraceStore, start: Head) -> tuple[float, int, bool]:
    started = time.perf_counter()
    result = await verify_store(store, start=start)
    return time.perf_counter() - started, result.records - start.seq, result.ok


def checkpoint_rows(key: Ed25519PrivateKey, head: Head, count: int) -> list[tuple[Any, ...]]:
    """`count` checkpoint rows as the server writes them: periodic, a `verified` one each
    day, the last `verified` one a day before the end (so a walk back from the end meets
    a day of periodic ones first). Two signed rows copied: signing 500,000 would time the
    key, not the table."""
    periodic = sign(key, head, now=T0, node="bench", reason="periodic")
    verified = sign(key, head, now=T0, node="bench", reason="verified")

    def row(cp: Checkpoint) -> tuple[Any, ...]:
        return tuple(getattr(cp, column) for column in _CHECKPOINT_COLUMNS)

    rows = [row(periodic)] * count
    for i in range(CHECKPOINTS_A_DAY - 1, count - CHECKPOINTS_A_DAY, CHECKPOINTS_A_DAY):
        rows[i] = row(verified)
    return rows


async def write_checkpoints(target: Target, rows: list[tuple[Any, ...]]) -> None:
    """Straight into the table (a SQLite file, or a PostgreSQL DSN and schema): one
    transaction, not 500,000 durable commits."""
    columns = ", ".join(_CHECKPOINT_COLUMNS)
    if isinstance(target, Path):

        def insert() -> None:
            with contextlib.closing(sqlite3.connect(target)) as db, db:
                marks = ", ".join("?" * len(_CHECKPOINT_COLUMNS))
                db.executemany(f"INSERT INTO checkpoints ({columns}) VALUES ({marks})", rows)

        await asyncio.to_thread(insert)
        return
    dsn, schema = target
    conn = await asyncpg.connect(dsn)
    try:
        await conn.copy_records_to_table(
            "checkpoints", schema_name=schema, columns=_CHECKPOINT_COLUMNS, records=rows
        )
    finally:
        await conn.close()


async def checkpoint_read(store: TraceStore, target: Target, count: int) -> dict[str, Any]:
    """The incremental check's start among `count` checkpoints, found the old way (every
    row read, the last `verified` one picked) and the new one (the latest `verified` row)."""
    key = Ed25519PrivateKey.generate()
    rows = checkpoint_rows(key, await store.head(), count)
    started = time.monotonic()
    await write_checkpoints(target, rows)
    written_s = time.monotonic() - started
    public = key.public_key()

    # The new way first, and again: before the old way's 500,000 objects are alive for the
    # garbage collector to walk (its pauses would be timed, not the read).
    read = store.checkpoint_rows_read
    times = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        after = last_verified(await store.latest_checkpoints("verified"), public)
        times.append(time.perf_counter() - started)
    after_s = times[0]
    after_rows = (store.checkpoint_rows_read - read) // REPEATS

    read = store.checkpoint_rows_read
    started = time.perf_counter()
    everything = await store.checkpoints()
    before = last_verified(everything[::-1], public)
    before_s = time.perf_counter() - started
    before_rows = store.checkpoint_rows_read - read
    return {
        "phase": "checkpoint_read",
        "checkpoints": len(everything),
        "written_s": round(written_s, 1),
        "same": before is not None and before == after,
        "before_s": round(before_s, 4),
        "before_rows": before_rows,
        "after_s": round(after_s, 4),
        "after_best_s": round(min(times), 4),
        "after_rows": after_rows,
    }


@contextlib.asynccontextmanager
async def opened(args: argparse.Namespace) -> AsyncIterator[tuple[TraceStore, Target]]:
    """The store the benchmark runs on, and where write_checkpoints finds its table."""
    if args.backend == "postgres":
        schema = f"bench_chain_{secrets.token_hex(4)}"
        pg = await PostgresTraceStore.open(args.postgres_dsn, schema=schema)
        try:
            yield pg, (args.postgres_dsn, schema)
        finally:
            await pg.close()
            conn = await asyncpg.connect(args.postgres_dsn)
            try:
                await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            finally:
                await conn.close()
        return
    with tempfile.TemporaryDirectory(prefix="cc-bench-chain-") as tmp:
        path = Path(tmp) / "trace.sqlite3"
        sq = await SqliteTraceStore.open(path)
        try:
            yield sq, path
        finally:
            await sq.close()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    async with opened(args) as (store, target):
        started = time.monotonic()
        await fill(store, 0, args.records)
        emit({"phase": "load", "records": args.records, "s": round(time.monotonic() - started, 1)})
        meter = MachineMeter([os.getpid()])
        meter.start()
        full_s, full_n, full_ok = await timed_check(store, GENESIS)
        emit({"phase": "full", "checked": full_n, "ok": full_ok, "s": round(full_s, 3)})
        remembered = await store.head()
        await fill(store, args.records, args.added)
        inc_s, inc_n, inc_ok = await timed_check(store, remembered)
        emit(
            {
                "phase": "incremental",
                "from_seq": remembered.seq,
                "checked": inc_n,
                "ok": inc_ok,
                "s": round(inc_s, 3),
            }
        )
        again_s, again_n, again_ok = await timed_check(store, GENESIS)
        emit({"phase": "full_again", "checked": again_n, "ok": again_ok, "s": round(again_s, 3)})
        start = await checkpoint_read(store, target, args.checkpoints)
        emit(start)
        machine = meter.stop()
    others = machine.get("others_cpu_pct", 0.0)
    ok = full_ok and inc_ok and again_ok and inc_n == args.added and start["same"]
    return {
        "phase": "summary",
        "backend": args.backend,
        "records": args.records,
        "added": args.added,
        "full_s": round(full_s, 3),
        "full_records_per_s": round(full_n / full_s) if full_s else None,
        "incremental_s": round(inc_s, 3),
        "full_again_s": round(again_s, 3),
        "speedup": round(again_s / inc_s, 1) if inc_s else None,
        "checkpoints": start["checkpoints"],
        "checkpoint_read_before_s": start["before_s"],
        "checkpoint_read_after_s": start["after_s"],
        "checkpoint_rows_before": start["before_rows"],
        "checkpoint_rows_after": start["after_rows"],
        "all_intact": ok,
        "goal_s": GOAL_S,
        "checkpoint_goal_s": CHECKPOINT_GOAL_S,
        "goal_met": ok and inc_s < GOAL_S and start["after_s"] < CHECKPOINT_GOAL_S,
        "others_cpu_pct": others,
        "contended": others > CONTENDED_PCT,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=1_000_000, help="records before")
    parser.add_argument("--added", type=int, default=10_000, help="records added after")
    parser.add_argument(
        "--checkpoints", type=int, default=500_000, help="checkpoint rows for the start"
    )
    parser.add_argument("--backend", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--postgres-dsn", default=PG_DSN, help="for --backend postgres")
    args = parser.parse_args()
    if args.records < 1 or args.added < 1:
        parser.error("--records and --added must be at least 1")
    if args.checkpoints < 2 * CHECKPOINTS_A_DAY:
        parser.error(f"--checkpoints must be at least {2 * CHECKPOINTS_A_DAY} (two days)")
    summary = asyncio.run(run(args))
    emit(summary)
    return 0 if summary["goal_met"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
