"""A server killed (SIGKILL) with officers signed in and calls under way: the next start
closes what the dead run left open (sign-outs and call ends with reason `server_restart`,
at the restart's time) before it serves, so the trace and the statistics tell the truth,
and the chain still verifies.

The server is a real child process, so the crash is a real one: no shutdown handler runs.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bench._common import ServerProcess, free_port
from commandcenter.auth import Role, issue_token
from commandcenter.config import load_config
from commandcenter.stores import open_store
from sessions.durable import verify_store
from sessions.store import StoredRecord
from tests.conftest import TEST_SECRET

DEADLINE_S = 20.0


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("COMMANDCENTER_")}
    return {
        **base,
        "COMMANDCENTER_SERVER_DATA_DIR": str(tmp_path / "var"),
        "COMMANDCENTER_AUTH_JWT_SECRET": TEST_SECRET,
        "COMMANDCENTER_LOGGING_LEVEL": "warning",
    }


@pytest.fixture
def server(env: dict[str, str], tmp_path: Path) -> Iterator[ServerProcess]:
    port = free_port()
    argv = [sys.executable, "-m", "commandcenter", "serve", "--port", str(port)]
    proc = ServerProcess(argv, port=port, env=env, log_path=tmp_path / "server.log")
    try:
        yield proc
    finally:
        proc.stop()


def token(user: str, role: str) -> str:
    return issue_token(
        TEST_SECRET,
        user=user,
        role=Role(role),
        court="P0101",
        name=user,
        ttl_s=600,
        now=time.time(),
    )


class Peer:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws

    async def expect(self, kind: str) -> dict[str, Any]:
        async with asyncio.timeout(DEADLINE_S):
            while True:
                msg = json.loads(await self.ws.receive_str())
                if msg["type"] == kind:
                    return dict(msg)

    async def send(self, **msg: Any) -> None:
        await self.ws.send_str(json.dumps(msg))


async def records(env: dict[str, str]) -> list[StoredRecord]:
    store = await open_store(load_config(None, environ=env), readonly=True)
    try:
        return await store.records(limit=100000)
    finally:
        await store.close()


async def stay_online(port: int) -> tuple[aiohttp.ClientSession, str, str]:
    """o1's answered call, o2's call ringing at op1 (busy, so it waits) and a sign-in of
    each; returns the session and the two call ids."""
    session = aiohttp.ClientSession()
    url = f"http://127.0.0.1:{port}/ws"
    peers = {}
    for user, role in (("op1", "operator"), ("o1", "officer"), ("o2", "officer")):
        ws = await session.ws_connect(url, params={"token": token(user, role)})
        peers[user] = Peer(ws)
        await peers[user].expect("welcome")
    await peers["o1"].send(type="call_center", id="c1")
    answered = (await peers["o1"].expect("call_placed"))["call_id"]
    await peers["op1"].expect("call_ringing")
    await peers["op1"].send(type="accept", id="a1", call_id=answered)
    await peers["o1"].expect("call_answered")
    await peers["o2"].send(type="call_center", id="c2")
    waiting = (await peers["o2"].expect("call_placed"))["call_id"]
    return session, answered, waiting


async def test_a_killed_servers_sessions_and_calls_are_closed_at_the_next_start(
    server: ServerProcess, env: dict[str, str]
) -> None:
    server.start()
    session, answered, waiting = await stay_online(server.port)
    os.kill(server.pid, signal.SIGKILL)
    await session.close()
    before = await records(env)
    kinds = [r.kind for r in before]
    assert kinds.count("sign_in") == 3
    assert "sign_out" not in kinds
    assert "call_ended" not in kinds

    restarted_at = time.time()
    server.start()
    after = await records(env)
    new = after[len(before) :]
    ends = {r.data["call"]: r for r in new if r.kind == "call_ended"}
    assert set(ends) == {answered, waiting}
    assert ends[answered].data["answered"] is True
    assert ends[answered].data["operator"] == "op1"
    assert ends[waiting].data["answered"] is False
    assert {r.data["reason"] for r in ends.values()} == {"server_restart"}
    outs = [r for r in new if r.kind == "sign_out"]
    assert sorted(r.data["user"] for r in outs) == ["o1", "o2", "op1"]
    assert {r.data["reason"] for r in outs} == {"server_restart"}
    assert all(r.at >= restarted_at - 1 for r in new)
    assert [r.kind for r in new][-1] == "server_started"
    assert new[-1].data["closed"] == {"sessions": 3, "calls": 2, "conferences": 0}
    store = await open_store(load_config(None, environ=env), readonly=True)
    try:
        assert (await verify_store(store)).ok
    finally:
        await store.close()

    # Stopped cleanly and started again: nothing is left open, nothing more is closed.
    server.stop()
    server.start()
    again = (await records(env))[len(after) :]
    assert [r.kind for r in again if r.kind != "server_started"] == []
    assert again[-1].data["closed"] == {"sessions": 0, "calls": 0, "conferences": 0}
