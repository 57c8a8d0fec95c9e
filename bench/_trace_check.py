"""What the trace must hold after a soak or chaos run, checked against what the clients saw.

`check` is pure: the trace's records (kind, time, data) and what the clients reported in,
a verdict out. `read_trace` reads a store (SQLite file or PostgreSQL schema) and verifies
its chain (`sessions.durable.verify_store`).

- Every call a client saw answered has its `call_created`, `call_answered` and
  `call_ended` records (`calls_missing`: each one missing is an event lost).
- Every call in the trace ended (`calls_unended`), and after a clean stop every session
  opened (`sign_in`, `session_continued`, `session_adopted`) has exactly one `sign_out`
  (`sessions_unsigned`, `sessions_signed_out_twice`).
- Silent stalls (`stalls`): windows of `STALL_WINDOW_S` in which clients placed calls and
  none was answered, found from the clients' call list. A stall during which no client saw
  an error or a close is *silent*: nobody could have known anything was wrong.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from sessions.durable import verify_store
from sessions.postgres_store import PostgresTraceStore
from sessions.sqlite_store import SqliteTraceStore
from sessions.store import TraceStore

STALL_WINDOW_S: Final = 10.0
# A window is a stall when at least this many calls were placed in it and none answered.
STALL_MIN_CALLS: Final = 3
OPENS: Final = ("sign_in", "session_continued", "session_adopted")
PAGE: Final = 20000


@dataclass(frozen=True)
class TraceRecord:
    kind: str
    at: float
    data: Mapping[str, Any]


@dataclass(frozen=True)
class ClientCall:
    """One call as the clients saw it (wall-clock seconds)."""

    placed_at: float
    call_id: str | None
    answered: bool
    end: str | None
    ended_at: float | None


def calls_of(rows: Iterable[Sequence[Any]]) -> list[ClientCall]:
    """The clients' call rows (`bench._soak_clients.Soak.drain`) as `ClientCall`s."""
    return [ClientCall(float(r[0]), r[1], bool(r[2]), r[3], r[4]) for r in rows]


def stalls(
    calls: Sequence[ClientCall],
    noticed_at: Sequence[float],
    window_s: float = STALL_WINDOW_S,
) -> list[dict[str, Any]]:
    """Windows where calls were placed and none of them was answered, merged when they
    touch; `silent` when no client saw an error or a close (`noticed_at`) meanwhile."""
    if not calls:
        return []
    t0 = min(c.placed_at for c in calls)
    placed: Counter[int] = Counter()
    answered: Counter[int] = Counter()
    for c in calls:
        w = math.floor((c.placed_at - t0) / window_s)
        placed[w] += 1
        if c.answered:
            answered[w] += 1
    bad = sorted(w for w, n in placed.items() if n >= STALL_MIN_CALLS and answered[w] == 0)
    runs: list[list[int]] = []
    for w in bad:
        if runs and runs[-1][-1] == w - 1:
            runs[-1].append(w)
        else:
            runs.append([w])
    out: list[dict[str, Any]] = []
    for run in runs:
        start = t0 + run[0] * window_s
        end = t0 + (run[-1] + 1) * window_s
        noticed = sum(1 for t in noticed_at if start <= t < end)
        out.append(
            {
                "start": round(start, 1),
                "seconds": round(end - start, 1),
                "calls": sum(placed[w] for w in run),
                "client_errors": noticed,
                "silent": noticed == 0,
            }
        )
    return out


