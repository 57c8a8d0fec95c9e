"""The statistics: their pure definitions, then a scripted day of work through the real hub
over loopback WebSockets, recorded in a real SQLite trace, whose every figure is known in
advance and asserted exactly, from the store, over HTTP and from the CLI."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import json
import os
import zoneinfo
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient

from commandcenter.app import create_app
from commandcenter.auth import Courts, Role, issue_token
from commandcenter.cli import main
from commandcenter.config import Config, replace_section
from commandcenter.keys import TRACE
from sessions.durable import statistics_report, verify_store
from sessions.errors import BadQuery
from sessions.facets import Facets
from sessions.recorder import TraceEvent
from sessions.statistics import (
    CallCounts,
    Counts,
    StatsQuery,
    figures_of,
    parse_period,
    reference_counts,
)
from tests.conftest import TEST_SECRET, make_config
from tests.fakeclock import FakeClock
from tests.wsclient import Client

UTC = dt.UTC
# 2026-03-15T09:00:00Z: the scripted day starts here.
T0 = 1_773_565_200.0
DAY1 = ("2026-03-15", "2026-03-16")
DAY2 = ("2026-03-16", "2026-03-17")
BOTH = ("2026-03-15", "2026-03-17")
P01_SUBTREE = frozenset({"P01", "P0101", "P0102"})


def us(seconds: float) -> int:
    return round(seconds * 1_000_000)


# --- pure definitions ----------------------------------------------------------------------


def rec(kind: str, at: float, **facets: Any) -> tuple[str, int, Facets]:
    return (kind, us(at), Facets(**facets))


ALL = StatsQuery(us(0), us(1000))


def test_sign_ins_count_officers_only_and_officers_are_distinct() -> None:
    counts = reference_counts(
        [
            rec("sign_in", 1, court="P01", subject="o1", tag="officer"),
            rec("sign_in", 2, court="P01", subject="o1", tag="officer"),
            rec("sign_in", 3, court="P01", subject="o2", tag="officer"),
            rec("sign_in", 4, court="P01", subject="op1", tag="operator"),
            rec("sign_out", 5, court="P01", subject="o1", tag="officer"),
        ],
        ALL,
    )
    assert (counts.sign_ins, counts.officers) == (3, 2)


def test_the_period_is_half_open() -> None:
    records = [
        rec("sign_in", t, court="P", subject=f"o{t}", tag="officer") for t in (9, 10, 19, 20)
    ]
    counts = reference_counts(records, StatsQuery(us(10), us(20)))
    assert counts.sign_ins == 2


def test_the_court_filter_keeps_only_the_given_courts() -> None:
    records = [
        rec("sign_in", 1, court="P0101", subject="a", tag="officer"),
        rec("sign_in", 1, court="P0201", subject="b", tag="officer"),
        rec("sign_in", 1, court=None, subject="c", tag="officer"),
    ]
    assert reference_counts(records, StatsQuery(us(0), us(9), P01_SUBTREE)).sign_ins == 1
    assert reference_counts(records, StatsQuery(us(0), us(9))).sign_ins == 3


def test_evidence_counts_items_and_distinct_cases_with_a_case_number() -> None:
    counts = reference_counts(
        [
            rec("evidence_stored", 1, court="P01", subject="K1"),
            rec("evidence_stored", 2, court="P01", subject="K1"),
            rec("evidence_stored", 3, court="P01", subject="K2"),
            rec("evidence_stored", 4, court="P01", subject=None),
            rec("evidence_read", 5, court="P01", subject="K3"),
        ],
        ALL,
    )
    assert (counts.evidence_items, counts.cases) == (4, 2)


def test_calls_are_counted_by_creation_with_their_outcome_whenever_it_came() -> None:
    records = [
        rec("call_created", 1, court="P", subject="a", tag="officer_to_center", flag=False),
        rec("call_answered", 4, subject="a"),
        rec("call_ended", 9, court="P", subject="a", tag="hangup", flag=True),
        rec("call_created", 2, court="P", subject="b", tag="officer_to_center", flag=True),
        rec("call_ended", 3, court="P", subject="b", tag="missed", flag=False),
        rec("call_created", 3, court="P", subject="c", tag="officer_to_center", flag=False),
        rec("call_ended", 4, court="P", subject="c", tag="cancelled", flag=False),
        rec("call_created", 5, court="P", subject="d", tag="center_to_officer", flag=False),
        rec("call_escalated", 6, subject="d"),
        rec("call_created", 6, court="P", subject="e", tag="center_to_officer", flag=False),
        # Answered after the period ends: still an answered call of this period.
        rec("call_answered", 50, subject="e"),
        # Created before the period: not counted, however it ended.
        rec("call_created", 0.5, court="P", subject="f", tag="officer_to_center", flag=False),
        rec("call_created", 7, court="P", subject="g", tag="sideways", flag=False),
    ]
    counts = reference_counts(records, StatsQuery(us(1), us(10)))
    assert counts.calls == {
        "center_to_officer": CallCounts(
            calls=2, answered=1, answer_us=us(44), missed=0, cancelled=0, unfinished=1, emergency=1
        ),
        "officer_to_center": CallCounts(
            calls=3, answered=1, answer_us=us(3), missed=1, cancelled=1, unfinished=0, emergency=1
        ),
    }


def test_figures_follow_domain_md_and_give_answered_and_all_connections() -> None:
    counts = Counts(
        sign_ins=96033,
        officers=2943,
        evidence_items=2738,
        cases=836,
        conferences=224,
        calls={
            "officer_to_center": CallCounts(calls=1143, answered=1000, answer_us=us(9000)),
            "center_to_officer": CallCounts(calls=385, answered=300, answer_us=us(1500)),
        },
    )
    figures = {f.name: f.value for f in figures_of(counts)}
    assert figures["officers_signed_in"] == 2943
    assert figures["sign_ins"] == 96033
    assert figures["cases_with_evidence"] == 836
    assert figures["evidence_items"] == 2738
    assert figures["command_connections"] == 1528
    assert figures["officer_calls"] == 1143
    assert figures["center_calls"] == 385
    assert figures["command_connections_answered"] == 1300
    assert figures["conferences"] == 224
    assert figures["mean_time_to_answer_s"] == round(10500 / 1300, 3)
    assert figures["officer_calls_mean_time_to_answer_s"] == 9.0
    assert figures["center_calls_mean_time_to_answer_s"] == 5.0


def test_a_mean_over_no_answered_calls_is_none_not_zero() -> None:
    figures = {f.name: f.value for f in figures_of(Counts())}
    assert figures["mean_time_to_answer_s"] is None
    assert figures["command_connections"] == 0


def test_dates_are_midnight_in_the_configured_zone() -> None:
    period = parse_period("2026-03-15", "2026-03-16", zoneinfo.ZoneInfo("Asia/Shanghai"))
    assert period.start == dt.datetime(2026, 3, 14, 16, tzinfo=UTC)
    assert period.until_us - period.since_us == us(86400)
    assert parse_period(*DAY1, UTC).since_us == us(T0 - 9 * 3600)


def test_times_with_an_offset_mean_exactly_that_instant() -> None:
    period = parse_period("2026-03-15T09:00:00+08:00", "2026-03-15T10:00:00Z", UTC)
    assert period.start == dt.datetime(2026, 3, 15, 1, tzinfo=UTC)
    assert period.until_us - period.since_us == us(9 * 3600)


@pytest.mark.parametrize(
    ("start", "end", "field"),
    [
        (None, "2026-03-16", "from"),
        ("", "2026-03-16", "from"),
        ("15/03/2026", "2026-03-16", "from"),
        ("2026-03-15", "2026-02-30", "to"),
        ("2026-03-15", "2026-03-15", "to"),
        ("2026-03-16", "2026-03-15", "to"),
    ],
)
def test_a_bad_period_is_refused_naming_the_parameter(
    start: str | None, end: str | None, field: str
) -> None:
    with pytest.raises(BadQuery) as caught:
        parse_period(start, end, UTC)
    assert caught.value.field == field


# --- the scripted workload through the real hub --------------------------------------------


# The hub's clock, moved only by the script, so every recorded time is known.
Clock = FakeClock


class Site:
    def __init__(self, http: TestClient[Any, Any], config: Config, clock: Clock) -> None:
        self.http = http
        self.config = config
        self.clock = clock

    def token(self, user: str, role: str, court: str) -> str:
        return issue_token(
            TEST_SECRET,
            user=user,
            role=Role(role),
            court=court,
            name=user,
            ttl_s=3 * 86400,
            now=self.clock(),
        )

    async def connect(self, user: str, role: str, court: str) -> Client:
        ws = await self.http.ws_connect(
            "/ws", params={"token": self.token(user, role, court), "device": "d-" + user}
        )
        client = Client(ws, "json", user)
        client.welcome = await client.expect("welcome")
        return client

    async def stats(self, who: tuple[str, str, str] | None, **params: str) -> tuple[int, Any]:
        headers = {} if who is None else {"Authorization": "Bearer " + self.token(*who)}
        resp = await self.http.get("/api/stats", params=params, headers=headers)
        body = await (resp.json() if resp.content_type == "application/json" else resp.text())
        return resp.status, body


async def ringing(client: Client, call_id: str) -> None:
    await client.expect("call_ringing", where=lambda m: m["call"]["call_id"] == call_id)


async def ended(client: Client, call_id: str, reason: str) -> None:
    await client.expect("call_ended", call_id=call_id, reason=reason)


async def place(caller: Client, kind: str = "call_center", **fields: Any) -> str:
    placed = await caller.request(kind, reply="call_placed", **fields)
    call_id: str = placed["call_id"]
    return call_id


RING_TIMEOUT_S = 0.6


async def scripted_day(site: Site) -> None:
    """Day 1 and a little of day 2. Every step waits for its reply, so its records are in
    the trace (the hub records before it tells anyone) before the clock moves on. No answer
    comes later than RING_TIMEOUT_S after its ringing began, on the script's clock, so only
    the call meant to time out does."""
    clock = site.clock
    op1 = await site.connect("op1", "operator", "P0101")
    op2 = await site.connect("op2", "operator", "P0201")
    await site.connect("sup1", "supervisor", "P01")
    first_o1 = await site.connect("o1", "officer", "P0101")
    o2 = await site.connect("o2", "officer", "P0101")
    o3 = await site.connect("o3", "officer", "P0201")
    o4 = await site.connect("o4", "officer", "P0102")
    # o1 signs in again from another device at once: the first session is replaced, and
    # inside the resume window this is the same sign-in continued, not a second one.
    o1 = await site.connect("o1", "officer", "P0101")
    await first_o1.expect_close(4409)
    await o1.request("position", lat=30.25, lon=120.125, accuracy_m=5.0, device_time=1.7e12)

    # A: officer call, answered after 0.25 s.
    clock.advance(10)
    a = await place(o1, case_number="(2026)P0101-1")
    await ringing(op1, a)
    clock.advance(0.25)
    await op1.request("accept", call_id=a)
    await o1.expect("call_answered")
    clock.advance(30)
    await o1.request("hangup", call_id=a)
    await ended(op1, a, "hangup")

    # B: officer call declined by the court's only operator: missed.
    clock.advance(10)
    b = await place(o2)
    await ringing(op1, b)
    await op1.request("decline", call_id=b)
    await ended(o2, b, "declined")

    # C: emergency, answered after 0.5 s by the other court's operator.
    clock.advance(10)
    c = await o3.request("emergency", reply="call_placed", note="help")
    c_id: str = c["call_id"]
    await ringing(op2, c_id)
    clock.advance(0.5)
    await op2.request("accept", call_id=c_id)
    await o3.expect("call_answered")
    clock.advance(20)
    await op2.request("hangup", call_id=c_id)
    await ended(o3, c_id, "hangup")

    # D: officer call cancelled by the officer.
    clock.advance(10)
    d = await place(o1)
    await ringing(op1, d)
    clock.advance(0.5)
    await o1.request("cancel", call_id=d)
    await ended(op1, d, "cancelled")

    # E: officer call from a court with no operator anywhere above it: stays queued.
    clock.advance(10)
    e = await place(o4)
    await o4.expect("call_queued", call_id=e)

    # F: center call to an officer, answered after 0.125 s.
    clock.advance(10)
    f = await place(op1, "call_officer", officer="o2", case_number="(2026)P0101-1")
    await ringing(o2, f)
    clock.advance(0.125)
    await o2.request("accept", call_id=f)
    await op1.expect("call_answered")
    clock.advance(60)
    await op1.request("hangup", call_id=f)
    await ended(o2, f, "hangup")

    # G: center call declined by the officer.
    clock.advance(10)
    g = await place(op1, "call_officer", officer="o1")
    await ringing(o1, g)
    await o1.request("decline", call_id=g)
    await ended(op1, g, "declined")

    # H: center call to an officer who is not signed in.
    clock.advance(10)
    h = await place(op2, "call_officer", officer="ghost")
    await ended(op2, h, "unavailable")

    # I: officer call nobody answers: missed when the ring times out.
    clock.advance(10)
    i = await place(o2)
    await ringing(op1, i)
    clock.advance(RING_TIMEOUT_S + 0.5)
    await o2.expect("call_ended", timeout=RING_TIMEOUT_S + 3, call_id=i, reason="missed")

    # Instructions: one to o1, shown after 1 s and acknowledged (收到) 3 s later; one to the
    # whole of P0201, shown on o3's phone and never acknowledged.
    clock.advance(10)
    sent = await op1.request(
        "send_instruction", reply="instruction_sent", officer="o1", text="去二号现场"
    )
    to_o1 = sent["instruction_id"]
    await o1.expect("instruction", instruction_id=to_o1)
    clock.advance(1)
    await o1.request("instruction_receipt", instruction_id=to_o1, state="delivered")
    clock.advance(3)
    await o1.request("instruction_receipt", instruction_id=to_o1, state="read")
    clock.advance(10)
    sent = await op2.request(
        "send_instruction", reply="instruction_sent", court="P0201", text="集合"
    )
    to_court = sent["instruction_id"]
    await o3.expect("instruction", instruction_id=to_court)
    clock.advance(2)
    await o3.request("instruction_receipt", instruction_id=to_court, state="delivered")

    # Evidence and a conference, recorded as their features record them.
    trace = site.http.app[TRACE]
    await trace.append(
        [
            TraceEvent("evidence_stored", clock(), evidence(1, "K1", "P0101")),
            TraceEvent("evidence_stored", clock(), evidence(2, "K1", "P0101")),
            TraceEvent("evidence_stored", clock(), evidence(3, "K2", "P0201")),
            TraceEvent("evidence_read", clock(), {"evidence_id": "ev-1", "court": "P0101"}),
            TraceEvent("conference_started", clock(), {"conference": "m1", "court": "P"}),
        ]
    )

    # Day 2: o5 signs in (o3, still online since day 1, reconnecting would continue its
    # sign-in, not make a new one); one more evidence item, a conference of P01 (a meeting, as
    # records from before kinds existed say nothing) and a concentrated enforcement action.
    clock.t = T0 + 86400
    await site.connect("o5", "officer", "P0201")
    await trace.append(
        [
            TraceEvent("evidence_stored", clock(), evidence(4, "K1", "P0101")),
            TraceEvent("conference_started", clock(), {"conference": "m2", "court": "P01"}),
            TraceEvent(
                "conference_started",
                clock(),
                {"conference": "m3", "court": "P0101", "kind": "action"},
            ),
        ]
    )


def evidence(n: int, case: str, court: str) -> dict[str, Any]:
    return {
        "evidence_id": f"ev-{n}",
        "case_number": case,
        "court": court,
        "sha256": "0" * 64,
        "size": 10,
        "kind": "photo",
        "uploader": "o1",
    }


ZERO_INSTRUCTIONS = {
    "instructions_sent": 0,
    "instructions_delivered": 0,
    "instructions_read": 0,
    "instructions_acknowledged": 0,
    "instructions_median_time_to_read_s": None,
}
ZERO_CALLS = {
    "command_connections": 0,
    "command_connections_answered": 0,
    "officer_calls": 0,
    "officer_calls_answered": 0,
    "center_calls": 0,
    "center_calls_answered": 0,
    "calls_answered": 0,
    "calls_missed": 0,
    "calls_cancelled": 0,
    "calls_unfinished": 0,
    "emergency_calls": 0,
    "mean_time_to_answer_s": None,
    "officer_calls_mean_time_to_answer_s": None,
    "center_calls_mean_time_to_answer_s": None,
}

# Day 1 over every court. Sign-ins: o1 (once: its second device continued the sign-in),
# o2, o3, o4 (operators and the supervisor are not officers). Calls: officer A (answered
# 0.25 s), B (declined), C (emergency, answered 0.5 s), D (cancelled), E (queued), I (rang
# out); center F (answered 0.125 s), G (declined), H (unavailable).
EXPECTED_DAY1_ALL = {
    "officers_signed_in": 4,
    "sign_ins": 4,
    "cases_with_evidence": 2,
    "evidence_items": 3,
    "command_connections": 9,
    "command_connections_answered": 3,
    "officer_calls": 6,
    "officer_calls_answered": 2,
    "center_calls": 3,
    "center_calls_answered": 1,
    "conferences": 1,
    "enforcement_actions": 0,
    "calls_answered": 3,
    "calls_missed": 4,
    "calls_cancelled": 1,
    "calls_unfinished": 1,
    "emergency_calls": 1,
    "mean_time_to_answer_s": 0.292,
    "officer_calls_mean_time_to_answer_s": 0.375,
    "center_calls_mean_time_to_answer_s": 0.125,
    # The instruction to o1 (read 4 s after it was sent) and P0201's (shown, never read).
    "instructions_sent": 2,
    "instructions_delivered": 2,
    "instructions_read": 1,
    "instructions_acknowledged": 1,
    "instructions_median_time_to_read_s": 4.0,
}
# Day 1, court P01 and below: o3, op2's calls (C, H), K2 and the provincial conference drop.
EXPECTED_DAY1_P01 = {
    "officers_signed_in": 3,
    "sign_ins": 3,
    "cases_with_evidence": 1,
    "evidence_items": 2,
    "command_connections": 7,
    "command_connections_answered": 2,
    "officer_calls": 5,
    "officer_calls_answered": 1,
    "center_calls": 2,
    "center_calls_answered": 1,
    "conferences": 0,
    "enforcement_actions": 0,
    "calls_answered": 2,
    "calls_missed": 3,
    "calls_cancelled": 1,
    "calls_unfinished": 1,
    "emergency_calls": 0,
    "mean_time_to_answer_s": 0.188,
    "officer_calls_mean_time_to_answer_s": 0.25,
    "center_calls_mean_time_to_answer_s": 0.125,
    "instructions_sent": 1,
    "instructions_delivered": 1,
    "instructions_read": 1,
    "instructions_acknowledged": 1,
    "instructions_median_time_to_read_s": 4.0,
}
EXPECTED_DAY1_P0201 = {
    "officers_signed_in": 1,
    "sign_ins": 1,
    "cases_with_evidence": 1,
    "evidence_items": 1,
    "command_connections": 2,
    "command_connections_answered": 1,
    "officer_calls": 1,
    "officer_calls_answered": 1,
    "center_calls": 1,
    "center_calls_answered": 0,
    "conferences": 0,
    "enforcement_actions": 0,
    "calls_answered": 1,
    "calls_missed": 1,
    "calls_cancelled": 0,
    "calls_unfinished": 0,
    "emergency_calls": 1,
    "mean_time_to_answer_s": 0.5,
    "officer_calls_mean_time_to_answer_s": 0.5,
    "center_calls_mean_time_to_answer_s": None,
    "instructions_sent": 1,
    "instructions_delivered": 1,
    "instructions_read": 0,
    "instructions_acknowledged": 0,
    "instructions_median_time_to_read_s": None,
}
EXPECTED_DAY2_ALL = {
    "officers_signed_in": 1,
    "sign_ins": 1,
    "cases_with_evidence": 1,
    "evidence_items": 1,
    "conferences": 1,
    "enforcement_actions": 1,
    **ZERO_CALLS,
    **ZERO_INSTRUCTIONS,
}
EXPECTED_BOTH_ALL = {
    **EXPECTED_DAY1_ALL,
    "officers_signed_in": 5,
    "sign_ins": 5,
    "evidence_items": 4,
    "conferences": 2,
    "enforcement_actions": 1,
}


@pytest.fixture
def site_config(tmp_path: Path) -> Config:
    config = make_config(
        tmp_path / "var",
        calls={"ring_timeout_s": RING_TIMEOUT_S, "queue_timeout_s": 3 * 86400.0},
    )
    return replace_section(config, "recorder", sqlite_path=str(tmp_path / "trace.sqlite3"))


@pytest.fixture
def config_file(tmp_path: Path, site_config: Config) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(
        f'[server]\ndata_dir = "{tmp_path / "var"}"\n'
        f'[auth]\njwt_secret = "{TEST_SECRET}"\n'
        f'[recorder]\nsqlite_path = "{site_config.recorder.sqlite_path}"\n',
        encoding="utf-8",
    )
    return path


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No COMMANDCENTER_* variable of the environment reaches the CLI's config."""
    for name in list(os.environ):
        if name.startswith("COMMANDCENTER_"):
            monkeypatch.delenv(name)


