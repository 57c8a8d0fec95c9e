"""The records side of the console over HTTP (issue 14), on the real app with real trace
stores (SQLite, and PostgreSQL in a schema of its own): the evidence search, an item's audit
trail, the chain check on demand, the calls of a period and a call's audit view with who
watched it, and the statistics series the dashboard draws. The pure rules of who watched are
tested first, on plain records."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pytest_aiohttp import AiohttpClient

from commandcenter.app import create_app
from commandcenter.config import replace_section
from commandcenter.keys import TRACE
from sessions import evidence as ev
from sessions import records
from sessions.checkpoint import sign
from sessions.recorder import MemoryRecorder
from sessions.store import StoredRecord
from sessions.trace import Head
from tests.conftest import make_config
from tests.evidencehelpers import CASE, Api, correct, uploaded
from tests.polling import wait_until
from tests.tracehelpers import Backend, backend, flood_checkpoints
from tests.wsclient import Server

# A shared fixture (tests.tracehelpers): each test on SQLite and on PostgreSQL.
__all__ = ["backend"]

# P0102's and P0201's cases (config.toml's case codes).
CASE_0102 = "(2025)粤0102执7号"
CASE_0201 = "(2025)粤0201执3号"
TODAY = dt.datetime.now(dt.UTC).date()
FROM = (TODAY - dt.timedelta(days=1)).isoformat()
TO = (TODAY + dt.timedelta(days=1)).isoformat()


def photo() -> bytes:
    return b"\xff\xd8\xff\xe0" + os.urandom(2000)


@pytest.fixture
async def api(backend: Backend, aiohttp_client: AiohttpClient, tmp_path: Path) -> Api:
    # The backend first, so that it is dropped after the app has stopped writing to it.
    config = backend.configure(make_config(tmp_path / "var"))
    app = create_app(config)
    return Api(await aiohttp_client(app), app, config)


async def get_json(api: Api, path: str, user: str, role: str, court: str) -> tuple[int, Any]:
    resp = await api.get(path, user, role, court)
    return resp.status, await resp.json()


async def upload_three(api: Api) -> dict[str, dict[str, Any]]:
    """o1 and o2 of P0101 and o3 of P0102, one photo each, in that order."""
    out = {}
    for user, court, case in (
        ("o1", "P0101", CASE),
        ("o2", "P0101", CASE),
        ("o3", "P0102", CASE_0102),
    ):
        data = photo()
        out[user] = await uploaded(api, user, data, sha256=sha(data), court=court, case=case)
    return out


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- pure: who watched -------------------------------------------------------------------


def rec(seq: int, kind: str, **data: Any) -> StoredRecord:
    return StoredRecord(seq=seq, kind=kind, at=1000.0 + seq, data=data, prev_hash="", hash="")


CREATED = rec(
    1,
    "call_created",
    call="c-1",
    direction="officer_to_center",
    officer="o1",
    court="P0101",
    caller="o1",
)


def test_who_watched_follows_the_room_when_the_media_server_recorded_nothing() -> None:
    watches = records.who_watched(
        [
            CREATED,
            rec(2, "call_answered", call="c-1", by="op1"),
            rec(3, "supervisor_joined", call="c-1", user="s1", covert=True),
            rec(4, "call_transferred", call="c-1", by="op1", to="op2"),
            rec(5, "supervisor_left", call="c-1", user="s1", covert=True),
            rec(6, "call_ended", call="c-1", reason="hangup"),
        ]
    )
    assert [(w.user, w.role, w.since_seq, w.until_seq, w.covert) for w in watches] == [
        ("op1", "operator", 2, 4, False),
        ("s1", "supervisor", 3, 5, True),
        ("op2", "operator", 4, 6, False),
    ]


def test_who_watched_is_the_media_servers_record_of_the_officers_video_when_there_is_one() -> None:
    watches = records.who_watched(
        [
            CREATED,
            rec(2, "call_answered", call="c-1", by="op1"),
            rec(3, "video_watched", call="c-1", user="op1", owner="o1", track="o1:video"),
            # The officer receiving the operator's video is not watching the call.
            rec(4, "video_watched", call="c-1", user="o1", owner="op1", track="op1:video"),
            rec(5, "supervisor_joined", call="c-1", user="s1", covert=False),
            rec(6, "video_watched", call="c-1", user="s1", owner="o1", track="o1:video"),
            rec(7, "video_unwatched", call="c-1", user="s1", owner="o1", track="o1:video"),
            rec(8, "call_ended", call="c-1", reason="hangup"),
        ]
    )
    assert [(w.user, w.role, w.since_seq, w.until_seq) for w in watches] == [
        ("op1", "operator", 3, 8),
        ("s1", "supervisor", 6, 7),
    ]


# --- the evidence search -----------------------------------------------------------------


async def test_the_search_finds_by_officer_court_case_and_period_newest_first(api: Api) -> None:
    items = await upload_three(api)
    ids = {who: item["evidence_id"] for who, item in items.items()}
    status, body = await get_json(
        api, f"/api/evidence?from={FROM}&to={TO}", "s1", "supervisor", "P01"
    )
    assert status == 200, body
    assert [i["evidence_id"] for i in body["items"]] == [ids["o3"], ids["o2"], ids["o1"]]
    assert (body["total"], body["offset"], body["limit"]) == (3, 0, records.DEFAULT_PAGE)

    status, body = await get_json(api, "/api/evidence?officer=o2", "s1", "supervisor", "P01")
    assert [i["evidence_id"] for i in body["items"]] == [ids["o2"]]
    status, body = await get_json(api, "/api/evidence?court=P0102", "s1", "supervisor", "P01")
    assert [i["evidence_id"] for i in body["items"]] == [ids["o3"]]
    status, body = await get_json(
        api, f"/api/evidence?case={CASE}&limit=1&offset=1", "s1", "supervisor", "P01"
    )
    assert ([i["evidence_id"] for i in body["items"]], body["total"]) == ([ids["o1"]], 2)
    # A period that ended before the uploads finds nothing.
    status, body = await get_json(
        api, f"/api/evidence?from={FROM}&to={FROM}T01:00:00", "s1", "supervisor", "P01"
    )
    assert (status, body["items"], body["total"]) == (200, [], 0)
    # Each item shown is recorded as read through the search.
    reads = await api.records(ev.READ, via="search")
    assert {r.data["evidence_id"] for r in reads} == set(ids.values())


async def test_the_search_follows_items_moved_between_cases_by_corrections(api: Api) -> None:
    items = await upload_three(api)
    moved = items["o2"]["evidence_id"]
    other_case = "(2025)粤0101执99号"
    fixed = await correct(
        api, moved, "s1", "supervisor", "P01",
        {"reason": "filed under the wrong case", "changes": {"case_number": other_case}},
    )  # fmt: skip
    assert fixed.status == 201, await fixed.text()
    status, body = await get_json(api, f"/api/evidence?case={other_case}&limit=10", "s1",
                                  "supervisor", "P01")  # fmt: skip
    assert (status, [i["evidence_id"] for i in body["items"]]) == (200, [moved])
    assert body["items"][0]["case_number"] == other_case
    status, body = await get_json(api, f"/api/evidence?case={CASE}&limit=10", "s1",
                                  "supervisor", "P01")  # fmt: skip
    assert [i["evidence_id"] for i in body["items"]] == [items["o1"]["evidence_id"]]


async def test_an_operator_finds_only_their_courts_items(api: Api) -> None:
    items = await upload_three(api)
    status, body = await get_json(api, "/api/evidence?court=P01", "op1", "operator", "P0101")
    assert status == 200
    assert {i["evidence_id"] for i in body["items"]} == {
        items["o1"]["evidence_id"],
        items["o2"]["evidence_id"],
    }
    status, body = await get_json(api, "/api/evidence?court=P0102", "op1", "operator", "P0101")
    assert (body["items"], body["total"]) == ([], 0)


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("limit=0", "limit"),
        (f"limit={records.MAX_PAGE + 1}", "limit"),
        ("offset=-1", "offset"),
        ("court=P9999", "court"),
        ("from=yesterday", "from"),
        ("officer=" + "x" * 65, "officer"),
        ("colour=red", "colour"),
        ("case=a&case=b", "case"),
    ],
)
async def test_a_bad_search_is_a_400_naming_the_parameter(api: Api, query: str, field: str) -> None:
    status, body = await get_json(api, f"/api/evidence?{query}", "s1", "supervisor", "P01")
    assert (status, body["error"], body["field"]) == (400, "bad_request", field)


# --- an item's audit trail ---------------------------------------------------------------


async def test_an_items_audit_trail_lists_its_records_with_seqs(api: Api) -> None:
    item = await uploaded(api, "o1")
    evidence_id = item["evidence_id"]
    got = await api.get(f"/api/evidence/{evidence_id}/content", "s1", "supervisor", "P01")
    assert got.status == 200
    await got.read()
    fixed = await correct(
        api,
        evidence_id,
        "s1",
        "supervisor",
        "P01",
        {"reason": "wrong file name", "changes": {"file_name": "IMG_0002.jpg"}},
    )
    assert fixed.status == 201, await fixed.text()
    status, body = await get_json(api, f"/api/evidence/{evidence_id}/audit", "a1", "auditor", "P")
    assert status == 200, body
    assert body["item"]["evidence_id"] == evidence_id
    assert body["item"]["sha256"] == item["sha256"]
    assert body["item"]["file_name"] == "IMG_0002.jpg"
    kinds = [r["kind"] for r in body["records"]]
    assert kinds == [ev.STORED, ev.DOWNLOADED, ev.CORRECTED]
    seqs = [r["seq"] for r in body["records"]]
    assert seqs == sorted(seqs)
    assert seqs[0] == item["recorded"]["seq"]
    stored = (await api.records(ev.STORED))[0]
    assert body["records"][0]["hash"] == stored.hash
    assert body["call"] is None
    # The look itself is recorded, for the next one to see.
    assert await api.records(ev.READ, via="audit")


async def test_another_courts_item_answers_like_a_missing_one(api: Api) -> None:
    item = await uploaded(api, "o1")
    path = f"/api/evidence/{item['evidence_id']}/audit"
    outside = await get_json(api, path, "op9", "operator", "P0102")
    missing = await get_json(
        api, "/api/evidence/ev-" + "0" * 32 + "/audit", "op1", "operator", "P0101"
    )
    assert outside == missing == (404, {"error": "not_found", "reason": "no such evidence item"})


# --- the chain check ---------------------------------------------------------------------


async def test_verify_runs_the_chain_check_and_names_the_first_bad_record(
    api: Api, backend: Backend
) -> None:
    await upload_three(api)
    auth = api.auth("a1", "auditor", "P")
    resp = await api.http.post("/api/trace/verify", headers=auth)
    body = await resp.json()
    assert resp.status == 200, body
    assert body["ok"] is True
    # The check's own record comes after what it checked.
    head = await api.app[TRACE].head()
    assert body["records"] == body["head_seq"] == head.seq - 1
    checked = await api.records("trace_verified")
    assert checked[-1].data["user"] == "a1"
    assert checked[-1].data["ok"] is True

    stored = (await api.records(ev.STORED))[1]
    await backend.sql(
        f'UPDATE {{t}} SET data = \'{{"user":"someone else"}}\' WHERE seq = {stored.seq}'
    )
    resp = await api.http.post("/api/trace/verify?full=1", headers=auth)
    body = await resp.json()
    assert (resp.status, body["ok"], body["seq"], body["problem"]) == (
        200,
        False,
        stored.seq,
        "edited",
    )


async def verify_json(api: Api, query: str = "") -> tuple[int, Any]:
    auth = api.auth("a1", "auditor", "P")
    resp = await api.http.post("/api/trace/verify" + query, headers=auth)
    return resp.status, await resp.json()


async def test_the_next_check_reads_only_the_records_after_the_last_checks_signed_position(
    api: Api,
) -> None:
    await upload_three(api)
    status, first = await verify_json(api)
    assert (status, first["ok"], first["full"], first["from_seq"]) == (200, True, True, 0)
    assert first["checked"] == first["records"] == first["head_seq"]
    # The position is kept as a signed `verified` checkpoint of the head it reached.
    remembered = [cp for cp in await api.app[TRACE].checkpoints() if cp.reason == "verified"]
    assert remembered[-1].head == Head(first["head_seq"], first["head_hash"])

    await upload_three(api)
    head = await api.app[TRACE].head()
    status, second = await verify_json(api)
    assert (status, second["ok"], second["full"]) == (200, True, False)
    assert second["from_seq"] == first["head_seq"]
    # Everything written since: the first check's own record and the three uploads'.
    assert second["head_seq"] == head.seq
    assert second["checked"] == head.seq - first["head_seq"]
    assert second["records"] == head.seq
    checked = await api.records("trace_verified")
    assert checked[-1].data["from_seq"] == first["head_seq"]

    status, full = await verify_json(api, "?full=1")
    assert (status, full["ok"], full["full"], full["from_seq"]) == (200, True, True, 0)
    assert full["checked"] == full["records"] == full["head_seq"] > second["head_seq"]

    status, body = await verify_json(api, "?full=yes")
    assert (status, body["field"]) == (400, "full")


async def test_a_change_before_the_remembered_position_is_found_by_the_full_check(
    api: Api, backend: Backend
) -> None:
    await upload_three(api)
    assert (await verify_json(api))[1]["ok"] is True
    stored = (await api.records(ev.STORED))[0]
    await backend.sql(
        f'UPDATE {{t}} SET data = \'{{"user":"someone else"}}\' WHERE seq = {stored.seq}'
    )
    # The incremental check does not read it again...
    status, quick = await verify_json(api)
    assert (status, quick["ok"], quick["full"]) == (200, True, False)
    # ...the full one does.
    status, full = await verify_json(api, "?full=1")
    assert (status, full["ok"], full["seq"], full["problem"]) == (200, False, stored.seq, "edited")


async def test_a_rewrite_at_the_remembered_position_fails_the_incremental_check(
    api: Api, backend: Backend
) -> None:
    await upload_three(api)
    status, first = await verify_json(api)
    assert first["ok"] is True
    await backend.sql(f"UPDATE {{t}} SET hash = '{'0' * 64}' WHERE seq = {first['head_seq']}")
    status, quick = await verify_json(api)
    assert (status, quick["ok"], quick["seq"], quick["problem"]) == (
        200,
        False,
        first["head_seq"],
        "edited",
    )


async def test_an_incremental_check_after_a_tampered_checkpoint_refuses(
    api: Api, backend: Backend
) -> None:
    await upload_three(api)
    status, first = await verify_json(api)
    assert first["ok"] is True
    await upload_three(api)
    # Move the remembered position on past records nobody checked: the signature breaks.
    head = await api.app[TRACE].head()
    await backend.sql(
        f"UPDATE {{c}} SET seq = {head.seq}, hash = '{head.hash}' WHERE reason = 'verified'"
    )
    status, body = await verify_json(api)
    assert (status, body["error"]) == (409, "checkpoint_invalid"), body
    # A full check still runs, and its signed position lets the next check be quick again.
    status, full = await verify_json(api, "?full=1")
    assert (status, full["ok"], full["from_seq"]) == (200, True, 0)
    status, quick = await verify_json(api)
    assert (status, quick["ok"], quick["from_seq"]) == (200, True, full["head_seq"])


async def test_the_incremental_check_reads_one_checkpoint_among_thousands_and_refuses_a_forged_one(
    api: Api, backend: Backend
) -> None:
    """With thousands of periodic checkpoints added since the last check, the next check
    reads only the latest `verified` checkpoint from the table, and a tampered one still
    makes it refuse (409 `checkpoint_invalid`)."""
    await upload_three(api)
    status, first = await verify_json(api)
    assert first["ok"] is True
    await flood_checkpoints(backend, 12)
    trace = api.app[TRACE]
    assert len(await trace.checkpoints()) > 4096
    await upload_three(api)
    before = trace.checkpoint_rows_read
    status, quick = await verify_json(api)
    assert (status, quick["ok"], quick["from_seq"]) == (200, True, first["head_seq"])
    assert trace.checkpoint_rows_read - before == 1

    head = await trace.head()
    await backend.sql(
        f"UPDATE {{c}} SET seq = {head.seq}, hash = '{head.hash}' WHERE reason = 'verified'"
    )
    before = trace.checkpoint_rows_read
    status, body = await verify_json(api)
    assert (status, body["error"]) == (409, "checkpoint_invalid"), body
    assert trace.checkpoint_rows_read - before == 1


async def test_the_memory_stores_incremental_check_reads_one_checkpoint_and_refuses_a_forged_one(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    """The same on `recorder.backend = "memory"`: the latest `verified` checkpoint is read
    alone among thousands, and a newer one signed with another key makes the check refuse."""
    config = replace_section(make_config(tmp_path / "var"), "recorder", backend="memory")
    app = create_app(config)
    api = Api(await aiohttp_client(app), app, config)
    await upload_three(api)
    status, first = await verify_json(api)
    assert first["ok"] is True
    trace = api.app[TRACE]
    head = await trace.head()
    periodic = sign(Ed25519PrivateKey.generate(), head, now=1.0, node="n1", reason="periodic")
    for _ in range(4096):
        await trace.add_checkpoint(periodic)
    before = trace.checkpoint_rows_read
    status, quick = await verify_json(api)
    assert (status, quick["ok"], quick["from_seq"]) == (200, True, first["head_seq"])
    assert trace.checkpoint_rows_read - before == 1

    forged = sign(Ed25519PrivateKey.generate(), head, now=2.0, node="n1", reason="verified")
    await trace.add_checkpoint(forged)
    before = trace.checkpoint_rows_read
    status, body = await verify_json(api)
    assert (status, body["error"]) == (409, "checkpoint_invalid"), body
    assert trace.checkpoint_rows_read - before == 1


async def test_only_supervisors_admins_and_auditors_run_the_chain_check(api: Api) -> None:
    for role, court in (("operator", "P0101"), ("officer", "P0101")):
        resp = await api.http.post("/api/trace/verify", headers=api.auth("u1", role, court))
        assert resp.status == 403
    resp = await api.http.post("/api/trace/verify")
    assert resp.status == 401


# --- calls and who watched ---------------------------------------------------------------


async def test_a_calls_audit_view_has_its_timeline_and_who_watched(api: Api) -> None:
    server = Server(api.http, api.config, MemoryRecorder())
    op = await server.connect("op1", "operator", "P0101")
    sup = await server.connect("s1", "supervisor", "P01")
    officer = await server.connect("o1", "officer", "P0101")
    placed = await officer.request("call_center", reply="call_placed", case_number=CASE)
    call_id = placed["call_id"]
    await op.expect("call_ringing")
    await op.request("accept", call_id=call_id)
    await officer.expect("call_answered")
    await sup.request("join_call", call_id=call_id)
    await sup.expect("call_answered")
    await sup.request("leave_call", call_id=call_id)
    await officer.request("hangup", call_id=call_id)
    await op.expect("call_ended", call_id=call_id)

    async def ended() -> bool:
        return bool(await api.records("call_ended", call=call_id))

    await wait_until(ended, what="the call's end recorded")

    status, body = await get_json(api, f"/api/calls?from={FROM}&to={TO}", "s1", "supervisor", "P01")
    assert status == 200, body
    (call,) = body["calls"]
    assert (call["call_id"], call["officer"], call["case_number"], call["answered"]) == (
        call_id,
        "o1",
        CASE,
        True,
    )

    status, body = await get_json(api, f"/api/calls/{call_id}/audit", "a1", "auditor", "P")
    assert status == 200, body
    kinds = [e["kind"] for e in body["timeline"]]
    assert kinds[0] == "call_created"
    assert kinds[-1] == "call_ended"
    for kind in ("call_answered", "supervisor_joined", "supervisor_left"):
        assert kind in kinds
    seqs = [e["seq"] for e in body["timeline"]]
    assert seqs == sorted(seqs)
    watched = {w["user"]: w for w in body["watched"]}
    assert set(watched) == {"op1", "s1"}
    assert watched["s1"]["role"] == "supervisor"
    assert watched["s1"]["until_seq"] > watched["s1"]["since_seq"]

    # The look is recorded, and the next look sees it.
    (looked,) = await api.records("call_audit_read", call=call_id)
    assert (looked.data["user"], looked.data["role"], looked.data["court"]) == (
        "a1",
        "auditor",
        "P0101",
    )
    status, again = await get_json(api, f"/api/calls/{call_id}/audit", "s1", "supervisor", "P01")
    assert again["timeline"][-1]["kind"] == "call_audit_read"
    assert again["timeline"][-1]["seq"] == looked.seq

    # Another court's people: the same 404 as a call that never was.
    outside = await get_json(api, f"/api/calls/{call_id}/audit", "s2", "supervisor", "P02")
    missing = await get_json(api, "/api/calls/c-nothing/audit", "s1", "supervisor", "P01")
    assert outside == missing == (404, {"error": "not_found", "reason": "no such call"})
    status, body = await get_json(api, f"/api/calls?from={FROM}&to={TO}", "s2", "supervisor", "P02")
    assert (status, body["calls"]) == (200, [])
    status, _ = await get_json(api, f"/api/calls/{call_id}/audit", "o1", "officer", "P0101")
    assert status == 403


async def test_a_call_listing_needs_a_bounded_period(api: Api) -> None:
    status, body = await get_json(api, "/api/calls", "s1", "supervisor", "P01")
    assert (status, body["field"]) == (400, "from")
    far = (TODAY + dt.timedelta(days=200)).isoformat()
    status, body = await get_json(
        api, f"/api/calls?from={FROM}&to={far}", "s1", "supervisor", "P01"
    )
    assert (status, body["field"]) == (400, "to")
    status, body = await get_json(
        api, f"/api/calls?from={FROM}&to={TO}&court=P02", "s1", "supervisor", "P01"
    )
    assert (status, body["field"]) == (403, "court")


# --- the dashboard's series --------------------------------------------------------------


async def test_the_stats_series_add_up_to_the_whole_and_say_how_each_is_counted(
    api: Api,
) -> None:
    await upload_three(api)
    data = photo()
    await uploaded(api, "o4", data, sha256=sha(data), court="P0201", case=CASE_0201)
    status, body = await get_json(
        api,
        f"/api/stats?from={FROM}&to={TO}&series=day,court&explain=true",
        "a1",
        "auditor",
        "P",
    )
    assert status == 200, body
    assert body["figures"]["evidence_items"] == 4
    assert [d["day"] for d in body["by_day"]] == [FROM, TODAY.isoformat()]
    assert sum(d["figures"]["evidence_items"] for d in body["by_day"]) == 4
    per_court = {c["court"]: c["figures"]["evidence_items"] for c in body["by_court"]}
    assert (per_court["P0101"], per_court["P0102"], per_court["P0201"]) == (2, 1, 1)
    assert sum(per_court.values()) == 4
    assert body["how"]["evidence_items"].startswith("`evidence_stored` records")
    assert "over" in body

    # A supervisor's series are their scope's.
    status, body = await get_json(
        api, f"/api/stats?from={FROM}&to={TO}&series=court", "s1", "supervisor", "P01"
    )
    assert {c["court"] for c in body["by_court"]} == {"P01", "P0101", "P0102"}
    status, body = await get_json(
        api, f"/api/stats?from={FROM}&to={TO}&series=week", "s1", "supervisor", "P01"
    )
    assert (status, body["field"]) == (400, "series")
