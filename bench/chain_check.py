"""The chain check, full and incremental: `python -m bench.chain_check [--records N]`.

The console's chain check (`POST /api/trace/verify`) signs where it ended (a `verified`
checkpoint) and the next check reads only the records after it; `full=1` reads every record
from 1 (docs/trace.md, *The chain check from the console*). This measures both over a real
SQLite trace (a file in a temporary directory): `--records` (1,000,000) sign-ins written,
then a full check; `--added` (10,000) more written, then an incremental check from the
head the full check reached (what the console's next check does), and a full check again
for comparison.

Prints one JSON line per phase; the LAST line is the summary with the goal and whether it
was met, and `contended` when other processes took more than 20% of a core meanwhile.

Goal: the incremental check after 10,000 new records under 2 s, whatever the trace's size.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Final

from bench._common import MachineMeter, emit
from sessions.durable import verify_store
from sessions.facets import SIGN_IN
from sessions.recorder import TraceEvent
from sessions.sqlite_store import SqliteTraceStore
from sessions.trace import GENESIS, Head

GOAL_S: Final = 2.0
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


async def fill(store: SqliteTraceStore, first: int, count: int) -> None:
    for start in range(first, first + count, BATCH):
        await store.append_links(
            [sign_in(n) for n in range(start, min(start + BATCH, first + count))]
        )


async def timed_check(store: SqliteTraceStore, start: Head) -> tuple[float, int, bool]:
    started = time.perf_counter()
    result = await verify_store(store, start=start)
    return time.perf_counter() - started, result.records - start.seq, result.ok


async def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="cc-bench-chain-") as tmp:
        store = await SqliteTraceStore.open(Path(tmp) / "trace.sqlite3")
        try:
            started = time.monotonic()
            await fill(store, 0, args.records)
            emit(
                {
                    "phase": "load",
                    "records": args.records,
                    "s": round(time.monotonic() - started, 1),
                }
            )
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
            emit(
                {"phase": "full_again", "checked": again_n, "ok": again_ok, "s": round(again_s, 3)}
            )
            machine = meter.stop()
        finally:
            await store.close()
    others = machine.get("others_cpu_pct", 0.0)
    ok = full_ok and inc_ok and again_ok and inc_n == args.added
    return {
        "phase": "summary",
        "records": args.records,
        "added": args.added,
        "full_s": round(full_s, 3),
        "full_records_per_s": round(full_n / full_s) if full_s else None,
        "incremental_s": round(inc_s, 3),
        "full_again_s": round(again_s, 3),
        "speedup": round(again_s / inc_s, 1) if inc_s else None,
        "all_intact": ok,
        "goal_s": GOAL_S,
        "goal_met": ok and inc_s < GOAL_S,
        "others_cpu_pct": others,
        "contended": others > CONTENDED_PCT,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=1_000_000, help="records before")
    parser.add_argument("--added", type=int, default=10_000, help="records added after")
    args = parser.parse_args()
    if args.records < 1 or args.added < 1:
        parser.error("--records and --added must be at least 1")
    summary = asyncio.run(run(args))
    emit(summary)
    return 0 if summary["goal_met"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
