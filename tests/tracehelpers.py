"""Helpers for the trace store tests: each backend (a SQLite file in tmp_path, or a schema of
its own in the real PostgreSQL on this machine, dropped afterwards), raw SQL to tamper with
what it stored, and a seeded random workload of recorded events."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import secrets
import sqlite3
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import asyncpg
import pytest

from commandcenter.config import Config, replace_section
from sessions.postgres_store import PostgresTraceStore
from sessions.recorder import TraceEvent
from sessions.sqlite_store import SqliteTraceStore
from sessions.store import TraceStore
from sessions.trace import Problem

# Not COMMANDCENTER_*: the config loader refuses unknown variables of that prefix.
PG_DSN = os.environ.get("TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test")

COURTS = ("P", "P01", "P02", "P0101", "P0102", "P0201")


class Backend(Protocol):
    name: str

    def configure(self, config: Config) -> Config:
        """`config` with its recorder section pointing at this backend's trace."""
        ...

    async def open(self, *, readonly: bool = False) -> TraceStore: ...

    async def sql(self, *statements: str) -> None:
        """Run raw statements, `{t}` standing for the trace table and `{c}` for the
        checkpoints table, in one transaction."""
        ...

    def writes_held(self) -> contextlib.AbstractAsyncContextManager[None]:
        """Hold the trace's write lock from another connection while inside: a store's
        writer blocks in its next commit until the block is left."""
        ...

    async def drop(self) -> None: ...


class SqliteBackend:
    name = "sqlite"

    def __init__(self, path: Path) -> None:
        self.path = path

    def configure(self, config: Config) -> Config:
        return replace_section(config, "recorder", backend="sqlite", sqlite_path=str(self.path))

    async def open(self, *, readonly: bool = False) -> TraceStore:
        return await SqliteTraceStore.open(self.path, readonly=readonly)

    async def sql(self, *statements: str) -> None:
        def run() -> None:
            conn = sqlite3.connect(self.path, isolation_level=None)
            try:
                conn.execute("PRAGMA busy_timeout = 10000")
                conn.execute("BEGIN IMMEDIATE")
                for statement in statements:
                    conn.execute(statement.replace("{t}", "trace").replace("{c}", "checkpoints"))
                conn.execute("COMMIT")
            finally:
                conn.close()

        await asyncio.to_thread(run)

    @contextlib.asynccontextmanager
    async def writes_held(self) -> AsyncIterator[None]:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            # SQLite's one write lock: the writer's BEGIN IMMEDIATE waits (busy_timeout) for it.
            await asyncio.to_thread(conn.execute, "BEGIN IMMEDIATE")
            yield
            conn.execute("ROLLBACK")
        finally:
            conn.close()

    async def drop(self) -> None:
        return None


class PostgresBackend:
    name = "postgres"

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.schema = f"t_{secrets.token_hex(6)}"

    def configure(self, config: Config) -> Config:
        return replace_section(
            config,
            "recorder",
            backend="postgres",
            postgres_dsn=self.dsn,
            postgres_schema=self.schema,
        )

    async def open(self, *, readonly: bool = False) -> TraceStore:
        return await PostgresTraceStore.open(self.dsn, schema=self.schema, readonly=readonly)

    async def sql(self, *statements: str) -> None:
        conn = await asyncpg.connect(self.dsn)
        try:
            async with conn.transaction():
                for statement in statements:
                    sql = statement.replace("{t}", f'"{self.schema}".trace')
                    await conn.execute(sql.replace("{c}", f'"{self.schema}".checkpoints'))
        finally:
            await conn.close()

    @contextlib.asynccontextmanager
    async def writes_held(self) -> AsyncIterator[None]:
        conn = await asyncpg.connect(self.dsn)
        try:
            async with conn.transaction():
                # The writer reads the head in every commit, which this lock blocks.
                await conn.execute(f'LOCK TABLE "{self.schema}".trace IN ACCESS EXCLUSIVE MODE')
                yield
        finally:
            await conn.close()

    async def drop(self) -> None:
        conn = await asyncpg.connect(self.dsn)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')
        finally:
            await conn.close()


_CHECKPOINT_COLUMNS = "seq, hash, at_us, node, reason, key_id, signature, tsa_token"


