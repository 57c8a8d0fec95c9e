"""The trace stores, the same tests against SQLite (a file in tmp_path) and PostgreSQL (the
real server on this machine, a schema per test): appending, reading, durability across a
reopen, one chain however many writers, tampering found by verification, and statistics
counts that agree with their reference definition."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from sessions.durable import DurableRecorder, verify_store
from sessions.errors import StoreClosed, StoreUnavailable, UnencodableEvent
from sessions.facets import facets_of
from sessions.memory_store import MemoryTraceStore
from sessions.postgres_store import PostgresTraceStore
from sessions.recorder import TraceEvent
from sessions.sqlite_store import HIGHEST_CHECKPOINT_SQL, LATEST_CHECKPOINTS_SQL
from sessions.statistics import StatsQuery, reference_counts
from sessions.store import StoredRecord, TraceStore
from sessions.trace import GENESIS, Head, entry_of, seal, verify
from tests.polling import wait_until
from tests.tracehelpers import (
    PG_DSN,
    TAMPERING,
    Backend,
    PostgresBackend,
    SqliteBackend,
    append_all,
    backend,
    flood_checkpoints,
    instruction_workload,
    workload,
)

# A shared fixture (tests.tracehelpers): each test on SQLite and on PostgreSQL.
__all__ = ["backend"]

T0 = 1_773_532_800.0  # 2026-03-15T00:00:00Z


@pytest.fixture
async def store(backend: Backend) -> AsyncIterator[TraceStore]:
    s = await backend.open()
    try:
        yield s
    finally:
        await s.close()


def ev(i: int, kind: str = "position", **data: object) -> TraceEvent:
    return TraceEvent(kind, T0 + i, {"user": f"o{i}", **data})


async def fill(store: TraceStore, n: int) -> None:
    await store.append([ev(i) for i in range(1, n + 1)])


# --- appending and reading -------------------------------------------------------------


async def test_append_returns_the_records_numbered_from_one_and_chained(store: TraceStore) -> None:
    first = await store.append([ev(1), ev(2, "sign_in", role="officer", court="P01")])
    more = await store.append([ev(3)])
    assert [r.seq for r in first + more] == [1, 2, 3]
    assert first[0].prev_hash == GENESIS.hash
    assert first[1].prev_hash == first[0].hash
    assert more[0].prev_hash == first[1].hash
    assert (first[1].kind, first[1].at, first[1].data["court"]) == ("sign_in", T0 + 2, "P01")
    assert await store.records() == first + more


async def test_an_empty_append_appends_nothing(store: TraceStore) -> None:
    assert await store.append([]) == []
    assert await store.count() == 0
    assert await store.head() == GENESIS


async def test_records_are_paged_by_after_seq_and_limit(store: TraceStore) -> None:
    await fill(store, 25)
    page = await store.records(after_seq=10, limit=5)
    assert [r.seq for r in page] == [11, 12, 13, 14, 15]
    assert [r.seq for r in await store.records(after_seq=20)] == [21, 22, 23, 24, 25]
    assert await store.records(after_seq=25) == []


async def test_links_carry_the_stored_canonical_data_and_derived_columns(
    store: TraceStore,
) -> None:
    await store.append([ev(1, "sign_in", role="officer", court="P0101")])
    (link,) = await store.links()
    assert link.data == '{"court":"P0101","role":"officer","user":"o1"}'
    assert link.facets == facets_of("sign_in", {"court": "P0101", "role": "officer", "user": "o1"})
    assert link.at_us == round((T0 + 1) * 1_000_000)


async def test_any_text_is_stored_and_read_back_exactly_and_still_verifies(
    store: TraceStore,
) -> None:
    odd = 'é执行 "quoted" \\ back\\slash \u2028 tab\t 🚓'
    data = {"evidence_id": odd, "case_number": odd, "court": "P01", "n": -0.0, "big": 2**62}
    with_nul = {"evidence_id": "ev-nul", "case_number": "K\x00", "note": "a\x00b"}
    written = await store.append(
        [TraceEvent("evidence_stored", T0, data), TraceEvent("evidence_stored", T0, with_nul)]
    )
    read = await store.records()
    assert read == written
    assert [r.data for r in read] == [data, with_nul]
    first, second = await store.links()
    assert first.facets.subject == odd
    # A NUL fits no index column (PostgreSQL text refuses it): such a case is not counted.
    assert second.facets.subject is None
    assert (await verify_store(store)).ok
    found = await store.find(kinds=["evidence_stored"], data_equals={"evidence_id": odd})
    assert [r.seq for r in found] == [1]
    found = await store.find(kinds=["evidence_stored"], data_equals={"evidence_id": "ev-nul"})
    assert [r.seq for r in found] == [2]


async def test_count_and_head_follow_the_appends(store: TraceStore) -> None:
    await fill(store, 7)
    records = await store.records()
    assert await store.count() == 7
    assert await store.head() == Head(7, records[-1].hash)


async def test_find_selects_by_kind_string_value_and_half_open_time_range(
    store: TraceStore,
) -> None:
    await store.append(
        [
            ev(1, "evidence_read", evidence_id="ev-a"),
            ev(2, "evidence_stored", evidence_id="ev-a", case_number="K1"),
            ev(3, "evidence_read", evidence_id="ev-b"),
            ev(4, "evidence_read", evidence_id="ev-a"),
            ev(5, "evidence_read", evidence_id=5),
            ev(6, "evidence_read", evidence_id="5"),
        ]
    )
    found = await store.find(kinds=["evidence_read"], data_equals={"evidence_id": "ev-a"})
    assert [r.seq for r in found] == [1, 4]
    both = await store.find(kinds=["evidence_read", "evidence_stored"])
    assert [r.seq for r in both] == [1, 2, 3, 4, 5, 6]
    # since is inclusive, until exclusive.
    window = await store.find(kinds=["evidence_read"], since=T0 + 3, until=T0 + 5)
    assert [r.seq for r in window] == [3, 4]
    # A number never equals a string, in any store.
    assert [
        r.seq for r in await store.find(kinds=["evidence_read"], data_equals={"evidence_id": "5"})
    ] == [6]
    assert await store.find(kinds=[]) == []


async def test_find_last_gives_the_latest_by_time_oldest_first_by_subject_or_data(
    store: TraceStore,
) -> None:
    await store.append(
        [ev(i, "sign_in", court="P0101", role="officer", user=f"o{i % 2}") for i in range(1, 8)]
    )
    newest = await store.find(kinds=["sign_in"], subject="o1", last=2)
    assert [r.seq for r in newest] == [5, 7]
    assert [r.seq for r in await store.find(kinds=["sign_in"], subject="o0", last=10)] == [2, 4, 6]
    matched = await store.find(kinds=["sign_in"], data_equals={"user": "o0"}, last=1)
    assert [r.seq for r in matched] == [6]
    assert await store.find(kinds=["sign_in"], last=0) == []
    # The latest by time: a record appended later about an earlier moment is not it.
    await store.append([ev(3, "sign_in", court="P0101", role="officer", user="o1")])
    assert [r.seq for r in await store.find(kinds=["sign_in"], subject="o1", last=1)] == [7]
    assert [r.seq for r in await store.find(kinds=["sign_in"], subject="o1", last=2)] == [5, 7]


async def test_find_refuses_a_key_that_is_not_an_identifier(store: TraceStore) -> None:
    with pytest.raises(ValueError, match="identifier"):
        await store.find(kinds=["x"], data_equals={"a') OR 1=1 --": "x"})


async def test_an_unencodable_event_appends_nothing_of_its_batch(store: TraceStore) -> None:
    await fill(store, 2)
    with pytest.raises(UnencodableEvent, match=r"data\.lat"):
        await store.append([ev(3), TraceEvent("position", T0, {"lat": math.nan})])
    assert await store.count() == 2
    assert (await verify_store(store)).ok


async def test_a_closed_store_refuses_everything_and_closes_once(backend: Backend) -> None:
    s = await backend.open()
    await s.close()
    await s.close()
    with pytest.raises(StoreClosed):
        await s.append([ev(1)])
    with pytest.raises(StoreClosed):
        await s.records()


async def test_a_read_only_store_refuses_appends(backend: Backend) -> None:
    writer = await backend.open()
    await fill(writer, 3)
    reader = await backend.open(readonly=True)
    try:
        assert await reader.count() == 3
        with pytest.raises(StoreUnavailable, match="read-only"):
            await reader.append([ev(4)])
    finally:
        await reader.close()
        await writer.close()


async def test_opening_a_missing_trace_read_only_fails_and_creates_nothing(
    backend: Backend,
) -> None:
    with pytest.raises(StoreUnavailable):
        await backend.open(readonly=True)
    with pytest.raises(StoreUnavailable):
        await backend.open(readonly=True)


async def test_a_postgres_server_that_cannot_be_reached_is_reported_unavailable() -> None:
    from sessions.postgres_store import PostgresTraceStore

    with pytest.raises(StoreUnavailable):
        await PostgresTraceStore.open("postgresql://postgres@127.0.0.1:1/test", schema="x")


# --- durability and one chain --------------------------------------------------------------


async def test_appended_records_are_committed_when_append_returns(backend: Backend) -> None:
    """Another connection (as another process would) sees every record append returned."""
    writer = await backend.open()
    reader = await backend.open(readonly=True)
    try:
        for i in range(1, 6):
            await writer.append([ev(i)])
            assert await reader.count() == i
    finally:
        await reader.close()
        await writer.close()


async def test_records_survive_a_reopen_and_the_chain_continues(backend: Backend) -> None:
    first = await backend.open()
    await fill(first, 5)
    before = await first.records()
    await first.close()
    second = await backend.open()
    try:
        assert await second.records() == before
        (more,) = await second.append([ev(6)])
        assert (more.seq, more.prev_hash) == (6, before[-1].hash)
        assert (await verify_store(second)).records == 6
    finally:
        await second.close()


async def test_concurrent_appends_form_one_chain_keeping_each_callers_order(
    store: TraceStore,
) -> None:
    async def writer(w: int) -> list[int]:
        seqs = []
        for i in range(15):
            (rec,) = await store.append([TraceEvent("position", T0 + i, {"w": w, "i": i})])
            seqs.append(rec.seq)
        return seqs

    results = await asyncio.gather(*(writer(w) for w in range(12)))
    assert sorted(s for seqs in results for s in seqs) == list(range(1, 181))
    records = await store.records(limit=1000)
    for w in range(12):
        assert [r.data["i"] for r in records if r.data["w"] == w] == list(range(15))
    assert (await verify_store(store)).ok


async def test_two_stores_appending_to_one_trace_continue_one_chain(backend: Backend) -> None:
    """Two servers (or a server and a CLI) on the same trace never fork the chain."""
    a = await backend.open()
    b = await backend.open()
    try:
        for i in range(10):
            await asyncio.gather(a.append([ev(2 * i)]), b.append([ev(2 * i + 1)]))
        result = await verify_store(a)
        assert result.ok
        assert result.records == 20
    finally:
        await a.close()
        await b.close()


async def begun_append(
    store: TraceStore, events: list[TraceEvent]
) -> asyncio.Task[list[StoredRecord]]:
    """A task appending `events`, returned once its append has begun: the caller has reached
    `await store.append(...)`, which hands the events to the writer before it first waits."""
    began = asyncio.Event()

    async def caller() -> list[StoredRecord]:
        began.set()
        return await store.append(events)

    task = asyncio.ensure_future(caller())
    await began.wait()
    return task


async def test_a_cancelled_append_is_still_committed_whole(
    backend: Backend, store: TraceStore
) -> None:
    """Cancelling a caller whose append has begun stops only its waiting: its events are
    committed whole, in their place in the chain, and the appends around it are unaffected.
    (The writer is held meanwhile, so the cancel surely comes before the commit.)"""
    async with backend.writes_held():
        before, cancelled, after = [
            await begun_append(store, [ev(i), ev(i + 1)]) for i in (1, 3, 5)
        ]
        cancelled.cancel()
        with pytest.raises(asyncio.CancelledError):
            await cancelled
        assert not before.done()
    assert [r.seq for r in await before] == [1, 2]
    # Appends commit in the order they began, so the cancelled one is in once `after` is.
    assert [r.seq for r in await after] == [5, 6]
    records = await store.records()
    assert [(r.seq, r.data["user"]) for r in records] == [(i, f"o{i}") for i in range(1, 7)]
    assert (await verify_store(store)).ok


async def test_a_failed_commit_fails_every_waiting_append_and_stores_none_of_it(
    backend: Backend,
) -> None:
    """Refused by the database (here a trigger standing in for a full disk): every caller in
    the batch is told, nothing is half-written, and appends go on once the database does."""
    s = await backend.open()
    try:
        await fill(s, 3)
        if isinstance(backend, PostgresBackend):
            schema = backend.schema
            await backend.sql(
                f'CREATE FUNCTION "{schema}".refuse() RETURNS trigger LANGUAGE plpgsql AS'
                " $$ BEGIN RAISE EXCEPTION 'disk full'; END $$",
                "CREATE TRIGGER refuse BEFORE INSERT ON {t} FOR EACH ROW"
                f' EXECUTE FUNCTION "{schema}".refuse()',
            )
            undo = "DROP TRIGGER refuse ON {t}"
        else:
            await backend.sql(
                "CREATE TRIGGER refuse BEFORE INSERT ON {t}"
                " BEGIN SELECT RAISE(ABORT, 'disk full'); END"
            )
            undo = "DROP TRIGGER refuse"
        results = await asyncio.gather(
            *(s.append([ev(10 + i)]) for i in range(5)), return_exceptions=True
        )
        assert all(isinstance(r, StoreUnavailable) for r in results), results
        assert await s.count() == 3
        await backend.sql(undo)
        (after,) = await s.append([ev(20)])
        assert after.seq == 4
        assert (await verify_store(s)).ok
    finally:
        await s.close()


@pytest.mark.postgres
async def test_a_lost_postgres_connection_fails_one_append_and_the_next_reconnects() -> None:
    backend = PostgresBackend(PG_DSN)
    s = await backend.open()
    try:
        await fill(s, 2)
        writer = f"application_name = 'cc-trace-writer:{backend.schema}'"
        await backend.sql(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE {writer}")
        # pg_terminate_backend only signals: wait until the writer's backend is really gone,
        # so the loss is there for the first append to find.
        probe = await asyncpg.connect(PG_DSN)

        async def writer_gone() -> bool:
            query = f"SELECT count(*) = 0 FROM pg_stat_activity WHERE {writer}"
            return bool(await probe.fetchval(query))

        try:
            await wait_until(writer_gone, within=10, what="the writer's backend went away")
        finally:
            await probe.close()
        outcomes = []
        for i in range(3):
            try:
                await s.append([ev(10 + i)])
                outcomes.append("ok")
            except StoreUnavailable:
                outcomes.append("failed")
        # The loss may be noticed by the first append after it, never by more than one.
        assert outcomes in (["failed", "ok", "ok"], ["ok", "ok", "ok"]), outcomes
        assert await s.count() == 2 + outcomes.count("ok")
        assert (await verify_store(s)).ok
    finally:
        await s.close()
        await backend.drop()


async def test_the_durable_recorder_records_through_its_store(backend: Backend) -> None:
    recorder = DurableRecorder(backend.open)
    await recorder.start()
    try:
        await recorder.record([ev(1), ev(2)])
        # An event with no JSON form does not take its batch with it.
        await recorder.record([ev(3), TraceEvent("bad", T0, {"x": math.inf}), ev(4)])
        kinds = [r.kind for r in await recorder.records()]
        assert kinds == ["position"] * 3 + ["unencodable_event", "position"]
        stand_in = (await recorder.find(kinds=["unencodable_event"]))[0]
        assert stand_in.data == {"kind": "bad", "error": "data.x: inf has no JSON form"}
    finally:
        await recorder.close()


# --- tampering -----------------------------------------------------------------------------


async def tampered_store(backend: Backend, statements: tuple[str, ...]) -> TraceStore:
    s = await backend.open()
    events = [ev(i) for i in range(1, 11)]
    events[5] = ev(6, "sign_in", role="officer", court="P01")
    await s.append(events)
    assert (await verify_store(s)).ok
    await backend.sql(*statements)
    return s


@pytest.mark.parametrize("case", list(TAMPERING))
async def test_tampering_with_a_stored_row_is_found_and_the_row_named(
    backend: Backend, case: str
) -> None:
    statements, seq, problem = TAMPERING[case]
    s = await tampered_store(backend, statements)
    try:
        result = await verify_store(s)
        assert result.tampering is not None, case
        assert (result.tampering.seq, result.tampering.problem) == (seq, problem)
        assert result.records == seq - 1
    finally:
        await s.close()


async def test_a_forged_row_that_chains_correctly_is_found_as_inserted(backend: Backend) -> None:
    s = await backend.open()
    try:
        await fill(s, 8)
        links = await s.links()
        forged = seal(
            Head(4, links[3].hash),
            [entry_of(TraceEvent("position", T0, {"user": "nobody"}), facets_of)],
        )[0]
        await backend.sql(
            "UPDATE {t} SET seq = -seq WHERE seq >= 5",
            "UPDATE {t} SET seq = -seq + 1 WHERE seq < 0",
            "INSERT INTO {t} (seq, at_us, kind, data, prev_hash, hash) VALUES "
            f"(5, {forged.at_us}, 'position', '{forged.data}', '{forged.prev_hash}', "
            f"'{forged.hash}')",
        )
        result = await verify_store(s)
        assert result.tampering is not None
        assert (result.tampering.seq, result.tampering.problem) == (5, "inserted")
    finally:
        await s.close()


async def test_appends_after_tampering_keep_chaining_from_the_stored_head(
    backend: Backend,
) -> None:
    """The store does not hide tampering by repairing it: new records chain on, and the
    tampered row is still the one verification names."""
    s = await tampered_store(backend, TAMPERING["edit time"][0])
    try:
        await s.append([ev(11)])
        result = await verify_store(s)
        assert result.tampering is not None
        assert result.tampering.seq == 5
        assert await s.count() == 11
    finally:
        await s.close()


# --- statistics counts ---------------------------------------------------------------------


@pytest.mark.parametrize("seed", [1, 2])
async def test_counts_agree_with_the_reference_definition(store: TraceStore, seed: int) -> None:
    events = workload(seed)
    await append_all(store, events)
    memory = MemoryTraceStore()
    await memory.append(events)
    day = 86_400
    start_us = int(T0 * 1_000_000)
    queries = [
        StatsQuery(start_us, start_us + 2 * day * 1_000_000),
        StatsQuery(start_us, start_us + day * 1_000_000),
        StatsQuery(start_us + day * 1_000_000, start_us + 2 * day * 1_000_000),
        StatsQuery(start_us, start_us + 2 * day * 1_000_000, frozenset({"P01", "P0101", "P0102"})),
        StatsQuery(start_us, start_us + day * 1_000_000, frozenset({"P0201"})),
        StatsQuery(start_us, start_us + 2 * day * 1_000_000, frozenset()),
        StatsQuery(0, 1),
    ]
    links = await store.links(limit=10_000)
    triples = [(x.kind, x.at_us, x.facets) for x in links]
    for query in queries:
        expected = reference_counts(triples, query)
        assert await store.counts(query) == expected, query
        assert await memory.counts(query) == expected, query
    whole = await store.counts(queries[0])
    # The workload exercises every outcome, so agreement above means something.
    calls = list(whole.calls.values())
    assert all(
        sum(getattr(c, f) for c in calls) > 0
        for f in ("answered", "missed", "cancelled", "unfinished", "emergency")
    )
    assert whole.sign_ins > whole.officers > 0
    assert whole.evidence_items > whole.cases > 0
    assert whole.conferences > 0
    assert verify(links).ok


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_instruction_counts_agree_with_the_reference_definition(
    store: TraceStore, seed: int
) -> None:
    """Sent, delivered, read, acknowledged and the read delays of the instructions sent in a
    period and courts, on the store's SQL as in `reference_counts`."""
    events = sorted(workload(seed, n_calls=5) + instruction_workload(seed), key=lambda e: e.at)
    await append_all(store, events)
    day_us = 86_400 * 1_000_000
    start_us = int(T0 * 1_000_000)
    queries = [
        StatsQuery(start_us, start_us + 2 * day_us),
        StatsQuery(start_us, start_us + day_us),
        StatsQuery(start_us + day_us, start_us + 2 * day_us),
        StatsQuery(start_us, start_us + 2 * day_us, frozenset({"P01", "P0101", "P0102"})),
        StatsQuery(start_us, start_us + day_us, frozenset({"P0201"})),
        StatsQuery(0, 1),
    ]
    links = await store.links(limit=10_000)
    triples = [(x.kind, x.at_us, x.facets) for x in links]
    for query in queries:
        assert await store.counts(query) == reference_counts(triples, query), query
    whole = (await store.counts(queries[0])).instructions
    # Every case is there, so agreement above means something.
    assert whole.sent > whole.acknowledged > 0
    assert whole.delivered > 0
    assert whole.read == len(whole.read_us) > 0
    assert verify(links).ok


