"""The evidence HTTP API end to end: the real app (SQLite trace, evidence files under a
private data dir) on a loopback port, real tokens, real uploads."""

from __future__ import annotations

import asyncio
import os
import stat
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pytest_aiohttp import AiohttpClient

from commandcenter.stores import evidence_dir
from sessions import evidence as ev
from sessions.evidence_store import PARTIAL_PREFIX
from tests.conftest import make_config
from tests.evidencehelpers import (
    CAPTURE_MS,
    CASE,
    PHOTO,
    UNCODED_CASE,
    Api,
    body_of,
    correct,
    sha,
    start_api,
    uploaded,
)
from tests.polling import wait_until
from tests.wsclient import Client


@pytest.fixture
def start(aiohttp_client: AiohttpClient, tmp_path: Path) -> Any:
    async def run(**sections: dict[str, Any]) -> Api:
        return await start_api(aiohttp_client, tmp_path, **sections)

    return run


@pytest.fixture
async def api(aiohttp_client: AiohttpClient, tmp_path: Path) -> Api:
    return await start_api(aiohttp_client, tmp_path)


# --- upload and download -------------------------------------------------------------------


async def test_an_upload_is_stored_recorded_and_downloaded_byte_for_byte(api: Api) -> None:
    before = time.time()
    resp = await api.upload("o1", lat="31.2", lon="121.4", accuracy_m="5")
    body = await body_of(resp)
    assert resp.status == 201, body
    evidence_id = ev.evidence_id_for(CASE, sha(PHOTO))
    assert resp.headers["Location"] == f"/api/evidence/{evidence_id}"
    assert body["evidence_id"] == evidence_id
    assert body["duplicate"] is False
    assert (body["sha256"], body["client_sha256"], body["size"]) == (
        sha(PHOTO),
        sha(PHOTO),
        len(PHOTO),
    )
    assert (body["uploader"], body["court"], body["device"]) == ("o1", "P0101", "phone-7")
    assert (body["kind"], body["media_type"]) == ("photo", "image/jpeg")
    assert body["capture_time"] == CAPTURE_MS
    assert before <= body["received_at"] <= time.time()
    assert body["position"] == {"lat": 31.2, "lon": 121.4, "accuracy_m": 5.0}
    # Not signed in over the WebSocket: no heartbeat vouches for the device's clock.
    assert (body["time_unverified"], body["time_unverified_reason"]) == (True, "not_signed_in")

    # Content-addressed and write-once on disk; no partial file left behind.
    assert api.files() == [sha(PHOTO)]
    path = api.dir / sha(PHOTO)
    assert path.read_bytes() == PHOTO
    assert not os.stat(path).st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)

    # The trace record is the item, with the keys the statistics count by.
    (stored,) = await api.records(ev.STORED)
    assert stored.data["case_number"] == CASE
    assert stored.data["court"] == "P0101"
    assert stored.data["evidence_id"] == evidence_id
    assert body["recorded"] == {"seq": stored.seq, "at": stored.at}

    got = await api.get(f"/api/evidence/{evidence_id}/content", "o1")
    assert got.status == 200
    assert await got.read() == PHOTO
    assert got.headers["Content-Type"] == "image/jpeg"
    assert got.headers["X-Content-Type-Options"] == "nosniff"
    assert got.headers["X-Evidence-SHA256"] == sha(PHOTO)
    assert got.headers["Content-Disposition"] == (
        "attachment; filename=\"IMG_0001.jpg\"; filename*=UTF-8''IMG_0001.jpg"
    )
    (download,) = await api.records(ev.DOWNLOADED)
    assert download.data == {
        "evidence_id": evidence_id,
        "case_number": CASE,
        "court": "P0101",
        "user": "o1",
        "role": "officer",
        "user_court": "P0101",
    }


async def test_a_retried_upload_is_the_same_item_and_the_same_bytes_elsewhere_a_new_one(
    api: Api,
) -> None:
    first = await uploaded(api, "o1")
    again = await api.upload("o1")
    body = await body_of(again)
    assert again.status == 200
    assert body["duplicate"] is True
    assert body["evidence_id"] == first["evidence_id"]
    assert body["recorded"] == first["recorded"]
    assert len(await api.records(ev.STORED)) == 1

    other_case = await uploaded(api, "o1", case="C-2")
    assert other_case["evidence_id"] != first["evidence_id"]
    assert len(await api.records(ev.STORED)) == 2
    # One copy of the bytes serves both items.
    assert api.files() == [sha(PHOTO)]


