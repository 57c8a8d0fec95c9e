"""The accounts admin API (commandcenter/admin_api.py) on the real app over SQLite and
PostgreSQL: admins only, within their court's scope (another court's account is a 404 like a
missing one), every change a trace fact naming the admin, made passwords shown once, bad
bodies and bad CSV files refused whole, and a 3,000-officer import with its progress."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyotp
import pytest
from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient

from commandcenter.account_api import ACCOUNTS, Passwords
from commandcenter.admin_api import matching
from commandcenter.app import create_app
from commandcenter.config import Config
from commandcenter.keys import TRACE
from identity.accounts import Account
from identity.people import Role
from tests.conftest import make_config
from tests.test_openapi import Conformance
from tests.tracehelpers import Backend, backend
from tests.wsclient import token_for

# A shared fixture (tests.tracehelpers): each test on SQLite and on PostgreSQL.
__all__ = ["backend"]

PASSWORD = "correct horse battery"
_HASHER = Passwords()


class Admin:
    """The real app on a backend, and requests as whoever a test names."""

    def __init__(self, http: TestClient[Any, Any], app: web.Application, config: Config) -> None:
        self.http, self.app, self.config = http, app, config

    def auth(self, user: str = "adm-1", role: str = "admin", court: str = "P01") -> dict[str, str]:
        return {"Authorization": f"Bearer {token_for(self.config, user, role, court)}"}

    async def save(self, user: str, court: str, role: Role = Role.OFFICER) -> Account:
        account = Account(user, f"警官{user}", role, court, _HASHER.hash_now(PASSWORD))
        await self.app[ACCOUNTS].store.save(account)
        return account

    async def get(self, user: str) -> Account | None:
        return await self.app[ACCOUNTS].store.get(user)

    async def recorded(self, kind: str) -> list[dict[str, Any]]:
        return [dict(r.data) for r in await self.app[TRACE].find(kinds=[kind])]

    async def sign_in(self, user: str, password: str) -> ClientResponse:
        return await self.http.post("/api/session", json={"user": user, "password": password})

    async def import_csv(self, text: str, **auth: str) -> ClientResponse:
        headers = {**self.auth(**auth), "Content-Type": "text/csv"}
        return await self.http.post("/api/accounts/import", data=text.encode(), headers=headers)


@pytest.fixture
async def admin(backend: Backend, aiohttp_client: AiohttpClient, tmp_path: Path) -> Admin:
    # The backend first, so that it is dropped after the app has stopped writing to it.
    config = backend.configure(make_config(tmp_path / "var"))
    app = create_app(config)
    return Admin(await aiohttp_client(app), app, config)


async def body(resp: ClientResponse) -> Any:
    return await resp.json()


async def lines(resp: ClientResponse) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (await resp.text()).splitlines() if line]


def test_a_search_keeps_to_the_scope_and_matches_id_or_name_in_any_case() -> None:
    accounts = [
        Account("o-2", "李警官", Role.OFFICER, "P0101", ""),
        Account("OP-1", "Wang", Role.OPERATOR, "P0101", "", disabled=True),
        Account("o-1", "张警官", Role.OFFICER, "P", ""),
    ]
    scope = frozenset({"P01", "P0101"})
    assert [a.user_id for a in matching(accounts, scope)] == ["OP-1", "o-2"]
    assert [a.user_id for a in matching(accounts, scope, text="op")] == ["OP-1"]
    assert [a.user_id for a in matching(accounts, scope, text="李")] == ["o-2"]
    assert [a.user_id for a in matching(accounts, scope, disabled=False)] == ["o-2"]
    assert [a.user_id for a in matching(accounts, scope, role=Role.OPERATOR)] == ["OP-1"]
    assert matching(accounts, scope, text="张") == []


async def test_an_admin_adds_an_officer_who_signs_in_with_the_password_shown_once(
    admin: Admin,
) -> None:
    resp = await admin.http.post(
        "/api/accounts",
        json={"user": "o-7", "name": "张警官", "role": "officer", "court": "P0101", "totp": True},
        headers=admin.auth(),
    )
    made = await body(resp)
    assert resp.status == 201, made
    assert resp.headers["Cache-Control"] == "no-store"
    assert (made["user"], made["role"], made["court"]) == ("o-7", "officer", "P0101")
    assert len(made["password"]) >= 16
    assert made["totp_uri"].startswith("otpauth://totp/")
    code = pyotp.TOTP(made["totp_secret"]).now()
    signed = await admin.http.post(
        "/api/session", json={"user": "o-7", "password": made["password"], "code": code}
    )
    assert signed.status == 200, await signed.text()
    added = await admin.recorded("account_added")
    assert added == [
        {"user": "o-7", "court": "P0101", "role": "officer", "second_factor": True, "by": "adm-1"}
    ]
    # Neither the password nor the secret is in the trace.
    assert made["password"] not in json.dumps(added)
    again = await admin.http.post(
        "/api/accounts",
        json={"user": "o-7", "name": "x", "role": "officer", "court": "P0101"},
        headers=admin.auth(),
    )
    assert (again.status, (await body(again))["error"]) == (409, "exists")
    chosen = await admin.http.post(
        "/api/accounts",
        json={"user": "op-1", "name": "接警员", "role": "operator", "court": "P01",
              "password": PASSWORD},
        headers=admin.auth(),
    )  # fmt: skip
    assert chosen.status == 201
    assert "password" not in await body(chosen)
    assert (await admin.sign_in("op-1", PASSWORD)).status == 200


async def test_a_disabled_officer_is_signed_out_and_cannot_sign_in_until_enabled(
    admin: Admin,
) -> None:
    await admin.save("o-1", "P0101")
    assert (await admin.sign_in("o-1", PASSWORD)).status == 200
    resp = await admin.http.post("/api/accounts/o-1/disable", headers=admin.auth())
    answer = await body(resp)
    assert resp.status == 200, answer
    assert answer["sessions_ended"] == 1
    assert answer["account"]["disabled"] is True
    # The browser's cookie buys no new token, and a new sign-in is refused.
    assert (await admin.http.post("/api/session/token")).status == 401
    refused = await admin.sign_in("o-1", PASSWORD)
    assert (refused.status, (await body(refused))["error"]) == (403, "disabled")
    resp = await admin.http.post("/api/accounts/o-1/enable", headers=admin.auth())
    assert resp.status == 200
    assert (await admin.sign_in("o-1", PASSWORD)).status == 200
    assert await admin.recorded("account_disabled") == [
        {"user": "o-1", "court": "P0101", "by": "adm-1"}
    ]
    assert await admin.recorded("account_enabled") == [
        {"user": "o-1", "court": "P0101", "by": "adm-1"}
    ]
    mine = await admin.http.post("/api/accounts/adm-1/disable", headers=admin.auth())
    assert mine.status == 404  # adm-1 has a token here, no account
    await admin.save("adm-1", "P01", Role.ADMIN)
    mine = await admin.http.post("/api/accounts/adm-1/disable", headers=admin.auth())
    assert (mine.status, (await body(mine))["field"]) == (400, "user_id")


async def test_a_reset_sets_a_new_password_and_second_factor_and_ends_the_sessions(
    admin: Admin,
) -> None:
    await admin.save("o-1", "P0101")
    assert (await admin.sign_in("o-1", PASSWORD)).status == 200
    resp = await admin.http.post(
        "/api/accounts/o-1/reset", json={"totp": "new"}, headers=admin.auth()
    )
    reset = await body(resp)
    assert resp.status == 200, reset
    assert resp.headers["Cache-Control"] == "no-store"
    assert reset["sessions_ended"] == 1
    assert reset["account"]["second_factor"] is True
    assert (await admin.sign_in("o-1", PASSWORD)).status == 401
    code = pyotp.TOTP(reset["totp_secret"]).now()
    signed = await admin.http.post(
        "/api/session", json={"user": "o-1", "password": reset["password"], "code": code}
    )
    assert signed.status == 200
    resp = await admin.http.post(
        "/api/accounts/o-1/reset",
        json={"password": "another long password", "totp": "remove"},
        headers=admin.auth(),
    )
    reset = await body(resp)
    assert "password" not in reset
    assert reset["account"]["second_factor"] is False
    assert (await admin.sign_in("o-1", "another long password")).status == 200
    assert await admin.recorded("account_password_reset") == [
        {"user": "o-1", "court": "P0101", "second_factor": True, "by": "adm-1"},
        {"user": "o-1", "court": "P0101", "second_factor": False, "by": "adm-1"},
    ]


async def test_an_admin_of_a_basic_court_cannot_see_or_touch_a_provincial_account(
    admin: Admin,
) -> None:
    await admin.save("p-1", "P", Role.SUPERVISOR)
    await admin.save("o-1", "P0101")
    basic = {"user": "adm-2", "court": "P0101"}
    listed = await body(await admin.http.get("/api/accounts", headers=admin.auth(**basic)))
    assert [a["user"] for a in listed["accounts"]] == ["o-1"]
    for action in ("disable", "enable", "reset"):
        theirs = await admin.http.post(
            f"/api/accounts/p-1/{action}", json={}, headers=admin.auth(**basic)
        )
        missing = await admin.http.post(
            f"/api/accounts/nobody/{action}", json={}, headers=admin.auth(**basic)
        )
        assert theirs.status == missing.status == 404
        assert await body(theirs) == await body(missing)
    provincial = await admin.get("p-1")
    assert provincial is not None
    assert not provincial.disabled
    add = await admin.http.post(
        "/api/accounts",
        json={"user": "p-2", "name": "x", "role": "admin", "court": "P"},
        headers=admin.auth(**basic),
    )
    assert (add.status, (await body(add))["field"]) == (400, "court")
    out = await admin.http.get("/api/accounts", params={"court": "P"}, headers=admin.auth(**basic))
    assert (out.status, (await body(out))["field"]) == (400, "court")
    # An import may neither add to another court nor move another court's account into ours.
    resp = await admin.import_csv(
        "user,name,role,court\np-1,改名,officer,P0101\nx-1,新人,officer,P02\n", **basic
    )
    refused = await body(resp)
    assert (resp.status, refused["error"]) == (400, "bad_file")
    assert refused["faults"] == [
        "line 2: user: 'p-1' is taken",
        "line 3: court: 'P02' is not a court you manage",
    ]
    assert await admin.get("p-1") == provincial
    assert await admin.recorded("accounts_imported") == []


async def test_only_admins_with_a_valid_token_manage_accounts(admin: Admin) -> None:
    for role in ("operator", "supervisor", "auditor", "officer"):
        resp = await admin.http.get("/api/accounts", headers=admin.auth(role=role))
        assert (resp.status, (await body(resp))["error"]) == (403, "forbidden"), role
    resp = await admin.http.post("/api/accounts/o-1/disable")
    assert resp.status == 401


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"user": "o-1", "name": "x", "role": "pilot", "court": "P0101"}, "role"),
        ({"user": "o-1", "name": "x", "role": "witness", "court": "P0101"}, "role"),
        ({"user": "@o-1", "name": "x", "role": "officer", "court": "P0101"}, "user"),
        ({"user": "o-1", "name": "", "role": "officer", "court": "P0101"}, "name"),
        ({"user": "o-1", "name": "x", "role": "officer", "court": "Q9"}, "court"),
        ({"user": "o-1", "name": "x", "role": "officer", "court": "P0101", "password": "short"},
         "password"),
        ({"user": "o-1", "name": "x", "role": "officer", "court": "P0101", "totp": "yes"}, "totp"),
        ({"user": "o-1", "name": "x", "role": "officer", "court": "P0101", "admin": 1}, "admin"),
    ],
)  # fmt: skip
async def test_bad_accounts_are_refused_naming_the_field(
    admin: Admin, payload: dict[str, Any], field: str
) -> None:
    resp = await admin.http.post("/api/accounts", json=payload, headers=admin.auth())
    answer = await body(resp)
    assert (resp.status, answer["error"], answer.get("field")) == (400, "bad_request", field)
    assert await admin.get("o-1") is None


async def test_bad_queries_and_bodies_are_refused(admin: Admin) -> None:
    for params, field in (
        ({"limit": "0"}, "limit"),
        ({"limit": "201"}, "limit"),
        ({"offset": "-1"}, "offset"),
        ({"disabled": "maybe"}, "disabled"),
        ({"role": "pilot"}, "role"),
        ({"q": "x" * 65}, "q"),
        ({"sort": "name"}, "sort"),
    ):
        resp = await admin.http.get("/api/accounts", params=params, headers=admin.auth())
        assert (resp.status, (await body(resp)).get("field")) == (400, field), params
    await admin.save("o-1", "P0101")
    resp = await admin.http.post(
        "/api/accounts/o-1/reset", data=b"{" + b" " * 5000 + b"}", headers=admin.auth()
    )
    assert (resp.status, (await body(resp))["error"]) == (413, "too_large")
    resp = await admin.http.post(
        "/api/accounts/o-1/reset", json={"totp": "maybe"}, headers=admin.auth()
    )
    assert (resp.status, (await body(resp))["field"]) == (400, "totp")
    resp = await admin.http.post(
        "/api/accounts/import", data=b"user,name,role,court\n", headers=admin.auth()
    )
    assert resp.status == 415
    deep = b'{"totp": ' + b"[" * 1500 + b"]" * 1500 + b"}"
    resp = await admin.http.post("/api/accounts/o-1/reset", data=deep, headers=admin.auth())
    answer = await body(resp)
    assert (resp.status, answer["reason"]) == (400, "the body nests deeper than 32 levels")


async def test_bad_csv_files_are_refused_whole_with_every_bad_line_named(admin: Admin) -> None:
    await admin.save("o-1", "P0101")
    before = await admin.get("o-1")
    resp = await admin.import_csv(
        "user,name,role,court\n"
        "o-1,改名,officer,P0101\n"
        "o-2,李警官,pilot,P0101\n"
        "o-3,王警官,officer,NOPE\n"
        "o-1,重复,officer,P0101\n"
    )
    refused = await body(resp)
    assert (resp.status, refused["error"]) == (400, "bad_file")
    assert [f.split(":")[0] for f in refused["faults"]] == ["line 3", "line 4", "line 5"]
    assert await admin.get("o-1") == before
    assert await admin.get("o-2") is None
    resp = await admin.import_csv("name,user\n")
    assert (await body(resp))["faults"][0].startswith("line 1: the header")
    headers = {**admin.auth(), "Content-Type": "text/csv"}
    resp = await admin.http.post("/api/accounts/import", data=b"\xff\xfe", headers=headers)
    assert (resp.status, (await body(resp))["error"]) == (400, "bad_request")
    too_big = b"user,name,role,court\n" + b"x" * (8 * 1024 * 1024)
    resp = await admin.http.post("/api/accounts/import", data=too_big, headers=headers)
    assert resp.status == 413
    assert await admin.recorded("accounts_imported") == []


async def test_three_thousand_officers_are_imported_with_progress(admin: Admin) -> None:
    await admin.save("o-0001", "P0101")
    rows = ["user,name,role,court,password"]
    rows += [f"o-{i:04d},警官{i},officer,P0101," for i in range(3000)]
    rows += ["op-1,接警员,operator,P01,a long enough password"]
    resp = await admin.import_csv("\n".join(rows) + "\n")
    assert resp.status == 200
    assert resp.content_type == "application/x-ndjson"
    progress = await lines(resp)
    saving = [p["done"] for p in progress if p["phase"] == "saving"]
    assert saving[0] == 0
    assert saving[-1] == 3001
    assert saving == sorted(saving)
    assert len(saving) >= 4
    assert [p["done"] for p in progress if p["phase"] == "hashing"] == [0, 1]
    summary = progress[-1]
    assert summary["phase"] == "done"
    assert summary["summary"]["added"] == 3000
    assert summary["summary"]["updated"] == 1
    assert summary["summary"]["without_password"] == 2999
    # o-0001 kept its password (the row had none); op-1 signs in with the file's.
    assert (await admin.sign_in("o-0001", PASSWORD)).status == 200
    assert (await admin.sign_in("op-1", "a long enough password")).status == 200
    recorded = await admin.recorded("accounts_imported")
    assert [(r["accounts"], r["by"]) for r in recorded] == [(3001, "adm-1")]
    listed = await body(
        await admin.http.get(
            "/api/accounts", params={"q": "警官29", "offset": "10", "limit": "20"},
            headers=admin.auth(),
        )
    )  # fmt: skip
    # 警官29, 警官290-299, 警官2900-2999: 111 of them, the page the 11th to the 30th.
    assert listed["total"] == 111
    assert len(listed["accounts"]) == 20
    assert listed["accounts"][0]["user"] == "o-0299"
    assert listed["accounts"][0]["has_password"] is False


async def test_real_answers_match_the_openapi_document(admin: Admin) -> None:
    c = Conformance()
    http, auth = admin.http, admin.auth()
    await admin.save("o-1", "P0101")
    path = "/api/accounts"
    await c.check("GET", path, await http.get(path, headers=auth))
    await c.check("GET", path, await http.get(path, params={"limit": "0"}, headers=auth))
    await c.check("GET", path, await http.get(path, headers=admin.auth(role="operator")))
    await c.check("GET", path, await http.get(path))
    new = {"user": "o-2", "name": "李警官", "role": "officer", "court": "P0101", "totp": True}
    await c.check("POST", path, await http.post(path, json=new, headers=auth))
    await c.check("POST", path, await http.post(path, json=new, headers=auth))
    await c.check("POST", path, await http.post(path, json={"user": 1}, headers=auth))
    for action in ("disable", "enable"):
        route = f"{path}/{{user_id}}/{action}"
        await c.check("POST", route, await http.post(f"{path}/o-1/{action}", headers=auth))
        await c.check("POST", route, await http.post(f"{path}/nobody/{action}", headers=auth))
    route = f"{path}/{{user_id}}/reset"
    reset = {"totp": "new"}
    await c.check("POST", route, await http.post(f"{path}/o-1/reset", json=reset, headers=auth))
    await c.check("POST", route, await http.post(f"{path}/o-1/reset", json={"x": 1}, headers=auth))
    route = f"{path}/import"
    await c.check(
        "POST", route, await admin.import_csv("user,name,role,court\no-3,王,officer,P0101\n")
    )
    await c.check("POST", route, await admin.import_csv("user,name\n"))
    await c.check("POST", route, await http.post(route, data=b"x", headers=auth))


async def test_one_import_runs_at_a_time(admin: Admin) -> None:
    """While an import hashes its passwords, a second is told to wait (409 busy)."""
    rows = ["user,name,role,court,password"]
    # A dozen argon2 hashes keep the first import busy for a second or more: long enough.
    rows += [f"o-{i:03d},警官{i},officer,P0101,password number {i}" for i in range(12)]
    first = await admin.import_csv("\n".join(rows) + "\n")
    assert first.status == 200
    # Its first progress line: the import holds the node's import slot until its last.
    assert json.loads(await first.content.readline())["phase"] == "hashing"
    second = await admin.import_csv("user,name,role,court\no-x,王,officer,P0101\n")
    assert (second.status, (await body(second))["error"]) == (409, "busy")
    progress = await lines(first)
    assert progress[-1]["phase"] == "done"
    assert progress[-1]["summary"]["added"] == 12
    assert await admin.get("o-x") is None
