"""The HTTP API's one error edge (`http_edge.answering`), route by route: in every module
that answers through it (account, admin, evidence, records, witness, and the console,
feed, names, statistics and track endpoints) a bug of ours is a 500 with the request's id
only, logged with its traceback under that id; a store out of reach is the module's own 503;
and the module's own errors keep their status and body."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient
from structlog.testing import capture_logs

from commandcenter.account_api import ACCOUNTS
from commandcenter.app import create_app
from commandcenter.config import Config
from commandcenter.keys import COURTS, EVIDENCE, HUB, RECORDER, TRACE
from sessions.errors import StoreUnavailable
from signalling.link import CoreUnreachable
from tests.conftest import make_config
from tests.wsclient import token_for

SECRET = "secret detail that must not reach the client"


@dataclass(frozen=True)
class Route:
    """One route of a module, and a call inside it that a test makes fail."""

    module: str
    method: str
    path: str
    who: tuple[str, str, str]  # user, role, court
    # The object holding the call the route makes, and the call's name.
    holder: Callable[[web.Application], object]
    call: str
    # What the module's 500 is logged as, and what its 503 says (None: it has none of its
    # own, a store out of reach is refused where it is read).
    failed: str
    unavailable: str | None
    retry_after: bool
    unavailable_logged: str | None = None
    params: dict[str, str] = field(default_factory=dict)
    json: dict[str, Any] | None = None


ROUTES = [
    Route(
        "account",
        "POST",
        "/api/session",
        ("o-1", "officer", "P0101"),
        lambda app: app[ACCOUNTS].store,
        "get",
        failed="request failed",
        unavailable="sign-in is not possible right now; try again shortly",
        retry_after=True,
        json={"user": "o-1", "password": "pw"},
    ),
    Route(
        "admin",
        "GET",
        "/api/accounts",
        ("adm-1", "admin", "P01"),
        lambda app: app[ACCOUNTS].store,
        "all",
        failed="request failed",
        unavailable="accounts cannot be changed right now; try again shortly",
        retry_after=True,
    ),
    Route(
        "witness",
        "GET",
        "/api/conferences/conf-1/witnesses",
        ("adm-1", "admin", "P"),
        lambda app: app[HUB].link,
        "conference",
        failed="request failed",
        unavailable="witnesses cannot be changed right now; try again shortly",
        retry_after=True,
    ),
    Route(
        "evidence",
        "GET",
        "/api/evidence",
        ("sup-1", "supervisor", "P"),
        lambda app: app[EVIDENCE],
        "list_case",
        failed="evidence request failed",
        unavailable="the evidence record is unavailable, retry later",
        retry_after=False,
        unavailable_logged="evidence trace unavailable",
        params={"case": "case-1"},
    ),
    Route(
        "records",
        "GET",
        "/api/calls",
        ("aud-1", "auditor", "P"),
        lambda app: app[TRACE],
        "find",
        failed="records request failed",
        unavailable="the trace cannot be read now, retry later",
        retry_after=False,
        unavailable_logged="records unavailable",
        params={"from": "2026-01-01", "to": "2026-02-01"},
    ),
    Route(
        "statistics",
        "GET",
        "/api/stats",
        ("aud-1", "auditor", "P"),
        lambda app: app[TRACE],
        "counts",
        failed="statistics failed",
        unavailable="the trace cannot be read now, retry later",
        retry_after=False,
        unavailable_logged="statistics unavailable",
        params={"from": "2026-01-01", "to": "2026-02-01"},
    ),
    Route(
        "track",
        "GET",
        "/api/officers/o-1/track",
        ("op-1", "operator", "P0101"),
        lambda app: app[TRACE],
        "find",
        failed="track failed",
        unavailable="the trace cannot be read now, retry later",
        retry_after=False,
        unavailable_logged="track unavailable",
    ),
    Route(
        "feed",
        "GET",
        "/api/feed",
        ("sup-1", "supervisor", "P"),
        lambda app: app[RECORDER],
        "record",
        failed="feed request failed",
        unavailable="the trace is unavailable, retry later",
        retry_after=False,
        unavailable_logged="feed trace unavailable",
    ),
    Route(
        "names",
        "GET",
        "/api/users/names",
        ("aud-1", "auditor", "P"),
        lambda app: app[COURTS],
        "scope",
        failed="names request failed",
        unavailable=None,
        retry_after=False,
        params={"id": "o-1"},
    ),
    Route(
        "console",
        "GET",
        "/api/console/settings",
        ("op-1", "operator", "P0101"),
        lambda app: app[COURTS],
        "scope",
        failed="console settings failed",
        unavailable=None,
        retry_after=False,
    ),
]


@dataclass
class Api:
    http: TestClient[Any, Any]
    app: web.Application
    config: Config

    def auth(self, user: str, role: str, court: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token_for(self.config, user, role, court)}"}

    def fail(self, monkeypatch: pytest.MonkeyPatch, route: Route, exc: Exception) -> None:
        """Make the call the route makes raise `exc`."""
        fail(monkeypatch, route.holder(self.app), route.call, exc)

    def request(self, route: Route) -> Any:
        return self.http.request(
            route.method,
            route.path,
            params=route.params,
            json=route.json,
            headers=self.auth(*route.who),
        )

    async def ask(self, route: Route) -> tuple[Any, dict[str, Any]]:
        resp = await self.request(route)
        body: dict[str, Any] = await resp.json()
        return resp, body


def fail(monkeypatch: pytest.MonkeyPatch, holder: object, call: str, exc: Exception) -> None:
    """Make `holder.call` raise `exc`, whether it is a coroutine function or not."""

    async def failing_async(*args: Any, **kwargs: Any) -> Any:
        raise exc

    def failing(*args: Any, **kwargs: Any) -> Any:
        raise exc

    is_async = inspect.iscoroutinefunction(getattr(holder, call))
    monkeypatch.setattr(holder, call, failing_async if is_async else failing)


@pytest.fixture
async def api(aiohttp_client: AiohttpClient, tmp_path: Path) -> Api:
    config = make_config(tmp_path / "var")
    app = create_app(config)
    return Api(await aiohttp_client(app), app, config)


@pytest.mark.parametrize("route", ROUTES, ids=[r.module for r in ROUTES])
async def test_a_bug_behind_a_route_is_a_500_with_the_request_id_and_a_logged_traceback(
    api: Api, route: Route, monkeypatch: pytest.MonkeyPatch
) -> None:
    bug = RuntimeError(SECRET)
    api.fail(monkeypatch, route, bug)
    with capture_logs() as logs:
        resp, body = await api.ask(route)
    assert resp.status == 500, body
    rid = resp.headers["X-Request-Id"]
    assert body == {"error": "internal_error", "reason": "internal error", "request_id": rid}
    (entry,) = [e for e in logs if e["event"] == route.failed]
    assert entry["log_level"] == "error"
    assert (entry["request_id"], entry["path"]) == (rid, route.path)
    assert entry["exc_info"] is bug
    # The route goes on answering once the bug is gone (the feed's stream is not read).
    monkeypatch.undo()
    async with api.request(route) as again:
        assert again.status < 500


WITH_503 = [r for r in ROUTES if r.unavailable is not None]


@pytest.mark.parametrize("route", WITH_503, ids=[r.module for r in WITH_503])
async def test_a_store_out_of_reach_is_the_modules_own_503(
    api: Api, route: Route, monkeypatch: pytest.MonkeyPatch
) -> None:
    api.fail(monkeypatch, route, StoreUnavailable(SECRET))
    with capture_logs() as logs:
        resp, body = await api.ask(route)
    assert resp.status == 503, body
    assert body == {"error": "unavailable", "reason": route.unavailable}
    assert resp.headers.get("Retry-After") == ("5" if route.retry_after else None)
    assert resp.headers["X-Request-Id"]
    # Not a bug of ours: no traceback; the trace's outage alone has a line of its own.
    assert not [e for e in logs if "exc_info" in e]
    logged = [e["event"] for e in logs if e["log_level"] == "error"]
    assert logged == ([route.unavailable_logged] if route.unavailable_logged else [])


@dataclass(frozen=True)
class Refusal:
    """A module's own error, and the answer it keeps."""

    module: str
    method: str
    path: str
    who: tuple[str, str, str]
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    json: dict[str, Any] | None = None
    # A body other than JSON, sent as text/csv.
    data: bytes | None = None
    # False: sent without a token.
    signed: bool = True
    # A call the route makes that raises, where the refusal is not the client's input.
    raising: tuple[Callable[[web.Application], object], str, Exception] | None = None


