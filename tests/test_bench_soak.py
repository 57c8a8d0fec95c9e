"""`python -m bench.soak`: a short soak and a short chaos run as real processes (one hub, or
three on a private Redis and PostgreSQL with a node killed, Redis and PostgreSQL
restarted), each ending with a summary that loses no event and a trace that verifies and
holds what the clients saw; and the pure parts: the RSS slope, the trace check, the silent
stalls it finds."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench._trace_check import ClientCall, TraceRecord, check, counts_between, stalls
from bench.soak import FAULTS, Settings, population, slope_per_hour

ROOT = Path(__file__).resolve().parent.parent
SUMMARY_KEYS = (
    "minutes",
    "officers",
    "calls",
    "events_lost",
    "audit_ok",
    "trace_consistent",
    "rss_start_mb",
    "rss_end_mb",
    "rss_slope_mb_per_h",
    "ring_p99_ms",
    "ring_p99_ms_by_minute",
)


def run_bench(*args: str, budget_s: float) -> list[dict[str, Any]]:
    proc = subprocess.run(
        [sys.executable, "-m", "bench.soak", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=budget_s,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return [json.loads(line) for line in proc.stdout.splitlines()]


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_a_short_soak_loses_nothing_and_its_trace_holds_what_the_clients_saw() -> None:
    lines = run_bench("--minutes", "0.5", "--officers", "60", "--interval", "10", budget_s=200)
    minutes = [line for line in lines if line["phase"] == "minute"]
    assert len(minutes) == 3
    waiting = 0
    for line in minutes:
        assert line["placed"] > 0, line
        # Every call is answered: those placed at a line's end, in the next line.
        assert waiting + line["placed"] == line["answered"] + line["in_flight"], line
        waiting = line["in_flight"]
        assert line["errors"] == {}, line
        assert isinstance(line["ring_p99_ms"], float), line
        assert line["rss_mb"] > 0, line
    summary = lines[-1]
    assert summary["phase"] == "summary"
    assert set(SUMMARY_KEYS) <= set(summary), summary
    assert summary["mode"] == "soak"
    assert summary["events_lost"] == 0, summary
    assert summary["audit_ok"] is True, summary
    assert summary["trace_consistent"] is True, summary
    assert summary["silent_stalls"] == 0, summary
    assert summary["calls"] == sum(m["placed"] for m in minutes) > 0
    assert len(summary["ring_p99_ms_by_minute"]) == 3
    assert isinstance(summary["rss_slope_mb_per_h"], float), summary
    (trace,) = [line for line in lines if line["phase"] == "trace"]
    assert trace["calls_missing"] == trace["sessions_unsigned"] == 0, trace
    # Every operator and officer signed in once, and out after the clean stop.
    assert trace["sessions_opened"] == 60 + summary["operators"], trace


@pytest.mark.slow
@pytest.mark.cluster
@pytest.mark.timeout(360)
def test_a_short_chaos_run_recovers_from_each_fault_and_loses_nothing() -> None:
    """Three nodes on a private Redis and PostgreSQL: a gateway SIGKILLed and started
    again, Redis restarted, PostgreSQL restarted, under load. Clients of the killed node
    see their connections drop and reconnect; nothing answered goes missing from the trace,
    which verifies, holds a sign-out for every sign-in, and no stall is silent."""
    lines = run_bench(
        "--chaos", "--minutes", "1", "--officers", "60", "--interval", "20", budget_s=320
    )
    summary = lines[-1]
    assert summary["phase"] == "summary", lines[-3:]
    assert summary["mode"] == "chaos"
    assert summary["faults"] == [name for name, _ in FAULTS]
    assert summary["events_lost"] == 0, summary
    assert summary["audit_ok"] is True, summary
    assert summary["trace_consistent"] is True, summary
    assert summary["silent_stalls"] == 0, summary
    faults = {line["fault"]: line for line in lines if line["phase"] == "fault"}
    assert set(faults) == {name for name, _ in FAULTS}
    killed = faults["kill_node"]
    assert killed["node"] != killed["authority_before"]
    assert killed["clients_saw"]["closes_by_code"].get("1006", 0) > 0, killed
    assert killed["clients_saw"]["reconnects"] > 0, killed
    for line in faults.values():
        assert line["clients_saw"]["calls_placed"] > 0, line
        assert line["clients_saw"]["calls_answered"] > 0, line
        assert line["trace_holds"]["records"].get("call_created", 0) > 0, line
        assert line["recovery_s"] < line["window_s"], line


def test_the_rss_slope_is_the_least_squares_fit_in_mib_per_hour() -> None:
    assert slope_per_hour([(0.0, 100.0), (1800.0, 101.0), (3600.0, 102.0)]) == 2.0
    assert slope_per_hour([(0.0, 100.0), (60.0, 100.0)]) == 0.0
    assert math.isnan(slope_per_hour([(0.0, 100.0)]))


def test_operators_come_first_and_everyone_is_spread_over_courts_and_nodes() -> None:
    s = Settings(officers=7, operators_per_court=2)
    users, homes = population(s, ["A", "B"], 3)
    assert [u.role for u in users] == ["operator"] * 4 + ["officer"] * 7
    assert {u.court for u in users if u.role == "officer"} == {"A", "B"}
    assert homes == [i % 3 for i in range(11)]
    assert len({u.user for u in users}) == 11


def rec(kind: str, at: float = 0.0, **data: Any) -> TraceRecord:
    return TraceRecord(kind, at, data)


def call(at: float, call_id: str | None, answered: bool) -> ClientCall:
    return ClientCall(at, call_id, answered, "hangup" if answered else "error:unavailable", at)


def test_the_trace_check_finds_answered_calls_missing_unended_calls_and_open_sessions() -> None:
    records = [
        rec("sign_in", session="s1"),
        rec("sign_in", session="s2"),
        rec("session_adopted", session="s2"),
        rec("call_created", call="c1"),
        rec("call_answered", call="c1"),
        rec("call_ended", call="c1"),
        rec("call_created", call="c2"),
        rec("call_answered", call="c2"),
        rec("sign_out", session="s1"),
    ]
    calls = [call(0.0, "c1", True), call(1.0, "c2", True), call(2.0, "c3", True)]
    verdict = check(records, calls, [])
    assert verdict["calls_seen_answered"] == 3
    # c2 never ended and c3 is not in the trace at all: both are missing.
    assert verdict["calls_missing"] == 2
    assert verdict["calls_unended"] == 1
    assert verdict["sessions_unsigned"] == 1
    assert list(verdict["sessions_unsigned_samples"]) == ["s2"]
    assert verdict["trace_consistent"] is False
    whole = [*records, rec("call_ended", call="c2"), rec("sign_out", session="s2")]
    verdict = check(whole, calls[:2], [])
    assert verdict["trace_consistent"] is True
    twice = check([*whole, rec("sign_out", session="s2")], calls[:2], [])
    assert twice["sessions_signed_out_twice"] == 1
    assert twice["trace_consistent"] is False


def test_a_stall_is_a_window_of_calls_none_answered_and_silent_if_nobody_saw_an_error() -> None:
    """Calls every second for 60 s; none answered from 20 s to 40 s. Without any client
    error or close in that time the stall is silent; with one, it is not."""
    calls = [call(float(t), f"c{t}", not 20 <= t < 40) for t in range(60)]
    (found,) = stalls(calls, noticed_at=[])
    assert found["start"] == 20.0
    assert found["seconds"] == 20.0
    assert found["calls"] == 20
    assert found["silent"] is True
    (found,) = stalls(calls, noticed_at=[25.0])
    assert found["silent"] is False
    assert stalls([call(float(t), f"c{t}", True) for t in range(60)], []) == []


def test_what_the_trace_holds_in_a_window_counts_kinds_and_reasons() -> None:
    records = [
        rec("call_ended", 1.0, reason="hangup"),
        rec("call_ended", 2.0, reason="node_lost"),
        rec("sign_out", 2.5, reason="node_lost"),
        rec("call_ended", 9.0, reason="hangup"),
    ]
    held = counts_between(records, 0.0, 5.0)
    assert held == {
        "records": {"call_ended": 2, "sign_out": 1},
        "call_ended_by_reason": {"hangup": 1, "node_lost": 1},
        "sign_out_by_reason": {"node_lost": 1},
    }
