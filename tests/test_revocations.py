"""A disabled account is out everywhere, at once (commandcenter/revocations.py): its open
WebSocket closes 4403 with its session signed out (`account_disabled`) and its call ended,
its still-valid tokens are refused over the WebSocket and HTTP, on SQLite and PostgreSQL; a
disable made behind the node's back (the CLI, another node) is found by the poll; and in a
cluster the node serving the user closes it while the authority signs it out."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
from aiohttp import WSMsgType, web
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient

from commandcenter.account_api import ACCOUNTS, Passwords
from commandcenter.app import create_app
from commandcenter.config import Config
from commandcenter.keys import TRACE
from identity.accounts import Account
from identity.people import Role
from sessions.account_store import PostgresAccountStore
from sessions.postgres_store import PostgresTraceStore
from tests.clusternodes import Cluster, cluster, token
from tests.conftest import make_config
from tests.tracehelpers import Backend, backend
from tests.wsclient import Client, token_for

__all__ = ["backend", "cluster"]

COURT = "P0101"
_HASHER = Passwords()


class Node:
    def __init__(self, http: TestClient[Any, Any], app: web.Application, config: Config) -> None:
        self.http, self.app, self.config = http, app, config

    async def save(self, user: str, role: Role = Role.OFFICER) -> None:
        account = Account(user, f"警官{user}", role, COURT, _HASHER.hash_now("correct horse 1"))
        await self.app[ACCOUNTS].store.save(account)

    async def connect(self, user: str, role: str) -> Client:
        token = token_for(self.config, user, role, COURT)
        ws = await self.http.ws_connect("/ws", params={"token": token})
        client = Client(ws, "json", user)
        client.welcome = await client.expect("welcome")
        return client

    async def recorded(self, kind: str) -> list[dict[str, Any]]:
        return [dict(r.data) for r in await self.app[TRACE].find(kinds=[kind])]


async def node_with(
    backend: Backend, aiohttp_client: AiohttpClient, tmp_path: Path, poll_s: float
) -> Node:
    config = backend.configure(
        make_config(tmp_path / "var", accounts={"revocation_poll_s": poll_s})
    )
    app = create_app(config)
    return Node(await aiohttp_client(app), app, config)


async def in_a_call(node: Node) -> tuple[Client, Client]:
    """Officer o-1 (with an account) in an answered call with operator op-1."""
    await node.save("o-1")
    op = await node.connect("op-1", "operator")
    officer = await node.connect("o-1", "officer")
    placed = await officer.request("call_center", reply="call_placed")
    await op.expect("call_ringing", where=lambda m: m["call"]["call_id"] == placed["call_id"])
    await op.request("accept", call_id=placed["call_id"])
    await officer.expect("call_answered")
    return officer, op


async def test_disabling_closes_the_open_websocket_ends_the_call_and_refuses_the_token(
    backend: Backend, aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    # A poll of an hour: only the admin's own node acting at once can pass this test.
    node = await node_with(backend, aiohttp_client, tmp_path, poll_s=3600.0)
    officer, op = await in_a_call(node)
    admin = {"Authorization": f"Bearer {token_for(node.config, 'adm-1', 'admin', 'P01')}"}
    resp = await node.http.post("/api/accounts/o-1/disable", headers=admin)
    assert resp.status == 200, await resp.text()

    reason = await officer.expect_close(4403)
    assert reason == "account_disabled"
    ended = await op.expect("call_ended")
    assert ended["reason"] == "party_lost"
    # The trace is written before anyone is told.
    signed_out = [d for d in await node.recorded("sign_out") if d["user"] == "o-1"]
    assert [d["reason"] for d in signed_out] == ["account_disabled"]

    # The officer's token has most of its hour left, and is refused everywhere.
    token = token_for(node.config, "o-1", "officer", COURT)
    ws = await node.http.ws_connect("/ws", params={"token": token})
    msg = await ws.receive(timeout=5.0)
    assert (msg.type, ws.close_code, msg.extra) == (WSMsgType.CLOSE, 4401, "account disabled")
    api = await node.http.get("/api/evidence", headers={"Authorization": f"Bearer {token}"})
    assert api.status == 401
    assert (await api.json())["reason"] == "account disabled"

    # Enabled again: the same token is good from then on.
    resp = await node.http.post("/api/accounts/o-1/enable", headers=admin)
    assert resp.status == 200
    again = await node.connect("o-1", "officer")
    assert again.welcome["resumed"] is False
    await again.close()
    await op.close()


async def test_a_disable_made_elsewhere_is_found_by_the_poll(
    backend: Backend, aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    node = await node_with(backend, aiohttp_client, tmp_path, poll_s=0.2)
    await node.save("o-2")
    officer = await node.connect("o-2", "officer")
    # As `commandcenter user disable` (or another node's admin) does: the store only.
    store = node.app[ACCOUNTS].store
    account = await store.get("o-2")
    assert account is not None
    await store.save(dataclasses.replace(account, disabled=True))
    assert await officer.expect_close(4403, timeout=5.0) == "account_disabled"
    signed_out = [d for d in await node.recorded("sign_out") if d["user"] == "o-2"]
    assert [d["reason"] for d in signed_out] == ["account_disabled"]


@pytest.mark.cluster
@pytest.mark.postgres
async def test_in_a_cluster_the_users_node_closes_it_and_the_authority_signs_it_out(
    cluster: Cluster,
) -> None:
    # Accounts live in the trace's PostgreSQL schema, shared by every node.
    store = await PostgresAccountStore.open(cluster.pg.dsn, schema=cluster.pg.schema)
    try:
        await store.save(
            Account("o-3", "警官o-3", Role.OFFICER, COURT, _HASHER.hash_now("correct horse 1"))
        )
    finally:
        await store.close()
    env = {"COMMANDCENTER_ACCOUNTS_REVOCATION_POLL_S": "0.3"}
    for n in ("n1", "n2"):
        cluster.start(n, **env)
    authority = await cluster.formed()
    other = next(node for n, node in cluster.nodes.items() if n != authority)
    here = cluster.nodes[authority]
    op = await here.connect("op-1", "operator", COURT)
    officer = await other.connect("o-3", "officer", COURT)
    placed = await officer.request("call_center", reply="call_placed")
    await op.expect("call_ringing", where=lambda m: m["call"]["call_id"] == placed["call_id"])
    await op.request("accept", call_id=placed["call_id"])
    await officer.expect("call_answered")

    # The admin is on the authority's node; the officer on the other.
    admin = await cluster.http.post(
        f"{here.base}/api/accounts/o-3/disable",
        headers={"Authorization": "Bearer " + token("adm-1", "admin", "P01")},
    )
    assert admin.status == 200, await admin.text()
    assert await officer.expect_close(4403, timeout=5.0) == "account_disabled"
    ended = await op.expect("call_ended")
    assert ended["reason"] == "party_lost"

    trace = await PostgresTraceStore.open(cluster.pg.dsn, schema=cluster.pg.schema, readonly=True)
    try:
        records = [(r.kind, dict(r.data)) for r in await trace.records(limit=100_000)]
    finally:
        await trace.close()
    reasons = [d["reason"] for k, d in records if k == "sign_out" and d["user"] == "o-3"]
    assert reasons == ["account_disabled"]
