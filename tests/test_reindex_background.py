"""The server's background reindex (sessions/reindexer.py): a trace written before its
subject index gets it without any command, in batches, while the server answers; a restart
in the middle goes on where it stopped; records appended meanwhile are filed once; only the
node holding the lease files. On SQLite and on PostgreSQL, served by the real app."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient
from prometheus_client import generate_latest
from pytest_aiohttp import AiohttpClient
from structlog.testing import capture_logs

from commandcenter.app import create_app
from commandcenter.keys import CONFIG, RECORDER, REINDEXER, TRACE
from commandcenter.metrics import METRICS
from sessions.recorder import TraceEvent
from sessions.reindexer import Reindexer
from sessions.store import ReindexState, TraceStore
from sessions.subjects import subjects_of
from tests.conftest import make_config
from tests.polling import wait_until
from tests.tracehelpers import Backend, append_all, backend
from tests.wsclient import token_for

# A shared fixture (tests.tracehelpers): each test on SQLite and on PostgreSQL.
__all__ = ["backend"]

T0 = 1_773_532_800.0
CALLS = 40
RECORDS = 2000
BATCH = 50
# Long enough that a test sees the reindex under way (40 batches, at least 2 s), short
# enough for the suite.
PAUSE_S = 0.05
# The index is complete within this long of the server's start, with no command.
DEADLINE_S = 60.0


CREATED = {
    "call": "c1",
    "direction": "officer_to_center",
    "officer": "o1",
    "court": "P0101",
    "caller": "o1",
}


def old_events() -> list[TraceEvent]:
    """Calls' records interleaved with records of no subject."""
    out = []
    for i in range(RECORDS // 2):
        if i == 0:
            out.append(TraceEvent("call_created", T0, CREATED))
        else:
            out.append(TraceEvent("position", T0 + i, {"user": "o1", "lat": 30.0, "lon": 120.0}))
        call = f"c{i % CALLS}"
        out.append(TraceEvent("call_ringing", T0 + i, {"call": call, "users": ["op1"]}))
    return out


async def write_old_trace(backend: Backend) -> None:
    """A trace as a server before the subject index left it: records, no index."""
    store = await backend.open()
    try:
        await append_all(store, old_events(), batch=500)
    finally:
        await store.close()
    await backend.sql("DROP TABLE {t}_subjects", "DROP TABLE {t}_reindex")


async def index_is_exact(store: TraceStore) -> None:
    """Every subject's records by the index are exactly the records that name it, once."""
    expected: dict[str, list[int]] = {}
    for r in await store.records(limit=100_000):
        for subject in subjects_of(r.kind, dict(r.data)):
            expected.setdefault(subject, []).append(r.seq)
    assert len(expected) == CALLS
    for subject, seqs in expected.items():
        assert [r.seq for r in await store.records_about(subject)] == seqs, subject


def serve(backend: Backend, tmp_path: Path) -> Any:
    config = make_config(
        tmp_path / "var", recorder={"reindex_batch": BATCH, "reindex_pause_s": PAUSE_S}
    )
    return create_app(backend.configure(config))


async def remaining(client: TestClient[Any, Any]) -> int:
    resp = await client.get("/healthz")
    assert resp.status == 200
    body = await resp.json()
    value = body["reindex_remaining"]
    assert isinstance(value, int)
    return value


async def call_audit(client: TestClient[Any, Any], app: Any) -> tuple[int, Any]:
    """The call c1's audit as an auditor of the province sees it."""
    token = token_for(app[CONFIG], "a1", "auditor", "P")
    resp = await client.get("/api/calls/c1/audit", headers={"Authorization": f"Bearer {token}"})
    return resp.status, await resp.json()


async def test_an_old_trace_is_indexed_in_the_background_while_the_server_answers(
    backend: Backend, aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    await write_old_trace(backend)
    app = serve(backend, tmp_path)
    with capture_logs() as logs:
        client = await aiohttp_client(app)
        # Served at once, the reindex still to do: it runs behind the requests.
        first = await remaining(client)
        assert 0 < first <= RECORDS
        seen = [first]

        async def progressed() -> bool:
            seen.append(await remaining(client))
            return seen[-1] < first

        await wait_until(progressed, within=DEADLINE_S, what="reindex under way")
        assert seen[-1] > 0, "finished before the server was seen answering meanwhile"
        # An audit answers meanwhile from the index as far as it goes, and says so.
        status, partial = await call_audit(client, app)
        assert status == 200, partial
        assert partial["reindex_remaining"] > 0
        # A record appended mid-way files itself; the reindex does not file it again.
        await app[RECORDER].record([TraceEvent("call_ringing", T0 + 5000, {"call": "c1"})])

        async def done() -> bool:
            return await remaining(client) == 0

        await wait_until(done, within=DEADLINE_S, what="reindex finished")
    store = app[TRACE]
    about = await store.records_about("call:c1")
    assert about[-1].data == {"call": "c1"}
    status, whole = await call_audit(client, app)
    assert status == 200, whole
    assert "reindex_remaining" not in whole
    assert len(whole["timeline"]) > len(partial["timeline"])
    await index_is_exact(store)
    assert await store.reindex_state() == ReindexState(RECORDS, RECORDS)
    # /metrics says so too.
    scraped = generate_latest(app[METRICS].registry).decode()
    assert "\ncommandcenter_trace_reindex_remaining 0.0\n" in scraped
    events = [e["event"] for e in logs]
    assert "trace reindex started" in events
    finished = [e for e in logs if e["event"] == "trace reindex finished"]
    assert len(finished) == 1
    assert finished[0]["records"] == RECORDS
    assert finished[0]["total"] == RECORDS
    assert finished[0]["rate"] > 0


async def test_a_restart_in_the_middle_of_the_reindex_goes_on_where_it_stopped(
    backend: Backend, aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    await write_old_trace(backend)
    first = await aiohttp_client(serve(backend, tmp_path))

    async def some_done() -> bool:
        return 0 < await remaining(first) <= RECORDS - 4 * BATCH

    await wait_until(some_done, within=DEADLINE_S, what="some batches filed")
    await first.close()
    store = await backend.open()
    try:
        stopped = await store.reindex_state()
    finally:
        await store.close()
    # Stopped in the middle, with what it had filed kept.
    assert stopped.end == RECORDS
    assert 4 * BATCH <= stopped.done < RECORDS
    with capture_logs() as logs:
        app = serve(backend, tmp_path)
        second = await aiohttp_client(app)
        assert await remaining(second) <= RECORDS - stopped.done

        async def done() -> bool:
            return await remaining(second) == 0

        await wait_until(done, within=DEADLINE_S, what="reindex finished after the restart")
    started = [e for e in logs if e["event"] == "trace reindex started"]
    # It began from where the first server stopped, not from the first record.
    assert [e["total"] for e in started] == [RECORDS - stopped.done]
    await index_is_exact(app[TRACE])


async def test_a_trace_with_its_index_from_the_start_has_nothing_to_reindex(
    backend: Backend, aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    store = await backend.open()
    try:
        await append_all(store, old_events(), batch=500)
    finally:
        await store.close()
    with capture_logs() as logs:
        app = serve(backend, tmp_path)
        client = await aiohttp_client(app)
        assert await remaining(client) == 0
    assert app[REINDEXER].running is False
    assert not [e for e in logs if e["event"].startswith("trace reindex")]


async def test_only_the_node_holding_the_lease_files_until_it_runs_out(
    backend: Backend,
) -> None:
    await write_old_trace(backend)
    a = await backend.open()
    b = await backend.open()
    try:
        assert await a.reindex_batch(node="a", now=T0, lease_s=30, limit=100) == (
            ReindexState(100, RECORDS)
        )
        # Another node within the lease files nothing.
        assert await b.reindex_batch(node="b", now=T0 + 29, lease_s=30, limit=100) == (
            ReindexState(100, RECORDS, busy=True)
        )
        assert await a.reindex_batch(node="a", now=T0 + 29, lease_s=30, limit=100) == (
            ReindexState(200, RECORDS)
        )
        # The holder gone quiet past its lease: another node takes over from its last batch.
        assert await b.reindex_batch(node="b", now=T0 + 60, lease_s=30, limit=100) == (
            ReindexState(300, RECORDS)
        )
        assert await a.reindex_batch(node="a", now=T0 + 61, lease_s=30, limit=100) == (
            ReindexState(300, RECORDS, busy=True)
        )
        while (await b.reindex_batch(node="b", now=T0 + 62, lease_s=30, limit=500)).remaining:
            pass
        await index_is_exact(a)
    finally:
        await a.close()
        await b.close()


async def test_the_reindex_logs_its_progress_as_done_of_total_with_a_rate(
    backend: Backend,
) -> None:
    await write_old_trace(backend)
    store = await backend.open()
    reindexer = Reindexer(store, node="n1", batch=400, log_every_s=0)
    try:
        with capture_logs() as logs:
            await reindexer.start()
            await wait_until(lambda: reindexer.remaining == 0 and not reindexer.running,
                             within=DEADLINE_S, what="reindex finished")  # fmt: skip
        await index_is_exact(store)
    finally:
        await reindexer.stop()
        await store.close()
    progress = [e for e in logs if e["event"] == "trace reindex progress"]
    assert [e["done"] for e in progress] == [400, 800, 1200, 1600]
    assert {e["total"] for e in progress} == {RECORDS}
    assert all(e["rate"] > 0 for e in progress)


async def test_two_nodes_started_together_leave_the_reindex_to_one_and_both_see_it_done(
    backend: Backend,
) -> None:
    await write_old_trace(backend)
    stores = [await backend.open(), await backend.open()]
    nodes = [
        Reindexer(store, node=name, batch=100, pause_s=0.01, retry_s=0.05, log_every_s=0)
        for store, name in zip(stores, ("n1", "n2"), strict=True)
    ]
    try:
        with capture_logs() as logs:
            await asyncio.gather(*(n.start() for n in nodes))
            await wait_until(lambda: not any(n.running for n in nodes),
                             within=DEADLINE_S, what="both reindexers done")  # fmt: skip
        assert [n.remaining for n in nodes] == [0, 0]
        await index_is_exact(stores[0])
    finally:
        for n in nodes:
            await n.stop()
        for store in stores:
            await store.close()
    filers = {e["node"] for e in logs if e["event"] == "trace reindex progress"}
    # One node filed every batch; the other found the lease held each time it asked.
    assert len(filers) == 1, filers