# --- checkpoints (issue 15) ------------------------------------------------------------------


async def test_checkpoints_are_kept_in_order_and_read_back_alike_by_every_store(
    backend: Backend,
) -> None:
    """The SQLite, PostgreSQL and memory stores keep signed heads beside the chain, durable
    across a reopen and readable by a read-only store, without touching the chain."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from sessions.checkpoint import sign

    key = Ed25519PrivateKey.generate()
    stores: list[TraceStore] = [MemoryTraceStore(), await backend.open()]
    for store in stores:
        try:
            assert await store.checkpoints() == []
            await fill(store, 3)
            first = sign(key, await store.head(), now=1.5, node="n1", reason="start")
            await fill(store, 2)
            second = sign(key, await store.head(), now=2.5, node="n1", reason="stop")
            await store.add_checkpoint(first)
            await store.add_checkpoint(second.with_token(b"\x30\x00"))
            assert await store.checkpoints() == [first, second.with_token(b"\x30\x00")]
            assert (await verify_store(store)).ok
            assert await store.count() == 5
        finally:
            await store.close()
    reader = await backend.open(readonly=True)
    try:
        assert [c.reason for c in await reader.checkpoints()] == ["start", "stop"]
        with pytest.raises(StoreUnavailable):
            await reader.add_checkpoint(first)
    finally:
        await reader.close()


async def rows_the_database_reads(backend: Backend, query: str) -> int:
    """How many checkpoint rows the database itself visits to answer `latest_checkpoints
    ("verified")` (`query` "latest") or `highest_checkpoint` ("highest"): PostgreSQL's
    EXPLAIN ANALYZE of the store's query (rows returned plus rows filtered out by every node
    on the table); for SQLite, whose plan has no row counts, the rows returned when its plan
    walks an index in order, else the whole table."""
    params: tuple[str | int, ...] = ("verified", 1) if query == "latest" else ()
    if isinstance(backend, PostgresBackend):
        store = await PostgresTraceStore.open(backend.dsn, schema=backend.schema, readonly=True)
        sql = store.latest_checkpoints_sql if query == "latest" else store.highest_checkpoint_sql
        conn = await asyncpg.connect(backend.dsn)
        try:
            plan = await conn.fetchval("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, *params)
        finally:
            await conn.close()
            await store.close()
        nodes = [json.loads(plan)[0]["Plan"]]
        visited = 0
        while nodes:
            node = nodes.pop()
            nodes.extend(node.get("Plans", []))
            if node.get("Relation Name") == "checkpoints":
                visited += node["Actual Rows"] + node.get("Rows Removed by Filter", 0)
        return visited
    assert isinstance(backend, SqliteBackend)
    sql, index = (
        (LATEST_CHECKPOINTS_SQL, "INDEX checkpoints_reason (reason=?)")
        if query == "latest"
        else (HIGHEST_CHECKPOINT_SQL, "INDEX checkpoints_head")
    )
    with contextlib.closing(sqlite3.connect(backend.path)) as db:
        plan = " ".join(row[3] for row in db.execute("EXPLAIN QUERY PLAN " + sql, params))
        if index in plan and "TEMP B-TREE" not in plan:
            return len(db.execute(sql, params).fetchall())
        return int(db.execute("SELECT count(*) FROM checkpoints").fetchone()[0])


async def test_the_latest_verified_checkpoints_are_read_alone_however_many_periodic_follow(
    backend: Backend,
) -> None:
    """`latest_checkpoints("verified")` answers newest first with the rows asked for and no
    others, in every store, when thousands of periodic checkpoints were added after them:
    the store's counter of rows read and the database's own plan both stay at the limit."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from sessions.checkpoint import sign

    key = Ed25519PrivateKey.generate()
    for store in [MemoryTraceStore(), await backend.open()]:
        try:
            await fill(store, 3)
            head = await store.head()
            older = sign(key, head, now=1.0, node="n1", reason="verified")
            newer = sign(key, head, now=2.0, node="n1", reason="verified")
            periodic = sign(key, head, now=3.0, node="n1", reason="periodic")
            for cp in (older, newer, periodic):
                await store.add_checkpoint(cp)
            if isinstance(store, MemoryTraceStore):
                for _ in range(4095):
                    await store.add_checkpoint(periodic)
            else:
                await flood_checkpoints(backend, 12)
            assert len(await store.checkpoints()) == 4098
            before = store.checkpoint_rows_read
            assert await store.latest_checkpoints("verified", limit=2) == [newer, older]
            assert await store.latest_checkpoints("verified") == [newer]
            assert await store.latest_checkpoints("start") == []
            assert store.checkpoint_rows_read - before == 3
            with pytest.raises(ValueError, match="limit"):
                await store.latest_checkpoints("verified", limit=0)
        finally:
            await store.close()
    assert await rows_the_database_reads(backend, "latest") == 1


