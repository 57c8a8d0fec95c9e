"""An officer's track (`GET /api/officers/{user_id}/track`, the console's 今日轨迹): the
positions the hub recorded in the trace, read by the subject index that position records now
carry (sessions/facets.py), on real trace stores (SQLite, and PostgreSQL in a schema of its
own), from officers reporting over a real WebSocket. Scope, defaults, bounds and bad input;
and position records from before they had derived columns still verify."""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import time
import zoneinfo
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient

from commandcenter.app import create_app
from commandcenter.config import Config
from commandcenter.keys import TRACE
from commandcenter.track_api import MAX_POINTS, start_of_day_ms, thin
from sessions.facets import NO_FACETS, POSITION, Facets, facets_of
from sessions.trace import Link, facets_mismatch
from tests.conftest import make_config
from tests.tracehelpers import Backend, backend
from tests.wsclient import token_for

# A shared fixture (tests.tracehelpers): each test on SQLite and on PostgreSQL.
__all__ = ["backend"]

PATH = "/api/officers/{}/track"


# --- pure ----------------------------------------------------------------------------------


def test_a_position_is_indexed_by_its_officer_and_court() -> None:
    data = {"user": "o1", "court": "P0101", "lat": 1.0, "lon": 2.0}
    assert facets_of(POSITION, data) == Facets(court="P0101", subject="o1")


def _link(facets: Facets) -> Link:
    return Link(1, 0, POSITION, '{"court":"P0101","user":"o1"}', "0" * 64, "1" * 64, facets)


def test_a_position_from_before_the_index_still_verifies_but_a_wrong_index_does_not() -> None:
    assert facets_mismatch(_link(Facets(court="P0101", subject="o1"))) is None
    assert facets_mismatch(_link(NO_FACETS)) is None
    assert facets_mismatch(_link(Facets(court="P0101", subject="o2"))) is not None


def test_today_starts_at_midnight_in_the_configured_zone() -> None:
    shanghai = zoneinfo.ZoneInfo("Asia/Shanghai")
    now = dt.datetime(2026, 12, 6, 1, 30, tzinfo=shanghai).timestamp()
    assert start_of_day_ms(now, shanghai) == round(
        dt.datetime(2026, 12, 6, tzinfo=shanghai).timestamp() * 1000
    )
    # 01:30 in Shanghai is still the 5th in UTC.
    assert start_of_day_ms(now, dt.UTC) == round(
        dt.datetime(2026, 12, 5, tzinfo=dt.UTC).timestamp() * 1000
    )


def test_a_long_track_is_thinned_evenly_keeping_its_ends() -> None:
    points = [{"i": i} for i in range(25_000)]
    kept = thin(points, MAX_POINTS)
    assert len(kept) == MAX_POINTS
    assert kept[0] == {"i": 0}
    assert kept[-1] == {"i": 24_999}
    assert thin(points[:5], MAX_POINTS) == points[:5]


# --- the real server -----------------------------------------------------------------------


class Api:
    def __init__(self, http: TestClient[Any, Any], config: Config) -> None:
        self.http = http
        self.config = config

    def auth(self, user: str, role: str, court: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token_for(self.config, user, role, court)}"}

    async def track(
        self, officer: str, user: str, role: str, court: str, **params: str
    ) -> tuple[int, Any]:
        async with self.http.get(
            PATH.format(officer), params=params, headers=self.auth(user, role, court)
        ) as resp:
            return resp.status, await resp.json()

    async def report(self, officer: str, court: str, fixes: list[tuple[float, float]]) -> None:
        """Sign `officer` in over the WebSocket and report `fixes`, each acknowledged."""
        ws = await self.http.ws_connect(
            "/ws", params={"token": token_for(self.config, officer, "officer", court)}
        )
        try:
            welcome = await ws.receive_json(timeout=5)
            assert welcome["type"] == "welcome"
            for n, (lat, lon) in enumerate(fixes):
                await ws.send_json(
                    {
                        "type": "position",
                        "id": f"p{n}",
                        "lat": lat,
                        "lon": lon,
                        "accuracy_m": 5.0,
                        "device_time": round(time.time() * 1000),
                    }
                )
                while (await ws.receive_json(timeout=5)).get("ref") != f"p{n}":
                    pass
                # The hub records at most one fix per presence.position_interval_s and holds
                # a later one until then: wait for this one before sending the next, so that
                # each is recorded rather than replaced.
                await _recorded(self, officer, n + 1)
        finally:
            await ws.close()


