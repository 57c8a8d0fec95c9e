"""Range requests on the evidence content route over HTTP (a browser's <video> seeking in a
recording): 206 with Content-Range and exactly those bytes; a full download still sent whole
and hashed; a range of an original that no longer has its recorded size refused before any
byte and any record; a range not served answered 416 with the file's size; the player's
cookie (the token for a <video src>) read by the content route alone; the player's view,
recorded once however many ranges it streams; every answer as commandcenter/openapi.json
documents it."""

from __future__ import annotations

import os
from pathlib import Path

import aiohttp
import pytest
from pytest_aiohttp import AiohttpClient

from commandcenter.evidence_api import PLAYER, PLAYER_COOKIE
from commandcenter.keys import EVIDENCE
from sessions import evidence as ev
from tests.evidencehelpers import Api, body_of, sha, start_api, uploaded
from tests.test_openapi import Conformance

CONTENT = "/api/evidence/{evidence_id}/content"
VIEW = "/api/evidence/{evidence_id}/view"


@pytest.fixture
async def api(aiohttp_client: AiohttpClient, tmp_path: Path) -> Api:
    return await start_api(aiohttp_client, tmp_path)


async def a_recording(api: Api, size: int = 3 * 1024 * 1024 + 5) -> tuple[str, bytes]:
    data = os.urandom(size)
    item = await uploaded(api, "o1", data, sha256=sha(data), kind="video", content_type="video/mp4")
    return f"/api/evidence/{item['evidence_id']}/content", data


async def ranged(api: Api, url: str, header: str) -> aiohttp.ClientResponse:
    headers = {**api.auth("o1"), "Range": header}
    resp: aiohttp.ClientResponse = await api.http.get(url, headers=headers)
    return resp


@pytest.mark.parametrize(
    ("header", "start", "end"),
    [("bytes=0-99", 0, 99), ("bytes=2097152-", 2097152, None), ("bytes=-17", -17, None)],
)
async def test_a_range_is_206_with_exactly_those_bytes(
    api: Api, header: str, start: int, end: int | None
) -> None:
    url, data = await a_recording(api)
    resp = await ranged(api, url, header)
    await Conformance().check("GET", CONTENT, resp)
    expected = data[start : None if end is None else end + 1]
    first = start % len(data)
    assert resp.status == 206
    assert resp.headers["Content-Range"] == f"bytes {first}-{first + len(expected) - 1}/{len(data)}"
    assert int(resp.headers["Content-Length"]) == len(expected)
    assert resp.headers["Accept-Ranges"] == "bytes"
    assert resp.headers["X-Evidence-SHA256"] == sha(data)
    assert await resp.read() == expected


async def test_each_request_whole_or_part_is_recorded_as_a_download(api: Api) -> None:
    url, _ = await a_recording(api, 1000)
    await (await ranged(api, url, "bytes=0-9")).read()
    await (await api.get(url, "o1")).read()
    assert len(await api.records(ev.DOWNLOADED)) == 2


async def test_a_full_download_is_still_whole_and_hashed(api: Api) -> None:
    url, data = await a_recording(api)
    resp = await api.get(url, "o1")
    await Conformance().check("GET", CONTENT, resp)
    assert (resp.status, resp.headers["Accept-Ranges"]) == (200, "bytes")
    assert await resp.read() == data
    # A flipped bit still stops the full download short.
    path = api.dir / sha(data)
    os.chmod(path, 0o600)
    changed = bytearray(data)
    changed[-1] ^= 1
    path.write_bytes(bytes(changed))
    resp = await api.get(url, "o1")
    with pytest.raises(aiohttp.ClientPayloadError):
        await resp.read()
    assert api.app[EVIDENCE].alarms == 1


async def test_a_range_of_an_original_of_the_wrong_size_is_refused_before_any_byte(
    api: Api,
) -> None:
    url, data = await a_recording(api, 5000)
    path = api.dir / sha(data)
    os.chmod(path, 0o600)
    path.write_bytes(data[:-10])
    resp = await ranged(api, url, "bytes=0-99")
    await Conformance().check("GET", CONTENT, resp)
    body = await body_of(resp)
    assert (resp.status, body["error"]) == (500, "original_corrupt")
    assert api.app[EVIDENCE].alarms == 1
    assert await api.records(ev.DOWNLOADED) == []


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        ("bytes=5000-", "the range starts past the end (5000 bytes)"),
        ("bytes=0-1,4-5", "one range at a time"),
        ("bytes=x-y", "a range is bytes=START-END, START- or -LENGTH"),
    ],
)
async def test_a_range_not_served_is_416_with_the_size_and_nothing_recorded(
    api: Api, header: str, reason: str
) -> None:
    url, _ = await a_recording(api, 5000)
    resp = await ranged(api, url, header)
    await Conformance().check("GET", CONTENT, resp)
    body = await body_of(resp)
    assert (resp.status, body["error"], body["reason"], body["field"]) == (
        416,
        "range_not_satisfiable",
        reason,
        "range",
    )
    assert resp.headers["Content-Range"] == "bytes */5000"
    assert await api.records(ev.DOWNLOADED) == []


async def test_another_unit_is_ignored_and_the_whole_original_sent(api: Api) -> None:
    url, data = await a_recording(api, 5000)
    resp = await ranged(api, url, "items=0-1")
    assert resp.status == 200
    assert await resp.read() == data


# --- the player's cookie (a <video src> cannot send the Authorization header) ----------------


