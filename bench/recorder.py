"""Session recorder benchmark: `python -m bench.recorder [--quick] [options]`.

Prints one JSON line per phase; the LAST line is the summary, with the issue's goals and a
pass/fail for each. Runs against SQLite (a file in a temporary directory) and PostgreSQL
(`--postgres-dsn`, a schema of its own, dropped afterwards; `--no-postgres` skips it).

Phases, per backend:

- `append`: `--writers` (100) tasks each append one event at a time and wait for it to be
  committed before the next, as a hub waits before telling a client, for `--duration` s
  (5); then again with ten times the writers, to show how group commit scales. Every event
  is durable when its append returns (SQLite: WAL with synchronous=FULL; PostgreSQL:
  synchronous_commit=on); the store commits whatever queued up meanwhile in one
  transaction. `events_per_s` = events committed / seconds, the first run's is the figure of
  record. The events are position samples and call transitions the size the hub writes
  (150-250 bytes of JSON). These run first, before the big trace below is in memory.
- `load`: a trace of `--events` (1,000,000) events shaped like DOMAIN.md's two months of one
  province, with exactly its figures (2,943 officers, 96,033 sign-ins, 836 cases, 2,738
  evidence items, 1,143 + 385 calls, 224 conferences), padded with position samples and the
  other records those facts come with (sign-outs, operators' sign-ins, every call
  transition, evidence reads, conference ends), appended in batches of 5,000.
- `stats`: the statistics over that trace: the whole period over every court (must give
  DOMAIN.md's table exactly: `figures_match_domain`), the same for one intermediate court and
  its basic courts, and one day. Each query is run `--repeat` (5) times; `stats_ms` is the
  median of the slowest query.
- `verify`: `audit verify`'s reading and hashing of the whole trace, records per second.

Goals (the issue's): 10,000 events/s appended durably on SQLite; statistics over 1,000,000
events under 200 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import gc
import random
import secrets
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import asyncpg

from bench._common import BenchError, emit
from commandcenter.auth import Courts
from commandcenter.config import Config
from sessions.durable import statistics_report, verify_store
from sessions.postgres_store import PostgresTraceStore
from sessions.recorder import TraceEvent
from sessions.sqlite_store import SqliteTraceStore
from sessions.statistics import Period
from sessions.store import TraceStore

GOAL_SQLITE_EVENTS_PER_S: Final = 10_000
GOAL_STATS_MS: Final = 200.0
DEFAULT_DSN: Final = "postgresql://postgres@127.0.0.1:5432/test"

# DOMAIN.md's table: what the loaded trace must give back.
DOMAIN: Final = {
    "officers_signed_in": 2943,
    "sign_ins": 96033,
    "cases_with_evidence": 836,
    "evidence_items": 2738,
    "command_connections": 1528,
    "officer_calls": 1143,
    "center_calls": 385,
    "conferences": 224,
}
START: Final = 1_767_225_600.0  # 2026-01-01T00:00:00Z
DAYS: Final = 61
BATCH: Final = 5000


@dataclass(frozen=True)
class Settings:
    quick: bool
    writers: int
    duration: float
    events: int
    repeat: int
    postgres_dsn: str | None


def parse_args(argv: Sequence[str] | None) -> Settings:
    p = argparse.ArgumentParser(
        prog="python -m bench.recorder",
        description="Benchmark the trace stores; prints JSON lines, the last a summary.",
    )
    p.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    p.add_argument("--writers", type=int, default=100, help="concurrent appenders (100)")
    p.add_argument("--duration", type=float, help="seconds of appending (5; quick 1)")
    p.add_argument("--events", type=int, help="events in the statistics trace (1000000)")
    p.add_argument("--repeat", type=int, default=5, help="runs of each statistics query")
    p.add_argument("--postgres-dsn", default=DEFAULT_DSN, help=f"default {DEFAULT_DSN}")
    p.add_argument("--no-postgres", action="store_true", help="SQLite only")
    a = p.parse_args(argv)
    return Settings(
        quick=a.quick,
        writers=a.writers,
        duration=a.duration if a.duration is not None else (1.0 if a.quick else 5.0),
        events=a.events if a.events is not None else (300_000 if a.quick else 1_000_000),
        repeat=a.repeat,
        postgres_dsn=None if a.no_postgres else a.postgres_dsn,
    )


# --- the workloads -----------------------------------------------------------------------

COURTS: Final = ("P0101", "P0102", "P0201", "P01", "P02", "P")


def hub_event(i: int, now: float) -> TraceEvent:
    """A record of the size the hub writes: mostly positions, some call transitions."""
    if i % 4:
        return TraceEvent(
            "position",
            now,
            {
                "user": f"o{i % 3000}",
                "court": COURTS[i % 3],
                "lat": 30.0 + (i % 997) / 1000,
                "lon": 120.0 + (i % 991) / 1000,
                "accuracy_m": 8.0,
                "device_time": 1.7e12 + i,
                "clock_offset_ms": -12.5,
            },
        )
    return TraceEvent(
        "call_ended",
        now,
        {
            "call": f"c-{i:016x}",
            "reason": "hangup",
            "by": "op1",
            "direction": "officer_to_center",
            "court": "P0101",
            "officer": f"o{i % 3000}",
            "operator": "op1",
            "answered": True,
            "emergency": False,
            "case_number": "(2026)P0101-12",
            "monitored_by": [],
        },
    )


def domain_trace(total: int, seed: int = 7) -> list[TraceEvent]:
    """DOMAIN.md's two months, exactly its figures, padded with positions to `total`."""
    rng = random.Random(seed)
    span = DAYS * 86400.0
    out: list[tuple[float, TraceEvent]] = []

    def at() -> float:
        return START + rng.random() * span

    officers = [(f"o{i}", COURTS[i % 3]) for i in range(DOMAIN["officers_signed_in"])]
    for n in range(DOMAIN["sign_ins"]):
        user, court = officers[n] if n < len(officers) else rng.choice(officers)
        t = at()
        session = {"user": user, "role": "officer", "court": court, "session": f"s{n}"}
        out.append((t, TraceEvent("sign_in", t, {**session, "device": "d", "app_version": "2"})))
        out.append((t + 3600, TraceEvent("sign_out", t + 3600, {**session, "reason": "closed"})))
    for n in range(5000):
        t = at()
        out.append((t, TraceEvent("sign_in", t, {"user": f"op{n % 40}", "role": "operator"})))
    calls = [("officer_to_center", n) for n in range(DOMAIN["officer_calls"])]
    calls += [("center_to_officer", n) for n in range(DOMAIN["center_calls"])]
    for direction, n in calls:
        t = at()
        call = f"c-{direction[0]}{n}"
        user, court = rng.choice(officers)
        answered = rng.random() < 0.9
        out.append(
            (
                t,
                TraceEvent(
                    "call_created",
                    t,
                    {"call": call, "direction": direction, "officer": user, "court": court},
                ),
            )
        )
        out.append((t, TraceEvent("call_ringing", t, {"call": call, "users": ["op1", "op2"]})))
        if answered:
            out.append((t + 4, TraceEvent("call_answered", t + 4, {"call": call, "by": "op1"})))
        reason = "hangup" if answered else "missed"
        end = {"call": call, "reason": reason, "court": court, "answered": answered}
        out.append((t + 90, TraceEvent("call_ended", t + 90, end)))
    cases = [f"({2026})P-{n}" for n in range(DOMAIN["cases_with_evidence"])]
    for n in range(DOMAIN["evidence_items"]):
        t = at()
        case = cases[n] if n < len(cases) else rng.choice(cases)
        data = {"evidence_id": f"ev-{n}", "case_number": case, "court": COURTS[n % 3]}
        out.append((t, TraceEvent("evidence_stored", t, data)))
        out.append((t + 60, TraceEvent("evidence_read", t + 60, {"evidence_id": f"ev-{n}"})))
    for n in range(DOMAIN["conferences"]):
        t = at()
        out.append((t, TraceEvent("conference_started", t, {"conference": f"m{n}", "court": "P"})))
        out.append((t + 1800, TraceEvent("conference_ended", t + 1800, {"conference": f"m{n}"})))
    i = 0
    while len(out) < total:
        t = at()
        out.append((t, hub_event(4 * i + 1, t)))
        i += 1
    out.sort(key=lambda pair: pair[0])
    # The sign-outs an hour after a sign-in near the end fall outside the period; keep them.
    return [e for _, e in out[:total]]


