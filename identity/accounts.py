"""Accounts: who may sign in with a password, and the rules a sign-in attempt is judged by.

Pure: no hashing, storage or clock here. The edge (`commandcenter.account_api`) checks the
password and the one-time code, then asks `judge` what that attempt means for the account:
signed in, refused (and why), or locked out for a while. Lockout counts consecutive failures
of one account; a success resets the count. A locked account is refused without looking at
the password, so guessing during a lockout teaches nothing and costs no hash.

`parse_rows` reads the CSV an admin imports (a province has ~3,000 officers), naming the line
of every bad row so that a file is either taken whole or refused with all its faults listed.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Final

from identity.courts import Courts
from identity.names import BadName, normalised
from identity.people import Role

MAX_USER_CHARS: Final = 64
MAX_NAME_CHARS: Final = 64
# Long enough for a passphrase; short enough that hashing it is cheap to bound.
MIN_PASSWORD_CHARS: Final = 10
MAX_PASSWORD_CHARS: Final = 256
# Roles that sign in with a password. A witness is invited per conference with a scoped
# token; the server's own "@" ids never sign in.
ACCOUNT_ROLES: Final = frozenset(
    {Role.OFFICER, Role.OPERATOR, Role.SUPERVISOR, Role.ADMIN, Role.AUDITOR}
)
CSV_COLUMNS: Final = ("user", "name", "role", "court")
MAX_IMPORT_ROWS: Final = 100_000


class AccountError(ValueError):
    """A bad account field; the message names the field and is safe to show an admin."""


class Outcome(StrEnum):
    SIGNED_IN = "signed_in"
    # Wrong password, or no such user: one answer for both, so names cannot be probed.
    BAD_CREDENTIALS = "bad_credentials"
    # Right password, the account has a second factor, and no code was given.
    CODE_REQUIRED = "code_required"
    BAD_CODE = "bad_code"
    LOCKED = "locked"
    DISABLED = "disabled"


@dataclass(frozen=True)
class Account:
    user_id: str
    name: str
    role: Role
    court: str
    password_hash: str
    # Base32 TOTP secret (RFC 6238), or None without a second factor.
    totp_secret: str | None = None
    disabled: bool = False
    # Consecutive failed attempts, and until when (Unix seconds) the account is locked.
    failures: int = 0
    locked_until: float = 0.0


@dataclass(frozen=True)
class LockoutPolicy:
    max_failures: int = 5
    lockout_s: float = 900.0


@dataclass(frozen=True)
class Verdict:
    outcome: Outcome
    # The account as it is after the attempt (None when there was no account).
    account: Account | None
    # Set when this attempt locked the account: the trace records the lockout.
    locked_now: bool = False


def judge(
    account: Account | None,
    *,
    password_ok: bool,
    code_given: bool,
    code_ok: bool,
    now: float,
    policy: LockoutPolicy,
) -> Verdict:
    """What one sign-in attempt means for `account`, and the account's state after it."""
    if account is None:
        return Verdict(Outcome.BAD_CREDENTIALS, None)
    if account.locked_until > now:
        return Verdict(Outcome.LOCKED, account)
    if not password_ok:
        return _failed(account, Outcome.BAD_CREDENTIALS, now, policy)
    if account.disabled:
        # Only told to someone who knows the password: nobody else learns it exists.
        return Verdict(Outcome.DISABLED, account)
    if account.totp_secret is not None:
        if not code_given:
            # Not a failure: the page asks for the code next.
            return Verdict(Outcome.CODE_REQUIRED, account)
        if not code_ok:
            return _failed(account, Outcome.BAD_CODE, now, policy)
    return Verdict(Outcome.SIGNED_IN, replace(account, failures=0, locked_until=0.0))


def _failed(account: Account, outcome: Outcome, now: float, policy: LockoutPolicy) -> Verdict:
    failures = account.failures + 1
    if failures >= policy.max_failures:
        locked = replace(account, failures=0, locked_until=now + policy.lockout_s)
        return Verdict(outcome, locked, locked_now=True)
    return Verdict(outcome, replace(account, failures=failures))


def user_id_of(value: str) -> str:
    """The spelling a user id is kept and looked up in (NFKC, no control characters)."""
    try:
        user = normalised(value, max_chars=MAX_USER_CHARS)
    except BadName as exc:
        raise AccountError(f"user: {exc}") from None
    if user.startswith("@"):
        raise AccountError("user: ids starting '@' are reserved for the server")
    return user