REFUSALS = [
    Refusal(
        "account",
        "POST",
        "/api/session",
        ("o-1", "officer", "P0101"),
        400,
        {"error": "bad_request", "reason": "unknown field 'extra'", "field": "extra"},
        json={"user": "o-1", "password": "pw", "extra": 1},
    ),
    Refusal(
        "admin",
        "POST",
        "/api/accounts/import",
        ("adm-1", "admin", "P01"),
        400,
        {
            "error": "bad_file",
            "reason": "the file has bad rows; nothing imported",
            "faults": ["line 2: role: 'pilot' is not a role"],
        },
        data="user,name,role,court\no-2,李警官,pilot,P0101\n".encode(),
    ),
    Refusal(
        "witness",
        "GET",
        "/api/conferences/conf-1/witnesses",
        ("adm-1", "admin", "P"),
        503,
        {"error": "unavailable", "reason": "the conferences cannot be read now"},
        headers={"Retry-After": "5"},
        raising=(lambda app: app[HUB].link, "conference", CoreUnreachable()),
    ),
    Refusal(
        "evidence",
        "GET",
        "/api/evidence/ev-" + "0" * 32,
        ("sup-1", "supervisor", "P"),
        404,
        {"error": "not_found", "reason": "no such evidence item"},
    ),
    Refusal(
        "records",
        "GET",
        "/api/calls",
        ("aud-1", "auditor", "P"),
        400,
        {
            "error": "bad_request",
            "reason": "must be later than from (the period is [from, to))",
            "field": "to",
        },
        params={"from": "2026-02-01", "to": "2026-01-01"},
    ),
    Refusal(
        "statistics",
        "GET",
        "/api/stats",
        ("aud-1", "auditor", "P"),
        400,
        {
            "error": "bad_request",
            "reason": "not a date (YYYY-MM-DD or an ISO 8601 time)",
            "field": "from",
        },
        params={"from": "yesterday", "to": "2026-01-01"},
    ),
    Refusal(
        "feed",
        "GET",
        "/api/feed",
        ("sup-1", "supervisor", "P"),
        400,
        {"error": "bad_request", "reason": "must be a non-negative integer", "field": "after"},
        params={"after": "-1"},
    ),
    Refusal(
        "console",
        "GET",
        "/api/console/settings",
        ("o-1", "officer", "P0101"),
        403,
        {
            "error": "forbidden",
            "reason": "only operators, supervisors and admins use the console",
        },
    ),
    Refusal(
        "openapi",
        "GET",
        "/api/openapi.json",
        ("o-1", "officer", "P0101"),
        401,
        {"error": "unauthorized", "reason": "token missing"},
        headers={"WWW-Authenticate": "Bearer"},
        signed=False,
    ),
]


@pytest.mark.parametrize("refusal", REFUSALS, ids=[r.module for r in REFUSALS])
async def test_a_modules_own_error_keeps_its_status_and_body(
    api: Api, refusal: Refusal, monkeypatch: pytest.MonkeyPatch
) -> None:
    if refusal.raising is not None:
        holder, call, exc = refusal.raising
        fail(monkeypatch, holder(api.app), call, exc)
    headers = api.auth(*refusal.who) if refusal.signed else {}
    if refusal.data is not None:
        headers["Content-Type"] = "text/csv"
    with capture_logs() as logs:
        resp = await api.http.request(
            refusal.method,
            refusal.path,
            params=refusal.params,
            json=refusal.json,
            data=refusal.data,
            headers=headers,
        )
        body = await resp.json()
    assert resp.status == refusal.status, body
    assert body == refusal.body
    for name, value in refusal.headers.items():
        assert resp.headers[name] == value
    assert resp.headers["X-Request-Id"]
    # The client's fault, or a store's: never logged as a bug of ours.
    assert not [e for e in logs if "exc_info" in e]
