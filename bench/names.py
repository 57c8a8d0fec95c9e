"""Names of users who are not accounts: `python -m bench.names [--quick] [options]`.

The records views ask `GET /api/users/names` for up to 100 ids at a time; an id that is
not an account is named by the latest `sign_in` the trace holds of it
(`TraceStore.find(kinds=["sign_in"], subject=..., last=1)`, commandcenter/names_api.py). An
integration that reconnects all day leaves hundreds of thousands of sign-ins under one id,
so the lookup must read the end of the subject index, not every record of the subject.

Builds a SQLite trace (a file in a temporary directory) with `--busy` (200,000) sign-ins of
one integration id and `--users` (99) other ids with a few sign-ins each, then looks up one
request's worth of ids (the busy one and the others, 100) `--repeat` (20) times, and, for
comparison, the same lookups as the whole list of each id's sign-ins (what a lookup without
`last` reads). Prints one JSON line per phase; the LAST line is the summary with the goal
and whether it was met, and `contended` when other processes took more than 20% of a core
meanwhile (the figures of a shared machine are then noisy).

Goal: one names request's trace lookups (100 ids) under 50 ms, median, with 200,000
sign-ins under one of them.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Final

from bench._common import MachineMeter, emit
from sessions.facets import SIGN_IN
from sessions.recorder import TraceEvent
from sessions.sqlite_store import SqliteTraceStore

GOAL_MS: Final = 50.0
CONTENDED_PCT: Final = 20.0
BUSY_ID: Final = "int-bodycam-gateway"
T0: Final = 1_780_000_000.0
BATCH: Final = 5000


def sign_in(user: str, at: float, n: int) -> TraceEvent:
    """A `sign_in` record as the hub writes it (signalling/core/facts.py)."""
    return TraceEvent(
        SIGN_IN,
        at,
        {
            "user": user,
            "name": f"记录仪网关 {n}",
            "role": "officer",
            "court": "P0101",
            "session": f"s-{n:016x}",
            "device": "gateway",
            "app_version": "1.0",
            "node": "bench",
        },
    )


async def fill(store: SqliteTraceStore, busy: int, users: int) -> None:
    events = [sign_in(BUSY_ID, T0 + i, i) for i in range(busy)]
    events += [
        sign_in(f"o-{u:04d}", T0 + busy + u * 3 + k, k) for u in range(users) for k in range(3)
    ]
    for start in range(0, len(events), BATCH):
        await store.append(events[start : start + BATCH])


async def lookups(store: SqliteTraceStore, ids: list[str], repeat: int, last: bool) -> list[float]:
    """Milliseconds per round of lookups of every id in `ids`."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        for user in ids:
            if last:
                found = await store.find(kinds=[SIGN_IN], subject=user, last=1)
            else:
                found = (await store.find(kinds=[SIGN_IN], subject=user))[-1:]
            if not found:
                raise RuntimeError(f"no sign-in of {user}")
        times.append((time.perf_counter() - started) * 1000)
    return times


async def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="cc-bench-names-") as tmp:
        store = await SqliteTraceStore.open(Path(tmp) / "trace.sqlite3")
        try:
            started = time.monotonic()
            await fill(store, args.busy, args.users)
            emit(
                {
                    "phase": "load",
                    "records": await store.count(),
                    "s": round(time.monotonic() - started, 1),
                }
            )
            ids = [BUSY_ID] + [f"o-{u:04d}" for u in range(args.users)]
            meter = MachineMeter([os.getpid()])
            meter.start()
            with_last = await lookups(store, ids, args.repeat, last=True)
            machine = meter.stop()
            emit(
                {
                    "phase": "lookup_last",
                    "ids": len(ids),
                    "median_ms": round(statistics.median(with_last), 3),
                    "max_ms": round(max(with_last), 3),
                    "others_cpu_pct": machine.get("others_cpu_pct"),
                }
            )
            whole = await lookups(store, ids, max(1, args.repeat // 10), last=False)
            emit(
                {
                    "phase": "lookup_whole",
                    "ids": len(ids),
                    "median_ms": round(statistics.median(whole), 3),
                }
            )
        finally:
            await store.close()
    median = statistics.median(with_last)
    others = machine.get("others_cpu_pct", 0.0)
    return {
        "phase": "summary",
        "busy_sign_ins": args.busy,
        "ids_per_request": len(ids),
        "request_median_ms": round(median, 3),
        "without_last_median_ms": round(statistics.median(whole), 3),
        "goal_ms": GOAL_MS,
        "goal_met": median < GOAL_MS,
        "others_cpu_pct": others,
        "contended": others > CONTENDED_PCT,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="20,000 busy sign-ins, 5 rounds")
    parser.add_argument("--busy", type=int, default=200_000)
    parser.add_argument("--users", type=int, default=99)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    if args.quick:
        args.busy, args.repeat = 20_000, 5
    summary = asyncio.run(run(args))
    emit(summary)
    return 0 if summary["goal_met"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
