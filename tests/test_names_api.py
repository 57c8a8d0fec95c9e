"""`GET /api/users/names` (commandcenter/names_api.py) on the real app over SQLite: names
from the account store for the ids asked, only within the caller's scope (another court's
user, an unknown id and a non-account alike left out), a user who is not an account named
as their latest WebSocket sign-in recorded them, bounded input refused with the parameter
named, and every answer as commandcenter/openapi.json documents it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient

from commandcenter.account_api import ACCOUNTS, Passwords
from commandcenter.app import create_app
from commandcenter.config import Config
from commandcenter.keys import TRACE
from commandcenter.names_api import MAX_IDS, PATH
from identity.accounts import Account
from identity.people import Role
from tests.conftest import make_config
from tests.polling import wait_until
from tests.test_openapi import Conformance
from tests.wsclient import token_for

_HASHER = Passwords()


class Names:
    def __init__(self, http: TestClient[Any, Any], app: web.Application, config: Config) -> None:
        self.http, self.app, self.config = http, app, config
        self.conformance = Conformance()

    async def save(self, user: str, name: str, role: Role, court: str) -> None:
        account = Account(user, name, role, court, _HASHER.hash_now("a password long enough"))
        await self.app[ACCOUNTS].store.save(account)

    async def ask(
        self, ids: list[str] | list[tuple[str, str]], as_: tuple[str, str, str] | None = None
    ) -> tuple[int, Any]:
        user, role, court = as_ or ("op-7", "operator", "P0101")
        headers = {"Authorization": f"Bearer {token_for(self.config, user, role, court)}"}
        params = [p if isinstance(p, tuple) else ("id", p) for p in ids]
        resp = await self.http.get(PATH, params=params, headers=headers)
        body = await self.conformance.check("GET", PATH, resp)
        return resp.status, body


@pytest.fixture
async def names(aiohttp_client: AiohttpClient, tmp_path: Path) -> Names:
    config = make_config(tmp_path / "var")
    app = create_app(config)
    api = Names(await aiohttp_client(app), app, config)
    await api.save("op-7", "张敏", Role.OPERATOR, "P0101")
    await api.save("o-1021", "李伟", Role.OFFICER, "P0101")
    await api.save("o-2001", "王强", Role.OFFICER, "P0102")
    await api.save("sv-1", "周强", Role.SUPERVISOR, "P01")
    return api


async def test_names_of_the_ids_asked_within_the_operators_court(names: Names) -> None:
    status, body = await names.ask(["o-1021", "op-7", "o-1021"])
    assert status == 200
    assert body == {
        "names": {
            "o-1021": {"name": "李伟", "role": "officer", "court": "P0101", "source": "account"},
            "op-7": {"name": "张敏", "role": "operator", "court": "P0101", "source": "account"},
        }
    }


async def test_another_courts_user_an_unknown_id_and_a_supervisor_above_are_left_out(
    names: Names,
) -> None:
    _, body = await names.ask(["o-2001", "nobody", "sv-1", "o-1021"])
    assert list(body["names"]) == ["o-1021"]


async def test_a_supervisor_names_the_courts_below_and_an_auditor_every_court(
    names: Names,
) -> None:
    _, body = await names.ask(["o-2001", "o-1021"], as_=("sv-1", "supervisor", "P01"))
    assert sorted(body["names"]) == ["o-1021", "o-2001"]
    _, body = await names.ask(["sv-1"], as_=("au-1", "auditor", "P"))
    assert body["names"]["sv-1"]["name"] == "周强"


async def test_an_officer_may_not_look_up_names(names: Names) -> None:
    status, body = await names.ask(["op-7"], as_=("o-1021", "officer", "P0101"))
    assert (status, body["error"]) == (403, "forbidden")


@pytest.mark.parametrize(
    ("ids", "field"),
    [
        ([], "id"),
        ([f"u-{n}" for n in range(MAX_IDS + 1)], "id"),
        (["x" * 65], "id"),
        ([("user", "op-7")], "user"),
    ],
    ids=["none", "too many", "too long", "unknown parameter"],
)
async def test_bad_input_is_refused_naming_the_parameter(
    names: Names, ids: list[Any], field: str
) -> None:
    status, body = await names.ask(ids)
    assert (status, body["error"], body["field"]) == (400, "bad_request", field)


async def test_as_many_ids_as_allowed_are_answered(names: Names) -> None:
    status, body = await names.ask([f"u-{n}" for n in range(MAX_IDS - 1)] + ["op-7"])
    assert (status, list(body["names"])) == (200, ["op-7"])


async def test_without_a_token_the_answer_is_401(names: Names) -> None:
    resp = await names.http.get(PATH, params={"id": "op-7"})
    await names.conformance.check("GET", PATH, resp)
    assert resp.status == 401


async def signed_in(names: Names, user: str, court: str, name: str | None) -> None:
    """`user` (not an account: a token minted for an integration) signs in over the
    WebSocket and out again; once the trace has the sign-in."""
    token = token_for(names.config, user, "officer", court, name=name)
    ws = await names.http.ws_connect(f"/ws?token={token}&v=1")
    await ws.receive_json(timeout=5)  # welcome

    async def recorded() -> bool:
        found = await names.app[TRACE].find(kinds=["sign_in"], subject=user)
        return bool(found)

    await wait_until(recorded, within=5, what=f"{user}'s sign-in recorded")
    await ws.close()


async def test_a_user_who_is_not_an_account_is_named_as_their_sign_in_recorded(
    names: Names,
) -> None:
    await signed_in(names, "bodycam-7", "P0101", "执法记录仪七号")
    await signed_in(names, "int-2", "P0101", None)  # no name claim: named by its id
    await signed_in(names, "bodycam-9", "P0102", "二院记录仪")
    _, body = await names.ask(["bodycam-7", "int-2", "bodycam-9", "op-7"])
    assert body["names"] == {
        "bodycam-7": {
            "name": "执法记录仪七号",
            "role": "officer",
            "court": "P0101",
            "source": "sign_in",
        },
        "op-7": {"name": "张敏", "role": "operator", "court": "P0101", "source": "account"},
    }
    # Out of an operator's scope, in a supervisor's above it.
    _, body = await names.ask(["bodycam-9"], as_=("sv-1", "supervisor", "P01"))
    assert body["names"]["bodycam-9"]["name"] == "二院记录仪"


async def test_an_accounts_name_is_the_stores_not_the_tokens(names: Names) -> None:
    await signed_in(names, "o-1021", "P0101", "别名")
    _, body = await names.ask(["o-1021"])
    assert body["names"]["o-1021"] == {
        "name": "李伟",
        "role": "officer",
        "court": "P0101",
        "source": "account",
    }
