"""The event feed (issue 15), `GET /api/feed?after=<seq>`: the pure rules first (which fact
is in which court scope, the line format, `after`, the stream limits), then the real app on
real trace stores (SQLite, and PostgreSQL in a schema of its own): scope, resume, live
facts, limits, bad input, authentication, and a stream that ends when the server stops,
on SIGTERM too."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient
from hypothesis import given
from hypothesis import strategies as st
from pytest_aiohttp import AiohttpClient

from commandcenter.app import create_app
from commandcenter.config import Config
from commandcenter.keys import RECORDER, TRACE
from sessions import feed
from sessions.recorder import MemoryRecorder, TraceEvent
from sessions.trace import GENESIS_HASH, Link
from tests.conftest import make_config
from tests.test_serve import SCRIPT, cli_token, free_port, wait_exit, wait_healthy
from tests.tracehelpers import Backend, backend, make_backend
from tests.wsclient import token_for

# A shared fixture (tests.tracehelpers): each test on SQLite and on PostgreSQL.
__all__ = ["backend"]

T0 = 1_780_000_000.0
# How long a test waits for a line it expects.
WITHIN_S = 5.0


# --- pure: after ---------------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "value"), [(None, 0), ("0", 0), ("42", 42), (str(2**63), 2**63)])
def test_after_is_a_non_negative_integer_up_to_2_63(raw: str | None, value: int) -> None:
    assert feed.parse_after(raw) == value


@pytest.mark.parametrize(
    "raw", ["", "-1", "+1", "1.0", "1e3", " 1", "abc", "\uff11", "\u0661", str(2**63 + 1), "9" * 20]
)
def test_anything_else_is_refused(raw: str) -> None:
    with pytest.raises(feed.BadAfter):
        feed.parse_after(raw)


def _after(raw: str) -> int | feed.BadAfter:
    try:
        return feed.parse_after(raw)
    except feed.BadAfter as exc:
        return exc


@given(st.text(max_size=40))
def test_any_text_is_a_seq_or_refused(raw: str) -> None:
    parsed = _after(raw)
    if isinstance(parsed, int):
        assert raw.isascii()
        assert raw.isdigit()
        assert int(raw) == parsed <= feed.MAX_AFTER
    else:
        assert parsed.reason in ("must be a non-negative integer", f"must be at most {2**63}")


# --- pure: scope ---------------------------------------------------------------------------


def test_a_fact_is_in_the_scope_of_the_courts_it_names() -> None:
    p01 = feed.ScopeFilter({"P01", "P0101", "P0102"}, every_court=False)
    assert p01.admits("sign_in", {"user": "o1", "court": "P0101"})
    assert not p01.admits("sign_in", {"user": "o2", "court": "P0201"})
    # Evidence of another court moved into one of its cases.
    assert p01.admits("evidence_corrected", {"court": "P0201", "case_court": "P0101"})
    # A fact of no court is for those who see every court only.
    assert not p01.admits("server_started", {"node": "n1"})
    everyone = feed.ScopeFilter({"P", "P01"}, every_court=True)
    assert everyone.admits("server_started", {"node": "n1"})


def test_a_fact_about_a_call_or_conference_has_the_court_of_its_origin() -> None:
    p01 = feed.ScopeFilter({"P01", "P0101"}, every_court=False)
    answered = {"call": "c-1", "by": "op1"}
    # Not seen yet: the driver must look it up before the filter can decide.
    assert p01.unknown(answered) == (feed.Ref("call", "c-1"),)
    assert p01.admits("call_created", {"call": "c-1", "court": "P0101"})
    assert p01.unknown(answered) == ()
    assert p01.admits("call_answered", answered)

    assert p01.unknown({"conference": "m-1"}) == (feed.Ref("conference", "m-1"),)
    p01.learn(feed.Ref("conference", "m-1"), "P0201")
    assert not p01.admits("floor_granted", {"conference": "m-1", "user": "x"})
    # A site joining names the site's court, not the conference's: it teaches nothing.
    assert p01.admits("site_joined", {"conference": "m-2", "court": "P0101"})
    assert p01.unknown({"conference": "m-2"}) == (feed.Ref("conference", "m-2"),)
    # A call shown to a conference belongs to both.
    assert p01.admits("call_shared", {"conference": "m-1", "call": "c-1"})
    # An origin that is not in the trace: a fact of no court.
    p01.learn(feed.Ref("call", "c-9"), None)
    assert not p01.admits("call_answered", {"call": "c-9"})


def test_the_filter_forgets_the_least_recent_origins_beyond_its_bound() -> None:
    f = feed.ScopeFilter({"P0101"}, every_court=False, remember=2)
    for n in range(3):
        f.learn(feed.Ref("call", f"c-{n}"), "P0101")
    assert f.unknown({"call": "c-0"}) == (feed.Ref("call", "c-0"),)
    assert f.unknown({"call": "c-2"}) == ()


def test_origin_court_reads_only_the_record_that_creates_the_reference() -> None:
    ref = feed.Ref("conference", "m-1")
    assert feed.origin_court("conference_created", {"conference": "m-1", "court": "P01"}, ref)
    assert feed.origin_court("site_joined", {"conference": "m-1", "court": "P01"}, ref) is None
    assert feed.origin_court("conference_created", {"conference": "m-2", "court": "P"}, ref) is None


def test_a_fact_line_is_json_carrying_the_canonical_data_as_hashed() -> None:
    data = '{"court":"P0101","note":"现场 \\"quoted\\"","user":"o1"}'
    canonical = '{"at_us":1500000,"data":' + data + ',"kind":"sign_in","seq":7}'
    digest = hashlib.sha256(bytes.fromhex(GENESIS_HASH) + canonical.encode()).hexdigest()
    link = Link(7, 1_500_000, "sign_in", data, GENESIS_HASH, digest)
    line = feed.fact_line(link)
    assert line.endswith(b"\n")
    assert line.count(b"\n") == 1
    decoded = json.loads(line)
    assert decoded == {
        "seq": 7,
        "at_us": 1_500_000,
        "kind": "sign_in",
        "hash": digest,
        "prev_hash": GENESIS_HASH,
        "data": {"court": "P0101", "note": '现场 "quoted"', "user": "o1"},
    }
    # The data's bytes in the line are the hashed ones: a client checks the hash by hand.
    assert b'"data":' + data.encode() + b"}\n" in line
    assert feed.heartbeat_line(12) == b'{"heartbeat":12}\n'


def test_stream_slots_are_bounded_per_user_and_in_all() -> None:
    slots = feed.StreamSlots(total=3, per_user=2)
    a, b = ("P01", "s1"), ("P02", "s1")
    assert slots.take(a) is None
    assert slots.take(a) is None
    assert slots.take(a) == "too_many_streams_for_user"
    assert slots.take(b) is None
    assert slots.take(b) == "too_many_streams"
    slots.give_back(a)
    assert slots.take(b) is None
    assert slots.count == 3


# --- the real app ----------------------------------------------------------------------------


class Feed:
    """The real app on a real trace store, and the requests the tests make of it."""

    def __init__(self, http: TestClient[Any, Any], app: web.Application, config: Config) -> None:
        self.http = http
        self.app = app
        self.config = config

    def auth(self, user: str, role: str, court: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token_for(self.config, user, role, court)}"}

    async def open(
        self, user: str = "s1", role: str = "supervisor", court: str = "P01", **params: str
    ) -> ClientResponse:
        return await self.http.get("/api/feed", params=params, headers=self.auth(user, role, court))

    async def record(self, *events: tuple[str, dict[str, Any]]) -> int:
        """Append facts through the app's recorder; the seq of the last."""
        await self.app[RECORDER].record([TraceEvent(k, T0, d) for k, d in events])
        head = await self.app[TRACE].head()
        return head.seq