async def test_the_player_cookie_holds_the_token_httponly_scoped_and_strict(api: Api) -> None:
    resp = await api.http.post(PLAYER, headers=api.auth("o1"))
    # No body to check against the document (Conformance reads one): its status is there.
    assert "204" in Conformance().doc["paths"][PLAYER]["post"]["responses"]
    assert resp.status == 204
    morsel = resp.cookies[PLAYER_COOKIE]
    assert morsel.value == api.token("o1")
    assert morsel["httponly"] is True
    assert (morsel["path"], morsel["samesite"]) == ("/api/evidence", "Strict")
    assert 0 < int(morsel["max-age"]) <= 3600


async def test_the_content_route_reads_the_cookie_and_serves_ranges_with_it(api: Api) -> None:
    url, data = await a_recording(api, 5000)
    cookie = {"Cookie": f"{PLAYER_COOKIE}={api.token('o1')}"}
    api.http.session.cookie_jar.clear()
    resp = await api.http.get(url, headers={**cookie, "Range": "bytes=100-199"})
    await Conformance().check("GET", CONTENT, resp)
    assert resp.status == 206
    assert await resp.read() == data[100:200]


async def test_no_other_route_takes_the_cookie_and_a_bad_one_is_401(api: Api) -> None:
    url, _ = await a_recording(api, 5000)
    api.http.session.cookie_jar.clear()
    cookie = {"Cookie": f"{PLAYER_COOKIE}={api.token('o1')}"}
    item = url.removesuffix("/content")
    assert (await api.http.get(item, headers=cookie)).status == 401
    fix = {"changes": {"file_name": "x.mp4"}, "reason": "renamed"}
    corrected = await api.http.post(f"{item}/corrections", json=fix, headers=cookie)
    assert corrected.status == 401
    spoilt = {"Cookie": f"{PLAYER_COOKIE}=not.a.token"}
    resp = await api.http.get(url, headers=spoilt)
    await Conformance().check("GET", CONTENT, resp)
    assert resp.status == 401
    assert (await api.http.post(PLAYER)).status == 401


# --- the player's views: one record per look, not per range ------------------------------------


async def opened_view(api: Api, url: str, user: str = "o1") -> str:
    resp = await api.http.post(url.replace("/content", "/view"), headers=api.auth(user))
    await Conformance().check("POST", VIEW, resp)
    body = await body_of(resp)
    assert resp.status == 201, body
    assert resp.cookies[PLAYER_COOKIE].value == api.token(user)
    return str(body["view"])


async def player_range(api: Api, url: str, view: str, header: str) -> aiohttp.ClientResponse:
    """A <video>'s request: the cookie, no Authorization header, the view in the query."""
    cookie = {"Cookie": f"{PLAYER_COOKIE}={api.token('o1')}", "Range": header}
    resp: aiohttp.ClientResponse = await api.http.get(f"{url}?view={view}", headers=cookie)
    return resp


async def test_a_recording_played_in_ranges_is_recorded_once_as_a_view(api: Api) -> None:
    url, data = await a_recording(api, 5000)
    view = await opened_view(api, url)
    for header, part in (
        ("bytes=0-", data),
        ("bytes=4000-", data[4000:]),
        ("bytes=10-19", data[10:20]),
    ):
        resp = await player_range(api, url, view, header)
        await Conformance().check("GET", CONTENT, resp)
        assert (resp.status, await resp.read()) == (206, part)
    reads = await api.records(ev.READ, via="player")
    assert [(r.data["user"], r.data["view"]) for r in reads] == [("o1", view)]
    assert await api.records(ev.DOWNLOADED) == []


async def test_the_whole_original_is_a_download_even_in_a_view(api: Api) -> None:
    url, data = await a_recording(api, 5000)
    view = await opened_view(api, url)
    resp = await api.http.get(f"{url}?view={view}", headers=api.auth("o1"))
    assert (resp.status, await resp.read()) == (200, data)
    # Another unit than bytes is the whole original too.
    resp = await player_range(api, url, view, "items=0-1")
    assert (resp.status, await resp.read()) == (200, data)
    assert len(await api.records(ev.DOWNLOADED)) == 2


async def test_a_view_covers_its_own_item_and_user_only_and_an_unknown_one_is_a_download(
    api: Api,
) -> None:
    url, _ = await a_recording(api, 5000)
    other, _ = await a_recording(api, 4000)
    view = await opened_view(api, url)
    await (await player_range(api, other, view, "bytes=0-9")).read()
    headers = {**api.auth("op1", "operator"), "Range": "bytes=0-9"}
    await (await api.http.get(f"{url}?view={view}", headers=headers)).read()
    await (await player_range(api, url, "A" * 22, "bytes=0-9")).read()
    assert len(await api.records(ev.DOWNLOADED)) == 3


async def test_a_malformed_view_is_400_and_a_view_of_an_item_out_of_reach_is_refused(
    api: Api,
) -> None:
    url, _ = await a_recording(api, 5000)
    resp = await player_range(api, url, "no!", "bytes=0-9")
    await Conformance().check("GET", CONTENT, resp)
    body = await body_of(resp)
    assert (resp.status, body["field"]) == (400, "view")
    gone = "/api/evidence/ev-" + "0" * 32 + "/view"
    resp = await api.http.post(gone, headers=api.auth("o1"))
    await Conformance().check("POST", VIEW, resp)
    assert resp.status == 404
    elsewhere = await api.http.post(
        url.replace("/content", "/view"), headers=api.auth("o2", court="P0102")
    )
    await Conformance().check("POST", VIEW, elsewhere)
    assert elsewhere.status in (403, 404)
    assert await api.records(ev.READ, via="player") == []