async def test_two_copies_of_one_upload_at_once_make_one_item(api: Api) -> None:
    a, b = await asyncio.gather(api.upload("o1"), api.upload("o1"))
    assert sorted([a.status, b.status]) == [200, 201]
    assert len(await api.records(ev.STORED)) == 1


async def test_the_same_bytes_for_the_same_case_from_another_officer_conflict(api: Api) -> None:
    await uploaded(api, "o1")
    resp = await api.upload("o2")
    assert resp.status == 409
    assert (await body_of(resp))["error"] == "conflict"
    (rejected,) = await api.records(ev.REJECTED)
    assert (rejected.data["reason"], rejected.data["user"]) == ("already_recorded", "o2")
    assert len(await api.records(ev.STORED)) == 1


async def test_a_streamed_body_without_content_length_is_stored(api: Api) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(data), 100_000):
            yield data[i : i + 100_000]

    body = await uploaded(
        api, "o1", chunks(), sha256=sha(data), kind="video", content_type="video/mp4"
    )
    assert body["size"] == len(data)
    assert (api.dir / sha(data)).read_bytes() == data


# --- refusals ----------------------------------------------------------------------------


async def test_a_hash_mismatch_is_refused_with_422_recorded_and_leaves_nothing(api: Api) -> None:
    declared = sha(b"something else")
    resp = await api.upload("o1", sha256=declared)
    body = await body_of(resp)
    assert resp.status == 422
    assert (body["error"], body["field"]) == ("hash_mismatch", "sha256")
    assert api.files() == []
    assert await api.records(ev.STORED) == []
    (rejected,) = await api.records(ev.REJECTED)
    assert rejected.data["reason"] == "hash_mismatch"
    assert rejected.data["client_sha256"] == declared
    assert rejected.data["sha256"] == sha(PHOTO)
    assert rejected.data["evidence_id"] == ev.evidence_id_for(CASE, declared)
    assert (rejected.data["case_number"], rejected.data["court"]) == (CASE, "P0101")
    listed = await api.get(f"/api/evidence?case={CASE}", "o1")
    assert (await body_of(listed))["items"] == []


async def test_an_oversize_upload_with_its_length_declared_is_refused_with_413(
    start: Any,
) -> None:
    api: Api = await start(evidence={"max_upload_bytes": 4096})
    resp = await api.upload("o1")
    body = await body_of(resp)
    assert resp.status == 413
    assert (body["error"], body["field"]) == ("too_large", "body")
    (rejected,) = await api.records(ev.REJECTED)
    assert (rejected.data["reason"], rejected.data["size"]) == ("too_large", len(PHOTO))
    assert api.files() == []


async def test_an_oversize_streamed_upload_is_cut_off_with_413_and_leaves_nothing(
    start: Any,
) -> None:
    api: Api = await start(evidence={"max_upload_bytes": 1024 * 1024})
    sent = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal sent
        block = b"x" * 65536
        while sent < 64 * 1024 * 1024:
            sent += len(block)
            yield block

    resp = await api.upload("o1", endless(), sha256="ab" * 32)
    assert resp.status == 413
    assert resp.headers.get("Connection", "").lower() == "close"
    # The server stopped reading long before the client's 64 MiB were through.
    assert sent < 32 * 1024 * 1024
    (rejected,) = await api.records(ev.REJECTED)
    assert rejected.data["reason"] == "too_large"
    assert rejected.data["size"] > 1024 * 1024
    assert api.files() == []


async def test_a_trickling_upload_is_refused_408_recorded_and_leaves_nothing(
    start: Any,
) -> None:
    """64 KiB/s asked after a 0.3 s grace; the client sends 1 KiB every 0.2 s (5 KiB/s)."""
    api: Api = await start(
        evidence={"upload_min_bytes_per_s": 65536, "upload_grace_s": 0.3, "upload_max_s": 60.0}
    )
    sent = 0

    async def trickle() -> AsyncIterator[bytes]:
        nonlocal sent
        for _ in range(100):
            sent += 1024
            yield b"t" * 1024
            await asyncio.sleep(0.2)

    began = time.monotonic()
    resp = await api.upload("o1", trickle(), sha256="ab" * 32)
    assert resp.status == 408
    assert time.monotonic() - began < 5.0
    body = await body_of(resp)
    assert (body["error"], body["field"]) == ("too_slow", "body")
    assert "bytes a second" in body["reason"]
    (rejected,) = await api.records(ev.REJECTED)
    assert rejected.data["reason"] == "too_slow"
    assert 0 < rejected.data["size"] <= sent < 100 * 1024
    assert api.files() == []


