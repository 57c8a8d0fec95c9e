"""The changes an administrator makes to accounts, shared by `commandcenter user` (the CLI)
and the admin API (`admin_api`): each writes its fact to the trace first (durable before
told), naming who made it (`by`: "cli", or the admin's user id), then saves the account.

What is decided here is the same whichever edge asks: what an import does to existing
accounts, what a reset clears, what a disable ends. How passwords are hashed (every core for
the CLI, a few at a time beside the event loop for the server) and how progress is shown
stay with the edges.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any, Final, Protocol

import pyotp

from identity.accounts import Account, Row
from sessions.account_store import AccountStore
from sessions.recorder import TraceEvent

# Trace kinds, documented in docs/accounts.md.
ADDED: Final = "account_added"
DISABLED: Final = "account_disabled"
ENABLED: Final = "account_enabled"
PASSWORD_RESET: Final = "account_password_reset"
IMPORTED: Final = "accounts_imported"
# A made-up password: 16 URL-safe characters, ~96 bits.
GENERATED_PASSWORD_BYTES: Final = 12


class Recorder(Protocol):
    async def record(self, events: Sequence[TraceEvent]) -> None: ...


class AccountExists(Exception):
    """The user id is taken (by an account the asker may or may not see)."""


def new_password() -> str:
    return secrets.token_urlsafe(GENERATED_PASSWORD_BYTES)


def new_second_factor(issuer: str, user_id: str) -> tuple[str, str]:
    """A fresh TOTP secret and its otpauth:// URI (what an authenticator app scans)."""
    secret = pyotp.random_base32()
    return secret, pyotp.TOTP(secret).provisioning_uri(name=user_id, issuer_name=issuer)


def summary_of(a: Account) -> dict[str, Any]:
    """An account as `user list` prints it and the admin API lists it: never a hash or a
    secret, only whether there is one."""
    return {
        "user": a.user_id,
        "name": a.name,
        "role": a.role.value,
        "court": a.court,
        "second_factor": a.totp_secret is not None,
        "disabled": a.disabled,
        "has_password": bool(a.password_hash),
        "locked_until": a.locked_until or None,
    }


def _event(kind: str, data: dict[str, Any], by: str, now: float) -> TraceEvent:
    return TraceEvent(kind, now, {**data, "by": by})


async def add(
    accounts: AccountStore, recorder: Recorder, account: Account, *, by: str, now: float
) -> None:
    """A new account; AccountExists when the id is taken."""
    if await accounts.get(account.user_id) is not None:
        raise AccountExists(account.user_id)
    data = {
        "user": account.user_id,
        "court": account.court,
        "role": account.role.value,
        "second_factor": account.totp_secret is not None,
    }
    await recorder.record([_event(ADDED, data, by, now)])
    await accounts.save(account)


async def set_disabled(
    accounts: AccountStore,
    recorder: Recorder,
    account: Account,
    disabled: bool,
    *,
    by: str,
    now: float,
) -> tuple[Account, int]:
    """Disables `account` and ends its browser sessions, or enables it and lifts any
    lockout; the account as saved and how many sessions ended."""
    kind = DISABLED if disabled else ENABLED
    await recorder.record(
        [_event(kind, {"user": account.user_id, "court": account.court}, by, now)]
    )
    changed = (
        replace(account, disabled=True)
        if disabled
        else replace(account, disabled=False, failures=0, locked_until=0.0)
    )
    await accounts.save(changed)
    ended = await accounts.close_sessions_of(account.user_id) if disabled else 0
    return changed, ended


async def reset(
    accounts: AccountStore,
    recorder: Recorder,
    account: Account,
    *,
    password_hash: str,
    totp_secret: str | None,
    by: str,
    now: float,
) -> tuple[Account, int]:
    """A new password (and second factor, or none), the lockout lifted and every browser
    session ended: whoever knew the old password is out."""
    data = {
        "user": account.user_id,
        "court": account.court,
        "second_factor": totp_secret is not None,
    }
    await recorder.record([_event(PASSWORD_RESET, data, by, now)])
    changed = replace(
        account, password_hash=password_hash, totp_secret=totp_secret, failures=0, locked_until=0.0
    )
    await accounts.save(changed)
    return changed, await accounts.close_sessions_of(account.user_id)


def merged(
    rows: Sequence[Row], existing: Mapping[str, Account], hash_of: Mapping[str, str]
) -> list[Account]:
    """The accounts an import leaves: existing ones get the row's name, role and court (and
    password only when the row has one); new ones have no password unless the row gives one."""
    out: list[Account] = []
    for r in rows:
        base = existing.get(r.user_id) or Account(r.user_id, r.name, r.role, r.court, "")
        out.append(
            replace(
                base,
                name=r.name,
                role=r.role,
                court=r.court,
                password_hash=hash_of.get(r.user_id, base.password_hash),
            )
        )
    return out


async def import_rows(
    accounts: AccountStore,
    recorder: Recorder,
    rows: Sequence[Row],
    existing: Mapping[str, Account],
    hash_of: Mapping[str, str],
    raw: bytes,
    *,
    by: str,
    now: float,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Saves the checked rows of an import file (`raw`, whose SHA-256 the trace keeps) over
    `existing`; the summary the trace records. `progress` gets the count saved so far."""
    result = merged(rows, existing, hash_of)
    added = sum(1 for r in rows if r.user_id not in existing)
    summary: dict[str, Any] = {
        "accounts": len(rows),
        "added": added,
        "updated": len(rows) - added,
        "without_password": sum(1 for a in result if not a.password_hash),
        "file_sha256": hashlib.sha256(raw).hexdigest(),
    }
    await recorder.record([_event(IMPORTED, dict(summary), by, now)])
    await accounts.save_many(result, progress)
    return summary


__all__ = [
    "ADDED",
    "DISABLED",
    "ENABLED",
    "IMPORTED",
    "PASSWORD_RESET",
    "AccountExists",
    "Recorder",
    "add",
    "import_rows",
    "merged",
    "new_password",
    "new_second_factor",
    "reset",
    "set_disabled",
    "summary_of",
]
