"""`PostgresTraceStore`: the trace in PostgreSQL (asyncpg), for deployments with many nodes.

One writer task per process owns a dedicated connection. An `append` queues its encoded
entries and waits; the writer takes everything queued meanwhile (up to `max_batch` records)
and commits it in one transaction (group commit), copying the rows in with COPY. The
connection runs with `synchronous_commit = on`, so `append` returns only once the commit is
on the server's disk.

Several nodes may append to the same table: each transaction first takes a transaction-scoped
advisory lock derived from the table's name, then reads the head (last seq and hash) and
chains after it, so the appends of all nodes form one chain. The lock is held only for the
few milliseconds of one batch.

Data is stored as `text`, not `jsonb`: jsonb rewrites numbers and key order, and the chain
hashes the exact canonical bytes. `find` casts to jsonb only to filter.

If a commit's outcome is unknown (the connection dropped after COMMIT was sent), the append
is reported failed although the rows may be in; the chain stays valid either way, since the
next transaction reads the head from the table.

Every call to the database is bounded in time: a connection whose server went away without
closing it (a frozen host, a cut network) would otherwise hold the writer, and with it every
append of the node, until TCP gave up, minutes later, with no error anywhere. A commit (and
a connect) that takes longer than `timeout_s` fails its appends with `StoreUnavailable`,
which the hub's outbox turns into holding and retrying (sessions/durable.py,
signalling/outbox.py); reads get `query_timeout_s`, long enough for the statistics over
millions of records. A connection that failed or timed out is never used again: the next
commit opens a new one, so the writer recovers by itself once the server is back (a restart
drops every connection). Whatever happens in a commit, the writer task lives on: an append
always gets an answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import asyncpg
import msgspec
import structlog

from sessions.checkpoint import Checkpoint, Reason
from sessions.errors import StoreClosed, StoreUnavailable
from sessions.facets import (
    CALL_ANSWERED,
    CALL_CREATED,
    CALL_ENDED,
    CALL_ESCALATED,
    CONFERENCE_STARTED,
    EVIDENCE_STORED,
    INSTRUCTION_DELIVERED,
    INSTRUCTION_EXPIRED,
    INSTRUCTION_READ,
    INSTRUCTION_SENT,
    SIGN_IN,
    Facets,
    facets_of,
)
from sessions.recorder import TraceEvent
from sessions.statistics import (
    ACTION,
    CANCELLED,
    DIRECTIONS,
    OFFICER_ROLE,
    CallCounts,
    Counts,
    InstructionCounts,
    StatsQuery,
)
from sessions.store import (
    REINDEX_BATCH,
    REINDEX_STEP,
    Progress,
    ReindexState,
    StoredRecord,
    check_find_keys,
    check_latest_limit,
    record_of,
    subjects_of_text,
)
from sessions.subjects import subjects_of
from sessions.trace import GENESIS, Entry, Head, Link, entry_of, head_of, seal

log = structlog.get_logger(__name__)

DEFAULT_MAX_BATCH: Final = 5000
# Longest a connect or a commit may take, seconds (recorder.postgres_timeout_s).
DEFAULT_TIMEOUT_S: Final = 5.0
# Longest a read may take, seconds (recorder.postgres_query_timeout_s): the statistics
# read millions of records.
DEFAULT_QUERY_TIMEOUT_S: Final = 120.0
DEFAULT_SCHEMA: Final = "commandcenter"
SCHEMA_RE: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
TABLE: Final = "trace"
# The subject index's table (sessions/subjects.py): rows (subject, seq).
SUBJECTS: Final = "trace_subjects"
# How far the subject index covers the records written before it (store.ReindexState): one
# row; `owner` holds the background reindex's lease until `lease_until_us`.
REINDEX: Final = "trace_reindex"
_COLUMNS: Final = (
    "seq",
    "at_us",
    "kind",
    "data",
    "prev_hash",
    "hash",
    "court",
    "subject",
    "tag",
    "flag",
)
_SELECT: Final = ", ".join(_COLUMNS)
# Errors that mean "the database did not do it", as opposed to bugs of ours.
# InternalClientError: asyncpg's protocol in a state it cannot go on from, as after the
# server dropped the connection in the middle of a COPY.
_DB_ERRORS: Final = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    OSError,
    TimeoutError,
)


def _json_text(value: str) -> str:
    return msgspec.json.encode(value).decode("utf-8")


def _lock_key(schema: str) -> int:
    digest = hashlib.sha256(f"commandcenter:{schema}.{TABLE}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


_CHECKPOINT_COLUMNS: Final = "seq, hash, at_us, node, reason, key_id, signature, tsa_token"


def _schema_sql(t: str, schema: str) -> list[str]:
    return [
        f'CREATE SCHEMA IF NOT EXISTS "{schema}"',
        f"""CREATE TABLE IF NOT EXISTS {t} (
            seq bigint PRIMARY KEY,
            at_us bigint NOT NULL,
            kind text NOT NULL,
            data text NOT NULL,
            prev_hash text NOT NULL,
            hash text NOT NULL,
            court text,
            subject text,
            tag text,
            flag boolean
        )""",
        # Covers the range counts of the statistics (index-only once vacuumed).
        f"CREATE INDEX IF NOT EXISTS trace_stats ON {t} (kind, at_us)"
        " INCLUDE (court, tag, subject, flag)",
        # The per-call lookups (answered when? ended how? escalated?), distinct officers and
        # cases (grouped by subject), and `find` by kind.
        f"CREATE INDEX IF NOT EXISTS trace_subject ON {t} (kind, subject, at_us)"
        " INCLUDE (tag, court)",
        # The subject index (sessions/subjects.py): which records are about which call,
        # conference or evidence item; written in the same transaction as the records.
        f"""CREATE TABLE IF NOT EXISTS "{schema}".{SUBJECTS} (
            subject text NOT NULL,
            seq bigint NOT NULL,
            PRIMARY KEY (subject, seq)
        )""",
        f"""CREATE TABLE IF NOT EXISTS "{schema}".{REINDEX} (
            id int PRIMARY KEY CHECK (id = 1),
            end_seq bigint NOT NULL,
            done_seq bigint NOT NULL,
            owner text,
            lease_until_us bigint
        )""",
        # Signed heads (sessions/checkpoint.py): beside the chain, not in it.
        f"""CREATE TABLE IF NOT EXISTS "{schema}".checkpoints (
            id bigserial PRIMARY KEY,
            seq bigint NOT NULL,
            hash text NOT NULL,
            at_us bigint NOT NULL,
            node text NOT NULL,
            reason text NOT NULL,
            key_id text NOT NULL,
            signature text NOT NULL,
            tsa_token text
        )""",
        # The incremental chain check's start, the latest `verified` checkpoint, in one index
        # scan rather than a walk over the periodic ones (1,440 a day). Created by the first
        # writable open of an older schema; a read-only open of one without it scans instead.
        f'CREATE INDEX IF NOT EXISTS checkpoints_reason ON "{schema}".checkpoints (reason, id)',
        # Where a starting checkpointer resumes, the highest checkpoint, likewise.
        f'CREATE INDEX IF NOT EXISTS checkpoints_head ON "{schema}".checkpoints (seq, at_us, id)',
    ]


def _row(link: Link) -> tuple[Any, ...]:
    f = link.facets
    return (
        link.seq,
        link.at_us,
        link.kind,
        link.data,
        link.prev_hash,
        link.hash,
        f.court,
        f.subject,
        f.tag,
        f.flag,
    )


def _link(row: asyncpg.Record) -> Link:
    # By position, in _COLUMNS order: verification reads a million of these.
    seq, at_us, kind, data, prev_hash, digest, court, subject, tag, flag = row
    return Link(seq, at_us, kind, data, prev_hash, digest, Facets(court, subject, tag, flag))


@dataclass(frozen=True, slots=True)
class _Append:
    entries: list[Entry]
    subjects: list[tuple[str, ...]]
    future: asyncio.Future[list[Link]]


class PostgresTraceStore:
    def __init__(
        self,
        *,
        dsn: str,
        schema: str,
        pool: Any,
        writer: Any | None,
        max_batch: int,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        query_timeout_s: float = DEFAULT_QUERY_TIMEOUT_S,
    ) -> None:
        self.schema = schema
        self._timeout_s = timeout_s
        self._query_timeout_s = query_timeout_s
        self._dsn = dsn
        self._table = f'"{schema}".{TABLE}'
        self._lock = _lock_key(schema)
        self._pool = pool
        self._writer = writer
        self._max_batch = max_batch
        self._queue: asyncio.Queue[_Append | None] = asyncio.Queue()
        self._closed = False
        self.checkpoint_rows_read = 0
        self._task: asyncio.Task[None] | None = None
        if writer is not None:
            self._task = asyncio.get_running_loop().create_task(self._write_loop())

    # ---- opening and closing ------------------------------------------------------------

    @classmethod
    async def open(
        cls,
        dsn: str,
        *,
        schema: str = DEFAULT_SCHEMA,
        max_batch: int = DEFAULT_MAX_BATCH,
        readonly: bool = False,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        query_timeout_s: float = DEFAULT_QUERY_TIMEOUT_S,
    ) -> PostgresTraceStore:
        """Connect, creating the schema and table unless `readonly`. Raises
        StoreUnavailable."""
        if not SCHEMA_RE.fullmatch(schema):
            raise ValueError(f"schema {schema!r} is not an identifier")
        table = f'"{schema}".{TABLE}'
        pool: Any = None
        writer: Any = None
        try:
            if not readonly:
                writer = await cls._connect(dsn, schema, timeout_s)
                async with asyncio.timeout(timeout_s), writer.transaction():
                    # Two nodes starting together must not race on CREATE ... IF NOT EXISTS.
                    await writer.execute("SELECT pg_advisory_xact_lock($1)", _lock_key(schema))
                    # A trace without the reindex row predates it: written before the
                    # subject index (or while it was new and perhaps never rebuilt). Every
                    # record up to the head, read under the appends' lock, is to be filed by
                    # the background reindex (sessions/reindexer.py); every later one files
                    # itself.
                    fresh, exists = await writer.fetchrow(
                        "SELECT to_regclass($1) IS NULL, to_regclass($2) IS NOT NULL",
                        f'"{schema}".{REINDEX}',
                        table,
                    )
                    watermark = None
                    if fresh:
                        watermark = 0
                        if exists:
                            watermark = await writer.fetchval(
                                f"SELECT coalesce(max(seq), 0) FROM {table}"
                            )
                    for statement in _schema_sql(table, schema):
                        await writer.execute(statement)
                    if watermark is not None:
                        await writer.execute(
                            f'INSERT INTO "{schema}".{REINDEX} (id, end_seq, done_seq)'
                            " VALUES (1, $1, 0) ON CONFLICT DO NOTHING",
                            watermark,
                        )
                if watermark:
                    log.warning(
                        "trace subject index is new: the server files the older records in the "
                        "background, and audit views may miss some of them until it is done",
                        schema=schema,
                        records=watermark,
                    )
            pool = await asyncpg.create_pool(
                dsn, min_size=1, max_size=4, timeout=timeout_s, command_timeout=query_timeout_s
            )
            async with pool.acquire(timeout=timeout_s) as conn:
                await conn.fetchval(f"SELECT 1 FROM {table} LIMIT 1", timeout=timeout_s)
        except _DB_ERRORS as exc:
            if writer is not None:
                writer.terminate()
            if pool is not None:
                pool.terminate()
            raise StoreUnavailable(f"postgresql {schema}: {exc!r}") from exc
        return cls(
            dsn=dsn,
            schema=schema,
            pool=pool,
            writer=writer,
            max_batch=max_batch,
            timeout_s=timeout_s,
            query_timeout_s=query_timeout_s,
        )

    @staticmethod
    async def _connect(dsn: str, schema: str, timeout_s: float) -> Any:
        settings = {
            # on: a commit returns once it is flushed on the server (the server default may
            # be off, which would let an acknowledged append vanish in a crash).
            "synchronous_commit": "on",
            # Names the writer in pg_stat_activity, for an operator (and the tests).
            "application_name": f"cc-trace-writer:{schema}"[:63],
        }
        return await asyncpg.connect(
            dsn, server_settings=settings, timeout=timeout_s, command_timeout=timeout_s
        )

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._task is not None:
            # The sentinel queues behind every append already handed over.
            self._queue.put_nowait(None)
            await self._task
        if self._writer is not None:
            with contextlib.suppress(*_DB_ERRORS):
                await asyncio.wait_for(self._writer.close(), self._timeout_s)
            self._writer.terminate()
        try:
            await asyncio.wait_for(self._pool.close(), self._timeout_s)
        except _DB_ERRORS:
            self._pool.terminate()

    # ---- writing --------------------------------------------------------------------------

    async def append(self, events: Sequence[TraceEvent]) -> list[StoredRecord]:
        links = await self.append_links(events)
        return [
            StoredRecord(x.seq, x.kind, x.at_us / 1_000_000, e.data, x.prev_hash, x.hash)
            for x, e in zip(links, events, strict=True)
        ]

    async def append_links(self, events: Sequence[TraceEvent]) -> list[Link]:
        """Like `append`, returning the links as stored (no records built)."""
        if self._closed:
            raise StoreClosed("the trace store is closed")
        if self._task is None:
            raise StoreUnavailable("the trace store was opened read-only")
        entries = [entry_of(e, facets_of) for e in events]
        if not entries:
            return []
        subjects = [subjects_of(e.kind, e.data) for e in events]
        future: asyncio.Future[list[Link]] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Append(entries, subjects, future))
        # A cancelled caller cancels only its own future; the batch it shares goes on.
        return await future

    async def _write_loop(self) -> None:
        stop = False
        while not stop:
            item = await self._queue.get()
            if item is None:
                break
            batch = [item]
            size = len(item.entries)
            while size < self._max_batch and not self._queue.empty():
                more = self._queue.get_nowait()
                if more is None:
                    stop = True
                    break
                batch.append(more)
                size += len(more.entries)
            await self._commit(batch)

    async def _commit(self, batch: list[_Append]) -> None:
        results: list[list[Link]] = []
        try:
            async with asyncio.timeout(self._timeout_s):
                await self._commit_in_time(batch, results)
        except Exception as exc:
            # Never used again, whatever state it is in: the next commit connects afresh.
            writer, self._writer = self._writer, None
            if writer is not None:
                writer.terminate()
            if isinstance(exc, _DB_ERRORS):
                log.warning(
                    "trace commit failed",
                    schema=self.schema,
                    appends=len(batch),
                    error=repr(exc)[:300],
                )
            else:
                log.exception("trace commit failed", schema=self.schema, appends=len(batch))
            reason = f"commit failed: {type(exc).__name__}"
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(StoreUnavailable(reason))
            return
        for item, links in zip(batch, results, strict=True):
            if not item.future.done():
                item.future.set_result(links)

    async def _commit_in_time(self, batch: list[_Append], results: list[list[Link]]) -> None:
        if self._writer is None or self._writer.is_closed():
            self._writer = None
            self._writer = await self._connect(self._dsn, self.schema, self._timeout_s)
        conn = self._writer
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", self._lock)
            row = await conn.fetchrow(
                f"SELECT seq, hash FROM {self._table} ORDER BY seq DESC LIMIT 1"
            )
            head = GENESIS if row is None else Head(row["seq"], row["hash"])
            rows: list[tuple[Any, ...]] = []
            filed: list[tuple[str, int]] = []
            for item in batch:
                links = seal(head, item.entries)
                head = head_of(links, head)
                results.append(links)
                rows.extend(_row(x) for x in links)
                for link, subjects in zip(links, item.subjects, strict=True):
                    filed.extend((s, link.seq) for s in subjects)
            await conn.copy_records_to_table(
                TABLE, schema_name=self.schema, columns=_COLUMNS, records=rows
            )
            if filed:
                await conn.copy_records_to_table(
                    SUBJECTS, schema_name=self.schema, columns=("subject", "seq"), records=filed
                )

    # ---- reading --------------------------------------------------------------------------

    async def _fetch(self, sql: str, *args: Any) -> list[Any]:
        if self._closed:
            raise StoreClosed("the trace store is closed")
        try:
            async with self._pool.acquire(timeout=self._timeout_s) as conn:
                return list(await conn.fetch(sql, *args, timeout=self._query_timeout_s))
        except _DB_ERRORS as exc:
            raise StoreUnavailable(f"postgresql {self.schema}: {type(exc).__name__}") from exc

    async def links(self, *, after_seq: int = 0, limit: int = 10000) -> list[Link]:
        rows = await self._fetch(
            f"SELECT {_SELECT} FROM {self._table} WHERE seq > $1 ORDER BY seq LIMIT $2",
            after_seq,
            limit,
        )
        return [_link(r) for r in rows]

    async def records(self, *, after_seq: int = 0, limit: int = 10000) -> list[StoredRecord]:
        return [record_of(x) for x in await self.links(after_seq=after_seq, limit=limit)]

    async def find(
        self,
        *,
        kinds: Sequence[str],
        data_equals: Mapping[str, str] | None = None,
        since: float | None = None,
        until: float | None = None,
        subject: str | None = None,
        last: int | None = None,
    ) -> list[StoredRecord]:
        check_find_keys(data_equals)
        kinds = list(kinds)
        if not kinds:
            return []
        args: list[Any] = [kinds]
        where = ["kind = ANY($1::text[])"]
        if subject is not None:
            args.append(subject)
            where.append(f"subject = ${len(args)}")
        if since is not None:
            args.append(round(since * 1_000_000))
            where.append(f"at_us >= ${len(args)}")
        if until is not None:
            args.append(round(until * 1_000_000))
            where.append(f"at_us < ${len(args)}")
        wanted = dict(data_equals or {})
        for value in wanted.values():
            # A cheap text prefilter: the value's JSON form appears verbatim in the canonical
            # data of every match. Exact matching follows in Python: casting to jsonb in SQL
            # would fail on any record holding a \u0000, which PostgreSQL's jsonb refuses.
            args.append(_json_text(value))
            where.append(f"strpos(data, ${len(args)}) > 0")
        sql = f"SELECT {_SELECT} FROM {self._table} WHERE {' AND '.join(where)} ORDER BY seq"
        # The last few from the end of the index; with data_equals the exact match is made
        # here, so the limit follows it.
        limited = last is not None and not wanted
        if limited:
            # By time from the index's end (trace_subject ends in at_us), not by seq.
            args.append(max(last or 0, 0))
            sql = (
                sql.removesuffix("ORDER BY seq")
                + f"ORDER BY at_us DESC, seq DESC LIMIT ${len(args)}"
            )
        records = [record_of(_link(r)) for r in await self._fetch(sql, *args)]
        if limited:
            return records[::-1]
        # A number never equals a string here, as in the other stores.
        found = [r for r in records if all(r.data.get(k) == v for k, v in wanted.items())]
        if last is None:
            return found
        found.sort(key=lambda r: (r.at, r.seq))
        return found[len(found) - min(max(last, 0), len(found)) :]

    async def records_about(self, subject: str, *, limit: int = 10000) -> list[StoredRecord]:
        cols = ", ".join(f"t.{c}" for c in _COLUMNS)
        rows = await self._fetch(
            f'SELECT {cols} FROM "{self.schema}".{SUBJECTS} s'
            f" JOIN {self._table} t ON t.seq = s.seq"
            " WHERE s.subject = $1 ORDER BY s.seq LIMIT $2",
            subject,
            max(limit, 0),
        )
        return [record_of(_link(r)) for r in rows]

    async def reindex(self, progress: Progress | None = None) -> int:
        if self._closed:
            raise StoreClosed("the trace store is closed")
        if self._task is None:
            raise StoreUnavailable("the trace store was opened read-only")
        subjects = f'"{self.schema}".{SUBJECTS}'
        try:
            async with self._pool.acquire(timeout=self._timeout_s) as conn:
                # Appends go on meanwhile and file their own records; ON CONFLICT makes a
                # row filed twice harmless.
                async with conn.transaction():
                    end = await conn.fetchval(f"SELECT coalesce(max(seq), 0) FROM {self._table}")
                    await conn.execute(f"DELETE FROM {subjects} WHERE seq <= $1", end)
                done = after = 0
                while True:
                    rows = await self._file_page(
                        conn, after, end, REINDEX_BATCH, self._query_timeout_s
                    )
                    if not rows:
                        break
                    after = rows[-1]["seq"]
                    done += len(rows)
                    if progress is not None:
                        progress(done)
                # Everything up to `end` is filed: the server's background reindex, if one
                # was pending below it, has nothing left to do.
                await conn.execute(
                    f'UPDATE "{self.schema}".{REINDEX} SET done_seq = end_seq WHERE end_seq <= $1',
                    end,
                )
                return done
        except _DB_ERRORS as exc:
            raise StoreUnavailable(f"postgresql {self.schema}: {type(exc).__name__}") from exc

    async def _file_page(
        self, conn: Any, after: int, end: int, limit: int, query_timeout_s: float | None = None
    ) -> list[Any]:
        """File the subjects of up to `limit` records after `after`, up to `end`; the
        records read (ON CONFLICT: a row already filed stays filed once)."""
        rows: list[Any] = await conn.fetch(
            f"SELECT seq, kind, data FROM {self._table}"
            " WHERE seq > $1 AND seq <= $2 ORDER BY seq LIMIT $3",
            after,
            end,
            limit,
            timeout=query_timeout_s,
        )
        filed = [(s, r["seq"]) for r in rows for s in subjects_of_text(r["kind"], r["data"])]
        if filed:
            await conn.executemany(
                f'INSERT INTO "{self.schema}".{SUBJECTS} (subject, seq) VALUES ($1, $2)'
                " ON CONFLICT DO NOTHING",
                filed,
            )
        return rows

    async def reindex_state(self) -> ReindexState:
        table = f'"{self.schema}".{REINDEX}'
        rows = await self._reindex_row(table)
        return ReindexState(0, 0) if not rows else ReindexState(rows[0][0], rows[0][1])

    async def _reindex_row(self, table: str) -> list[Any]:
        if not (await self._fetch("SELECT to_regclass($1) IS NOT NULL", table))[0][0]:
            # A schema only ever opened read-only since before the row existed.
            return []
        return await self._fetch(f"SELECT done_seq, end_seq FROM {table} WHERE id = 1")

    async def reindex_batch(
        self, *, node: str, now: float, lease_s: float, limit: int = REINDEX_STEP
    ) -> ReindexState:
        if self._closed:
            raise StoreClosed("the trace store is closed")
        if self._task is None:
            raise StoreUnavailable("the trace store was opened read-only")
        state = f'"{self.schema}".{REINDEX}'
        try:
            async with (
                self._pool.acquire(timeout=self._timeout_s) as conn,
                asyncio.timeout(self._query_timeout_s),
                conn.transaction(),
            ):
                # FOR UPDATE: the nodes' batches take turns on the row, so the lease is read
                # and taken by one at a time and no batch is filed twice.
                row = await conn.fetchrow(
                    f"SELECT done_seq, end_seq, owner, lease_until_us FROM {state}"
                    " WHERE id = 1 FOR UPDATE"
                )
                if row is None:
                    return ReindexState(0, 0)
                done, end, owner, lease_until = row
                if done >= end:
                    return ReindexState(done, end)
                held = lease_until is not None and lease_until > round(now * 1_000_000)
                if owner not in (None, node) and held:
                    return ReindexState(done, end, busy=True)
                # Appends file only records after the watermark; a row the CLI's reindex
                # filed meanwhile is filed once (`_file_page`).
                rows = await self._file_page(conn, done, end, max(limit, 1))
                done = rows[-1]["seq"] if rows else end
                await conn.execute(
                    f"UPDATE {state} SET done_seq = $1, owner = $2, lease_until_us = $3"
                    " WHERE id = 1",
                    done,
                    node,
                    round((now + lease_s) * 1_000_000),
                )
                return ReindexState(done, end)
        except _DB_ERRORS as exc:
            raise StoreUnavailable(f"postgresql {self.schema}: {type(exc).__name__}") from exc

    async def vacuum(self) -> None:
        """VACUUM ANALYZE the trace table, as autovacuum eventually does: after a bulk load
        it lets the statistics use index-only scans at once."""
        if self._closed:
            raise StoreClosed("the trace store is closed")
        try:
            async with self._pool.acquire(timeout=self._timeout_s) as conn:
                await conn.execute(f"VACUUM (ANALYZE) {self._table}", timeout=self._query_timeout_s)
        except _DB_ERRORS as exc:
            raise StoreUnavailable(f"postgresql {self.schema}: {type(exc).__name__}") from exc

    async def add_checkpoint(self, checkpoint: Checkpoint) -> None:
        if self._closed:
            raise StoreClosed("the trace store is closed")
        if self._task is None:
            raise StoreUnavailable("the trace store was opened read-only")
        cp = checkpoint
        try:
            # Pool connections commit with the server's default; a checkpoint must be as
            # durable as the records it covers.
            async with self._pool.acquire() as conn, conn.transaction():
                await conn.execute("SET LOCAL synchronous_commit = on")
                await conn.execute(
                    f'INSERT INTO "{self.schema}".checkpoints ({_CHECKPOINT_COLUMNS})'
                    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                    cp.seq,
                    cp.hash,
                    cp.at_us,
                    cp.node,
                    cp.reason,
                    cp.key_id,
                    cp.signature,
                    cp.tsa_token,
                )
        except _DB_ERRORS as exc:
            raise StoreUnavailable(f"postgresql {self.schema}: {type(exc).__name__}") from exc

    async def checkpoints(self) -> list[Checkpoint]:
        return await self._read_checkpoints(
            f'SELECT {_CHECKPOINT_COLUMNS} FROM "{self.schema}".checkpoints ORDER BY id'
        )

    async def latest_checkpoints(self, reason: Reason, *, limit: int = 1) -> list[Checkpoint]:
        check_latest_limit(limit)
        return await self._read_checkpoints(self.latest_checkpoints_sql, reason, limit)

    @property
    def latest_checkpoints_sql(self) -> str:
        """The query of `latest_checkpoints` ($1 the reason, $2 the limit), for EXPLAIN."""
        return (
            f'SELECT {_CHECKPOINT_COLUMNS} FROM "{self.schema}".checkpoints'
            " WHERE reason = $1 ORDER BY id DESC LIMIT $2"
        )

    async def highest_checkpoint(self) -> Checkpoint | None:
        found = await self._read_checkpoints(self.highest_checkpoint_sql)
        return found[0] if found else None

    @property
    def highest_checkpoint_sql(self) -> str:
        """The query of `highest_checkpoint`, for EXPLAIN."""
        return (
            f'SELECT {_CHECKPOINT_COLUMNS} FROM "{self.schema}".checkpoints'
            " ORDER BY seq DESC, at_us DESC, id DESC LIMIT 1"
        )

    async def _read_checkpoints(self, sql: str, *args: Any) -> list[Checkpoint]:
        exists = await self._fetch("SELECT to_regclass($1)", f'"{self.schema}".checkpoints')
        if exists[0][0] is None:
            # A trace written before checkpoints, opened read-only.
            return []
        rows = await self._fetch(sql, *args)
        self.checkpoint_rows_read += len(rows)
        return [Checkpoint(*row) for row in rows]

    async def count(self) -> int:
        rows = await self._fetch(f"SELECT count(*) FROM {self._table}")
        return int(rows[0][0])

    async def head(self) -> Head:
        rows = await self._fetch(f"SELECT seq, hash FROM {self._table} ORDER BY seq DESC LIMIT 1")
        return GENESIS if not rows else Head(rows[0]["seq"], rows[0]["hash"])

    async def counts(self, query: StatsQuery) -> Counts:
        t = self._table
        courts = None if query.courts is None else sorted(query.courts)
        by_court = "" if courts is None else " AND court = ANY($5::text[])"
        period = f"at_us >= $3 AND at_us < $4{by_court}"
        # Grouped by subject rather than count(DISTINCT): the grouping streams in the order
        # of the trace_subject index, where count(DISTINCT) sorts.
        first_query = self._fetch(
            f"""WITH
                signed_in AS (SELECT subject, count(*) AS n FROM {t}
                    WHERE kind = $1 AND tag = '{OFFICER_ROLE}' AND {period} GROUP BY subject),
                stored AS (SELECT subject, count(*) AS n FROM {t}
                    WHERE kind = $2 AND {period} GROUP BY subject)
            SELECT
                (SELECT coalesce(sum(n), 0)::bigint FROM signed_in),
                (SELECT count(subject) FROM signed_in),
                (SELECT coalesce(sum(n), 0)::bigint FROM stored),
                (SELECT count(subject) FROM stored),
                (SELECT count(*) FROM {t} WHERE kind = '{CONFERENCE_STARTED}' AND {period}
                    AND tag IS DISTINCT FROM '{ACTION}'),
                (SELECT count(*) FROM {t} WHERE kind = '{CONFERENCE_STARTED}' AND {period}
                    AND tag = '{ACTION}')""",
            SIGN_IN,
            EVIDENCE_STORED,
            query.since_us,
            query.until_us,
            *([] if courts is None else [courts]),
        )
        c_court = "" if courts is None else " AND c.court = ANY($9::text[])"
        calls_query = self._fetch(
            f"""WITH calls AS (
                SELECT c.tag AS direction, c.at_us AS created, c.flag AS flag,
                    (SELECT min(a.at_us) FROM {t} a WHERE a.kind = $1 AND a.subject = c.subject)
                        AS answered,
                    (SELECT e.tag FROM {t} e WHERE e.kind = $2 AND e.subject = c.subject
                        ORDER BY e.at_us, e.seq LIMIT 1) AS reason,
                    EXISTS (SELECT 1 FROM {t} e WHERE e.kind = $2 AND e.subject = c.subject)
                        AS ended,
                    EXISTS (SELECT 1 FROM {t} x WHERE x.kind = $3 AND x.subject = c.subject)
                        AS escalated
                FROM {t} c
                WHERE c.kind = $4 AND c.at_us >= $5 AND c.at_us < $6
                    AND c.tag = ANY($7::text[]){c_court}
            )
            SELECT direction, count(*), count(answered),
                coalesce(sum(answered - created), 0)::bigint,
                count(*) FILTER (WHERE answered IS NULL AND ended
                    AND reason IS DISTINCT FROM $8),
                count(*) FILTER (WHERE answered IS NULL AND ended
                    AND reason IS NOT DISTINCT FROM $8),
                count(*) FILTER (WHERE answered IS NULL AND NOT ended),
                count(*) FILTER (WHERE flag OR escalated)
            FROM calls GROUP BY direction ORDER BY direction""",
            CALL_ANSWERED,
            CALL_ENDED,
            CALL_ESCALATED,
            CALL_CREATED,
            query.since_us,
            query.until_us,
            list(DIRECTIONS),
            CANCELLED,
            *([] if courts is None else [courts]),
        )
        s_court = "" if courts is None else " AND s.court = ANY($7::text[])"
        # The instructions sent in the period and courts, each receipt found by its subject
        # (the instruction id) on the trace_subject index; the read delays come as an array
        # for the median.
        instructions_query = self._fetch(
            f"""WITH sent AS (
                SELECT s.subject AS id, s.at_us AS at, s.flag AS wide FROM {t} s
                WHERE s.kind = $1 AND s.at_us >= $2 AND s.at_us < $3
                    AND s.subject IS NOT NULL{s_court}
            ),
            reads AS (
                SELECT sent.id, r.at_us - sent.at AS delay FROM sent
                    JOIN {t} r ON r.kind = $5 AND r.subject = sent.id
            )
            SELECT
                (SELECT count(*) FROM sent),
                (SELECT count(*) FROM sent JOIN {t} d ON d.kind = $4 AND d.subject = sent.id),
                (SELECT count(*) FROM reads),
                (SELECT count(*) FROM sent
                    WHERE EXISTS (SELECT 1 FROM reads WHERE reads.id = sent.id)
                    AND (wide IS NOT TRUE OR EXISTS (SELECT 1 FROM {t} x
                        WHERE x.kind = $6 AND x.subject = sent.id AND x.flag))),
                (SELECT coalesce(array_agg(delay ORDER BY delay), '{{}}') FROM reads)""",
            INSTRUCTION_SENT,
            query.since_us,
            query.until_us,
            INSTRUCTION_DELIVERED,
            INSTRUCTION_READ,
            INSTRUCTION_EXPIRED,
            *([] if courts is None else [courts]),
        )
        # On three connections at once: each query is consistent in itself (the call
        # outcomes add up), and together they take the time of the slowest.
        first, rows, instructed = await asyncio.gather(first_query, calls_query, instructions_query)
        n_sent, delivered, read, acknowledged, delays = instructed[0]
        sign_ins, officers, items, cases, conferences, actions = first[0]
        calls = {
            str(r[0]): CallCounts(
                calls=r[1],
                answered=r[2],
                answer_us=int(r[3]),
                missed=r[4],
                cancelled=r[5],
                unfinished=r[6],
                emergency=r[7],
            )
            for r in rows
        }
        return Counts(
            sign_ins=sign_ins,
            officers=officers,
            evidence_items=items,
            cases=cases,
            conferences=conferences,
            actions=actions,
            calls=calls,
            instructions=InstructionCounts(
                sent=n_sent,
                delivered=delivered,
                read=read,
                acknowledged=acknowledged,
                read_us=tuple(int(d) for d in delays),
            ),
        )


__all__ = [
    "DEFAULT_MAX_BATCH",
    "DEFAULT_QUERY_TIMEOUT_S",
    "DEFAULT_SCHEMA",
    "DEFAULT_TIMEOUT_S",
    "SCHEMA_RE",
    "PostgresTraceStore",
]