async def flood_checkpoints(backend: Backend, doublings: int = 12) -> None:
    """Copy the table's checkpoints other than `verified` ones onto its end `doublings`
    times, doubling them each time (4,096 times as many for 12): about three days of
    periodic checkpoints, added after every `verified` one, in one transaction."""
    copy = (
        f"INSERT INTO {{c}} ({_CHECKPOINT_COLUMNS}) SELECT {_CHECKPOINT_COLUMNS} FROM {{c}}"
        " WHERE reason <> 'verified' ORDER BY id"
    )
    await backend.sql(*[copy] * doublings)


def make_backend(name: str, tmp_path: Path) -> Backend:
    if name == "sqlite":
        return SqliteBackend(tmp_path / "trace.sqlite3")
    return PostgresBackend(PG_DSN)


# Raw SQL an insider might run on the table; `{t}` is the trace table. Negating seqs first
# keeps PostgreSQL's immediate unique checks happy while renumbering.
TAMPERING: dict[str, tuple[tuple[str, ...], int, Problem]] = {
    "edit data": (
        ('UPDATE {t} SET data = \'{"user":"someone else"}\' WHERE seq = 5',),
        5,
        "edited",
    ),
    "edit time": (("UPDATE {t} SET at_us = at_us + 1 WHERE seq = 5",), 5, "edited"),
    "edit kind": (("UPDATE {t} SET kind = 'sign_out' WHERE seq = 5",), 5, "edited"),
    "edit hash": (("UPDATE {t} SET hash = prev_hash WHERE seq = 5",), 5, "edited"),
    "edit derived court": (("UPDATE {t} SET court = 'P02' WHERE seq = 6",), 6, "edited"),
    "delete": (("DELETE FROM {t} WHERE seq = 5",), 5, "deleted"),
    "delete and renumber": (
        (
            "DELETE FROM {t} WHERE seq = 5",
            "UPDATE {t} SET seq = -seq WHERE seq > 5",
            "UPDATE {t} SET seq = -seq - 1 WHERE seq < 0",
        ),
        5,
        "deleted",
    ),
    "reorder": (
        (
            "UPDATE {t} SET seq = -5 WHERE seq = 5",
            "UPDATE {t} SET seq = 5 WHERE seq = 6",
            "UPDATE {t} SET seq = 6 WHERE seq = -5",
        ),
        5,
        "reordered",
    ),
    "insert": (
        (
            "UPDATE {t} SET seq = -seq WHERE seq >= 5",
            "UPDATE {t} SET seq = -seq + 1 WHERE seq < 0",
            "INSERT INTO {t} (seq, at_us, kind, data, prev_hash, hash)"
            " SELECT 5, at_us, kind, data, hash, hash FROM {t} WHERE seq = 4",
        ),
        5,
        "inserted",
    ),
}


# --- a random workload -------------------------------------------------------------------


