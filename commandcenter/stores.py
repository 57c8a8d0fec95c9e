"""Where a configuration keeps the trace and the evidence files: the composition root's choice
of store implementation (`[recorder]`, `[evidence]`), used by the server and the CLI alike."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Final

from commandcenter.config import Config
from identity import Courts
from sessions import account_store
from sessions.account_store import AccountStore
from sessions.durable import DurableRecorder
from sessions.evidence_store import ContentFiles, EvidenceStore
from sessions.memory_store import MemoryTraceStore
from sessions.postgres_store import PostgresTraceStore
from sessions.recorder import SessionRecorder
from sessions.sqlite_store import SqliteTraceStore
from sessions.store import TraceStore

SQLITE_FILE: Final = "trace.sqlite3"


def sqlite_path(config: Config) -> Path:
    return Path(config.recorder.sqlite_path or Path(config.server.data_dir) / SQLITE_FILE)


async def open_store(config: Config, *, readonly: bool = False) -> TraceStore:
    """The trace store `config.recorder` names, opened. `readonly` (for the CLI) creates
    nothing and refuses appends. Raises StoreUnavailable."""
    rec = config.recorder
    if rec.backend == "postgres":
        return await PostgresTraceStore.open(
            rec.postgres_dsn,
            schema=rec.postgres_schema,
            max_batch=rec.max_batch,
            readonly=readonly,
            timeout_s=rec.postgres_timeout_s,
            query_timeout_s=rec.postgres_query_timeout_s,
        )
    if rec.backend == "sqlite":
        return await SqliteTraceStore.open(
            sqlite_path(config), max_batch=rec.max_batch, readonly=readonly
        )
    return MemoryTraceStore()


async def open_accounts(config: Config) -> AccountStore:
    """Where accounts are kept: beside the trace `config.recorder` names. Raises
    StoreUnavailable."""
    rec = config.recorder
    if rec.backend == "postgres":
        return await account_store.PostgresAccountStore.open(
            rec.postgres_dsn, schema=rec.postgres_schema
        )
    if rec.backend == "sqlite":
        path = sqlite_path(config).with_name(account_store.SQLITE_FILE)
        return await account_store.SqliteAccountStore.open(path)
    return account_store.MemoryAccountStore()


def durable_recorder(config: Config) -> DurableRecorder:
    """The recorder of a running server, over the configured store (opened at startup)."""
    return DurableRecorder(lambda: open_store(config))


def evidence_dir(config: Config) -> Path:
    return Path(config.evidence.dir or Path(config.server.data_dir) / "evidence")


def evidence_store(
    config: Config,
    *,
    trace: TraceStore,
    recorder: SessionRecorder,
    clock: Callable[[], float] = time.time,
) -> EvidenceStore:
    return EvidenceStore(
        files=ContentFiles(evidence_dir(config)),
        trace=trace,
        recorder=recorder,
        courts=Courts(config.courts),
        max_upload_bytes=config.evidence.max_upload_bytes,
        clock=clock,
    )


__all__ = [
    "SQLITE_FILE",
    "durable_recorder",
    "evidence_dir",
    "evidence_store",
    "open_accounts",
    "open_store",
    "sqlite_path",
]
