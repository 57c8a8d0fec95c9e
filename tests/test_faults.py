"""Our own faults at the edges: a bug inside the core is answered `internal_error` on the
WebSocket, a bug behind an HTTP endpoint a 500 with the request's id; both are logged with
their traceback and the ids that find them, never blamed on the client, never described, and
the server goes on."""

from __future__ import annotations

from typing import Any

import pytest
from structlog.testing import capture_logs

from commandcenter.keys import HUB
from sessions.durable import DurableRecorder
from sessions.memory_store import MemoryTraceStore
from sessions.statistics import Counts, StatsQuery
from signalling import protocol as p
from signalling.core.actions import Action
from signalling.link import LocalCoreLink
from tests.conftest import Serve
from tests.test_hub_calls import place_call
from tests.wsclient import Server

SECRET = "secret detail that must not reach the client"
DEVICE_TIME = 1.7e12


async def test_a_fault_in_the_core_is_internal_error_logged_with_user_and_call(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    link = server.http.app[HUB].link
    assert isinstance(link, LocalCoreLink)
    core = link.core
    handle = core.handle

    def failing(user: str, msg: p.ClientMessage, now: float) -> list[Action]:
        if isinstance(msg, p.Accept):
            # A stand-in for any bug of ours: the call table is missing an entry.
            raise KeyError(SECRET)
        return handle(user, msg, now)

    monkeypatch.setattr(core, "handle", failing)
    op = await server.connect("op1", "operator", "P0101")
    officer = await server.connect("o1", "officer", "P0101")
    call_id = await place_call(officer)
    await op.expect("call_ringing")
    with capture_logs() as logs:
        ref = await op.send("accept", call_id=call_id)
        error = await op.error_for(ref)
    assert (error["code"], error["reason"]) == ("internal_error", "internal error")
    assert SECRET not in str(error)
    (entry,) = [e for e in logs if e["event"] == "core failed"]
    assert (entry["user_id"], entry["call_id"], entry["message"]) == ("op1", call_id, "Accept")
    assert entry["log_level"] == "error"
    assert entry["exc_info"] is True
    # The connection stays open and the server goes on.
    await op.request("heartbeat", reply="heartbeat_ack", device_time=DEVICE_TIME)
    monkeypatch.undo()
    await op.request("accept", call_id=call_id)
    await officer.expect("call_answered")


class FailingCounts(MemoryTraceStore):
    async def counts(self, query: StatsQuery) -> Counts:
        raise RuntimeError(SECRET)


async def test_a_fault_behind_an_http_endpoint_is_a_500_with_the_request_id(
    serve: Serve,
) -> None:
    server = await serve(recorder=DurableRecorder.over(FailingCounts()))  # type: ignore[arg-type]
    token = server.token("aud", "auditor", "P")
    with capture_logs() as logs:
        response = await server.http.get(
            "/api/stats",
            params={"from": "2026-01-01", "to": "2026-02-01"},
            headers={"Authorization": f"Bearer {token}"},
        )
        body: dict[str, Any] = await response.json()
    assert response.status == 500
    rid = response.headers["X-Request-Id"]
    assert body == {"error": "internal_error", "reason": "internal error", "request_id": rid}
    (entry,) = [e for e in logs if e["event"] == "statistics failed"]
    assert (entry["request_id"], entry["user_id"], entry["path"]) == (rid, "aud", "/api/stats")
    assert isinstance(entry["exc_info"], RuntimeError)
    # Every answer carries its own id, and the server goes on.
    health = await server.http.get("/healthz")
    assert health.status == 200
    assert health.headers["X-Request-Id"] not in ("", rid)