# --- phases ------------------------------------------------------------------------------


async def append_phase(store: TraceStore, writers: int, duration: float) -> dict[str, Any]:
    deadline = time.perf_counter() + duration
    latencies: list[float] = []

    async def writer(w: int) -> int:
        n = 0
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            await store.append([hub_event(w * 1_000_000 + n, time.time())])
            latencies.append(time.perf_counter() - started)
            n += 1
        return n

    started = time.perf_counter()
    counts = await asyncio.gather(*(writer(w) for w in range(writers)))
    seconds = time.perf_counter() - started
    total = sum(counts)
    latencies.sort()
    return {
        "events": total,
        "seconds": round(seconds, 3),
        "events_per_s": round(total / seconds),
        "append_p50_ms": round(latencies[len(latencies) // 2] * 1000, 2),
        "append_p99_ms": round(latencies[int(len(latencies) * 0.99)] * 1000, 2),
    }


async def load_phase(store: TraceStore, events: list[TraceEvent]) -> dict[str, Any]:
    started = time.perf_counter()
    for i in range(0, len(events), BATCH):
        await store.append(events[i : i + BATCH])
    seconds = time.perf_counter() - started
    return {
        "events": len(events),
        "seconds": round(seconds, 1),
        "events_per_s": round(len(events) / seconds),
    }


async def timed(repeat: int, run: Callable[[], Awaitable[Any]]) -> tuple[float, Any]:
    times = []
    result = None
    for _ in range(repeat):
        started = time.perf_counter()
        result = await run()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), result


def moment(seconds: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, dt.UTC)


async def stats_phase(store: TraceStore, repeat: int, domain_shaped: bool) -> dict[str, Any]:
    courts = Courts(Config().courts)
    whole = Period(moment(START), moment(START + DAYS * 86400))
    day = Period(moment(START + 30 * 86400), moment(START + 31 * 86400))
    queries = {
        "all_courts": (whole, None),
        "court_P01": (whole, "P01"),
        "one_day": (day, None),
    }
    out: dict[str, Any] = {}
    figures: dict[str, Any] = {}
    for name, (period, court) in queries.items():

        async def run(period: Period = period, court: str | None = court) -> Any:
            return await statistics_report(store, courts, period, court)

        ms, report = await timed(repeat, run)
        out[f"{name}_ms"] = round(ms, 1)
        if name == "all_courts":
            figures = {f.name: f.value for f in report.figures}
    out["stats_ms"] = max(v for k, v in out.items() if k.endswith("_ms"))
    if domain_shaped:
        got = {k: figures[k] for k in DOMAIN}
        out["figures"] = got
        out["figures_match_domain"] = got == DOMAIN
    return out


async def verify_phase(store: TraceStore) -> dict[str, Any]:
    started = time.perf_counter()
    result = await verify_store(store)
    seconds = time.perf_counter() - started
    return {
        "ok": result.ok,
        "records": result.records,
        "seconds": round(seconds, 1),
        "records_per_s": round(result.records / seconds),
    }


# --- backends ----------------------------------------------------------------------------


class Bench:
    def __init__(self, settings: Settings, tmp: Path) -> None:
        self.s = settings
        self.tmp = tmp
        self.started = time.monotonic()
        self.results: dict[str, dict[str, Any]] = {}

    async def run(self) -> dict[str, Any]:
        backends = ["sqlite"] if self.s.postgres_dsn is None else ["sqlite", "postgres"]
        # Appends first, before the big trace exists: a server does not hold a million
        # events in memory, and the garbage collector walking them would slow everything.
        for backend in backends:
            await self.append(backend)
        started = time.perf_counter()
        trace = domain_trace(self.s.events)
        # Out of the collector's sight for the same reason: they are the benchmark's, not
        # the server's.
        gc.freeze()
        emit(
            {
                "phase": "generate",
                "events": len(trace),
                "seconds": round(time.perf_counter() - started, 1),
            }
        )
        for backend in backends:
            await self.statistics(backend, trace)
        return self.summary()

    async def open(
        self, backend: str, name: str
    ) -> tuple[TraceStore, Callable[[], Awaitable[None]]]:
        if backend == "sqlite":
            store: TraceStore = await SqliteTraceStore.open(self.tmp / f"{name}.sqlite3")

            async def nothing() -> None:
                return None

            return store, nothing
        dsn = self.s.postgres_dsn
        assert dsn is not None
        schema = f"bench_{name}_{secrets.token_hex(4)}"
        store = await PostgresTraceStore.open(dsn, schema=schema)

        async def drop() -> None:
            conn = await asyncpg.connect(dsn)
            try:
                await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            finally:
                await conn.close()

        return store, drop

    async def append(self, backend: str) -> None:
        result = self.results.setdefault(backend, {})
        for writers in (self.s.writers, 10 * self.s.writers):
            store, drop = await self.open(backend, "append")
            try:
                measured = await append_phase(store, writers, self.s.duration)
            finally:
                await store.close()
                await drop()
            emit({"phase": "append", "backend": backend, "writers": writers, **measured})
            # The figure of record is the first: each event waited for by its own writer.
            result.setdefault("append", measured)

    async def statistics(self, backend: str, trace: list[TraceEvent]) -> None:
        result = self.results[backend]
        store, drop = await self.open(backend, "stats")
        try:
            result["load"] = await load_phase(store, trace)
            emit({"phase": "load", "backend": backend, **result["load"]})
            if isinstance(store, PostgresTraceStore):
                # A long-lived database is vacuumed; a freshly loaded one would not use its
                # covering indexes without it.
                await store.vacuum()
            result["stats"] = await stats_phase(store, self.s.repeat, True)
            emit({"phase": "stats", "backend": backend, "events": len(trace), **result["stats"]})
            result["verify"] = await verify_phase(store)
            emit({"phase": "verify", "backend": backend, **result["verify"]})
        finally:
            await store.close()
            await drop()

    def summary(self) -> dict[str, Any]:
        events_per_s = {b: r["append"]["events_per_s"] for b, r in self.results.items()}
        stats_ms = {b: r["stats"]["stats_ms"] for b, r in self.results.items()}
        match = all(r["stats"]["figures_match_domain"] for r in self.results.values())
        goals = {
            "sqlite_durable_appends": {
                "goal": f"events_per_s.sqlite >= {GOAL_SQLITE_EVENTS_PER_S}",
                "pass": events_per_s["sqlite"] >= GOAL_SQLITE_EVENTS_PER_S,
            },
            "stats": {
                "goal": f"stats_ms < {GOAL_STATS_MS:g} over {self.s.events} events, every "
                "backend, figures equal to DOMAIN.md's table",
                "pass": self.s.events >= 1_000_000
                and all(ms < GOAL_STATS_MS for ms in stats_ms.values())
                and match,
            },
        }
        return {
            "phase": "summary",
            "quick": self.s.quick,
            "events_per_s": events_per_s,
            "stats_ms": stats_ms,
            "stats_events": self.s.events,
            "figures_match_domain": match,
            "load_events_per_s": {b: r["load"]["events_per_s"] for b, r in self.results.items()},
            "verify_records_per_s": {
                b: r["verify"]["records_per_s"] for b, r in self.results.items()
            },
            "goals": goals,
            "pass": all(g["pass"] for g in goals.values()),
            "seconds": round(time.monotonic() - self.started, 1),
        }


def main(argv: Sequence[str] | None = None) -> int:
    settings = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-recorder-") as tmp:
        bench = Bench(settings, Path(tmp))
        try:
            summary = asyncio.run(bench.run())
        except (BenchError, OSError, asyncpg.PostgresError) as exc:
            emit({"phase": "error", "error": f"{type(exc).__name__}: {exc}"})
            return 1
    emit(summary)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