def check(
    records: Sequence[TraceRecord],
    calls: Sequence[ClientCall],
    noticed_at: Sequence[float],
    *,
    clean_stop: bool = True,
) -> dict[str, Any]:
    """The trace against the clients' calls; see the module doc."""
    created: set[str] = set()
    answered: set[str] = set()
    ended: set[str] = set()
    opened: set[str] = set()
    signed_out: Counter[str] = Counter()
    for r in records:
        match r.kind:
            case "call_created":
                created.add(str(r.data.get("call")))
            case "call_answered":
                answered.add(str(r.data.get("call")))
            case "call_ended":
                ended.add(str(r.data.get("call")))
            case "sign_out":
                signed_out[str(r.data.get("session"))] += 1
            case kind if kind in OPENS:
                opened.add(str(r.data.get("session")))
    seen_answered = [c.call_id for c in calls if c.answered and c.call_id is not None]
    missing = [
        cid
        for cid in seen_answered
        if cid not in created or cid not in answered or cid not in ended
    ]
    unended = sorted(created - ended)
    unsigned = sorted(opened - set(signed_out)) if clean_stop else []
    # What the trace says of the first few unsigned sessions, to tell why.
    samples = set(unsigned[:5])
    unsigned_records: dict[str, list[str]] = {s: [] for s in samples}
    for r in records:
        session = str(r.data.get("session"))
        if session in samples:
            unsigned_records[session].append(
                f"{r.kind} {r.data.get('user')} node={r.data.get('node')} at={r.at:.1f}"
            )
    twice = sorted(s for s, n in signed_out.items() if n > 1)
    found = stalls(calls, noticed_at)
    return {
        "calls_seen_answered": len(seen_answered),
        "calls_missing": len(missing),
        "calls_missing_samples": missing[:5],
        "calls_unended": len(unended),
        "calls_unended_samples": unended[:5],
        "sessions_opened": len(opened),
        "sessions_unsigned": len(unsigned),
        "sessions_unsigned_samples": unsigned_records,
        "sessions_signed_out_twice": len(twice),
        "stalls": found,
        "silent_stalls": sum(1 for s in found if s["silent"]),
        "trace_consistent": not missing and not unended and not unsigned and not twice,
    }


def counts_between(
    records: Sequence[TraceRecord], start: float, end: float
) -> dict[str, dict[str, int]]:
    """What the trace holds for `[start, end)`: records by kind, and the reasons of the
    `call_ended` and `sign_out` records (the chaos report's "what the trace holds")."""
    kinds: Counter[str] = Counter()
    call_ends: Counter[str] = Counter()
    sign_outs: Counter[str] = Counter()
    for r in records:
        if not start <= r.at < end:
            continue
        kinds[r.kind] += 1
        if r.kind == "call_ended":
            call_ends[str(r.data.get("reason"))] += 1
        elif r.kind == "sign_out":
            sign_outs[str(r.data.get("reason"))] += 1
    return {
        "records": dict(kinds),
        "call_ended_by_reason": dict(call_ends),
        "sign_out_by_reason": dict(sign_outs),
    }


async def read_trace(
    *, sqlite_path: Path | None = None, dsn: str = "", schema: str = ""
) -> tuple[list[TraceRecord], dict[str, Any]]:
    """Every record of the trace (positions left out: they are most of it and nothing here
    looks at them), and its chain verified."""
    store: TraceStore
    if sqlite_path is not None:
        store = await SqliteTraceStore.open(sqlite_path, readonly=True)
    else:
        store = await PostgresTraceStore.open(dsn, schema=schema, readonly=True)
    try:
        verdict = await verify_store(store)
        out: list[TraceRecord] = []
        after = 0
        total = 0
        while True:
            page = await store.records(after_seq=after, limit=PAGE)
            if not page:
                break
            total += len(page)
            after = page[-1].seq
            out.extend(TraceRecord(r.kind, r.at, r.data) for r in page if r.kind != "position")
    finally:
        await store.close()
    audit = {
        "audit_ok": verdict.ok,
        "records": total,
        "problem": None if verdict.tampering is None else verdict.tampering.message(),
    }
    return out, audit


__all__ = [
    "ClientCall",
    "TraceRecord",
    "calls_of",
    "check",
    "counts_between",
    "read_trace",
    "stalls",
]