async def test_a_stalled_upload_is_refused_408(start: Any) -> None:
    """Headers and a first piece, then nothing: the grace runs out and the rate with it."""
    api: Api = await start(evidence={"upload_min_bytes_per_s": 1024, "upload_grace_s": 0.5})

    async def stall() -> AsyncIterator[bytes]:
        yield b"s" * 100
        await asyncio.sleep(30)
        yield b"s"

    began = time.monotonic()
    resp = await api.upload("o1", stall(), sha256="ab" * 32)
    assert resp.status == 408
    assert time.monotonic() - began < 5.0


async def test_an_upload_that_keeps_up_but_takes_too_long_is_refused_408(start: Any) -> None:
    api: Api = await start(
        evidence={"upload_min_bytes_per_s": 1, "upload_grace_s": 0.0, "upload_max_s": 0.6}
    )

    async def steady() -> AsyncIterator[bytes]:
        for _ in range(40):
            yield b"k" * 65536
            await asyncio.sleep(0.05)

    resp = await api.upload("o1", steady(), sha256="ab" * 32)
    assert resp.status == 408
    assert "within 0.6 s" in (await body_of(resp))["reason"]
    assert api.files() == []


async def test_with_expect_100_continue_an_oversize_body_is_refused_before_it_is_sent(
    start: Any,
) -> None:
    api: Api = await start(evidence={"max_upload_bytes": 4096})
    consumed = False

    async def body() -> AsyncIterator[bytes]:
        nonlocal consumed
        consumed = True
        yield PHOTO

    resp = await api.upload(
        "o1",
        body(),
        sha256=sha(PHOTO),
        headers={"Content-Length": str(len(PHOTO))},
        expect100=True,
    )
    assert resp.status == 413
    assert consumed is False
    assert len(await api.records(ev.REJECTED)) == 1


async def test_with_expect_100_continue_a_good_upload_goes_through(api: Api) -> None:
    resp = await api.upload("o1", expect100=True)
    assert resp.status == 201


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"case": None}, "case"),
        ({"kind": "sketch"}, "kind"),
        ({"sha256": "xyz"}, "sha256"),
        ({"capture_time": "noon"}, "capture_time"),
        ({"lat": "12"}, "lon"),
        ({"colour": "red"}, "colour"),
    ],
)
async def test_bad_metadata_is_refused_with_400_naming_the_field(
    api: Api, params: dict[str, str | None], field: str
) -> None:
    resp = await api.upload("o1", query=params)
    body = await body_of(resp)
    assert resp.status == 400
    assert (body["error"], body["field"]) == ("bad_request", field)
    assert api.files() == []


async def test_an_empty_body_is_refused_with_400(api: Api) -> None:
    resp = await api.upload("o1", b"")
    assert resp.status == 400
    assert (await body_of(resp))["field"] == "body"
    assert api.files() == []


async def test_a_photo_with_a_video_content_type_is_refused(api: Api) -> None:
    resp = await api.upload("o1", content_type="video/mp4")
    assert resp.status == 400
    assert (await body_of(resp))["field"] == "content-type"


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer not-a-token"},
        {"Authorization": "Basic bzE6cHc="},
    ],
)
async def test_without_a_valid_bearer_token_every_endpoint_answers_401(
    api: Api, headers: dict[str, str]
) -> None:
    evidence_id = ev.evidence_id_for(CASE, sha(PHOTO))
    responses = [
        await api.upload(None, headers=headers),
        await api.http.get(f"/api/evidence?case={CASE}", headers=headers),
        await api.http.get(f"/api/evidence/{evidence_id}", headers=headers),
        await api.http.get(f"/api/evidence/{evidence_id}/content", headers=headers),
        await api.http.post(
            f"/api/evidence/{evidence_id}/corrections", data=b"{}", headers=headers
        ),
    ]
    for resp in responses:
        assert resp.status == 401
        assert resp.headers["WWW-Authenticate"] == "Bearer"
        assert (await body_of(resp))["error"] == "unauthorized"
    assert api.files() == []


@pytest.mark.parametrize("role", ["supervisor", "admin", "auditor"])
async def test_only_officers_and_operators_may_upload(api: Api, role: str) -> None:
    resp = await api.upload("x1", role=role, court="P")
    assert resp.status == 403
    assert (await body_of(resp))["error"] == "forbidden"
    assert api.files() == []


