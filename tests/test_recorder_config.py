"""The `[recorder]` configuration and the recorder the app builds from it: validation naming
the key, environment overrides, each backend opened, and the durable recorder's lifecycle."""

from __future__ import annotations

import math
import re
import time
from pathlib import Path

import pytest
from pytest_aiohttp import AiohttpClient

from commandcenter.app import create_app
from commandcenter.config import Config, ConfigError, load_config, replace_section
from commandcenter.keys import RECORDER, TRACE
from commandcenter.stores import open_store, sqlite_path
from sessions.durable import DurableRecorder
from sessions.errors import StoreClosed
from sessions.memory_store import MemoryTraceStore
from sessions.postgres_store import PostgresTraceStore
from sessions.recorder import MemoryRecorder, TraceEvent
from sessions.sqlite_store import SqliteTraceStore
from tests.conftest import make_config
from tests.test_statistics import Clock, Site
from tests.tracehelpers import PG_DSN, PostgresBackend


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"backend": "mysql"}, "recorder.backend: 'mysql' is not one of sqlite, postgres, memory"),
        ({"backend": "postgres"}, "recorder.postgres_dsn: required"),
        ({"postgres_schema": "a; DROP TABLE x"}, "recorder.postgres_schema"),
        ({"max_batch": 0}, "recorder.max_batch: must be positive"),
        ({"reindex_batch": 0}, "recorder.reindex_batch: must be positive"),
        ({"reindex_pause_s": -1.0}, "recorder.reindex_pause_s: must be 0 or more"),
        ({"time_zone": "Mars/Olympus"}, "recorder.time_zone: 'Mars/Olympus' is not a known"),
    ],
)
def test_a_bad_recorder_setting_is_an_error_naming_the_key(
    changes: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        replace_section(Config(), "recorder", **changes)


def test_the_defaults_keep_the_trace_in_sqlite_under_the_data_dir() -> None:
    config = Config()
    assert config.recorder.backend == "sqlite"
    assert sqlite_path(config) == Path("./var/trace.sqlite3")
    assert config.recorder.time_zone == "UTC"


def test_environment_variables_override_the_recorder_section(tmp_path: Path) -> None:
    config = load_config(
        None,
        environ={
            "COMMANDCENTER_RECORDER_BACKEND": "postgres",
            "COMMANDCENTER_RECORDER_POSTGRES_DSN": PG_DSN,
            "COMMANDCENTER_RECORDER_MAX_BATCH": "100",
            "COMMANDCENTER_RECORDER_TIME_ZONE": "Asia/Shanghai",
            "COMMANDCENTER_RECORDER_SQLITE_PATH": str(tmp_path / "t.db"),
        },
    )
    rec = config.recorder
    assert (rec.backend, rec.postgres_dsn, rec.max_batch) == ("postgres", PG_DSN, 100)
    assert rec.time_zone == "Asia/Shanghai"
    assert sqlite_path(config) == tmp_path / "t.db"


@pytest.mark.postgres
async def test_open_store_opens_the_configured_backend(tmp_path: Path) -> None:
    config = make_config(tmp_path / "var")
    store = await open_store(config)
    try:
        assert isinstance(store, SqliteTraceStore)
        assert store.path == tmp_path / "var" / "trace.sqlite3"
    finally:
        await store.close()
    memory = await open_store(replace_section(config, "recorder", backend="memory"))
    assert isinstance(memory, MemoryTraceStore)
    pg = PostgresBackend(PG_DSN)
    try:
        store = await open_store(pg.configure(config))
        assert isinstance(store, PostgresTraceStore)
        assert store.schema == pg.schema
        await store.close()
    finally:
        await pg.drop()


async def test_the_app_records_into_the_configured_store_and_closes_it(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    config = make_config(tmp_path / "var")
    app = create_app(config)
    recorder = app[RECORDER]
    assert isinstance(recorder, DurableRecorder)
    assert app[TRACE] is recorder
    http = await aiohttp_client(app)
    # Opened at startup, before anyone signed in.
    assert isinstance(recorder.store, SqliteTraceStore)
    await recorder.record([TraceEvent("sign_in", 1.0, {"user": "o1", "role": "officer"})])
    await http.close()
    with pytest.raises(StoreClosed):
        await recorder.record([TraceEvent("sign_in", 2.0)])
    reopened = await SqliteTraceStore.open(tmp_path / "var" / "trace.sqlite3", readonly=True)
    try:
        # The start is marked first (sessions/restart.py), then what was recorded.
        assert [r.kind for r in await reopened.records()] == ["server_started", "sign_in"]
    finally:
        await reopened.close()


async def test_an_app_given_a_memory_recorder_has_no_trace_and_stats_say_so(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    config = make_config(tmp_path / "var")
    app = create_app(config, recorder=MemoryRecorder())
    assert TRACE not in app
    http = await aiohttp_client(app)
    site = Site(http, config, Clock(time.time()))
    status, body = await site.stats(
        ("aud", "auditor", "P"), **{"from": "2026-03-15", "to": "2026-03-16"}
    )
    assert (status, body["error"]) == (503, "unavailable")


async def test_the_durable_recorder_opens_its_store_on_first_use_and_closes_once() -> None:
    opened: list[MemoryTraceStore] = []

    async def open_memory() -> MemoryTraceStore:
        opened.append(MemoryTraceStore())
        return opened[-1]

    recorder = DurableRecorder(open_memory)
    with pytest.raises(StoreClosed, match="not open yet"):
        _ = recorder.store
    await recorder.record([TraceEvent("x", 1.0)])
    await recorder.start()
    assert len(opened) == 1
    assert await recorder.count() == 1
    await recorder.close()
    await recorder.close()
    with pytest.raises(StoreClosed):
        await recorder.count()


async def test_an_event_that_is_not_even_a_time_is_recorded_as_a_stand_in() -> None:
    recorder = DurableRecorder.over(MemoryTraceStore())
    await recorder.record([TraceEvent("position", math.nan, {"lat": 1.0})])
    (record,) = await recorder.records()
    assert (record.kind, record.at) == ("unencodable_event", 0.0)
    assert record.data == {"kind": "position", "error": "at: nan is not a time"}