async def read_lines(
    resp: ClientResponse, until: Callable[[list[dict[str, Any]]], bool], within: float = WITHIN_S
) -> list[dict[str, Any]]:
    """The stream's lines, read until `until(lines)` holds; fails after `within` seconds."""
    lines: list[dict[str, Any]] = []
    async with asyncio.timeout(within):
        while not until(lines):
            raw = await resp.content.readline()
            assert raw, f"the stream ended; got {lines}"
            lines.append(json.loads(raw))
    return lines


def facts(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The fact lines, but for the stream's own `feed_opened` (a fact of the caller's court,
    so in the stream too: `test_opening_a_stream_is_recorded`)."""
    return [line for line in lines if "seq" in line and line["kind"] != feed.FEED_OPENED]


def has_seq(seq: int) -> Callable[[list[dict[str, Any]]], bool]:
    """Read until a line (a fact or heartbeat) has reached `seq`."""
    return lambda lines: any(line.get("seq", line.get("heartbeat", -1)) >= seq for line in lines)


async def start_feed(
    aiohttp_client: AiohttpClient, tmp_path: Path, backend: Backend, **feed_settings: Any
) -> Feed:
    settings = {"poll_s": 0.05, "heartbeat_s": 0.2, **feed_settings}
    config = backend.configure(make_config(tmp_path / "var", feed=settings))
    app = create_app(config)
    return Feed(await aiohttp_client(app), app, config)


@pytest.fixture
async def api(backend: Backend, aiohttp_client: AiohttpClient, tmp_path: Path) -> Feed:
    # The backend first, so that it is dropped after the app has stopped writing to it.
    return await start_feed(aiohttp_client, tmp_path, backend)


@pytest.fixture
async def sqlite_api(aiohttp_client: AiohttpClient, tmp_path: Path) -> Feed:
    return await start_feed(aiohttp_client, tmp_path, make_backend("sqlite", tmp_path))


# Facts of two courts: a sign-in, a call with a fact that names only the call, a conference
# with one that names only the conference.
HISTORY: tuple[tuple[str, dict[str, Any]], ...] = (
    ("sign_in", {"user": "o1", "role": "officer", "court": "P0101"}),
    ("sign_in", {"user": "o2", "role": "officer", "court": "P0201"}),
    ("call_created", {"call": "c-a", "court": "P0101", "officer": "o1"}),
    ("call_created", {"call": "c-b", "court": "P0201", "officer": "o2"}),
    ("call_answered", {"call": "c-a", "by": "op1"}),
    ("call_answered", {"call": "c-b", "by": "op2"}),
    ("conference_created", {"conference": "m-b", "court": "P02", "host": "s2"}),
    ("floor_granted", {"conference": "m-b", "user": "o2"}),
)


async def test_a_supervisor_gets_the_facts_of_their_courts_and_never_anothers(api: Feed) -> None:
    head = await api.record(*HISTORY)
    resp = await api.open("s1", "supervisor", "P01")
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "application/x-ndjson"
    lines = await read_lines(resp, has_seq(head))
    assert lines[0] == {"heartbeat": 0}
    got = [(f["kind"], f["data"].get("call") or f["data"].get("user")) for f in facts(lines)]
    assert got == [("sign_in", "o1"), ("call_created", "c-a"), ("call_answered", "c-a")]
    seqs = [f["seq"] for f in facts(lines)]
    assert seqs == sorted(seqs)
    resp.close()

    other = await api.open("s2", "supervisor", "P02")
    lines = await read_lines(other, has_seq(head))
    assert {f["data"].get("court") for f in facts(lines)} <= {"P0201", "P02", None}
    assert [f["kind"] for f in facts(lines)] == [
        "sign_in",
        "call_created",
        "call_answered",
        "conference_created",
        "floor_granted",
    ]
    other.close()


async def test_an_auditor_gets_every_fact_including_those_of_no_court(api: Feed) -> None:
    head = await api.record(*HISTORY)
    resp = await api.open("au1", "auditor", "P")
    lines = await read_lines(resp, has_seq(head))
    kinds = [f["kind"] for f in facts(lines)]
    # The server's own start belongs to no court.
    assert kinds[0] == "server_started"
    assert [f["seq"] for f in facts(lines)] == list(range(1, head + 1))
    resp.close()


async def test_a_client_resumes_after_its_last_seq(api: Feed) -> None:
    head = await api.record(*HISTORY)
    first = await api.open()
    seen = facts(await read_lines(first, has_seq(head)))
    first.close()
    last = seen[0]["seq"]
    again = await api.open(after=str(last))
    lines = await read_lines(again, has_seq(head))
    assert lines[0] == {"heartbeat": last}
    assert facts(lines) == seen[1:]
    again.close()


async def test_a_call_created_before_after_still_places_its_later_facts(api: Feed) -> None:
    """Resuming past a call's creation, the stream looks up the call's court in the trace."""
    created = await api.record(*HISTORY[:4])
    resp = await api.open(after=str(created))
    head = await api.record(*HISTORY[4:])
    lines = await read_lines(resp, has_seq(head))
    assert [(f["kind"], f["data"]["call"]) for f in facts(lines)] == [("call_answered", "c-a")]
    resp.close()


async def test_new_facts_arrive_as_they_are_recorded(api: Feed) -> None:
    resp = await api.open()
    start = await read_lines(resp, lambda lines: bool(lines))
    assert "heartbeat" in start[0]
    await api.record(("sign_in", {"user": "o7", "role": "officer", "court": "P0102"}))
    await api.record(("sign_in", {"user": "o8", "role": "officer", "court": "P0201"}))
    last = await api.record(("sign_out", {"user": "o7", "role": "officer", "court": "P0102"}))
    lines = await read_lines(resp, has_seq(last))
    live = [(f["kind"], f["data"]["user"]) for f in facts(lines)]
    assert live == [("sign_in", "o7"), ("sign_out", "o7")]
    resp.close()


async def test_opening_a_stream_is_recorded(sqlite_api: Feed) -> None:
    resp = await sqlite_api.open("s1", "supervisor", "P01", after="0")
    assert resp.status == 200
    (opened,) = await sqlite_api.app[TRACE].find(kinds=[feed.FEED_OPENED])
    assert opened.data == {
        "user": "s1",
        "role": "supervisor",
        "court": "P01",
        "courts": ["P01", "P0101", "P0102"],
        "after": 0,
    }
    # It is a fact of the caller's court like any other: the stream carries it too.
    lines = await read_lines(resp, has_seq(opened.seq))
    assert lines[-1]["kind"] == feed.FEED_OPENED
    resp.close()


async def test_a_quiet_stream_sends_heartbeats_naming_the_last_seq_examined(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    api = await start_feed(
        aiohttp_client, tmp_path, make_backend("sqlite", tmp_path), heartbeat_s=0.2
    )
    resp = await api.open("s2", "supervisor", "P02")
    # Facts of another court only: nothing to send, but the heartbeat moves past them.
    head = await api.record(("sign_in", {"user": "o1", "role": "officer", "court": "P0101"}))
    lines = await read_lines(resp, lambda ls: {"heartbeat": head} in ls)
    assert all("heartbeat" in line or line["kind"] == feed.FEED_OPENED for line in lines)
    resp.close()


async def test_streams_are_limited_per_user_and_in_all(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    api = await start_feed(
        aiohttp_client,
        tmp_path,
        make_backend("sqlite", tmp_path),
        max_per_user=2,
        max_connections=3,
    )
    a1, a2 = await api.open("s1"), await api.open("s1")
    assert (a1.status, a2.status) == (200, 200)
    third = await api.open("s1")
    assert third.status == 429
    assert (await third.json())["error"] == "too_many_streams_for_user"
    assert third.headers["Retry-After"] == "5"
    # The same user id in another court is another user.
    b1 = await api.open("s1", "supervisor", "P02")
    assert b1.status == 200
    over = await api.open("au1", "auditor", "P")
    assert over.status == 429
    assert await over.json() == {
        "error": "too_many_streams",
        "reason": "too many feed streams are open on this server",
    }
    # A stream that ends gives its slot back.
    a1.close()
    deadline = time.monotonic() + WITHIN_S
    while (again := await api.open("au1", "auditor", "P")).status == 429:
        assert time.monotonic() < deadline, "the slot was never given back"
        await asyncio.sleep(0.05)
    assert again.status == 200
    for resp in (a2, b1, again):
        resp.close()


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("after=-1", "after"),
        ("after=abc", "after"),
        ("after=", "after"),
        (f"after={2**63 + 1}", "after"),
        ("after=1&after=2", "after"),
        ("since=1", "since"),
    ],
)
async def test_bad_input_is_400_naming_the_parameter(
    sqlite_api: Feed, query: str, field: str
) -> None:
    resp = await sqlite_api.http.get(
        f"/api/feed?{query}", headers=sqlite_api.auth("s1", "supervisor", "P01")
    )
    assert resp.status == 400
    body = await resp.json()
    assert (body["error"], body["field"]) == ("bad_request", field)
    assert await sqlite_api.app[TRACE].find(kinds=[feed.FEED_OPENED]) == []


async def test_the_largest_after_is_accepted_and_sends_nothing_yet(sqlite_api: Feed) -> None:
    resp = await sqlite_api.open(after=str(2**63))
    assert resp.status == 200
    assert await read_lines(resp, bool) == [{"heartbeat": 2**63}]
    resp.close()


async def test_no_token_is_401_and_roles_without_a_feed_are_403(sqlite_api: Feed) -> None:
    none = await sqlite_api.http.get("/api/feed")
    assert none.status == 401
    assert none.headers["WWW-Authenticate"] == "Bearer"
    assert (await none.json())["error"] == "unauthorized"
    for role in ("officer", "operator"):
        resp = await sqlite_api.open("u1", role, "P0101")
        assert resp.status == 403, role
        assert (await resp.json())["error"] == "forbidden"
    for user, role, court in (("a1", "admin", "P"), ("au1", "auditor", "P")):
        ok = await sqlite_api.open(user, role, court)
        assert ok.status == 200
        ok.close()
    assert len(await sqlite_api.app[TRACE].find(kinds=[feed.FEED_OPENED])) == 2


async def test_a_server_without_a_trace_answers_503(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    config = make_config(tmp_path / "var")
    app = create_app(config, recorder=MemoryRecorder())
    resp = await Feed(await aiohttp_client(app), app, config).open()
    assert resp.status == 503
    assert (await resp.json())["error"] == "unavailable"


async def test_shutdown_ends_every_stream_cleanly_and_refuses_new_ones(sqlite_api: Feed) -> None:
    await sqlite_api.record(*HISTORY)
    resp = await sqlite_api.open()
    # Its own feed_opened is the last record.
    head = (await sqlite_api.app[TRACE].head()).seq
    await read_lines(resp, has_seq(head))
    await sqlite_api.app.shutdown()
    async with asyncio.timeout(WITHIN_S):
        rest = await resp.content.read()
    # The last line says how far the stream got; then the response ends whole.
    assert json.loads(rest.splitlines()[-1]) == {"heartbeat": head}
    assert resp.content.at_eof()
    late = await sqlite_api.open()
    assert late.status == 503
    assert (await late.json())["error"] == "draining"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """The server's and the token command's environment: one private data dir."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("COMMANDCENTER_")}
    clean["COMMANDCENTER_SERVER_DATA_DIR"] = str(tmp_path / "var")
    return clean


