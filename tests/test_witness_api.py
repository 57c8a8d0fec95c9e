"""Witness invitations (commandcenter/witness_api.py) on the real app over SQLite and
PostgreSQL: a moderator or an admin over the host court invites, lists and revokes; anyone
else is refused; bodies are bounded; the link's token watches that conference only, as a
witness; a revoked witness's open WebSocket closes 4403 and its token is refused; issue and
revoke are trace facts."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import pytest
from aiohttp import web
from pytest_aiohttp import AiohttpClient

from commandcenter.app import create_app
from commandcenter.config import Config
from commandcenter.keys import TRACE
from tests.conftest import make_config
from tests.tracehelpers import Backend, backend
from tests.wsclient import Client, Server, token_for

__all__ = ["backend"]


class Desk:
    def __init__(self, server: Server, app: web.Application, config: Config) -> None:
        self.server, self.app, self.config = server, app, config
        self.http = server.http

    def auth(self, user: str, role: str, court: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token_for(self.config, user, role, court)}"}

    def path(self, cid: str) -> str:
        return f"/api/conferences/{cid}/witnesses"

    async def recorded(self, kind: str) -> list[dict[str, Any]]:
        return [dict(r.data) for r in await self.app[TRACE].find(kinds=[kind])]


@pytest.fixture
async def desk(backend: Backend, aiohttp_client: AiohttpClient, tmp_path: Path) -> Desk:
    config = backend.configure(make_config(tmp_path / "var"))
    app = create_app(config)
    http = await aiohttp_client(app)
    # The trace is the app's own (durable); the wait_recorded helper is not used here.
    return Desk(Server(http, config, cast(Any, None)), app, config)


async def hosted(desk: Desk) -> tuple[Client, str]:
    """sup0 (P01) hosts a meeting of the courts under P01 and joins it as its moderator."""
    host = await desk.server.connect("sup0", "supervisor", "P01")
    created = await host.request(
        "create_conference", reply="conference_created", title="会商", invite_below=["P01"]
    )
    cid: str = created["conference"]["conference_id"]
    await host.request("join_conference", reply="conference_joined", conference_id=cid)
    return host, cid


async def test_a_moderator_invites_a_witness_who_watches_until_revoked(desk: Desk) -> None:
    host, cid = await hosted(desk)
    resp = await desk.http.post(
        desk.path(cid),
        json={"name": "李代表", "label": "人大代表", "expires_in_s": 3600},
        headers=desk.auth("sup0", "supervisor", "P01"),
    )
    issued = await resp.json()
    assert resp.status == 201, issued
    assert resp.headers["Cache-Control"] == "no-store"
    assert issued["link"] == f"/app/conference.html#token={issued['token']}"
    assert (issued["name"], issued["label"], issued["revoked_at"]) == ("李代表", "人大代表", None)
    # The link's token signs in as a witness of this conference, and only watches.
    ws = await desk.server.open(issued["user"], token=issued["token"])
    welcome = await ws.expect("welcome")
    assert welcome["user"]["role"] == "witness"
    joined = await ws.request("join_conference", reply="conference_joined", conference_id=cid)
    assert joined["role"] == "witness"
    refused = await ws.error_for(await ws.send("raise_hand", conference_id=cid))
    assert refused["code"] == "forbidden"
    listed = await desk.http.get(desk.path(cid), headers=desk.auth("sup0", "supervisor", "P01"))
    assert [w["witness_id"] for w in (await listed.json())["witnesses"]] == [issued["witness_id"]]
    # Revoked: the open WebSocket closes 4403 and the token buys nothing more.
    gone = await desk.http.delete(
        f"{desk.path(cid)}/{issued['witness_id']}", headers=desk.auth("sup0", "supervisor", "P01")
    )
    assert gone.status == 204
    assert await ws.expect_close(4403, timeout=3.0) == "witness_revoked"
    again = await desk.server.open(issued["user"], token=issued["token"])
    await again.expect_close(4401)
    listed = await desk.http.get(desk.path(cid), headers=desk.auth("sup0", "supervisor", "P01"))
    assert (await listed.json())["witnesses"][0]["revoked_at"] is not None
    invited = await desk.recorded("witness_invited")
    revoked = await desk.recorded("witness_revoked")
    assert [(f["witness_id"], f["conference"], f["by"]) for f in invited] == [
        (issued["witness_id"], cid, "sup0")
    ]
    assert [(f["witness_id"], f["by"]) for f in revoked] == [(issued["witness_id"], "sup0")]
    # The use is the witness's own sign-in, under the invitation's user id.
    signed_in = await desk.recorded("sign_in")
    assert any(f.get("user") == issued["user"] for f in signed_in), signed_in
    await host.close()


async def test_only_moderators_and_admins_over_the_court_invite(desk: Desk) -> None:
    host, cid = await hosted(desk)
    body = {"name": "王检察官", "label": "检察官", "expires_in_s": 600}
    # No token, a token that is not valid: 401.
    assert (await desk.http.post(desk.path(cid), json=body)).status == 401
    bad = {"Authorization": "Bearer nope"}
    assert (await desk.http.post(desk.path(cid), json=body, headers=bad)).status == 401
    # An operator invited as a site, an admin of a court below, another court's supervisor:
    # the conference is not theirs to invite to (answered as missing).
    for user, role, court in (
        ("op1", "operator", "P0101"),
        ("adm9", "admin", "P0101"),
        ("sup9", "supervisor", "P02"),
    ):
        resp = await desk.http.post(desk.path(cid), json=body, headers=desk.auth(user, role, court))
        assert resp.status == 404, (user, await resp.text())
    for user, role, court in (("o1", "officer", "P0101"), ("aud", "auditor", "P")):
        resp = await desk.http.post(desk.path(cid), json=body, headers=desk.auth(user, role, court))
        assert resp.status == 403, user
    # An admin over the host court may, and may revoke a moderator's invitation.
    resp = await desk.http.post(desk.path(cid), json=body, headers=desk.auth("adm", "admin", "P"))
    assert resp.status == 201
    wid = (await resp.json())["witness_id"]
    assert (
        await desk.http.get(desk.path("m-none"), headers=desk.auth("adm", "admin", "P"))
    ).status == 404
    other = await desk.http.delete(
        f"{desk.path(cid)}/{wid}", headers=desk.auth("op1", "operator", "P0101")
    )
    assert other.status == 404
    missing = await desk.http.delete(
        f"{desk.path(cid)}/wi-0000", headers=desk.auth("adm", "admin", "P")
    )
    assert missing.status == 404
    await host.close()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "", "label": "x", "expires_in_s": 600}, "name"),
        ({"name": "x" * 33, "label": "x", "expires_in_s": 600}, "name"),
        ({"name": "a\u0000b", "label": "x", "expires_in_s": 600}, "name"),
        ({"name": "x", "label": 5, "expires_in_s": 600}, "label"),
        ({"name": "x", "label": "x", "expires_in_s": 59}, "expires_in_s"),
        ({"name": "x", "label": "x", "expires_in_s": 86401}, "expires_in_s"),
        ({"name": "x", "label": "x", "expires_in_s": True}, "expires_in_s"),
        ({"name": "x", "label": "x", "expires_in_s": 600, "role": "admin"}, "role"),
    ],
)
async def test_bad_invitations_are_refused_naming_the_field(
    desk: Desk, body: dict[str, Any], field: str
) -> None:
    host, cid = await hosted(desk)
    resp = await desk.http.post(
        desk.path(cid), json=body, headers=desk.auth("sup0", "supervisor", "P01")
    )
    answer = await resp.json()
    assert (resp.status, answer.get("field")) == (400, field), answer
    big = await desk.http.post(
        desk.path(cid),
        data=b"{" + b" " * 4096 + b"}",
        headers={**desk.auth("sup0", "supervisor", "P01"), "Content-Type": "application/json"},
    )
    assert big.status == 413
    await host.close()


async def test_a_witness_revoked_on_one_node_is_closed_on_another(
    backend: Backend, aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    """Two servers over one store (as a cluster's nodes share it): the witness watching on
    the second is closed 4403 within a poll of the revocations made on the first."""
    poll = {"revocation_poll_s": 0.2}
    configs = [
        backend.configure(make_config(tmp_path / name, accounts=poll)) for name in ("a", "b")
    ]
    apps = [create_app(c) for c in configs]
    first = Desk(
        Server(await aiohttp_client(apps[0]), configs[0], cast(Any, None)), apps[0], configs[0]
    )
    second = Server(await aiohttp_client(apps[1]), configs[1], cast(Any, None))
    host, cid = await hosted(first)
    resp = await first.http.post(
        first.path(cid),
        json={"name": "王检察官", "label": "检察官", "expires_in_s": 600},
        headers=first.auth("sup0", "supervisor", "P01"),
    )
    issued = await resp.json()
    assert resp.status == 201, issued
    ws = await second.open(issued["user"], token=issued["token"])
    assert (await ws.expect("welcome"))["user"]["role"] == "witness"
    gone = await first.http.delete(
        f"{first.path(cid)}/{issued['witness_id']}", headers=first.auth("sup0", "supervisor", "P01")
    )
    assert gone.status == 204
    assert await ws.expect_close(4403, timeout=3.0) == "witness_revoked"
    again = await second.open(issued["user"], token=issued["token"])
    await again.expect_close(4401)
    await host.close()
