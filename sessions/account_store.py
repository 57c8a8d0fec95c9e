"""Where accounts and browser sign-in sessions are kept: one interface, three backings.

`AccountStore` is what the sign-in edge and the CLI use. `MemoryAccountStore` serves a server
on embedded defaults without a trace file; `SqliteAccountStore` keeps `accounts.sqlite3` next
to the trace (aiosqlite); `PostgresAccountStore` keeps two tables in the trace's schema. The
rules (lockout, what an attempt means) are in `identity.accounts`; this module only stores.
It keeps the witness invitations too (`Witness`, commandcenter/witness_api.py): the store is
the one place every node shares, so a revoked witness is refused and closed on each of them
(commandcenter/revocations.py).

A browser session is kept by the SHA-256 of its cookie, never the cookie itself: a copy of
the database does not let anyone sign in.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol

import aiosqlite
import asyncpg

from identity.accounts import Account
from identity.people import Role
from sessions.errors import StoreUnavailable

SQLITE_FILE: Final = "accounts.sqlite3"
_DB_ERRORS: Final = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)
_FIELDS: Final = (
    "user_id",
    "name",
    "role",
    "court",
    "password_hash",
    "totp_secret",
    "disabled",
    "failures",
    "locked_until",
)
# Rows written per transaction by an import, so a progress bar moves and no transaction is huge.
IMPORT_BATCH: Final = 500


@contextlib.contextmanager
def _unavailable_on(errors: tuple[type[BaseException], ...], what: str) -> Iterator[None]:
    """The database's failures as `StoreUnavailable`, the one error the edges map (to 503)."""
    try:
        yield
    except errors as exc:
        raise StoreUnavailable(f"{what}: {type(exc).__name__}") from exc


_SQLITE_ERRORS: Final = (OSError, aiosqlite.Error)


@dataclass(frozen=True)
class WebSession:
    """A browser's sign-in: `digest` is the SHA-256 (hex) of its cookie."""

    digest: str
    user_id: str
    created_at: float
    expires_at: float


@dataclass(frozen=True)
class Witness:
    """A witness invited to watch one conference view-only: `user_id` is their token's `sub`;
    the token itself is never kept."""

    witness_id: str
    conference_id: str
    user_id: str
    name: str
    label: str
    court: str
    by: str
    issued_at: float
    expires_at: float
    revoked_at: float | None = None


_WITNESS_FIELDS: Final = (
    "witness_id",
    "conference_id",
    "user_id",
    "name",
    "label",
    "court",
    "by",
    "issued_at",
    "expires_at",
    "revoked_at",
)


def _witness(row: Sequence[Any]) -> Witness:
    return Witness(*row)


def _witness_values(w: Witness) -> tuple[Any, ...]:
    return tuple(getattr(w, f) for f in _WITNESS_FIELDS)


class AccountStore(Protocol):
    async def get(self, user_id: str) -> Account | None: ...

    async def save(self, account: Account) -> None:
        """Insert or replace `account`."""
        ...

    async def save_many(
        self, accounts: Sequence[Account], progress: Callable[[int], None] | None = None
    ) -> None:
        """Insert or replace each, in batches; `progress` gets the count written so far."""
        ...

    async def all(self, *, limit: int = 10_000) -> list[Account]: ...

    async def disabled_ids(self) -> frozenset[str]:
        """The ids of every disabled account (what the nodes refuse and close, see
        commandcenter/revocations.py): a few, so read whole."""
        ...

    async def open_session(self, session: WebSession) -> None: ...

    async def session(self, digest: str) -> WebSession | None: ...

    async def close_session(self, digest: str) -> None: ...

    async def close_sessions_of(self, user_id: str) -> int:
        """Ends every browser session of `user_id` (disabled, password reset); how many."""
        ...

    async def add_witness(self, witness: Witness) -> None: ...

    async def witnesses_of(self, conference_id: str, *, limit: int) -> list[Witness]:
        """The conference's witnesses, revoked ones too, oldest first."""
        ...

    async def revoke_witness(self, witness_id: str, at: float) -> None:
        """Marks it revoked at `at` (once: a second revoke keeps the first time)."""
        ...

    async def revoked_witnesses(self, now: float) -> frozenset[str]:
        """The user ids of revoked witnesses whose tokens would still be valid at `now`."""
        ...

    async def close(self) -> None: ...


