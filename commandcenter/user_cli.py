"""`commandcenter user ...`: the accounts people sign in with, kept beside the trace.

    user add     --user ID --name NAME --role ROLE --court CODE [--password-stdin] [--totp]
    user disable --user ID          (ends the account's browser sessions too)
    user enable  --user ID          (also lifts a lockout)
    user reset   --user ID [--password-stdin] [--totp | --no-totp]
    user list
    user import  FILE.csv [--progress]   (header user,name,role,court[,password])

Without `--password-stdin` a random password is made and printed once, in the JSON on stdout;
it is never logged or stored in clear. Every change is a trace record (`account_*`), written
before the command reports success.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Final

import msgspec

from commandcenter import account_changes
from commandcenter.cli import (
    PROG,
    CommandError,
    Commands,
    _config_option,
    _load,
    _ProgressBar,
)
from commandcenter.config import Config
from identity import Courts
from identity.accounts import (
    Account,
    AccountError,
    ImportRefused,
    check_password,
    court_of,
    name_of,
    parse_rows,
    role_of,
    user_id_of,
)

MAX_IMPORT_BYTES: Final = 64 * 1024 * 1024
# Who the trace names as having made a CLI change: whoever ran it, on this host.
CLI_ACTOR: Final = "cli"


def add_user(commands: Commands) -> None:
    p = commands.add_parser(
        "user",
        help="add, disable, reset and import the accounts people sign in with",
        description="Manage the accounts people sign in with (see docs/accounts.md).",
    )
    actions = p.add_subparsers(title="actions", metavar="ACTION", required=True)
    a = actions.add_parser("add", parents=[_config_option()], help="add an account")
    _user_option(a)
    a.add_argument("--name", required=True, help="display name, e.g. 张警官")
    a.add_argument("--role", required=True, help="officer, operator, supervisor, admin, auditor")
    a.add_argument("--court", required=True, metavar="CODE", help="court code, e.g. P0101")
    _password_options(a)
    a.set_defaults(run=_add)
    for action, help_text, run in (
        ("disable", "disable an account and end its browser sessions", _disable),
        ("enable", "enable an account and lift any lockout", _enable),
    ):
        d = actions.add_parser(action, parents=[_config_option()], help=help_text)
        _user_option(d)
        d.set_defaults(run=run)
    r = actions.add_parser(
        "reset", parents=[_config_option()], help="set a new password (and second factor)"
    )
    _user_option(r)
    _password_options(r)
    r.add_argument("--no-totp", action="store_true", help="remove the second factor")
    r.set_defaults(run=_reset)
    ls = actions.add_parser("list", parents=[_config_option()], help="print every account")
    ls.set_defaults(run=_list)
    i = actions.add_parser(
        "import",
        parents=[_config_option()],
        help="add or update accounts from a CSV file",
        description="Add or update accounts from a CSV file with the header "
        "user,name,role,court (and optionally password). A file with any bad row changes "
        "nothing; every bad row is named. Accounts without a password cannot sign in until "
        "`user reset`.",
    )
    i.add_argument("file", type=Path, help="the CSV file (UTF-8)")
    i.add_argument(
        "--progress",
        action="store_true",
        help="draw a progress bar on stderr even when it is not a terminal",
    )
    i.set_defaults(run=_import)


def _user_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--user", required=True, metavar="ID", help="the account's user id")


def _password_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from the first line of stdin (default: make one and print it)",
    )
    p.add_argument(
        "--totp",
        action="store_true",
        help="require a one-time code (TOTP): prints the secret and an otpauth:// URI",
    )


# ---- running against the stores -----------------------------------------------------------


async def _with_stores(
    config: Config, work: Callable[[Any, Any], Awaitable[dict[str, Any]]]
) -> dict[str, Any]:
    """Opens the account store and the trace, runs `work(accounts, recorder)`, closes both.
    What it recorded is covered by a checkpoint of its own (reason `admin`), so that records
    written while the server is stopped are not taken for a forged tail."""
    from commandcenter.checkpoints import open_checkpointer
    from commandcenter.stores import open_accounts, open_store
    from sessions.durable import DurableRecorder
    from sessions.export import exported_by_default

    trace = await open_store(config)
    try:
        before = await trace.head()
        accounts = await open_accounts(config)
        try:
            result = await work(accounts, DurableRecorder.over(trace))
        finally:
            await accounts.close()
        if await trace.head() != before:
            who = exported_by_default()
            checkpointer = await open_checkpointer(config, trace, node=who, clock=time.time)
            await checkpointer.checkpoint("admin")
        return result
    finally:
        await trace.close()


def _run(prog: str, config: Config, work: Callable[[Any, Any], Awaitable[dict[str, Any]]]) -> int:
    from commandcenter.logs import configure_logging
    from sessions.checkpoint_files import KeyFileError
    from sessions.errors import RecorderError

    if config.recorder.backend == "memory":
        raise CommandError(prog, "recorder.backend is memory: accounts would not be kept")
    # Log lines go to stderr, stdout being the result's; only what needs the operator (a
    # checkpoint key made now, an alarm).
    configure_logging(msgspec.structs.replace(config.logging, level="warning"), cache=False)
    try:
        result = asyncio.run(_with_stores(config, work))
    except RecorderError as exc:
        raise CommandError(prog, exc.reason) from None
    except KeyFileError as exc:
        raise CommandError(prog, f"checkpoint key: {exc}") from None
    print(json.dumps(result, ensure_ascii=False))
    return 0


def _hasher() -> Any:
    from commandcenter.account_api import Passwords

    return Passwords()


def _new_password(prog: str, from_stdin: bool) -> tuple[str, bool]:
    """(password, made here): read from stdin, or made up."""
    if not from_stdin:
        return account_changes.new_password(), True
    line = sys.stdin.readline().rstrip("\r\n")
    try:
        return check_password(line), False
    except AccountError as exc:
        raise CommandError(prog, str(exc)) from None


def _second_factor(config: Config, user_id: str) -> tuple[str, dict[str, str]]:
    secret, uri = account_changes.new_second_factor(config.accounts.totp_issuer, user_id)
    return secret, {"totp_secret": secret, "totp_uri": uri}


def _checked(prog: str, check: Callable[[], Any]) -> Any:
    try:
        return check()
    except AccountError as exc:
        raise CommandError(prog, str(exc)) from None


def _add(args: argparse.Namespace) -> int:
    prog = f"{PROG} user add"
    config = _load(args)
    courts = Courts(config.courts)
    user_id = _checked(prog, lambda: user_id_of(args.user))
    name = _checked(prog, lambda: name_of(args.name))
    role = _checked(prog, lambda: role_of(args.role))
    court = _checked(prog, lambda: court_of(args.court, courts))
    password, made = _new_password(prog, args.password_stdin)
    shown: dict[str, Any] = {"user": user_id, "role": role.value, "court": court}
    totp_secret = None
    if args.totp:
        totp_secret, factor = _second_factor(config, user_id)
        shown.update(factor)
    if made:
        shown["password"] = password
    account = Account(user_id, name, role, court, _hasher().hash_now(password), totp_secret)

    async def work(accounts: Any, recorder: Any) -> dict[str, Any]:
        try:
            await account_changes.add(accounts, recorder, account, by=CLI_ACTOR, now=time.time())
        except account_changes.AccountExists:
            raise CommandError(prog, f"user {user_id!r} exists (use `user reset`)") from None
        return shown

    return _run(prog, config, work)


def _set_disabled(prog: str, args: argparse.Namespace, disabled: bool) -> int:
    config = _load(args)
    user_id = _checked(prog, lambda: user_id_of(args.user))

    async def work(accounts: Any, recorder: Any) -> dict[str, Any]:
        account = await accounts.get(user_id)
        if account is None:
            raise CommandError(prog, f"no user {user_id!r}")
        _, ended = await account_changes.set_disabled(
            accounts, recorder, account, disabled, by=CLI_ACTOR, now=time.time()
        )
        return {"user": user_id, "sessions_ended": ended}

    return _run(prog, config, work)


def _disable(args: argparse.Namespace) -> int:
    return _set_disabled(f"{PROG} user disable", args, True)


def _enable(args: argparse.Namespace) -> int:
    return _set_disabled(f"{PROG} user enable", args, False)


def _reset(args: argparse.Namespace) -> int:
    prog = f"{PROG} user reset"
    if args.totp and args.no_totp:
        raise CommandError(prog, "--totp and --no-totp exclude each other")
    config = _load(args)
    user_id = _checked(prog, lambda: user_id_of(args.user))
    password, made = _new_password(prog, args.password_stdin)
    password_hash = _hasher().hash_now(password)
    shown: dict[str, Any] = {"user": user_id}
    if made:
        shown["password"] = password
    totp: tuple[str, dict[str, str]] | None = _second_factor(config, user_id) if args.totp else None
    if totp is not None:
        shown.update(totp[1])

    async def work(accounts: Any, recorder: Any) -> dict[str, Any]:
        account = await accounts.get(user_id)
        if account is None:
            raise CommandError(prog, f"no user {user_id!r}")
        secret = totp[0] if totp is not None else None if args.no_totp else account.totp_secret
        _, shown["sessions_ended"] = await account_changes.reset(
            accounts,
            recorder,
            account,
            password_hash=password_hash,
            totp_secret=secret,
            by=CLI_ACTOR,
            now=time.time(),
        )
        return shown

    return _run(prog, config, work)


def _list(args: argparse.Namespace) -> int:
    prog = f"{PROG} user list"
    config = _load(args)

    async def work(accounts: Any, recorder: Any) -> dict[str, Any]:
        return {"accounts": [account_changes.summary_of(a) for a in await accounts.all()]}

    return _run(prog, config, work)


def _import(args: argparse.Namespace) -> int:
    prog = f"{PROG} user import"
    config = _load(args)
    path: Path = args.file
    try:
        if path.stat().st_size > MAX_IMPORT_BYTES:
            raise CommandError(prog, f"{path}: larger than {MAX_IMPORT_BYTES} bytes")
        raw = path.read_bytes()
        text = raw.decode("utf-8-sig")
    except OSError as exc:
        raise CommandError(prog, f"{path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise CommandError(prog, f"{path}: not UTF-8 text") from None
    try:
        rows = parse_rows(text, Courts(config.courts))
    except ImportRefused as exc:
        for fault in exc.faults:
            print(f"{prog}: {path}: {fault}", file=sys.stderr)
        raise CommandError(prog, f"{path}: {len(exc.faults)} bad rows; nothing imported") from None
    show = bool(args.progress) or sys.stderr.isatty()
    hasher = _hasher()

    async def work(accounts: Any, recorder: Any) -> dict[str, Any]:
        existing = {a.user_id: a for a in await accounts.all(limit=10**7)}
        with_password = [r for r in rows if r.password]
        hashes = _hash_all(hasher, [r.password for r in with_password], show)
        hash_of = {r.user_id: h for r, h in zip(with_password, hashes, strict=True)}
        bar = _ProgressBar(len(rows), "accounts", "saving") if show else None
        summary = await account_changes.import_rows(
            accounts,
            recorder,
            rows,
            existing,
            hash_of,
            raw,
            by=CLI_ACTOR,
            now=time.time(),
            progress=None if bar is None else bar.update,
        )
        if bar is not None:
            bar.finish(len(rows))
        return summary

    return _run(prog, config, work)


def _hash_all(hasher: Any, passwords: list[str], show: bool) -> list[str]:
    """argon2 hashes of `passwords`, on every core (argon2 releases the GIL), with a bar."""
    if not passwords:
        return []
    bar = _ProgressBar(len(passwords), "passwords", "hashing") if show else None
    out: list[str] = []
    with ThreadPoolExecutor() as pool:
        for done, digest in enumerate(pool.map(hasher.hash_now, passwords), 1):
            out.append(digest)
            if bar is not None:
                bar.update(done)
    if bar is not None:
        bar.finish(len(out))
    return out


__all__ = ["add_user"]
