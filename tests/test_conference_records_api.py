"""Conferences' records over HTTP (issue 14, the auditor): `GET /api/conferences` lists the
conferences of a period with the statistics' figures, and `GET /api/conferences/<id>/audit`
gives one conference's whole trail in time order, read by the subject index; on the real app
with real conferences over WebSockets, on SQLite and on PostgreSQL; every answer as
commandcenter/openapi.json documents it."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from pytest_aiohttp import AiohttpClient

from commandcenter.app import create_app
from sessions import conference_records as confs
from sessions.recorder import MemoryRecorder
from sessions.store import StoredRecord
from tests.conftest import make_config
from tests.evidencehelpers import Api
from tests.polling import wait_until
from tests.test_openapi import Conformance
from tests.tracehelpers import Backend, backend
from tests.wsclient import Client, Server

# A shared fixture (tests.tracehelpers): each test on SQLite and on PostgreSQL.
__all__ = ["backend"]

TODAY = dt.datetime.now(dt.UTC).date()
FROM = (TODAY - dt.timedelta(days=1)).isoformat()
TO = (TODAY + dt.timedelta(days=1)).isoformat()


@pytest.fixture
async def api(backend: Backend, aiohttp_client: AiohttpClient, tmp_path: Path) -> Api:
    config = backend.configure(make_config(tmp_path / "var"))
    app = create_app(config)
    return Api(await aiohttp_client(app), app, config)


CONFORMANCE = Conformance()


async def get_json(api: Api, path: str, user: str, role: str, court: str) -> tuple[int, Any]:
    """The answer, checked against commandcenter/openapi.json for the conferences' routes."""
    resp = await api.get(path, user, role, court)
    route = path.split("?")[0]
    if route.startswith("/api/conferences/"):
        route = "/api/conferences/{conference_id}/audit"
    if route.startswith("/api/conferences"):
        await CONFORMANCE.check("GET", route, resp)
    return resp.status, await resp.json()


async def hold(
    host: Client, court: str, sites: dict[str, Client], title: str, kind: str = "meeting"
) -> str:
    """`host` holds a conference of its court: the sites join, op1 asks for the floor and is
    given it, then mute all, the last site leaves, lock, end."""
    created = await host.request(
        "create_conference",
        reply="conference_created",
        title=title,
        kind=kind,
        invite_below=[court],
    )
    cid: str = created["conference"]["conference_id"]
    await host.request("join_conference", reply="conference_joined", conference_id=cid)
    for client in sites.values():
        await client.request("join_conference", reply="conference_joined", conference_id=cid)
    first = next(iter(sites))
    await sites[first].request("raise_hand", conference_id=cid)
    await sites[first].expect("floor_status", conference_id=cid)
    await host.request("grant_floor", conference_id=cid, site=first)
    await sites[first].expect("floor_status", where=lambda m: m["floor"]["state"] == "permitted")
    await host.request("mute_all", conference_id=cid)
    await sites[list(sites)[-1]].request("leave_conference", conference_id=cid)
    await host.request("lock_conference", conference_id=cid, locked=True)
    await host.request("end_conference", conference_id=cid)
    await host.expect("conference_ended", conference_id=cid)
    return cid