def workload(seed: int, n_calls: int = 60, start: float = 1_773_532_800.0) -> list[TraceEvent]:
    """Events as the hub and the evidence feature record them, over two days from `start`,
    with the awkward cases mixed in: calls answered after the period ends, duplicate ends,
    escalations, unanswered calls still open, malformed records, records exactly on a
    boundary, sign-ins of other roles."""
    rng = random.Random(seed)
    events: list[tuple[float, int, TraceEvent]] = []
    order = 0

    def add(at: float, kind: str, **data: Any) -> None:
        nonlocal order
        order += 1
        events.append((at, order, TraceEvent(kind, at, data)))

    def when() -> float:
        return start + rng.choice([0.0, 86_400.0, 172_800.0 - 1, rng.uniform(0, 172_800)])

    officers = [f"o{i}" for i in range(12)]
    for _ in range(40):
        user = rng.choice(officers)
        role = rng.choice(["officer", "officer", "officer", "operator", "supervisor"])
        add(when(), "sign_in", user=user, role=role, court=rng.choice(COURTS), session="s")
        add(when(), "position", user=user, court="P01", lat=30.1, lon=120.2)
    for i in range(n_calls):
        call = f"c{i}"
        created = when()
        direction = rng.choice(["officer_to_center", "center_to_officer", "sideways"])
        court = rng.choice([*COURTS, None])
        emergency = rng.random() < 0.2
        add(
            created,
            "call_created",
            call=call,
            direction=direction,
            court=court,
            emergency=emergency,
            officer="o1",
            case_number=None,
        )
        if rng.random() < 0.1:
            add(created + 1, "call_escalated", call=call)
        outcome = rng.choice(["answered", "missed", "cancelled", "declined", "open", "late"])
        if outcome in ("answered", "late"):
            answer = created + rng.uniform(0.5, 40) + (172_800 if outcome == "late" else 0)
            add(answer, "call_answered", call=call, by="op1")
            add(answer + 30, "call_ended", call=call, reason="hangup", answered=True, court=court)
        elif outcome != "open":
            end = created + rng.uniform(1, 30)
            add(end, "call_ended", call=call, reason=outcome, answered=False, court=court)
            if rng.random() < 0.1:
                add(end + 1, "call_ended", call=call, reason="node_lost", answered=False)
    for i in range(30):
        case = rng.choice(["K1", "K2", "K3", None])
        add(
            when(),
            "evidence_stored",
            evidence_id=f"ev{i}",
            case_number=case,
            court=rng.choice(COURTS),
        )
    for i in range(5):
        add(when(), "conference_started", conference=f"m{i}", court=rng.choice(COURTS))
    # Malformed: numbers where strings belong are not counted under any key.
    add(start + 5, "sign_in", user=7, role="officer", court="P01")
    add(start + 6, "call_created", call=None, direction="officer_to_center", court="P01")
    events.sort(key=lambda e: (e[0], e[1]))
    return [e for _, _, e in events]


def instruction_workload(
    seed: int, n: int = 40, start: float = 1_773_532_800.0
) -> list[TraceEvent]:
    """Instructions as the hub records them, over two days from `start`: to one officer or
    court-wide, delivered and read (some after the period, some read without a separate
    delivery first, some never), court-wide ones expiring read by all or not, and malformed
    records."""
    rng = random.Random(seed)
    events: list[tuple[float, int, TraceEvent]] = []

    def add(at: float, kind: str, **data: Any) -> None:
        events.append((at, len(events), TraceEvent(kind, at, data)))

    for i in range(n):
        iid = f"i{i}"
        sent = start + rng.choice([0.0, 86_400.0, 172_800.0 - 1, rng.uniform(0, 172_800)])
        court = rng.choice(COURTS)
        wide = rng.random() < 0.35
        officer = None if wide else f"o{rng.randrange(12)}"
        add(sent, "instruction_sent", instruction=iid, by="op1", court=court, officer=officer)
        recipients = (
            [f"o{k}" for k in rng.sample(range(12), rng.randint(0, 3))] if wide else [officer]
        )
        unread = []
        for who in recipients:
            at = sent + rng.uniform(0.5, 20) + (172_800 if rng.random() < 0.1 else 0)
            if rng.random() < 0.8:
                add(at, "instruction_delivered", instruction=iid, officer=who, court=court)
            if rng.random() < 0.6:
                add(
                    at + rng.uniform(0, 600),
                    "instruction_read",
                    instruction=iid,
                    officer=who,
                    court=court,
                )
            else:
                unread.append(who)
        if wide and rng.random() < 0.7:
            add(sent + 28_800, "instruction_expired", instruction=iid, court=court, unread=unread)
    # Malformed: a number where the instruction id belongs is not counted.
    add(start + 7, "instruction_sent", instruction=5, by="op1", court="P01", officer=None)
    events.sort(key=lambda e: (e[0], e[1]))
    return [e for _, _, e in events]


async def append_all(store: TraceStore, events: Sequence[TraceEvent], batch: int = 50) -> None:
    for i in range(0, len(events), batch):
        await store.append(events[i : i + batch])


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    """Each test on SQLite and on PostgreSQL (a schema of its own, dropped afterwards). Ask
    for it before `aiohttp_client` in a fixture that starts an app on it, so that the schema is
    dropped after the app has stopped writing to it."""
    b = make_backend(request.param, tmp_path)
    try:
        yield b
    finally:
        await b.drop()