async def test_an_operator_may_upload_a_snapshot(api: Api) -> None:
    body = await uploaded(api, "op1", role="operator")
    assert (body["uploader"], body["court"]) == ("op1", "P0101")


# --- file names ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("../../../../etc/passwd", "passwd"),
        ("..\\..\\boot.ini", "boot.ini"),
        ("/tmp/evil.jpg", "evil.jpg"),
        ("..", "unnamed"),
        ("x.jpg\r\nX-Injected: yes", "x.jpgX-Injected: yes"),
        ("现场 照片.jpg", "现场 照片.jpg"),
    ],
)
async def test_file_names_with_paths_are_only_metadata_and_never_reach_the_disk(
    api: Api, tmp_path: Path, raw: str, clean: str
) -> None:
    body = await uploaded(api, "o1", file_name=raw)
    assert body["file_name"] == clean
    assert api.files() == [sha(PHOTO)]
    # Nothing was created anywhere under the test's directory but the data dir's own files.
    assert stray_files(tmp_path) == []
    got = await api.get(f"/api/evidence/{body['evidence_id']}/content", "o1")
    assert got.status == 200
    assert "X-Injected" not in got.headers
    disposition = got.headers["Content-Disposition"]
    assert "/" not in disposition.split("filename*=")[0]
    assert "\r" not in disposition
    assert "\n" not in disposition


def stray_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name in ("passwd", "boot.ini", "evil.jpg")]


# --- authorisation -------------------------------------------------------------------------

# (user, role, court) -> the uploaders whose items they may see.
READERS: list[tuple[str, str, str, set[str]]] = [
    ("o1", "officer", "P0101", {"o1"}),
    ("o2", "officer", "P0101", {"o2"}),
    ("o9", "officer", "P0101", set()),
    ("op1", "operator", "P0101", {"o1", "o2"}),
    ("op2", "operator", "P0102", set()),
    ("op3", "operator", "P01", set()),
    ("s1", "supervisor", "P01", {"o1", "o2"}),
    ("s2", "supervisor", "P02", {"o3"}),
    ("a1", "admin", "P", {"o1", "o2", "o3"}),
    ("au1", "auditor", "P0201", {"o1", "o2", "o3"}),
]


async def test_the_authorisation_matrix_for_listing_reading_and_downloading(api: Api) -> None:
    """Officers see their own items, operators their court, supervisors and admins their
    subtree, auditors everything; each read and download is recorded; an item out of scope
    is answered 404, exactly like one that does not exist."""
    items: dict[str, str] = {}
    # A number naming no configured court, so that two courts may each have a case of it.
    case = UNCODED_CASE
    for uploader, court in (("o1", "P0101"), ("o2", "P0101"), ("o3", "P0201")):
        data = uploader.encode() * 100
        body = await uploaded(api, uploader, data, court=court, case=case)
        items[uploader] = body["evidence_id"]

    for user, role, court, visible in READERS:
        listed = await api.get(f"/api/evidence?case={case}", user, role, court)
        assert listed.status == 200
        got = {i["uploader"] for i in (await body_of(listed))["items"]}
        assert got == visible, (user, role, court)
        for uploader, evidence_id in items.items():
            expected = 200 if uploader in visible else 404
            one = await api.get(f"/api/evidence/{evidence_id}", user, role, court)
            assert one.status == expected, (user, uploader)
            content = await api.get(f"/api/evidence/{evidence_id}/content", user, role, court)
            assert content.status == expected, (user, uploader)
            if expected == 200:
                assert await content.read() == uploader.encode() * 100
            else:
                never = ev.evidence_id_for(CASE, sha(b"never uploaded"))
                missing = await api.get(f"/api/evidence/{never}", user, role, court)
                assert (missing.status, await body_of(missing)) == (404, await body_of(one))
        # Listing and reading record one evidence_read each per visible item; downloads one
        # evidence_downloaded each; refusals record nothing.
        reads = await api.records(ev.READ, user=user)
        assert sorted(r.data["evidence_id"] for r in reads) == sorted(
            [items[u] for u in visible] * 2
        )
        assert {r.data["via"] for r in reads} <= {"list", "item"}
        downloads = await api.records(ev.DOWNLOADED, user=user)
        assert sorted(d.data["evidence_id"] for d in downloads) == sorted(items[u] for u in visible)


