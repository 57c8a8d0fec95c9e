"""The PostgreSQL trace through a database restart and a database that stops answering, on a
PostgreSQL server of the test's own (bench/_services.py: initdb under tmp_path, its own
port; the machine's shared server is never restarted). Appends fail fast with
`StoreUnavailable` while the database is away, never hang, and succeed again once it is
back, on a new connection; the hub holds what it could not record and tells it afterwards."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiohttp.pytest_plugin import AiohttpClient

from bench._services import PrivatePostgres
from commandcenter.app import create_app
from sessions.durable import verify_store
from sessions.errors import StoreUnavailable
from sessions.postgres_store import PostgresTraceStore
from sessions.recorder import MemoryRecorder, TraceEvent
from tests.conftest import make_config
from tests.polling import wait_until
from tests.wsclient import Server

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

TIMEOUT_S = 1.5
# An append's answer may take the timeout plus scheduling on a busy machine.
ANSWER_S = TIMEOUT_S + 3.0
SCHEMA = "outage"


@pytest.fixture
def postgres() -> Iterator[PrivatePostgres]:
    server = PrivatePostgres(fsync=False)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def store(postgres: PrivatePostgres) -> AsyncIterator[PostgresTraceStore]:
    opened = await PostgresTraceStore.open(postgres.dsn, schema=SCHEMA, timeout_s=TIMEOUT_S)
    try:
        yield opened
    finally:
        await opened.close()


def ev(i: int) -> TraceEvent:
    return TraceEvent("position", 1_773_532_800.0 + i, {"user": f"o{i}"})


async def append_in_time(store: PostgresTraceStore, i: int) -> bool:
    """Append one event; whether it was stored. Failing the test if no answer comes."""
    started = time.monotonic()
    try:
        async with asyncio.timeout(ANSWER_S):
            await store.append([ev(i)])
    except StoreUnavailable:
        return False
    except TimeoutError:
        raise AssertionError(f"append {i} got no answer within {ANSWER_S} s") from None
    finally:
        assert time.monotonic() - started < ANSWER_S
    return True


async def test_appends_across_a_database_restart_fail_fast_and_go_on_after_it(
    postgres: PrivatePostgres, store: PostgresTraceStore
) -> None:
    """`pg_ctl restart` drops the writer's connection mid-use: every append is answered
    (stored or `StoreUnavailable`) within the timeout, none hangs, the writer reconnects by
    itself and the chain holds exactly the appends reported stored."""
    stored: list[int] = []
    stop = asyncio.Event()

    async def appender() -> None:
        i = 0
        while not stop.is_set():
            i += 1
            if await append_in_time(store, i):
                stored.append(i)
            await asyncio.sleep(0.01)

    task = asyncio.create_task(appender())
    await wait_until(lambda: len(stored) >= 5, within=10.0, what="appends before")
    await asyncio.to_thread(postgres.restart)
    after = len(stored)
    await wait_until(lambda: len(stored) >= after + 5 or task.done(), within=20.0, what="after")
    stop.set()
    await task
    records = await store.records()
    assert [r.data["user"] for r in records] == [f"o{i}" for i in stored]
    assert (await verify_store(store)).ok


async def test_a_database_that_stops_answering_fails_the_append_within_the_timeout(
    postgres: PrivatePostgres, store: PostgresTraceStore
) -> None:
    """A server that keeps its sockets open and answers nothing (SIGSTOP, as a frozen host
    or a cut network) fails the commit after `timeout_s`, not when TCP gives up; once it
    answers again the next append is stored on a new connection."""
    assert await append_in_time(store, 1)
    postgres.freeze()
    try:
        assert not await append_in_time(store, 2)
    finally:
        postgres.thaw()
    ok = [False]

    async def stored_again() -> bool:
        ok[0] = await append_in_time(store, 3)
        return ok[0]

    await wait_until(stored_again, within=20.0, what="an append stored after the thaw")
    assert [r.data["user"] for r in await store.records()] == ["o1", "o3"]


async def test_the_hub_raises_the_alarm_while_the_database_is_silent_and_tells_after(
    postgres: PrivatePostgres, aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    """A server on the PostgreSQL trace whose database stops answering: a call placed
    meanwhile is held, not told, and `/readyz` fails within the timeout (no silent stall);
    once the database answers again the call is recorded, then told, and the trace
    verifies."""
    config = make_config(
        tmp_path / "var",
        recorder={
            "backend": "postgres",
            "postgres_dsn": postgres.dsn,
            "postgres_schema": SCHEMA,
            "postgres_timeout_s": TIMEOUT_S,
        },
    )
    http = await aiohttp_client(create_app(config))
    server = Server(http, config, MemoryRecorder())
    op = await server.connect("op1", "operator", "P01")
    officer = await server.connect("o1", "officer", "P01")
    postgres.freeze()
    try:
        ref = await officer.send("call_center")

        async def not_ready() -> bool:
            return (await http.get("/readyz")).status == 503

        await wait_until(not_ready, within=ANSWER_S, what="/readyz failing")
        await officer.assert_no("call_placed", within=0.2)
    finally:
        postgres.thaw()
    await officer.expect("call_placed", timeout=15.0, ref=ref)
    ringing = await op.expect("call_ringing", timeout=ANSWER_S)
    assert ringing["call"]["officer"]["id"] == "o1"

    async def ready() -> bool:
        return (await http.get("/readyz")).status == 200

    await wait_until(ready, within=ANSWER_S, what="/readyz back")
    store = await PostgresTraceStore.open(postgres.dsn, schema=SCHEMA, readonly=True)
    try:
        kinds = [r.kind for r in await store.records()]
        assert (await verify_store(store)).ok
    finally:
        await store.close()
    assert kinds.count("sign_in") == 2
    assert "call_created" in kinds