@pytest.fixture
def server(tmp_path: Path, env: dict[str, str]) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """`commandcenter serve` as a real process on a free port, killed if still running."""
    port = free_port()
    with (tmp_path / "server.log").open("wb") as out:
        proc = subprocess.Popen(
            [str(SCRIPT), "serve", "--host", "127.0.0.1", "--port", str(port)],
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield proc, port
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


@pytest.mark.slow
async def test_sigterm_ends_an_open_stream_and_the_server_exits_promptly(
    tmp_path: Path, env: dict[str, str], server: tuple[subprocess.Popen[bytes], int]
) -> None:
    proc, port = server
    log = tmp_path / "server.log"
    await wait_healthy(proc, port, log)
    token = await cli_token(env, tmp_path, "s1", "supervisor")
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            f"http://127.0.0.1:{port}/api/feed",
            headers={"Authorization": f"Bearer {token}"},
        ) as resp,
    ):
        assert resp.status == 200
        first = json.loads(await resp.content.readline())
        assert first == {"heartbeat": 0}
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(WITHIN_S):
            rest = await resp.content.read()
        assert "heartbeat" in json.loads(rest.splitlines()[-1])
    assert await wait_exit(proc) == 0
    # Not held for server.drain_timeout_s (30 s): the stream does not keep the server.
    assert time.monotonic() - started < 10.0


async def test_a_client_that_stops_reading_is_cut_off_and_gives_its_slot_back(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    api = await start_feed(
        aiohttp_client,
        tmp_path,
        make_backend("sqlite", tmp_path),
        send_timeout_s=0.5,
        max_per_user=1,
    )
    # Far more than the socket buffers hold, so the server's writes stall.
    note = "x" * 2000
    await api.record(
        *[("sign_in", {"user": f"o{n}", "court": "P0101", "note": note}) for n in range(15000)]
    )
    token = token_for(api.config, "s1", "supervisor", "P01")
    host, port = api.http.host, api.http.port
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(
        f"GET /api/feed HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n\r\n".encode()
    )
    await writer.drain()
    assert (await reader.readline()).startswith(b"HTTP/1.1 200")
    # Reads nothing more: once the stream is cut, the user may open another.
    deadline = time.monotonic() + 10.0
    while (again := await api.open("s1")).status == 429:
        assert time.monotonic() < deadline, "the stalled stream was never cut off"
        await asyncio.sleep(0.1)
    assert again.status == 200
    again.close()
    writer.close()