async def test_an_unknown_item_is_404_and_a_malformed_id_too(api: Api) -> None:
    unknown = ev.evidence_id_for("nothing", "00" * 32)
    for path in (f"/api/evidence/{unknown}", f"/api/evidence/{unknown}/content"):
        resp = await api.get(path, "au1", "auditor", "P")
        assert resp.status == 404
        assert (await body_of(resp))["error"] == "not_found"
    resp = await api.get("/api/evidence/../../etc/passwd", "au1", "auditor", "P")
    assert resp.status == 404


async def test_listing_needs_a_case_and_nothing_else(api: Api) -> None:
    assert (await api.get("/api/evidence", "o1")).status == 400
    resp = await api.get(f"/api/evidence?case={CASE}&all=1", "o1")
    assert resp.status == 400
    assert (await body_of(resp))["field"] == "all"


# --- the device clock ------------------------------------------------------------------------


async def signed_in(api: Api, user: str, device: str, offset_ms: float) -> Client:
    ws = await api.http.ws_connect("/ws", params={"token": api.token(user), "device": device})
    client = Client(ws, "json", user)
    client.welcome = await client.expect("welcome")
    ack = await client.request(
        "heartbeat", reply="heartbeat_ack", device_time=time.time() * 1000 + offset_ms
    )
    assert abs(ack["offset_ms"] - offset_ms) < 1000
    return client


@pytest.mark.parametrize(
    ("device", "offset_ms", "unverified", "reason"),
    [
        ("phone-7", 0.0, False, None),
        ("phone-7", 30_000.0, True, "offset_over_threshold"),
        ("phone-7", -30_000.0, True, "offset_over_threshold"),
        ("tablet-2", 0.0, True, "other_device"),
    ],
)
async def test_the_clock_offset_of_the_latest_heartbeat_decides_whether_time_is_verified(
    api: Api, device: str, offset_ms: float, unverified: bool, reason: str | None
) -> None:
    client = await signed_in(api, "o1", device, offset_ms)
    body = await uploaded(api, "o1", device="phone-7")
    assert body["time_unverified"] is unverified
    assert body["time_unverified_reason"] == reason
    if reason != "other_device":
        assert abs(body["clock_offset_ms"] - offset_ms) < 1000
    else:
        assert body["clock_offset_ms"] is None
    (stored,) = await api.records(ev.STORED)
    assert stored.data["time_unverified"] is unverified
    await client.close()


# --- corrections -------------------------------------------------------------------------------


async def test_a_correction_is_a_new_record_over_an_untouched_original(api: Api) -> None:
    item = await uploaded(api, "o1")
    evidence_id = item["evidence_id"]
    resp = await correct(
        api,
        evidence_id,
        "o1",
        "officer",
        "P0101",
        {"changes": {"case_number": "C-9", "position": None}, "reason": "wrong case"},
    )
    body = await body_of(resp)
    assert resp.status == 201, body
    assert body["case_number"] == "C-9"
    assert body["recorded"] == item["recorded"]
    (entry,) = body["corrections"]
    # The case's court is derived from its number: C-9 names no court, so it is the item's.
    assert entry["changes"] == {"case_number": "C-9", "position": None, "case_court": "P0101"}
    assert entry["previous"] == {"case_number": CASE, "position": None, "case_court": "P0101"}
    assert (entry["user"], entry["reason"]) == ("o1", "wrong case")

    # The original record is as it was; the correction is a record of its own.
    (stored,) = await api.records(ev.STORED)
    assert stored.data["case_number"] == CASE
    (corrected,) = await api.records(ev.CORRECTED)
    assert corrected.data["case_number"] == "C-9"
    assert corrected.seq > stored.seq

    # The item has moved: listed under its new case, no longer under the old one.
    old = await body_of(await api.get(f"/api/evidence?case={CASE}", "o1"))
    new = await body_of(await api.get("/api/evidence?case=C-9", "o1"))
    assert old["items"] == []
    assert [i["evidence_id"] for i in new["items"]] == [evidence_id]
    # The bytes are untouched.
    got = await api.get(f"/api/evidence/{evidence_id}/content", "o1")
    assert await got.read() == PHOTO


@pytest.mark.parametrize(
    ("user", "role", "court", "status"),
    [
        ("o1", "officer", "P0101", 201),
        ("o2", "officer", "P0101", 404),
        ("o1", "officer", "P0201", 404),
        ("op1", "operator", "P0101", 403),
        ("s1", "supervisor", "P01", 201),
        ("s2", "supervisor", "P02", 404),
        ("au1", "auditor", "P", 403),
    ],
)
async def test_who_may_correct(api: Api, user: str, role: str, court: str, status: int) -> None:
    item = await uploaded(api, "o1")
    change = {"changes": {"kind": "document"}, "reason": "it is a scan"}
    resp = await correct(api, item["evidence_id"], user, role, court, change)
    assert resp.status == status
    assert len(await api.records(ev.CORRECTED)) == (1 if status == 201 else 0)


