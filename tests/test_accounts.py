"""Accounts and sign-in: the pure rules, the three stores, the HTTP sign-in on the real app
(cookie, token exchange after F5, sign-out, lockout, second factor, rate limit) and the
`commandcenter user` commands against a real trace."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pyotp
import pytest
from hypothesis import given
from hypothesis import strategies as st

from commandcenter.account_api import ACCOUNTS, COOKIE, Passwords
from commandcenter.cli import main
from commandcenter.config import Config, load_config
from commandcenter.stores import open_accounts, open_store
from identity import Courts
from identity.accounts import (
    Account,
    AccountError,
    ImportRefused,
    LockoutPolicy,
    Outcome,
    judge,
    parse_rows,
    role_of,
    user_id_of,
)
from identity.people import Role
from sessions.account_store import (
    AccountStore,
    MemoryAccountStore,
    PostgresAccountStore,
    SqliteAccountStore,
    WebSession,
)
from tests.conftest import Serve
from tests.fakeclock import FakeClock
from tests.tracehelpers import PG_DSN, make_backend
from tests.wsclient import Server

T0 = 1_773_532_800.0
POLICY = LockoutPolicy(max_failures=3, lockout_s=60.0)
PASSWORD = "correct horse battery"
COURTS = Courts(load_config(None).courts)
_HASHER = Passwords()


def acct(**changes: Any) -> Account:
    base = Account("o-1", "张警官", Role.OFFICER, "P0101", "hash")
    return Account(**{**base.__dict__, **changes})


# ---- the pure rules ------------------------------------------------------------------------


def test_three_wrong_passwords_lock_the_account_and_a_right_one_is_refused_while_locked() -> None:
    a = acct()
    for i in range(2):
        v = judge(a, password_ok=False, code_given=False, code_ok=False, now=T0, policy=POLICY)
        assert v.outcome is Outcome.BAD_CREDENTIALS
        assert not v.locked_now
        assert v.account is not None
        assert v.account.failures == i + 1
        a = v.account
    v = judge(a, password_ok=False, code_given=False, code_ok=False, now=T0, policy=POLICY)
    assert v.locked_now
    assert v.account is not None
    assert v.account.locked_until == T0 + 60
    a = v.account
    v = judge(a, password_ok=True, code_given=False, code_ok=False, now=T0 + 59, policy=POLICY)
    assert v.outcome is Outcome.LOCKED
    v = judge(a, password_ok=True, code_given=False, code_ok=False, now=T0 + 61, policy=POLICY)
    assert v.outcome is Outcome.SIGNED_IN
    assert v.account is not None
    assert (v.account.failures, v.account.locked_until) == (0, 0.0)


def test_a_second_factor_is_asked_for_and_a_wrong_code_counts_as_a_failure() -> None:
    a = acct(totp_secret="JBSWY3DPEHPK3PXP")
    v = judge(a, password_ok=True, code_given=False, code_ok=False, now=T0, policy=POLICY)
    assert v.outcome is Outcome.CODE_REQUIRED
    assert v.account == a
    v = judge(a, password_ok=True, code_given=True, code_ok=False, now=T0, policy=POLICY)
    assert v.outcome is Outcome.BAD_CODE
    assert v.account is not None
    assert v.account.failures == 1


def test_disabled_is_told_only_to_someone_who_knows_the_password() -> None:
    a = acct(disabled=True)
    wrong = judge(a, password_ok=False, code_given=False, code_ok=False, now=T0, policy=POLICY)
    right = judge(a, password_ok=True, code_given=False, code_ok=False, now=T0, policy=POLICY)
    assert (wrong.outcome, right.outcome) == (Outcome.BAD_CREDENTIALS, Outcome.DISABLED)
    none = judge(None, password_ok=True, code_given=False, code_ok=False, now=T0, policy=POLICY)
    assert none.outcome is Outcome.BAD_CREDENTIALS


@given(st.lists(st.tuples(st.booleans(), st.floats(0, 120)), max_size=30))
def test_no_sequence_of_attempts_signs_in_without_the_password(
    attempts: list[tuple[bool, float]],
) -> None:
    a: Account | None = acct()
    now = T0
    for right, step in attempts:
        now += step
        v = judge(a, password_ok=right, code_given=False, code_ok=False, now=now, policy=POLICY)
        assert v.outcome is not Outcome.SIGNED_IN or right
        assert v.outcome is not Outcome.SIGNED_IN or a is None or a.locked_until <= now
        a = v.account
        assert a is not None
        assert a.failures < POLICY.max_failures


def test_ids_are_normalised_and_look_alikes_refused() -> None:
    assert user_id_of("\uff4f-1") == "o-1"  # a fullwidth o
    for bad in ("", "a\x1b[31m", "@server", "x" * 65):
        with pytest.raises(AccountError):
            user_id_of(bad)
    with pytest.raises(AccountError, match="witness"):
        role_of("witness")


def test_an_import_file_names_every_bad_line_and_repeated_users() -> None:
    text = (
        "user,name,role,court\n"
        "o-1,张警官,officer,P0101\n"
        "o-2,李警官,pilot,P0101\n"
        "o-3,王警官,officer,X9\n"
        '"o-1","张警官",officer,P0101\n'
        "o-4,赵警官,officer\n"
        '"o-5","张\n二",officer,P0101\n'
    )
    with pytest.raises(ImportRefused) as refused:
        parse_rows(text, COURTS)
    assert [f.split(":")[0] for f in refused.value.faults] == [
        "line 3",
        "line 4",
        "line 5",
        "line 6",
        # A quoted newline: named by the line the row ends on.
        "line 8",
    ]
    assert "repeats line 2" in refused.value.faults[2]
    assert "control" in refused.value.faults[4]
    rows = parse_rows("user,name,role,court,password\no-9,周警官,operator,P01,\n", COURTS)
    assert [(r.user_id, r.role, r.court, r.password) for r in rows] == [
        ("o-9", Role.OPERATOR, "P01", "")
    ]
    with pytest.raises(ImportRefused, match="1 bad rows"):
        parse_rows("name,user\n", COURTS)


# ---- the stores ----------------------------------------------------------------------------


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AccountStore]:
    if request.param == "memory":
        yield MemoryAccountStore()
        return
    if request.param == "sqlite":
        s: AccountStore = await SqliteAccountStore.open(tmp_path / "accounts.sqlite3")
        try:
            yield s
        finally:
            await s.close()
        return
    backend = make_backend("postgres", tmp_path)
    schema = backend.configure(load_config(None)).recorder.postgres_schema
    s = await PostgresAccountStore.open(PG_DSN, schema=schema)
    try:
        yield s
    finally:
        await s.close()
        await backend.drop()


async def test_a_store_keeps_accounts_and_browser_sessions(store: AccountStore) -> None:
    a = acct(totp_secret="JBSWY3DPEHPK3PXP", failures=2, locked_until=T0)
    await store.save(a)
    assert await store.get("o-1") == a
    assert await store.get("nobody") is None
    seen: list[int] = []
    many = [acct(user_id=f"o-{i:04d}") for i in range(1, 1201)]
    await store.save_many(many, seen.append)
    assert seen[-1] == 1200
    assert len(seen) >= 3
    assert len(await store.all()) == 1201  # with o-1
    assert (await store.get("o-0001")) == many[0]
    for digest in ("a" * 64, "b" * 64):
        await store.open_session(WebSession(digest, "o-1", T0, T0 + 60))
    assert await store.session("a" * 64) == WebSession("a" * 64, "o-1", T0, T0 + 60)
    await store.close_session("a" * 64)
    assert await store.session("a" * 64) is None
    assert await store.close_sessions_of("o-1") == 1
    assert await store.session("b" * 64) is None


# ---- signing in on the real app ------------------------------------------------------------


async def add_account(server: Server, **changes: Any) -> Account:
    account = acct(password_hash=_HASHER.hash_now(PASSWORD), **changes)
    await server.http.app[ACCOUNTS].store.save(account)
    return account


async def sign_in(server: Server, **body: Any) -> tuple[int, dict[str, Any], Any]:
    resp = await server.http.post("/api/session", json=body)
    data = await resp.json() if resp.status != 204 else {}
    return resp.status, data, resp


async def test_signing_in_gives_a_token_the_websocket_takes_and_a_cookie_that_survives_f5(
    server: Server,
) -> None:
    await add_account(server)
    status, body, resp = await sign_in(server, user="o-1", password=PASSWORD)
    assert status == 200, body
    assert body["user"] == {"id": "o-1", "name": "张警官", "role": "officer", "court": "P0101"}
    cookie = resp.cookies[COOKIE]
    assert cookie["httponly"]
    assert cookie["samesite"] == "Strict"
    assert cookie["path"] == "/api/session"
    ws = await server.open("o-1", token=body["token"])
    welcome = await ws.expect("welcome")
    assert welcome["user"] == {"id": "o-1", "name": "张警官", "role": "officer", "court": "P0101"}
    await ws.close()
    # F5: the page has lost its token, the browser still has the cookie.
    again = await server.http.post("/api/session/token")
    assert again.status == 200
    fresh = await again.json()
    ws2 = await server.open("o-1", token=fresh["token"])
    await ws2.expect("welcome")
    await ws2.close()
    await server.wait_recorded("account_signed_in", user="o-1", court="P0101", role="officer")
    # Signing out ends the session: the cookie buys nothing more.
    out = await server.http.delete("/api/session")
    assert out.status == 204
    await server.wait_recorded("account_signed_out", user="o-1")
    server.http.session.cookie_jar.update_cookies({COOKIE: cookie.value})
    gone = await server.http.post("/api/session/token")
    assert gone.status == 401
    assert (await gone.json())["error"] == "signed_out"


async def test_unknown_users_and_wrong_passwords_get_one_answer(server: Server) -> None:
    await add_account(server)
    wrong = await sign_in(server, user="o-1", password="not the password")
    unknown = await sign_in(server, user="o-404", password="not the password")
    assert (wrong[0], wrong[1]["error"]) == (unknown[0], unknown[1]["error"])
    assert wrong[0] == 401
    assert wrong[1]["error"] == "bad_credentials"
    assert COOKIE not in wrong[2].cookies
    failed = server.recorder.of_kind("account_sign_in_failed")
    assert [(e.data["user"], e.data["reason"]) for e in failed] == [
        ("o-1", "bad_credentials"),
        ("o-404", "bad_credentials"),
    ]


async def test_repeated_wrong_passwords_lock_the_account_for_a_while(serve: Serve) -> None:
    clock = FakeClock(T0)
    server = await serve(clock=clock, accounts={"lockout_failures": 3, "lockout_s": 600.0})
    await add_account(server)
    for _ in range(3):
        status, body, _ = await sign_in(server, user="o-1", password="guess guess guess")
        assert (status, body["error"]) == (401, "bad_credentials")
    status, body, resp = await sign_in(server, user="o-1", password=PASSWORD)
    assert (status, body["error"]) == (429, "locked")
    assert int(resp.headers["Retry-After"]) == 600
    locked = server.recorder.of_kind("account_locked")
    assert [(e.data["user"], e.data["until"]) for e in locked] == [("o-1", T0 + 600)]
    clock.advance(601)
    status, body, _ = await sign_in(server, user="o-1", password=PASSWORD)
    assert status == 200, body


async def test_a_second_factor_is_required_when_the_account_has_one(server: Server) -> None:
    secret = pyotp.random_base32()
    await add_account(server, totp_secret=secret)
    status, body, _ = await sign_in(server, user="o-1", password=PASSWORD)
    assert (status, body["error"]) == (401, "code_required")
    wrong = "000000" if pyotp.TOTP(secret).now() != "000000" else "111111"
    status, body, _ = await sign_in(server, user="o-1", password=PASSWORD, code=wrong)
    assert (status, body["error"]) == (401, "bad_code")
    code = pyotp.TOTP(secret).now()
    status, body, _ = await sign_in(server, user="o-1", password=PASSWORD, code=code)
    assert status == 200, body
    signed = server.recorder.of_kind("account_signed_in")
    assert signed[-1].data["second_factor"] is True


async def test_a_disabled_account_cannot_sign_in_nor_renew_its_token(server: Server) -> None:
    account = await add_account(server)
    status, _, _ = await sign_in(server, user="o-1", password=PASSWORD)
    assert status == 200
    await server.http.app[ACCOUNTS].store.save(Account(**{**account.__dict__, "disabled": True}))
    renewed = await server.http.post("/api/session/token")
    assert renewed.status == 401
    status, body, _ = await sign_in(server, user="o-1", password=PASSWORD)
    assert (status, body["error"]) == (403, "disabled")


async def test_one_address_is_limited_in_attempts_per_minute(serve: Serve) -> None:
    server = await serve(accounts={"attempts_per_minute": 3})
    for _ in range(3):
        status, _, _ = await sign_in(server, user="o-404", password="x" * 12)
        assert status == 401
    status, body, resp = await sign_in(server, user="o-404", password="x" * 12)
    assert (status, body["error"]) == (429, "rate_limited")
    assert resp.headers["Retry-After"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"user": "o-1"}, "password"),
        ({"user": 5, "password": "x"}, "user"),
        ({"user": "o-1", "password": "x" * 300}, "password"),
        ({"user": "o-1", "password": "x", "admin": True}, "admin"),
        ({"user": "o-1", "password": "xxxxxxxxxxxx", "code": 123456}, "code"),
    ],
)
async def test_bad_sign_in_bodies_are_refused_naming_the_field(
    server: Server, body: dict[str, Any], field: str
) -> None:
    status, answer, _ = await sign_in(server, **body)
    assert (status, answer["error"], answer.get("field")) == (400, "bad_request", field)


async def test_a_body_that_is_not_json_or_too_large_is_refused(server: Server) -> None:
    resp = await server.http.post("/api/session", data=b"{not json")
    assert resp.status == 400
    resp = await server.http.post("/api/session", data=b"{" + b" " * 5000 + b"}")
    assert resp.status == 400


async def test_a_body_nested_too_deep_is_refused_with_a_clear_error(server: Server) -> None:
    """Deeper than 32 levels: 400 naming the bound, whether the decoder would have gone past
    Python's recursion limit (1,800 levels in 3.6 kB) or not (40 levels); 32 levels are JSON
    like any other (refused only for what the fields say)."""
    for depth in (40, 1800):
        deep = b'{"user": ' + b"[" * depth + b"]" * depth + b"}"
        resp = await server.http.post("/api/session", data=deep)
        answer = await resp.json()
        assert (resp.status, answer["error"]) == (400, "bad_request"), depth
        assert answer["reason"] == "the body nests deeper than 32 levels"
    fits = b'{"user": ' + b"[" * 31 + b"]" * 31 + b"}"
    resp = await server.http.post("/api/session", data=fits)
    answer = await resp.json()
    assert (resp.status, answer.get("field")) == (400, "user")


async def test_a_body_that_arrives_in_pieces_is_read_whole(server: Server) -> None:
    """A slow network splits the body: the first piece alone is not the body (it was read
    as if it were, and refused as not JSON; an import file was cut short the same way)."""
    await add_account(server)
    body = json.dumps({"user": "o-1", "password": PASSWORD}).encode()

    async def slowly() -> AsyncIterator[bytes]:
        yield body[:10]
        # The network's delay between two segments, not a wait for the server.
        await asyncio.sleep(0.2)
        yield body[10:]

    resp = await server.http.post(
        "/api/session", data=slowly(), headers={"Content-Type": "application/json"}
    )
    assert resp.status == 200, await resp.text()


# ---- the command line ----------------------------------------------------------------------


@pytest.fixture
def config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in list(os.environ):
        if name.startswith("COMMANDCENTER_"):
            monkeypatch.delenv(name)
    path = tmp_path / "config.toml"
    path.write_text(f'[server]\ndata_dir = "{tmp_path / "var"}"\n', encoding="utf-8")
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


async def _kept(config: Config) -> tuple[list[Account], list[str]]:
    accounts = await open_accounts(config)
    trace = await open_store(config, readonly=True)
    try:
        return await accounts.all(), [r.kind for r in await trace.records()]
    finally:
        await accounts.close()
        await trace.close()


def test_user_commands_add_disable_enable_reset_and_list(
    config_file: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    cfg = ["--config", str(config_file)]
    code, out, err = run(
        capsys, "user", "add", "--user", "o-7", "--name", "张警官", "--role", "officer",
        "--court", "P0101", "--totp", *cfg,
    )  # fmt: skip
    assert code == 0, err
    made = json.loads(out)
    assert made["totp_uri"].startswith("otpauth://totp/")
    assert len(made["password"]) >= 12
    code, _, err = run(
        capsys, "user", "add", "--user", "o-7", "--name", "x", "--role", "officer",
        "--court", "P0101", *cfg,
    )  # fmt: skip
    assert code == 2
    assert "exists" in err
    code, _, err = run(
        capsys, "user", "add", "--user", "o-8", "--name", "x", "--role", "officer",
        "--court", "NOPE", *cfg,
    )  # fmt: skip
    assert code == 2
    assert "court" in err
    assert run(capsys, "user", "disable", "--user", "o-7", *cfg)[0] == 0
    assert run(capsys, "user", "enable", "--user", "o-7", *cfg)[0] == 0
    monkeypatch.setattr("sys.stdin", __import__("io").StringIO("a new long password\n"))
    code, out, err = run(
        capsys, "user", "reset", "--user", "o-7", "--password-stdin", "--no-totp", *cfg
    )
    assert code == 0, err
    assert "password" not in json.loads(out)
    code, out, _ = run(capsys, "user", "list", *cfg)
    listed = json.loads(out)["accounts"]
    assert [(a["user"], a["second_factor"], a["disabled"]) for a in listed] == [
        ("o-7", False, False)
    ]
    assert run(capsys, "user", "disable", "--user", "nobody", *cfg)[0] == 2
    config = load_config(config_file)
    accounts, kinds = asyncio.run(_kept(config))
    assert kinds == [
        "account_added",
        "account_disabled",
        "account_enabled",
        "account_password_reset",
    ]
    assert Passwords()._verify(accounts[0].password_hash, "a new long password")
    # What the commands recorded is covered by their checkpoints: the trace verifies whole.
    code, out, err = run(capsys, "audit", "verify", *cfg)
    assert code == 0, err
    assert json.loads(out)["checkpoint"]["status"] == "ok"


def test_importing_thousands_of_officers_shows_progress_and_a_bad_file_changes_nothing(
    config_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    cfg = ["--config", str(config_file)]
    rows = ["user,name,role,court,password"]
    rows += [f"o-{i:04d},警官{i},officer,P0101," for i in range(3000)]
    rows += ["op-1,接警员,operator,P0101,a long enough password"]
    good = tmp_path / "officers.csv"
    good.write_text("\n".join(rows) + "\n", encoding="utf-8")
    code, out, err = run(capsys, "user", "import", str(good), "--progress", *cfg)
    assert code == 0, err
    summary = json.loads(out)
    assert (summary["added"], summary["updated"], summary["without_password"]) == (3001, 0, 3000)
    assert "saving [" in err
    assert "3001/3001 accounts" in err
    assert "hashing [" in err
    bad = tmp_path / "bad.csv"
    bad.write_text("user,name,role,court\no-0001,改名,officer,P0101\no-x,,officer,P0101\n")
    code, _, err = run(capsys, "user", "import", str(bad), *cfg)
    assert code == 2
    assert "line 3" in err
    assert "nothing imported" in err
    again = tmp_path / "again.csv"
    again.write_text("user,name,role,court\no-0001,改名,officer,P0101\n", encoding="utf-8")
    code, out, _ = run(capsys, "user", "import", str(again), *cfg)
    assert code == 0
    assert json.loads(out)["updated"] == 1
    accounts, kinds = asyncio.run(_kept(load_config(config_file)))
    by_id = {a.user_id: a for a in accounts}
    assert by_id["o-0001"].name == "改名"
    assert len(accounts) == 3001
    assert Passwords()._verify(by_id["op-1"].password_hash, "a long enough password")
    assert kinds == ["accounts_imported", "accounts_imported"]
