"""`SqliteTraceStore`: the trace in one SQLite file (WAL), the default store.

Writes go through one writer thread that owns the writing connection. An `append` hands its
encoded entries to that thread and waits; the thread takes everything that has queued up
meanwhile (up to `max_batch` records), chains it and commits it in one transaction, then
wakes every waiting caller: group commit, so thousands of appends per second cost a handful
of fsyncs. `synchronous=FULL` makes each commit reach the disk before `append` returns, so a
record acknowledged to anybody survives a crash or a power cut.

The head (last seq and hash) is read inside each write transaction (`BEGIN IMMEDIATE` holds
SQLite's write lock), not cached, so another process appending to the same file (a CLI
recording an export, say) continues the same chain instead of forking it.

Reads run on a second connection in a one-thread executor: WAL lets them proceed while the
writer commits. `open(..., readonly=True)` opens only that connection, for `audit verify` and
`stats`, and never creates a file.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TypeVar

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

T = TypeVar("T")

DEFAULT_MAX_BATCH: Final = 5000
BUSY_TIMEOUT_MS: Final = 10000

_SCHEMA: Final = (
    # seq is the rowid: appends go to the end of the b-tree and ORDER BY seq is free.
    """CREATE TABLE IF NOT EXISTS trace (
        seq INTEGER PRIMARY KEY,
        at_us INTEGER NOT NULL,
        kind TEXT NOT NULL,
        data TEXT NOT NULL,
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL,
        court TEXT,
        subject TEXT,
        tag TEXT,
        flag INTEGER
    )""",
    # Covers every range count of the statistics without touching the table.
    "CREATE INDEX IF NOT EXISTS trace_stats ON trace (kind, at_us, court, tag, subject, flag)",
    # The per-call lookups (answered when? ended how? escalated?), distinct officers and
    # cases (grouped by subject), and `find` by kind.
    "CREATE INDEX IF NOT EXISTS trace_subject ON trace (kind, subject, at_us, tag, court)",
    # The subject index (sessions/subjects.py): which records are about which call,
    # conference or evidence item; written in the same transaction as the records.
    """CREATE TABLE IF NOT EXISTS trace_subjects (
        subject TEXT NOT NULL,
        seq INTEGER NOT NULL,
        PRIMARY KEY (subject, seq)
    ) WITHOUT ROWID""",
    # How far the subject index covers the records written before it (store.ReindexState):
    # one row, made with the table; `owner` holds the background reindex's lease until
    # `lease_until_us`.
    """CREATE TABLE IF NOT EXISTS trace_reindex (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        end_seq INTEGER NOT NULL,
        done_seq INTEGER NOT NULL,
        owner TEXT,
        lease_until_us INTEGER
    )""",
    # Signed heads (sessions/checkpoint.py): beside the chain, not in it.
    """CREATE TABLE IF NOT EXISTS checkpoints (
        id INTEGER PRIMARY KEY,
        seq INTEGER NOT NULL,
        hash TEXT NOT NULL,
        at_us INTEGER NOT NULL,
        node TEXT NOT NULL,
        reason TEXT NOT NULL,
        key_id TEXT NOT NULL,
        signature TEXT NOT NULL,
        tsa_token TEXT
    )""",
    # The incremental chain check's start, the latest `verified` checkpoint, in one index
    # search rather than a walk over the periodic ones (1,440 a day). Created by the first
    # writable open of an older file; a read-only open of one without it scans instead.
    "CREATE INDEX IF NOT EXISTS checkpoints_reason ON checkpoints (reason, id)",
    # Where a starting checkpointer resumes, the highest checkpoint, likewise.
    "CREATE INDEX IF NOT EXISTS checkpoints_head ON checkpoints (seq, at_us, id)",
)
_COLUMNS: Final = "seq, at_us, kind, data, prev_hash, hash, court, subject, tag, flag"
_INSERT: Final = f"INSERT INTO trace ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
_HEAD: Final = "SELECT seq, hash FROM trace ORDER BY seq DESC LIMIT 1"
_INSERT_SUBJECT: Final = "INSERT OR IGNORE INTO trace_subjects (subject, seq) VALUES (?, ?)"
_ABOUT: Final = (
    "SELECT "
    + ", ".join(f"t.{c}" for c in _COLUMNS.split(", "))
    + " FROM trace_subjects s JOIN trace t ON t.seq = s.seq"
    " WHERE s.subject = ? ORDER BY s.seq LIMIT ?"
)
_CHECKPOINT_COLUMNS: Final = "seq, hash, at_us, node, reason, key_id, signature, tsa_token"
HIGHEST_CHECKPOINT_SQL: Final = (
    f"SELECT {_CHECKPOINT_COLUMNS} FROM checkpoints ORDER BY seq DESC, at_us DESC, id DESC LIMIT 1"
)
LATEST_CHECKPOINTS_SQL: Final = (
    f"SELECT {_CHECKPOINT_COLUMNS} FROM checkpoints WHERE reason = ? ORDER BY id DESC LIMIT ?"
)


def _row(link: Link) -> tuple[Any, ...]:
    f = link.facets
    flag = None if f.flag is None else int(f.flag)
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
        flag,
    )


def _link(row: tuple[Any, ...]) -> Link:
    seq, at_us, kind, data, prev_hash, digest, court, subject, tag, flag = row
    facets = Facets(court, subject, tag, None if flag is None else bool(flag))
    return Link(seq, at_us, kind, data, prev_hash, digest, facets)


def _tables(conn: sqlite3.Connection) -> set[str]:
    return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


_REINDEX_STATE: Final = (
    "SELECT done_seq, end_seq, owner, lease_until_us FROM trace_reindex WHERE id = 1"
)
_FILE_BATCH: Final = (
    "SELECT seq, kind, data FROM trace WHERE seq > ? AND seq <= ? ORDER BY seq LIMIT ?"
)


def _read_head(conn: sqlite3.Connection) -> Head:
    row = conn.execute(_HEAD).fetchone()
    return GENESIS if row is None else Head(int(row[0]), str(row[1]))


@dataclass(frozen=True, slots=True)
class _Append:
    entries: list[Entry]
    subjects: list[tuple[str, ...]]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[list[Link]]


_Outcome = tuple["asyncio.Future[list[Link]]", list[Link] | None, Exception | None]


def _settle_all(outcomes: list[_Outcome]) -> None:
    for future, links, exc in outcomes:
        # The caller may have been cancelled meanwhile; its records are committed all the
        # same.
        if future.done():
            continue
        if exc is not None:
            future.set_exception(exc)
        else:
            assert links is not None
            future.set_result(links)


class SqliteTraceStore:
    def __init__(
        self,
        path: Path,
        reader: sqlite3.Connection,
        executor: ThreadPoolExecutor,
        writer: sqlite3.Connection | None,
        max_batch: int,
    ) -> None:
        self.path = path
        self._reader = reader
        self._executor = executor
        self._writer = writer
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[_Append | None] = queue.SimpleQueue()
        self._closed = False
        self.checkpoint_rows_read = 0
        self._thread: threading.Thread | None = None
        if writer is not None:
            self._thread = threading.Thread(
                target=self._write_loop, name=f"trace-writer:{path.name}", daemon=True
            )
            self._thread.start()

    # ---- opening and closing ------------------------------------------------------------

    @classmethod
    async def open(
        cls, path: str | Path, *, max_batch: int = DEFAULT_MAX_BATCH, readonly: bool = False
    ) -> SqliteTraceStore:
        """Open (creating unless `readonly`) the trace at `path`. Raises StoreUnavailable."""
        path = Path(path)
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="trace-reader")
        loop = asyncio.get_running_loop()
        writer: sqlite3.Connection | None = None
        try:
            if not readonly:
                writer = await asyncio.to_thread(cls._open_writer, path)
            reader = await loop.run_in_executor(executor, cls._open_reader, path)
        except (sqlite3.Error, OSError) as exc:
            executor.shutdown(wait=False)
            if writer is not None:
                writer.close()
            raise StoreUnavailable(f"{path}: {exc}") from exc
        return cls(path, reader, executor, writer, max_batch)

    @staticmethod
    def _open_writer(path: Path) -> sqlite3.Connection:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        try:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise sqlite3.OperationalError(f"cannot switch to WAL (journal mode {mode})")
            # FULL: the WAL is synced at every commit, so a committed append survives power
            # loss (NORMAL would only protect against a crash of the process).
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("BEGIN IMMEDIATE")
            # A trace without the reindex row predates it: written before the subject index
            # (or while it was new and perhaps never rebuilt). Every record up to the head,
            # read under the write lock, is to be filed by the background reindex
            # (sessions/reindexer.py); every record after it files itself.
            tables = _tables(conn)
            watermark = None
            if "trace_reindex" not in tables:
                watermark = _read_head(conn).seq if "trace" in tables else 0
            for statement in _SCHEMA:
                conn.execute(statement)
            if watermark is not None:
                conn.execute(
                    "INSERT OR IGNORE INTO trace_reindex (id, end_seq, done_seq) VALUES (1, ?, 0)",
                    (watermark,),
                )
            conn.execute("COMMIT")
            if watermark:
                log.warning(
                    "trace subject index is new: the server files the older records in the "
                    "background, and audit views may miss some of them until it is done",
                    path=str(path),
                    records=watermark,
                )
        except BaseException:
            conn.close()
            raise
        return conn

    @staticmethod
    def _open_reader(path: Path) -> sqlite3.Connection:
        if not path.exists():
            raise sqlite3.OperationalError("no trace file here")
        conn = sqlite3.connect(
            f"{path.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False
        )
        try:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            conn.execute("SELECT 1 FROM trace LIMIT 1").fetchall()
        except BaseException:
            conn.close()
            raise
        return conn

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._thread is not None:
            # The sentinel queues behind every append already handed over.
            self._queue.put(None)
            await asyncio.to_thread(self._thread.join)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._reader.close)
        self._executor.shutdown(wait=True)

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
        if self._thread is None:
            raise StoreUnavailable("the trace store was opened read-only")
        # Encoded here, in the caller, so an unencodable event fails only its own append.
        entries = [entry_of(e, facets_of) for e in events]
        if not entries:
            return []
        subjects = [subjects_of(e.kind, e.data) for e in events]
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Link]] = loop.create_future()
        self._queue.put(_Append(entries, subjects, loop, future))
        return await future

    def _write_loop(self) -> None:
        stop = False
        while not stop:
            item = self._queue.get()
            if item is None:
                break
            batch = [item]
            size = len(item.entries)
            while size < self._max_batch:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                    break
                batch.append(more)
                size += len(more.entries)
            self._commit(batch)
        assert self._writer is not None
        self._writer.close()

    def _commit(self, batch: list[_Append]) -> None:
        conn = self._writer
        assert conn is not None
        results: list[list[Link]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            head = _read_head(conn)
            rows: list[tuple[Any, ...]] = []
            filed: list[tuple[str, int]] = []
            for item in batch:
                links = seal(head, item.entries)
                head = head_of(links, head)
                results.append(links)
                rows.extend(_row(x) for x in links)
                for link, subjects in zip(links, item.subjects, strict=True):
                    filed.extend((s, link.seq) for s in subjects)
            conn.executemany(_INSERT, rows)
            if filed:
                conn.executemany(_INSERT_SUBJECT, filed)
            conn.execute("COMMIT")
        except Exception as exc:
            log.exception("trace commit failed", path=str(self.path), appends=len(batch))
            with contextlib.suppress(sqlite3.Error):
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
            reason = f"commit failed: {type(exc).__name__}"
            self._wake([(item.future, None, StoreUnavailable(reason)) for item in batch], batch)
            return
        self._wake(
            [(item.future, links, None) for item, links in zip(batch, results, strict=True)],
            batch,
        )

    @staticmethod
    def _wake(outcomes: list[_Outcome], batch: list[_Append]) -> None:
        # One wake-up per event loop for the whole batch, not one per append: each costs
        # the loop a trip through its self-pipe.
        loops: dict[asyncio.AbstractEventLoop, list[_Outcome]] = {}
        for item, outcome in zip(batch, outcomes, strict=True):
            loops.setdefault(item.loop, []).append(outcome)
        for loop, settled in loops.items():
            with contextlib.suppress(RuntimeError):  # the caller's loop is gone
                loop.call_soon_threadsafe(_settle_all, settled)

    # ---- reading --------------------------------------------------------------------------

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._closed:
            raise StoreClosed("the trace store is closed")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, fn, self._reader)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"{self.path}: {exc}") from exc

    async def links(self, *, after_seq: int = 0, limit: int = 10000) -> list[Link]:
        def run(conn: sqlite3.Connection) -> list[Link]:
            sql = f"SELECT {_COLUMNS} FROM trace WHERE seq > ? ORDER BY seq LIMIT ?"
            return [_link(r) for r in conn.execute(sql, (after_seq, limit))]

        return await self._read(run)

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
        where = [f"kind IN ({', '.join('?' * len(kinds))})"]
        params: list[Any] = list(kinds)
        if subject is not None:
            where.append("subject = ?")
            params.append(subject)
        if since is not None:
            where.append("at_us >= ?")
            params.append(round(since * 1_000_000))
        if until is not None:
            where.append("at_us < ?")
            params.append(round(until * 1_000_000))
        for key, value in (data_equals or {}).items():
            # The key is an identifier (checked above); json_extract yields text only for a
            # JSON string, and SQLite never equates a number with text.
            where.append(f"json_extract(data, '$.{key}') = ?")
            params.append(value)
        sql = f"SELECT {_COLUMNS} FROM trace WHERE {' AND '.join(where)} ORDER BY seq"
        if last is not None:
            # By time from the index's end (trace_subject ends in at_us), not by seq, which
            # would sort every record of the subject first.
            sql = sql.removesuffix("ORDER BY seq") + "ORDER BY at_us DESC, seq DESC LIMIT ?"
            params.append(max(last, 0))

        def run(conn: sqlite3.Connection) -> list[Link]:
            links = [_link(r) for r in conn.execute(sql, params)]
            return links[::-1] if last is not None else links

        return [record_of(x) for x in await self._read(run)]

    async def records_about(self, subject: str, *, limit: int = 10000) -> list[StoredRecord]:
        def run(conn: sqlite3.Connection) -> list[Link]:
            return [_link(r) for r in conn.execute(_ABOUT, (subject, max(limit, 0)))]

        return [record_of(x) for x in await self._read(run)]

    async def reindex(self, progress: Progress | None = None) -> int:
        if self._closed:
            raise StoreClosed("the trace store is closed")
        if self._thread is None:
            raise StoreUnavailable("the trace store was opened read-only")
        loop = asyncio.get_running_loop()

        def report(done: int) -> None:
            if progress is not None:
                loop.call_soon_threadsafe(progress, done)

        try:
            return await asyncio.to_thread(self._reindex, report)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"{self.path}: {exc}") from exc

    def _reindex(self, report: Callable[[int], None]) -> int:
        # A connection of its own, one transaction per batch: appends go on meanwhile and
        # file their own records (INSERT OR IGNORE makes a row filed twice harmless).
        conn = sqlite3.connect(self.path, isolation_level=None)
        try:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            conn.execute("BEGIN IMMEDIATE")
            end = _read_head(conn).seq
            conn.execute("DELETE FROM trace_subjects WHERE seq <= ?", (end,))
            conn.execute("COMMIT")
            done = 0
            after = 0
            while True:
                rows = conn.execute(_FILE_BATCH, (after, end, REINDEX_BATCH)).fetchall()
                if not rows:
                    break
                filed = [(s, seq) for seq, kind, data in rows for s in subjects_of_text(kind, data)]
                conn.execute("BEGIN IMMEDIATE")
                conn.executemany(_INSERT_SUBJECT, filed)
                conn.execute("COMMIT")
                after = int(rows[-1][0])
                done += len(rows)
                report(done)
            # Everything up to `end` is filed: the server's background reindex, if one was
            # pending below it, has nothing left to do.
            conn.execute(
                "UPDATE trace_reindex SET done_seq = end_seq WHERE end_seq <= ?",
                (end,),
            )
            return done
        finally:
            conn.close()

    async def reindex_state(self) -> ReindexState:
        def run(conn: sqlite3.Connection) -> ReindexState:
            if "trace_reindex" not in _tables(conn):
                # A trace only ever opened read-only since before the row existed.
                return ReindexState(0, 0)
            row = conn.execute(_REINDEX_STATE).fetchone()
            return ReindexState(0, 0) if row is None else ReindexState(int(row[0]), int(row[1]))

        return await self._read(run)

    async def reindex_batch(
        self, *, node: str, now: float, lease_s: float, limit: int = REINDEX_STEP
    ) -> ReindexState:
        if self._closed:
            raise StoreClosed("the trace store is closed")
        if self._thread is None:
            raise StoreUnavailable("the trace store was opened read-only")
        now_us = round(now * 1_000_000)
        until_us = round((now + lease_s) * 1_000_000)
        try:
            return await asyncio.to_thread(self._reindex_batch, node, now_us, until_us, limit)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"{self.path}: {exc}") from exc

    def _reindex_batch(self, node: str, now_us: int, until_us: int, limit: int) -> ReindexState:
        # A connection of its own and one short write transaction: the writer thread's
        # appends wait for it (busy_timeout) at most the few milliseconds of one batch.
        conn = sqlite3.connect(self.path, isolation_level=None)
        try:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            conn.execute("BEGIN IMMEDIATE")
            try:
                state = self._file_next(conn, node, now_us, until_us, limit)
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return state
        finally:
            conn.close()

    @staticmethod
    def _file_next(
        conn: sqlite3.Connection, node: str, now_us: int, until_us: int, limit: int
    ) -> ReindexState:
        row = conn.execute(_REINDEX_STATE).fetchone()
        if row is None:
            return ReindexState(0, 0)
        done, end, owner, lease_until = int(row[0]), int(row[1]), row[2], row[3]
        if done >= end:
            return ReindexState(done, end)
        if owner not in (None, node) and lease_until is not None and lease_until > now_us:
            return ReindexState(done, end, busy=True)
        rows = conn.execute(_FILE_BATCH, (done, end, max(limit, 1))).fetchall()
        filed = [(s, seq) for seq, kind, data in rows for s in subjects_of_text(kind, data)]
        if filed:
            # OR IGNORE: a row the CLI's reindex filed meanwhile is filed once.
            conn.executemany(_INSERT_SUBJECT, filed)
        done = int(rows[-1][0]) if rows else end
        conn.execute(
            "UPDATE trace_reindex SET done_seq = ?, owner = ?, lease_until_us = ? WHERE id = 1",
            (done, node, until_us),
        )
        return ReindexState(done, end)

    async def count(self) -> int:
        return await self._read(
            lambda conn: int(conn.execute("SELECT count(*) FROM trace").fetchone()[0])
        )

    async def head(self) -> Head:
        return await self._read(_read_head)

    # ---- checkpoints ----------------------------------------------------------------------

    async def add_checkpoint(self, checkpoint: Checkpoint) -> None:
        if self._closed:
            raise StoreClosed("the trace store is closed")
        if self._thread is None:
            raise StoreUnavailable("the trace store was opened read-only")
        try:
            await asyncio.to_thread(self._insert_checkpoint, checkpoint)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"{self.path}: {exc}") from exc

    def _insert_checkpoint(self, cp: Checkpoint) -> None:
        # A connection of its own rather than the writer thread's queue: a checkpoint a
        # minute needs no group commit, and it must not wait behind a long batch of records.
        conn = sqlite3.connect(self.path, isolation_level=None)
        try:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute(
                f"INSERT INTO checkpoints ({_CHECKPOINT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    cp.seq,
                    cp.hash,
                    cp.at_us,
                    cp.node,
                    cp.reason,
                    cp.key_id,
                    cp.signature,
                    cp.tsa_token,
                ),
            )
        finally:
            conn.close()

    async def checkpoints(self) -> list[Checkpoint]:
        sql = f"SELECT {_CHECKPOINT_COLUMNS} FROM checkpoints ORDER BY id"
        return await self._read_checkpoints(sql, ())

    async def latest_checkpoints(self, reason: Reason, *, limit: int = 1) -> list[Checkpoint]:
        check_latest_limit(limit)
        return await self._read_checkpoints(LATEST_CHECKPOINTS_SQL, (reason, limit))

    async def highest_checkpoint(self) -> Checkpoint | None:
        found = await self._read_checkpoints(HIGHEST_CHECKPOINT_SQL, ())
        return found[0] if found else None

    async def _read_checkpoints(self, sql: str, params: tuple[Any, ...]) -> list[Checkpoint]:
        def run(conn: sqlite3.Connection) -> list[tuple[Any, ...]]:
            exists = conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'checkpoints'"
            ).fetchone()
            if exists is None:
                # A trace written before checkpoints, opened read-only.
                return []
            return list(conn.execute(sql, params))

        rows = await self._read(run)
        self.checkpoint_rows_read += len(rows)
        return [Checkpoint(*row) for row in rows]

    async def counts(self, query: StatsQuery) -> Counts:
        def run(conn: sqlite3.Connection) -> Counts:
            # One read transaction: every figure is counted from the same snapshot.
            conn.execute("BEGIN")
            try:
                return _counts(conn, query)
            finally:
                conn.execute("COMMIT")

        return await self._read(run)


def _in(column: str, values: frozenset[str] | None, params: list[Any]) -> str:
    if values is None:
        return ""
    params.extend(sorted(values))
    return f" AND {column} IN ({', '.join('?' * len(values))})"


def _per_subject(kind: str, q: StatsQuery, tag: str | None = None) -> tuple[str, list[Any]]:
    """SQL giving (records, distinct non-null subjects) of `kind` in the query's period and
    courts. Grouped rather than count(DISTINCT): the grouping streams in the order of the
    trace_subject index, where count(DISTINCT) would build a temporary b-tree."""
    params: list[Any] = [kind, q.since_us, q.until_us]
    where = "kind = ? AND at_us >= ? AND at_us < ?"
    if tag is not None:
        where += " AND tag = ?"
        params.append(tag)
    where += _in("court", q.courts, params)
    sql = (
        "SELECT coalesce(sum(n), 0), count(subject) FROM"
        f" (SELECT subject, count(*) AS n FROM trace WHERE {where} GROUP BY subject)"
    )
    return sql, params


def _counts(conn: sqlite3.Connection, q: StatsQuery) -> Counts:
    period = (q.since_us, q.until_us)
    sign_ins, officers = conn.execute(*_per_subject(SIGN_IN, q, OFFICER_ROLE)).fetchone()
    items, cases = conn.execute(*_per_subject(EVIDENCE_STORED, q)).fetchone()
    params: list[Any] = [ACTION, ACTION, CONFERENCE_STARTED, *period]
    sql = (
        "SELECT coalesce(sum(tag IS NOT ?), 0), coalesce(sum(tag IS ?), 0)"
        " FROM trace WHERE kind = ? AND at_us >= ? AND at_us < ?"
    ) + _in("court", q.courts, params)
    conferences, actions = conn.execute(sql, params).fetchone()
    params = [CALL_ANSWERED, CALL_ENDED, CALL_ENDED, CALL_ESCALATED, CALL_CREATED, *period]
    params.extend(DIRECTIONS)
    created = (
        "SELECT c.tag AS direction, c.at_us AS created, c.flag AS flag,"
        " (SELECT min(a.at_us) FROM trace a WHERE a.kind = ? AND a.subject = c.subject)"
        "  AS answered,"
        " (SELECT e.tag FROM trace e WHERE e.kind = ? AND e.subject = c.subject"
        "  ORDER BY e.at_us, e.seq LIMIT 1) AS reason,"
        " EXISTS (SELECT 1 FROM trace e WHERE e.kind = ? AND e.subject = c.subject) AS ended,"
        " EXISTS (SELECT 1 FROM trace x WHERE x.kind = ? AND x.subject = c.subject)"
        "  AS escalated"
        " FROM trace c WHERE c.kind = ? AND c.at_us >= ? AND c.at_us < ?"
        f" AND c.tag IN ({', '.join('?' * len(DIRECTIONS))})"
    ) + _in("c.court", q.courts, params)
    params.append(CANCELLED)
    params.append(CANCELLED)
    sql = (
        # MATERIALIZED: each call's lookups run once, not once per aggregate using them.
        f"WITH calls AS MATERIALIZED ({created})"
        " SELECT direction, count(*), count(answered), coalesce(sum(answered - created), 0),"
        " sum(answered IS NULL AND ended AND reason IS NOT ?),"
        " sum(answered IS NULL AND ended AND reason IS ?),"
        " sum(answered IS NULL AND NOT ended),"
        " sum(flag = 1 OR escalated)"
        " FROM calls GROUP BY direction ORDER BY direction"
    )
    calls = {
        str(d): CallCounts(
            calls=n,
            answered=answered,
            answer_us=answer_us,
            missed=missed,
            cancelled=cancelled,
            unfinished=unfinished,
            emergency=emergency,
        )
        for d, n, answered, answer_us, missed, cancelled, unfinished, emergency in conn.execute(
            sql, params
        )
    }
    return Counts(
        sign_ins=sign_ins,
        officers=officers,
        evidence_items=items,
        cases=cases,
        conferences=conferences,
        actions=actions,
        calls=calls,
        instructions=_instructions(conn, q),
    )


def _instructions(conn: sqlite3.Connection, q: StatsQuery) -> InstructionCounts:
    """The instructions sent in the period and courts, each receipt found by its subject
    (the instruction id) on the trace_subject index."""
    params: list[Any] = [INSTRUCTION_SENT, q.since_us, q.until_us]
    sent = (
        "SELECT s.subject AS id, s.at_us AS at, s.flag AS wide FROM trace s"
        " WHERE s.kind = ? AND s.at_us >= ? AND s.at_us < ? AND s.subject IS NOT NULL"
    ) + _in("s.court", q.courts, params)
    params += [INSTRUCTION_DELIVERED, INSTRUCTION_READ, INSTRUCTION_READ, INSTRUCTION_EXPIRED]
    sql = (
        f"WITH sent AS MATERIALIZED ({sent})"
        " SELECT (SELECT count(*) FROM sent),"
        " (SELECT count(*) FROM sent JOIN trace d ON d.kind = ? AND d.subject = sent.id),"
        " (SELECT count(*) FROM sent JOIN trace r ON r.kind = ? AND r.subject = sent.id),"
        " (SELECT count(*) FROM sent"
        "  WHERE EXISTS (SELECT 1 FROM trace r WHERE r.kind = ? AND r.subject = sent.id)"
        "  AND (wide IS NOT 1 OR EXISTS (SELECT 1 FROM trace x"
        "   WHERE x.kind = ? AND x.subject = sent.id AND x.flag = 1)))"
    )
    n_sent, delivered, read, acknowledged = conn.execute(sql, params).fetchone()
    params = [INSTRUCTION_SENT, q.since_us, q.until_us]
    sent = (
        "SELECT s.subject AS id, s.at_us AS at FROM trace s"
        " WHERE s.kind = ? AND s.at_us >= ? AND s.at_us < ? AND s.subject IS NOT NULL"
    ) + _in("s.court", q.courts, params)
    params.append(INSTRUCTION_READ)
    delays = conn.execute(
        f"WITH sent AS MATERIALIZED ({sent}) SELECT r.at_us - sent.at FROM sent"
        " JOIN trace r ON r.kind = ? AND r.subject = sent.id ORDER BY 1",
        params,
    )
    return InstructionCounts(
        sent=n_sent,
        delivered=delivered,
        read=read,
        acknowledged=acknowledged,
        read_us=tuple(int(d) for (d,) in delays),
    )


__all__ = [
    "DEFAULT_MAX_BATCH",
    "HIGHEST_CHECKPOINT_SQL",
    "LATEST_CHECKPOINTS_SQL",
    "SqliteTraceStore",
]