async def test_the_highest_checkpoint_is_read_alone_and_is_the_one_latest_picks(
    backend: Backend,
) -> None:
    """`highest_checkpoint` answers what `checkpoint.latest` picks from the whole table (the
    highest seq, then the latest time, then the last added) in every store, reading one
    row however many checkpoints there are: where a starting checkpointer resumes."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from sessions.checkpoint import latest, sign

    key = Ed25519PrivateKey.generate()
    for store in [MemoryTraceStore(), await backend.open()]:
        try:
            assert await store.highest_checkpoint() is None
            await fill(store, 2)
            low = await store.head()
            await fill(store, 2)
            high = await store.head()
            periodic = sign(key, low, now=9.0, node="n1", reason="periodic")
            await store.add_checkpoint(periodic)
            if isinstance(store, MemoryTraceStore):
                for _ in range(4095):
                    await store.add_checkpoint(periodic)
            else:
                await flood_checkpoints(backend, 12)
            # A higher seq wins over a later time; among equal seq and time, the last added.
            first = sign(key, high, now=2.0, node="n1", reason="start")
            tie = sign(key, high, now=2.0, node="n2", reason="start")
            await store.add_checkpoint(first)
            await store.add_checkpoint(tie)
            await store.add_checkpoint(sign(key, high, now=1.0, node="n3", reason="periodic"))
            before = store.checkpoint_rows_read
            assert await store.highest_checkpoint() == tie
            assert store.checkpoint_rows_read - before == 1
            assert latest(await store.checkpoints()) == tie
        finally:
            await store.close()
    assert await rows_the_database_reads(backend, "highest") == 1


async def test_a_trace_from_before_the_checkpoint_indexes_gains_them_when_opened_to_write(
    backend: Backend,
) -> None:
    """A trace whose `checkpoints` table predates its indexes answers the latest and the
    highest checkpoint all the same (read-only, by a scan), and gains the indexes, so the
    one-row reads, at its next writable open."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from sessions.checkpoint import sign

    key = Ed25519PrivateKey.generate()
    store = await backend.open()
    try:
        await fill(store, 2)
        verified = sign(key, await store.head(), now=1.0, node="n1", reason="verified")
        await store.add_checkpoint(verified)
        await store.add_checkpoint(sign(key, GENESIS, now=2.0, node="n1", reason="start"))
    finally:
        await store.close()
    prefix = f'"{backend.schema}".' if isinstance(backend, PostgresBackend) else ""
    await backend.sql(
        f"DROP INDEX {prefix}checkpoints_reason", f"DROP INDEX {prefix}checkpoints_head"
    )
    await flood_checkpoints(backend, 10)
    reader = await backend.open(readonly=True)
    try:
        assert await reader.latest_checkpoints("verified") == [verified]
        assert await reader.highest_checkpoint() == verified
    finally:
        await reader.close()
    assert await rows_the_database_reads(backend, "latest") > 1000
    await (await backend.open()).close()
    assert await rows_the_database_reads(backend, "latest") == 1
    assert await rows_the_database_reads(backend, "highest") == 1


async def test_a_trace_from_before_checkpoints_reads_as_having_none(tmp_path: Path) -> None:
    import sqlite3

    from sessions.sqlite_store import SqliteTraceStore

    path = tmp_path / "old.sqlite3"
    store = await SqliteTraceStore.open(path)
    await fill(store, 2)
    await store.close()
    with sqlite3.connect(path) as db:
        db.execute("DROP TABLE checkpoints")
    db.close()
    reader = await SqliteTraceStore.open(path, readonly=True)
    try:
        assert await reader.checkpoints() == []
    finally:
        await reader.close()