def _account(row: Sequence[Any]) -> Account:
    return Account(
        user_id=row[0],
        name=row[1],
        role=Role(row[2]),
        court=row[3],
        password_hash=row[4],
        totp_secret=row[5],
        disabled=bool(row[6]),
        failures=int(row[7]),
        locked_until=float(row[8]),
    )


def _values(a: Account) -> tuple[Any, ...]:
    return (
        a.user_id,
        a.name,
        a.role.value,
        a.court,
        a.password_hash,
        a.totp_secret,
        a.disabled,
        a.failures,
        a.locked_until,
    )


class MemoryAccountStore:
    def __init__(self) -> None:
        self._accounts: dict[str, Account] = {}
        self._sessions: dict[str, WebSession] = {}
        self._witnesses: dict[str, Witness] = {}

    async def get(self, user_id: str) -> Account | None:
        return self._accounts.get(user_id)

    async def save(self, account: Account) -> None:
        self._accounts[account.user_id] = account

    async def save_many(
        self, accounts: Sequence[Account], progress: Callable[[int], None] | None = None
    ) -> None:
        for done, account in enumerate(accounts, 1):
            self._accounts[account.user_id] = account
            if progress is not None and (done % IMPORT_BATCH == 0 or done == len(accounts)):
                progress(done)

    async def all(self, *, limit: int = 10_000) -> list[Account]:
        return [self._accounts[k] for k in sorted(self._accounts)[:limit]]

    async def disabled_ids(self) -> frozenset[str]:
        return frozenset(k for k, a in self._accounts.items() if a.disabled)

    async def open_session(self, session: WebSession) -> None:
        self._sessions[session.digest] = session

    async def session(self, digest: str) -> WebSession | None:
        return self._sessions.get(digest)

    async def close_session(self, digest: str) -> None:
        self._sessions.pop(digest, None)

    async def close_sessions_of(self, user_id: str) -> int:
        gone = [d for d, s in self._sessions.items() if s.user_id == user_id]
        for digest in gone:
            del self._sessions[digest]
        return len(gone)

    async def add_witness(self, witness: Witness) -> None:
        self._witnesses[witness.witness_id] = witness

    async def witnesses_of(self, conference_id: str, *, limit: int) -> list[Witness]:
        found = [w for w in self._witnesses.values() if w.conference_id == conference_id]
        return sorted(found, key=lambda w: (w.issued_at, w.witness_id))[:limit]

    async def revoke_witness(self, witness_id: str, at: float) -> None:
        w = self._witnesses.get(witness_id)
        if w is not None and w.revoked_at is None:
            self._witnesses[witness_id] = dataclasses.replace(w, revoked_at=at)

    async def revoked_witnesses(self, now: float) -> frozenset[str]:
        return frozenset(
            w.user_id
            for w in self._witnesses.values()
            if w.revoked_at is not None and w.expires_at > now
        )

    async def close(self) -> None:
        pass