async def test_the_same_user_id_in_another_court_is_another_uploader(api: Api) -> None:
    """ "o1" of P0201 neither sees "o1" of P0101's item nor passes for its uploader: the
    same bytes for P0101's case are refused as for a case that does not exist (404), and
    for a number naming no court they are P0201's own case, another item (201)."""
    item = await uploaded(api, "o1", court="P0101")
    other = await api.get(f"/api/evidence/{item['evidence_id']}", "o1", "officer", "P0201")
    assert other.status == 404
    listed = await body_of(await api.get(f"/api/evidence?case={CASE}", "o1", "officer", "P0201"))
    assert listed["items"] == []
    again = await api.upload("o1", court="P0201")
    assert again.status == 404
    assert (await body_of(again))["error"] == "not_found"
    assert len(await api.records(ev.STORED)) == 1

    mine = await uploaded(api, "o1", court="P0101", case=UNCODED_CASE)
    theirs = await uploaded(api, "o1", court="P0201", case=UNCODED_CASE)
    assert mine["evidence_id"] != theirs["evidence_id"]
    assert (mine["case_court"], theirs["case_court"]) == ("P0101", "P0201")


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "GZIP, identity"])
@pytest.mark.parametrize("expect100", [False, True])
async def test_a_compressed_upload_is_refused_415_and_nothing_is_stored(
    api: Api, encoding: str, expect100: bool
) -> None:
    resp = await api.upload("o1", headers={"Content-Encoding": encoding}, expect100=expect100)
    assert resp.status == 415
    body = await body_of(resp)
    assert (body["error"], body["field"]) == ("unsupported_encoding", "content-encoding")
    assert await api.records(ev.STORED) == []
    assert api.files() == []


async def test_an_identity_content_encoding_is_the_original_bytes(api: Api) -> None:
    await uploaded(api, "o1", headers={"Content-Encoding": "identity"})


async def test_a_bad_correction_is_refused_naming_the_field(api: Api) -> None:
    item = await uploaded(api, "o1")
    resp = await correct(
        api,
        item["evidence_id"],
        "o1",
        "officer",
        "P0101",
        {"changes": {"sha256": "00" * 32}, "reason": "r"},
    )
    assert resp.status == 400
    resp = await correct(api, item["evidence_id"], "o1", "officer", "P0101", b"x" * 20000)
    assert resp.status == 413
    assert await api.records(ev.CORRECTED) == []


# --- start-up ------------------------------------------------------------------------------------


async def test_partial_files_left_by_a_crash_are_swept_at_start(start: Any, tmp_path: Path) -> None:
    config = make_config(tmp_path / "var")
    directory = evidence_dir(config)
    directory.mkdir(parents=True)
    leftover = directory / f"{PARTIAL_PREFIX}deadbeef"
    leftover.write_bytes(b"half an upload")
    complete = directory / sha(b"kept")
    complete.write_bytes(b"kept")
    api: Api = await start()
    assert api.files() == [sha(b"kept")]


async def test_an_upload_the_client_abandons_half_way_leaves_no_item_and_no_file(
    api: Api,
) -> None:
    """aiohttp cancels the handler when the connection drops; the partial file goes with it."""
    data = os.urandom(4 * 1024 * 1024)
    url = api.http.make_url("/api/evidence")
    query = (
        f"case=C-1&kind=video&sha256={sha(data)}&device=d&capture_time={CAPTURE_MS}&file_name=v.mp4"
    )
    head = (
        f"POST {url.path}?{query} HTTP/1.1\r\nHost: {url.host}:{url.port}\r\n"
        f"Authorization: Bearer {api.token('o1')}\r\nContent-Type: video/mp4\r\n"
        f"Content-Length: {len(data)}\r\n\r\n"
    ).encode()
    _, writer = await asyncio.open_connection(url.host, url.port)
    writer.write(head + data[: 2 * 1024 * 1024])
    await writer.drain()
    await wait_until(lambda: any(n.startswith(PARTIAL_PREFIX) for n in api.files()))
    writer.close()
    await writer.wait_closed()
    await wait_until(lambda: api.files() == [])
    assert await api.records(ev.STORED) == []