async def test_the_listing_and_audit_of_conferences_within_scope(api: Api) -> None:
    server = Server(api.http, api.config, MemoryRecorder())
    s1 = await server.connect("s1", "supervisor", "P01")
    sites = {
        "op1": await server.connect("op1", "operator", "P0101"),
        "op3": await server.connect("op3", "operator", "P0102"),
    }
    s2 = await server.connect("s2", "supervisor", "P02")
    op4 = await server.connect("op4", "operator", "P0201")
    cid = await hold(s1, "P01", sites, "全省执行会商 P01")
    other = await hold(s2, "P02", {"op4": op4}, "P02 action", kind="action")

    async def ended() -> bool:
        return len(await api.records("conference_ended")) == 2

    await wait_until(ended, what="both conferences' ends recorded")

    # An auditor over the province sees both, newest first, with the statistics' figures.
    status, body = await get_json(
        api, f"/api/conferences?from={FROM}&to={TO}", "a1", "auditor", "P"
    )
    assert status == 200, body
    assert [c["conference_id"] for c in body["conferences"]] == [other, cid]
    assert body["total"] == 2
    assert body["figures"] == {"conferences": 1, "enforcement_actions": 1}
    status, stats = await get_json(api, f"/api/stats?from={FROM}&to={TO}", "a1", "auditor", "P")
    assert status == 200, stats
    assert body["figures"] == {
        "conferences": stats["figures"]["conferences"],
        "enforcement_actions": stats["figures"]["enforcement_actions"],
    }
    mine = body["conferences"][1]
    assert (mine["title"], mine["court"], mine["kind"], mine["host"]) == (
        "全省执行会商 P01",
        "P01",
        "meeting",
        "s1",
    )
    assert (mine["sites"], mine["floor_grants"], mine["recording"]) == (3, 1, False)
    assert (mine["running"], mine["end_reason"], mine["moderators"]) == (False, "ended", ["s1"])
    assert mine["started_at"] <= mine["ended_at"]

    # A supervisor of P01 sees P01's only, and its figures are the stats of P01.
    status, body = await get_json(
        api, f"/api/conferences?from={FROM}&to={TO}", "s1", "supervisor", "P01"
    )
    assert [c["conference_id"] for c in body["conferences"]] == [cid]
    status, stats = await get_json(
        api, f"/api/stats?from={FROM}&to={TO}&court=P01", "s1", "supervisor", "P01"
    )
    assert body["figures"]["conferences"] == stats["figures"]["conferences"] == 1
    assert body["figures"]["enforcement_actions"] == stats["figures"]["enforcement_actions"] == 0

    # Text finds by title (case-insensitive) or id; court narrows.
    path = f"/api/conferences?from={FROM}&to={TO}&text=p02%20ACTION"
    status, body = await get_json(api, path, "a1", "auditor", "P")
    assert [c["conference_id"] for c in body["conferences"]] == [other]
    path = f"/api/conferences?from={FROM}&to={TO}&court=P01&limit=1&offset=0"
    status, body = await get_json(api, path, "a1", "auditor", "P")
    assert ([c["conference_id"] for c in body["conferences"]], body["total"]) == ([cid], 1)

    # The audit: the whole trail, in seq order, with the counts the listing shows.
    status, audit = await get_json(api, f"/api/conferences/{cid}/audit", "a1", "auditor", "P")
    assert status == 200, audit
    kinds = [e["kind"] for e in audit["timeline"]]
    assert kinds[:2] == ["conference_created", "conference_started"]
    for kind in (
        "site_joined",
        "floor_requested",
        "floor_granted",
        "conference_muted",
        "conference_locked",
        "site_left",
        "conference_ended",
    ):
        assert kind in kinds, kind
    seqs = [e["seq"] for e in audit["timeline"]]
    assert seqs == sorted(seqs)
    assert all(e["data"]["conference"] == cid for e in audit["timeline"])
    assert audit["conference"] == mine
    assert audit["truncated"] is False
    assert kinds.count("floor_granted") == mine["floor_grants"]

    # Reading it is recorded, and the next reading shows it.
    (looked,) = await api.records("conference_audit_read", conference=cid)
    assert (looked.data["user"], looked.data["role"], looked.data["court"]) == (
        "a1",
        "auditor",
        "P01",
    )
    status, again = await get_json(api, f"/api/conferences/{cid}/audit", "s1", "supervisor", "P01")
    assert (status, again["timeline"][-1]["seq"]) == (200, looked.seq)

    # Another court's supervisor: the same 404 as a conference that never was.
    outside = await get_json(api, f"/api/conferences/{cid}/audit", "s2", "supervisor", "P02")
    missing = await get_json(api, "/api/conferences/k-nothing/audit", "s1", "supervisor", "P01")
    assert outside == missing == (404, {"error": "not_found", "reason": "no such conference"})
    # Operators and officers do not read conferences' records.
    for role, court in (("operator", "P0101"), ("officer", "P0101")):
        status, _ = await get_json(api, f"/api/conferences?from={FROM}&to={TO}", "u", role, court)
        assert status == 403
        status, _ = await get_json(api, f"/api/conferences/{cid}/audit", "u", role, court)
        assert status == 403


@pytest.mark.parametrize(
    ("query", "status", "field"),
    [
        ("", 400, "from"),
        (f"from={FROM}&to={(TODAY + dt.timedelta(days=200)).isoformat()}", 400, "to"),
        (f"from={FROM}&to={TO}&court=P02", 403, "court"),
        (f"from={FROM}&to={TO}&court=X9", 400, "court"),
        (f"from={FROM}&to={TO}&limit=101", 400, "limit"),
        (f"from={FROM}&to={TO}&limit=0", 400, "limit"),
        (f"from={FROM}&to={TO}&offset=10001", 400, "offset"),
        (f"from={FROM}&to={TO}&text=" + "x" * 65, 400, "text"),
        (f"from={FROM}&to={TO}&text=%20", 400, "text"),
        (f"from={FROM}&to={TO}&colour=red", 400, "colour"),
    ],
)
async def test_a_bad_listing_is_refused_naming_the_parameter(
    api: Api, query: str, status: int, field: str
) -> None:
    got, body = await get_json(api, f"/api/conferences?{query}", "s1", "supervisor", "P01")
    assert (got, body.get("field")) == (status, field), body


def rec(seq: int, record_kind: str, **data: Any) -> StoredRecord:
    return StoredRecord(
        seq=seq, kind=record_kind, at=1000.0 + seq, data=data, prev_hash="", hash=""
    )


def test_a_summary_counts_distinct_sites_grants_moderators_and_recording() -> None:
    trail = [
        rec(1, "conference_created", conference="k", court="P01", host="s1", title="T"),
        rec(2, "conference_started", conference="k", court="P01", host="s1", kind="action"),
        rec(3, "site_joined", conference="k", user="op1"),
        rec(4, "site_left", conference="k", user="op1", reason="left"),
        rec(5, "site_joined", conference="k", user="op1"),
        rec(6, "moderator_named", conference="k", user="s2", by="s1"),
        rec(7, "floor_granted", conference="k", user="op1", by="s1"),
        rec(8, "floor_granted", conference="k", user="op1", by="s2"),
        rec(9, "conference_recording_started", conference="k", by="s1"),
    ]
    got = confs.summary("k", reversed(trail))
    assert (got["sites"], got["floor_grants"], got["recording"]) == (1, 2, True)
    assert (got["moderators"], got["kind"], got["running"]) == (["s1", "s2"], "action", True)
    assert confs.figures([trail[1]]) == confs.Figures(conferences=0, enforcement_actions=1)
    assert confs.matches("k-1", "全省 Meeting", "meeting")
    assert not confs.matches("k-1", "全省 Meeting", "action")