_SQLITE_SCHEMA: Final = (
    """CREATE TABLE IF NOT EXISTS accounts (
        user_id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        role TEXT NOT NULL,
        court TEXT NOT NULL,
        password_hash TEXT NOT NULL,
        totp_secret TEXT,
        disabled INTEGER NOT NULL,
        failures INTEGER NOT NULL,
        locked_until REAL NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS web_sessions (
        digest TEXT PRIMARY KEY,
        user_id TEXT NOT NULL,
        created_at REAL NOT NULL,
        expires_at REAL NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS web_sessions_user ON web_sessions (user_id)",
    """CREATE TABLE IF NOT EXISTS witnesses (
        witness_id TEXT PRIMARY KEY,
        conference_id TEXT NOT NULL,
        user_id TEXT NOT NULL,
        name TEXT NOT NULL,
        label TEXT NOT NULL,
        court TEXT NOT NULL,
        by TEXT NOT NULL,
        issued_at REAL NOT NULL,
        expires_at REAL NOT NULL,
        revoked_at REAL
    )""",
    "CREATE INDEX IF NOT EXISTS witnesses_conference ON witnesses (conference_id)",
)
_UPSERT_SQLITE: Final = (
    f"INSERT OR REPLACE INTO accounts ({', '.join(_FIELDS)}) "
    f"VALUES ({', '.join('?' for _ in _FIELDS)})"
)


class SqliteAccountStore:
    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db

    @classmethod
    async def open(cls, path: Path) -> SqliteAccountStore:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            db = await aiosqlite.connect(path)
            # FULL: an account saved (a lockout, a password reset) survives a power cut.
            await db.execute("PRAGMA journal_mode=WAL")
            await db.execute("PRAGMA synchronous=FULL")
            await db.execute("PRAGMA busy_timeout=10000")
            for statement in _SQLITE_SCHEMA:
                await db.execute(statement)
            await db.commit()
        except (OSError, aiosqlite.Error) as exc:
            raise StoreUnavailable(f"accounts {path}: {exc}") from exc
        return cls(db)

    async def get(self, user_id: str) -> Account | None:
        with _unavailable_on(_SQLITE_ERRORS, "accounts"):
            sql = f"SELECT {', '.join(_FIELDS)} FROM accounts WHERE user_id = ?"
            async with self._db.execute(sql, (user_id,)) as cur:
                row = await cur.fetchone()
            return None if row is None else _account(row)

    async def save(self, account: Account) -> None:
        with _unavailable_on(_SQLITE_ERRORS, "accounts"):
            await self._db.execute(_UPSERT_SQLITE, _values(account))
            await self._db.commit()

    async def save_many(
        self, accounts: Sequence[Account], progress: Callable[[int], None] | None = None
    ) -> None:
        with _unavailable_on(_SQLITE_ERRORS, "accounts"):
            for start in range(0, len(accounts), IMPORT_BATCH):
                batch = accounts[start : start + IMPORT_BATCH]
                await self._db.executemany(_UPSERT_SQLITE, [_values(a) for a in batch])
                await self._db.commit()
                if progress is not None:
                    progress(start + len(batch))

    async def all(self, *, limit: int = 10_000) -> list[Account]:
        with _unavailable_on(_SQLITE_ERRORS, "accounts"):
            sql = f"SELECT {', '.join(_FIELDS)} FROM accounts ORDER BY user_id LIMIT ?"
            async with self._db.execute(sql, (limit,)) as cur:
                return [_account(row) for row in await cur.fetchall()]

    async def disabled_ids(self) -> frozenset[str]:
        with _unavailable_on(_SQLITE_ERRORS, "accounts"):
            async with self._db.execute("SELECT user_id FROM accounts WHERE disabled") as cur:
                return frozenset(row[0] for row in await cur.fetchall())

    async def open_session(self, session: WebSession) -> None:
        with _unavailable_on(_SQLITE_ERRORS, "accounts"):
            await self._db.execute(
                "INSERT INTO web_sessions (digest, user_id, created_at, expires_at) "
                "VALUES (?, ?, ?, ?)",
                (session.digest, session.user_id, session.created_at, session.expires_at),
            )
            await self._db.commit()

    async def session(self, digest: str) -> WebSession | None:
        with _unavailable_on(_SQLITE_ERRORS, "accounts"):
            sql = (
                "SELECT digest, user_id, created_at, expires_at FROM web_sessions WHERE digest = ?"
            )
            async with self._db.execute(sql, (digest,)) as cur:
                row = await cur.fetchone()
            return None if row is None else WebSession(row[0], row[1], row[2], row[3])

    async def close_session(self, digest: str) -> None:
        with _unavailable_on(_SQLITE_ERRORS, "accounts"):
            await self._db.execute("DELETE FROM web_sessions WHERE digest = ?", (digest,))
            await self._db.commit()

    async def close_sessions_of(self, user_id: str) -> int:
        with _unavailable_on(_SQLITE_ERRORS, "accounts"):
            cur = await self._db.execute("DELETE FROM web_sessions WHERE user_id = ?", (user_id,))
            await self._db.commit()
            return max(cur.rowcount, 0)

    async def add_witness(self, witness: Witness) -> None:
        with _unavailable_on(_SQLITE_ERRORS, "accounts"):
            await self._db.execute(
                f"INSERT INTO witnesses ({', '.join(_WITNESS_FIELDS)}) "
                f"VALUES ({', '.join('?' for _ in _WITNESS_FIELDS)})",
                _witness_values(witness),
            )
            await self._db.commit()

    async def witnesses_of(self, conference_id: str, *, limit: int) -> list[Witness]:
        with _unavailable_on(_SQLITE_ERRORS, "accounts"):
            sql = (
                f"SELECT {', '.join(_WITNESS_FIELDS)} FROM witnesses WHERE conference_id = ? "
                "ORDER BY issued_at, witness_id LIMIT ?"
            )
            async with self._db.execute(sql, (conference_id, limit)) as cur:
                return [_witness(row) for row in await cur.fetchall()]

    async def revoke_witness(self, witness_id: str, at: float) -> None:
        with _unavailable_on(_SQLITE_ERRORS, "accounts"):
            await self._db.execute(
                "UPDATE witnesses SET revoked_at = ? WHERE witness_id = ? AND revoked_at IS NULL",
                (at, witness_id),
            )
            await self._db.commit()

    async def revoked_witnesses(self, now: float) -> frozenset[str]:
        with _unavailable_on(_SQLITE_ERRORS, "accounts"):
            sql = "SELECT user_id FROM witnesses WHERE revoked_at IS NOT NULL AND expires_at > ?"
            async with self._db.execute(sql, (now,)) as cur:
                return frozenset(row[0] for row in await cur.fetchall())

    async def close(self) -> None:
        await self._db.close()


def _pg_schema(schema: str) -> list[str]:
    return [
        f'CREATE SCHEMA IF NOT EXISTS "{schema}"',
        f"""CREATE TABLE IF NOT EXISTS "{schema}".accounts (
            user_id text PRIMARY KEY,
            name text NOT NULL,
            role text NOT NULL,
            court text NOT NULL,
            password_hash text NOT NULL,
            totp_secret text,
            disabled boolean NOT NULL,
            failures integer NOT NULL,
            locked_until double precision NOT NULL
        )""",
        f"""CREATE TABLE IF NOT EXISTS "{schema}".web_sessions (
            digest text PRIMARY KEY,
            user_id text NOT NULL,
            created_at double precision NOT NULL,
            expires_at double precision NOT NULL
        )""",
        f'CREATE INDEX IF NOT EXISTS web_sessions_user ON "{schema}".web_sessions (user_id)',
        f"""CREATE TABLE IF NOT EXISTS "{schema}".witnesses (
            witness_id text PRIMARY KEY,
            conference_id text NOT NULL,
            user_id text NOT NULL,
            name text NOT NULL,
            label text NOT NULL,
            court text NOT NULL,
            by text NOT NULL,
            issued_at double precision NOT NULL,
            expires_at double precision NOT NULL,
            revoked_at double precision
        )""",
        f'CREATE INDEX IF NOT EXISTS witnesses_conference ON "{schema}".witnesses (conference_id)',
    ]


class PostgresAccountStore:
    def __init__(self, pool: Any, schema: str) -> None:
        self._pool = pool
        self._s = f'"{schema}"'
        cols = ", ".join(_FIELDS)
        params = ", ".join(f"${i}" for i in range(1, len(_FIELDS) + 1))
        updates = ", ".join(f"{f} = EXCLUDED.{f}" for f in _FIELDS[1:])
        self._upsert = (
            f"INSERT INTO {self._s}.accounts ({cols}) VALUES ({params}) "
            f"ON CONFLICT (user_id) DO UPDATE SET {updates}"
        )

    @classmethod
    async def open(cls, dsn: str, *, schema: str, timeout_s: float = 10.0) -> PostgresAccountStore:
        pool: Any = None
        try:
            pool = await asyncpg.create_pool(
                dsn, min_size=1, max_size=2, timeout=timeout_s, command_timeout=timeout_s
            )
            async with pool.acquire() as conn, conn.transaction():
                # Two nodes starting together must not race on CREATE ... IF NOT EXISTS.
                await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", schema)
                for statement in _pg_schema(schema):
                    await conn.execute(statement)
        except _DB_ERRORS as exc:
            if pool is not None:
                await pool.close()
            raise StoreUnavailable(f"accounts postgresql {schema}: {exc}") from exc
        return cls(pool, schema)

    async def get(self, user_id: str) -> Account | None:
        with _unavailable_on(_DB_ERRORS, "accounts"):
            row = await self._pool.fetchrow(
                f"SELECT {', '.join(_FIELDS)} FROM {self._s}.accounts WHERE user_id = $1", user_id
            )
            return None if row is None else _account(tuple(row))

    async def save(self, account: Account) -> None:
        with _unavailable_on(_DB_ERRORS, "accounts"):
            await self._pool.execute(self._upsert, *_values(account))

    async def save_many(
        self, accounts: Sequence[Account], progress: Callable[[int], None] | None = None
    ) -> None:
        with _unavailable_on(_DB_ERRORS, "accounts"):
            for start in range(0, len(accounts), IMPORT_BATCH):
                batch = accounts[start : start + IMPORT_BATCH]
                async with self._pool.acquire() as conn, conn.transaction():
                    await conn.executemany(self._upsert, [_values(a) for a in batch])
                if progress is not None:
                    progress(start + len(batch))

    async def all(self, *, limit: int = 10_000) -> list[Account]:
        with _unavailable_on(_DB_ERRORS, "accounts"):
            rows = await self._pool.fetch(
                f"SELECT {', '.join(_FIELDS)} FROM {self._s}.accounts ORDER BY user_id LIMIT $1",
                limit,
            )
            return [_account(tuple(r)) for r in rows]

    async def disabled_ids(self) -> frozenset[str]:
        with _unavailable_on(_DB_ERRORS, "accounts"):
            rows = await self._pool.fetch(f"SELECT user_id FROM {self._s}.accounts WHERE disabled")
            return frozenset(r[0] for r in rows)

    async def open_session(self, session: WebSession) -> None:
        with _unavailable_on(_DB_ERRORS, "accounts"):
            await self._pool.execute(
                f"INSERT INTO {self._s}.web_sessions (digest, user_id, created_at, expires_at) "
                "VALUES ($1, $2, $3, $4)",
                session.digest,
                session.user_id,
                session.created_at,
                session.expires_at,
            )

    async def session(self, digest: str) -> WebSession | None:
        with _unavailable_on(_DB_ERRORS, "accounts"):
            row = await self._pool.fetchrow(
                "SELECT digest, user_id, created_at, expires_at "
                f"FROM {self._s}.web_sessions WHERE digest = $1",
                digest,
            )
            return None if row is None else WebSession(row[0], row[1], row[2], row[3])

    async def close_session(self, digest: str) -> None:
        with _unavailable_on(_DB_ERRORS, "accounts"):
            await self._pool.execute(
                f"DELETE FROM {self._s}.web_sessions WHERE digest = $1", digest
            )

    async def close_sessions_of(self, user_id: str) -> int:
        with _unavailable_on(_DB_ERRORS, "accounts"):
            status = await self._pool.execute(
                f"DELETE FROM {self._s}.web_sessions WHERE user_id = $1", user_id
            )
            # asyncpg answers the command tag, "DELETE <n>".
            with contextlib.suppress(ValueError, IndexError):
                return int(str(status).split()[-1])
            return 0

    async def add_witness(self, witness: Witness) -> None:
        with _unavailable_on(_DB_ERRORS, "accounts"):
            params = ", ".join(f"${i}" for i in range(1, len(_WITNESS_FIELDS) + 1))
            await self._pool.execute(
                f"INSERT INTO {self._s}.witnesses ({', '.join(_WITNESS_FIELDS)}) VALUES ({params})",
                *_witness_values(witness),
            )

    async def witnesses_of(self, conference_id: str, *, limit: int) -> list[Witness]:
        with _unavailable_on(_DB_ERRORS, "accounts"):
            rows = await self._pool.fetch(
                f"SELECT {', '.join(_WITNESS_FIELDS)} FROM {self._s}.witnesses "
                "WHERE conference_id = $1 ORDER BY issued_at, witness_id LIMIT $2",
                conference_id,
                limit,
            )
            return [_witness(tuple(r)) for r in rows]

    async def revoke_witness(self, witness_id: str, at: float) -> None:
        with _unavailable_on(_DB_ERRORS, "accounts"):
            await self._pool.execute(
                f"UPDATE {self._s}.witnesses SET revoked_at = $1 "
                "WHERE witness_id = $2 AND revoked_at IS NULL",
                at,
                witness_id,
            )

    async def revoked_witnesses(self, now: float) -> frozenset[str]:
        with _unavailable_on(_DB_ERRORS, "accounts"):
            rows = await self._pool.fetch(
                f"SELECT user_id FROM {self._s}.witnesses "
                "WHERE revoked_at IS NOT NULL AND expires_at > $1",
                now,
            )
            return frozenset(r[0] for r in rows)

    async def close(self) -> None:
        await self._pool.close()


__all__ = [
    "IMPORT_BATCH",
    "SQLITE_FILE",
    "AccountStore",
    "MemoryAccountStore",
    "PostgresAccountStore",
    "SqliteAccountStore",
    "WebSession",
    "Witness",
]