@pytest.fixture
async def site(aiohttp_client: AiohttpClient, site_config: Config) -> Site:
    clock = Clock(T0)
    http = await aiohttp_client(create_app(site_config, clock=clock))
    s = Site(http, site_config, clock)
    await scripted_day(s)
    return s


def figures(report_json: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = report_json["figures"]
    return out


async def test_every_figure_of_the_scripted_day_is_exact_in_the_store(site: Site) -> None:
    trace = site.http.app[TRACE]
    courts = Courts(site.config.courts)
    cases = [
        (DAY1, None, EXPECTED_DAY1_ALL),
        (DAY1, "P", EXPECTED_DAY1_ALL),
        (DAY1, "P01", EXPECTED_DAY1_P01),
        (DAY1, "P0201", EXPECTED_DAY1_P0201),
        (DAY2, None, EXPECTED_DAY2_ALL),
        (BOTH, None, EXPECTED_BOTH_ALL),
    ]
    for (start, end), court, expected in cases:
        report = await statistics_report(trace, courts, parse_period(start, end, UTC), court)
        assert figures(report.as_json()) == expected, (start, court)
    # The trace behind the figures is intact.
    result = await verify_store(trace)
    assert result.ok
    assert result.records == await trace.count()


async def test_every_figure_is_exact_over_http_for_auditors_and_supervisors(site: Site) -> None:
    auditor = ("aud", "auditor", "P")
    status, body = await site.stats(auditor, **{"from": DAY1[0], "to": DAY1[1]})
    assert status == 200
    assert body["court"] is None
    assert body["from"] == "2026-03-15T00:00:00+00:00"
    assert body["to"] == "2026-03-16T00:00:00+00:00"
    assert figures(body) == EXPECTED_DAY1_ALL
    status, body = await site.stats(auditor, **{"from": DAY1[0], "to": DAY1[1], "court": "P0201"})
    assert (status, figures(body)) == (200, EXPECTED_DAY1_P0201)
    # A supervisor gets their own court and those below it, by default and when asked.
    supervisor = ("sup1", "supervisor", "P01")
    status, body = await site.stats(supervisor, **{"from": DAY1[0], "to": DAY1[1]})
    assert (status, body["court"], figures(body)) == (200, "P01", EXPECTED_DAY1_P01)
    assert body["courts"] == sorted(P01_SUBTREE)
    admin = ("adm", "admin", "P")
    status, body = await site.stats(admin, **{"from": BOTH[0], "to": BOTH[1]})
    assert (status, figures(body)) == (200, EXPECTED_BOTH_ALL)


async def test_stats_over_http_as_csv(site: Site) -> None:
    status, text = await site.stats(
        ("aud", "auditor", "P"), **{"from": DAY2[0], "to": DAY2[1], "format": "csv"}
    )
    assert status == 200
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["figure", "value", "counts"]
    values = {r[0]: r[1] for r in rows[1:]}
    assert values["sign_ins"] == "1"
    assert values["mean_time_to_answer_s"] == ""


@pytest.mark.parametrize(
    ("who", "params", "status", "error", "field"),
    [
        (None, {"from": "2026-03-15", "to": "2026-03-16"}, 401, "unauthorized", None),
        (
            ("o1", "officer", "P0101"),
            {"from": "2026-03-15", "to": "2026-03-16"},
            403,
            "forbidden",
            None,
        ),
        (
            ("op1", "operator", "P0101"),
            {"from": "2026-03-15", "to": "2026-03-16"},
            403,
            "forbidden",
            None,
        ),
        (
            ("sup1", "supervisor", "P01"),
            {"from": "2026-03-15", "to": "2026-03-16", "court": "P0201"},
            403,
            "forbidden",
            "court",
        ),
        (("aud", "auditor", "P"), {"to": "2026-03-16"}, 400, "bad_request", "from"),
        (
            ("aud", "auditor", "P"),
            {"from": "yesterday", "to": "2026-03-16"},
            400,
            "bad_request",
            "from",
        ),
        (
            ("aud", "auditor", "P"),
            {"from": "2026-03-15", "to": "2026-13-01"},
            400,
            "bad_request",
            "to",
        ),
        (
            ("aud", "auditor", "P"),
            {"from": "2026-03-15", "to": "2026-03-14"},
            400,
            "bad_request",
            "to",
        ),
        (
            ("aud", "auditor", "P"),
            {"from": "2026-03-15", "to": "2026-03-16", "court": "X9"},
            400,
            "bad_request",
            "court",
        ),
        (
            ("aud", "auditor", "P"),
            {"from": "2026-03-15", "to": "2026-03-16", "format": "xml"},
            400,
            "bad_request",
            "format",
        ),
        (
            ("aud", "auditor", "P"),
            {"from": "2026-03-15", "to": "2026-03-16", "colour": "red"},
            400,
            "bad_request",
            "colour",
        ),
    ],
)
async def test_stats_over_http_refuse_with_a_short_json_error(
    aiohttp_client: AiohttpClient,
    site_config: Config,
    who: tuple[str, str, str] | None,
    params: dict[str, str],
    status: int,
    error: str,
    field: str | None,
) -> None:
    clock = Clock(T0)
    site = Site(await aiohttp_client(create_app(site_config, clock=clock)), site_config, clock)
    got, body = await site.stats(who, **params)
    assert got == status
    assert body["error"] == error
    assert body.get("field") == field
    assert len(body["reason"]) < 80


async def test_a_bad_token_over_http_is_401_with_its_reason(
    aiohttp_client: AiohttpClient, site_config: Config
) -> None:
    http = await aiohttp_client(create_app(site_config))
    resp = await http.get(
        "/api/stats",
        params={"from": "2026-03-15", "to": "2026-03-16"},
        headers={"Authorization": "Bearer not-a-token"},
    )
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"] == "Bearer"
    assert await resp.json() == {"error": "unauthorized", "reason": "invalid token"}


async def test_every_figure_is_exact_from_the_cli_in_each_format(
    site: Site, config_file: Path, clean_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    # The CLI runs its own event loop, as it does in its own process; the server is still up
    # (WAL lets it read while the server writes).
    argv = ["stats", "--config", str(config_file), "--from", DAY1[0], "--to", DAY1[1]]
    code = await asyncio.to_thread(main, [*argv, "--format", "json"])
    out, err = capsys.readouterr()
    assert (code, err) == (0, "")
    assert figures(json.loads(out)) == EXPECTED_DAY1_ALL

    code = await asyncio.to_thread(main, [*argv, "--court", "P01", "--format", "csv"])
    out, _ = capsys.readouterr()
    assert code == 0
    rows = {r[0]: r[1] for r in list(csv.reader(io.StringIO(out)))[1:]}
    assert rows == {k: "" if v is None else str(v) for k, v in EXPECTED_DAY1_P01.items()}

    code = await asyncio.to_thread(main, argv)
    out, _ = capsys.readouterr()
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "2026-03-15T00:00:00+00:00 to 2026-03-16T00:00:00+00:00, every court"
    table = {line.split()[0]: line.split()[1] for line in lines[4:]}
    assert table["command_connections"] == "9"
    assert table["center_calls_mean_time_to_answer_s"] == "0.125"


async def test_explain_says_how_each_figure_is_counted(
    site: Site, config_file: Path, clean_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["stats", "--config", str(config_file), "--from", DAY1[0], "--to", DAY1[1]]
    code = await asyncio.to_thread(main, [*argv, "--format", "json", "--explain"])
    out, _ = capsys.readouterr()
    answer = json.loads(out)
    assert code == 0
    assert figures(answer) == EXPECTED_DAY1_ALL
    assert set(answer["how"]) == set(EXPECTED_DAY1_ALL)
    assert "`conference_started`" in answer["how"]["conferences"]
    assert "[from, to)" in answer["over"]
    code = await asyncio.to_thread(main, [*argv, "--explain"])
    out, _ = capsys.readouterr()
    assert code == 0
    (how,) = [line for line in out.splitlines() if line.startswith("conferences ")][-1:]
    assert "`conference_started` records" in how


def test_the_cli_refuses_an_unknown_court_and_a_bad_date(
    config_file: Path, clean_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["stats", "--config", str(config_file)]
    assert main([*base, "--from", "2026-03-15", "--to", "2026-03-16", "--court", "X"]) == 2
    assert "unknown court 'X'" in capsys.readouterr().err
    assert main([*base, "--from", "2026-3-15", "--to", "2026-03-16"]) == 2
    assert "--from: not a date" in capsys.readouterr().err
    # No trace written yet at the configured path: a one-line refusal, no file created.
    assert main([*base, "--from", "2026-03-15", "--to", "2026-03-16"]) == 2
    assert "cannot read the trace" in capsys.readouterr().err


def test_instruction_figures_count_a_funnel_and_a_median() -> None:
    """Sent, delivered and read (receipts), acknowledged (read by every recipient: a
    court-wide one only once it expired with nobody unread) and the median time to read,
    counted by the instructions sent in the period whenever their receipts came."""
    records = [
        rec("instruction_sent", 1, court="P0101", subject="i1", flag=False),
        rec("instruction_delivered", 2, court="P0101", subject="i1"),
        rec("instruction_read", 5, court="P0101", subject="i1"),
        rec("instruction_sent", 2, court="P0101", subject="i2", flag=True),
        rec("instruction_delivered", 3, court="P0101", subject="i2"),
        rec("instruction_delivered", 3, court="P0101", subject="i2"),
        rec("instruction_read", 4, court="P0101", subject="i2"),
        rec("instruction_read", 12, court="P0101", subject="i2"),
        rec("instruction_expired", 30, court="P0101", subject="i2", flag=True),
        rec("instruction_sent", 3, court="P0201", subject="i3", flag=True),
        rec("instruction_read", 9, court="P0201", subject="i3"),
        rec("instruction_expired", 30, court="P0201", subject="i3", flag=False),
        # Sent after the period: neither it nor its receipt counts.
        rec("instruction_sent", 50, court="P0101", subject="i4", flag=False),
        rec("instruction_read", 51, court="P0101", subject="i4"),
    ]
    counts = reference_counts(records, StatsQuery(us(0), us(40)))
    figures = {f.name: f.value for f in figures_of(counts)}
    assert figures["instructions_sent"] == 3
    assert figures["instructions_delivered"] == 3
    assert figures["instructions_read"] == 4
    # i1 (its one officer read it) and i2 (expired with nobody unread); not i3.
    assert figures["instructions_acknowledged"] == 2
    # Delays 4, 2, 10 and 6 s: the median of an even count is the mean of the middle two.
    assert figures["instructions_median_time_to_read_s"] == 5.0
    only = reference_counts(records, StatsQuery(us(0), us(40), frozenset({"P0201"})))
    assert only.instructions.read_us == (us(6),)