def name_of(value: str) -> str:
    try:
        return normalised(value, max_chars=MAX_NAME_CHARS)
    except BadName as exc:
        raise AccountError(f"name: {exc}") from None


def role_of(value: str) -> Role:
    try:
        role = Role(value.strip())
    except ValueError:
        raise AccountError(f"role: {value!r} is not a role") from None
    if role not in ACCOUNT_ROLES:
        raise AccountError(f"role: a {role.value} does not sign in with a password")
    return role


def court_of(value: str, courts: Courts) -> str:
    court = value.strip()
    if court not in courts:
        raise AccountError(f"court: {court!r} is not a configured court")
    return court


def check_password(password: str) -> str:
    """The password, if it is one we accept; AccountError naming the rule otherwise."""
    if not MIN_PASSWORD_CHARS <= len(password) <= MAX_PASSWORD_CHARS:
        raise AccountError(
            f"password: must be {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_CHARS} characters"
        )
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in password):
        raise AccountError("password: must not contain control characters")
    return password


@dataclass(frozen=True)
class Row:
    """One officer of an import file, checked; `password` may be empty (set later)."""

    line: int
    user_id: str
    name: str
    role: Role
    court: str
    password: str


class ImportRefused(ValueError):
    """An import file with faults; `faults` lists them as "line N: ..." strings."""

    def __init__(self, faults: Sequence[str]) -> None:
        super().__init__(f"{len(faults)} bad rows")
        self.faults = list(faults)


def parse_rows(
    text: str, courts: Courts, allowed: Callable[[Row], str | None] | None = None
) -> list[Row]:
    """Every row of a CSV import (header `user,name,role,court[,password]`), or ImportRefused
    listing each bad line (at most 50 of them named) and duplicate user ids. `allowed` may
    refuse a well-formed row too (an admin's scope), with the reason it returns."""
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if header is None:
        raise ImportRefused(["line 1: the file is empty"])
    columns = [h.strip().lower() for h in header]
    if columns[: len(CSV_COLUMNS)] != list(CSV_COLUMNS) or columns[4:] not in ([], ["password"]):
        raise ImportRefused(
            ["line 1: the header must be user,name,role,court or user,name,role,court,password"]
        )
    rows: list[Row] = []
    faults: list[str] = []
    seen: dict[str, int] = {}
    for fields in reader:
        # line_num counts physical lines, so a quoted newline still names the right line.
        line = reader.line_num
        if not any(f.strip() for f in fields):
            continue
        if len(rows) + len(faults) >= MAX_IMPORT_ROWS:
            faults.append(f"line {line}: more than {MAX_IMPORT_ROWS} rows")
            break
        try:
            row = _row(line, fields, len(columns), courts)
        except AccountError as exc:
            faults.append(f"line {line}: {exc}")
            continue
        refused = allowed(row) if allowed is not None else None
        if refused is not None:
            faults.append(f"line {line}: {refused}")
            continue
        if row.user_id in seen:
            faults.append(f"line {line}: user {row.user_id!r} repeats line {seen[row.user_id]}")
            continue
        seen[row.user_id] = line
        rows.append(row)
    if faults:
        more = [f"... and {len(faults) - 50} more"] if len(faults) > 50 else []
        raise ImportRefused(faults[:50] + more)
    return rows


def _row(line: int, fields: list[str], width: int, courts: Courts) -> Row:
    if len(fields) != width:
        raise AccountError(f"expected {width} fields, found {len(fields)}")
    password = fields[4] if width == 5 else ""
    if password:
        check_password(password)
    return Row(
        line=line,
        user_id=user_id_of(fields[0]),
        name=name_of(fields[1]),
        role=role_of(fields[2]),
        court=court_of(fields[3], courts),
        password=password,
    )


__all__ = [
    "ACCOUNT_ROLES",
    "MAX_PASSWORD_CHARS",
    "MIN_PASSWORD_CHARS",
    "Account",
    "AccountError",
    "ImportRefused",
    "LockoutPolicy",
    "Outcome",
    "Row",
    "Verdict",
    "check_password",
    "court_of",
    "judge",
    "name_of",
    "parse_rows",
    "role_of",
    "user_id_of",
]