@pytest.fixture
async def api(backend: Backend, aiohttp_client: AiohttpClient, tmp_path: Path) -> Api:
    # The backend first, so that it is dropped after the app has stopped writing to it.
    config = backend.configure(make_config(tmp_path / "var"))
    return Api(await aiohttp_client(create_app(config)), config)


async def _recorded(api: Api, officer: str, count: int) -> None:
    trace = api.http.app[TRACE]
    for _ in range(100):
        if len(await trace.find(kinds=[POSITION], subject=officer)) >= count:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{officer}: fewer than {count} positions recorded")


async def test_the_console_reads_an_officers_track_of_today_in_order(api: Api) -> None:
    fixes = [(32.06, 118.79), (32.07, 118.80), (32.08, 118.81)]
    await api.report("o1", "P0101", fixes)
    await api.report("o2", "P0101", [(30.0, 120.0)])
    await _recorded(api, "o1", 3)
    status, body = await api.track("o1", "op1", "operator", "P0101")
    assert status == 200, body
    assert [(p["lat"], p["lon"]) for p in body["points"]] == fixes
    assert {p["court"] for p in body["points"]} == {"P0101"}
    assert body["user"] == "o1"
    assert body["thinned"] is False
    ats = [p["at"] for p in body["points"]]
    assert ats == sorted(ats)
    assert body["from"] <= ats[0] < ats[-1] < body["to"]
    # A period that ends before the second fix holds the first only.
    status, body = await api.track(
        "o1",
        "op1",
        "operator",
        "P0101",
        **{"from": str(body["from"]), "to": str(math.floor(ats[1]))},
    )
    assert status == 200
    assert [(p["lat"], p["lon"]) for p in body["points"]] == fixes[:1]
    # Supervisors above the court and auditors read it too.
    for user, role, court in (("sv1", "supervisor", "P01"), ("au1", "auditor", "P")):
        status, body = await api.track("o1", user, role, court)
        assert (status, len(body["points"])) == (200, 3)


async def test_another_courts_officer_and_an_unknown_one_give_the_same_empty_track(
    api: Api,
) -> None:
    await api.report("o9", "P0201", [(31.0, 121.0)])
    await _recorded(api, "o9", 1)
    theirs = await api.track("o9", "op1", "operator", "P0101")
    nobody = await api.track("nobody", "op1", "operator", "P0101")
    assert theirs[0] == nobody[0] == 200
    assert theirs[1]["points"] == nobody[1]["points"] == []
    assert (await api.track("o9", "op2", "operator", "P0201"))[1]["points"] != []


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"from": "yesterday"}, "from"),
        ({"to": "-5"}, "to"),
        ({"from": "1"}, "from"),
        ({"from": "1780000000000", "to": "1770000000000"}, "from"),
        ({"from": "1700000000000", "to": "1780000000000"}, "from"),
        ({"since": "1"}, "since"),
    ],
)
async def test_bad_parameters_are_named(api: Api, params: dict[str, str], field: str) -> None:
    status, body = await api.track("o1", "op1", "operator", "P0101", **params)
    assert (status, body["error"], body["field"]) == (400, "bad_request", field)


async def test_only_the_command_center_reads_tracks(api: Api) -> None:
    status, body = await api.track("o1", "o2", "officer", "P0101")
    assert (status, body["error"]) == (403, "forbidden")
    async with api.http.get(PATH.format("o1")) as resp:
        assert resp.status == 401
    status, body = await api.track("o\x1b[31m", "op1", "operator", "P0101")
    assert (status, body["field"]) == (400, "user_id")
