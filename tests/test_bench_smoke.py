"""`python -m bench.signalling --quick` runs end to end as a real process: a hub, a bare
relay and client processes on loopback, then a summary line that tooling can read."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from bench._common import percentile
from bench.signalling import QUICK, SUMMARY_KEYS, population

ROOT = Path(__file__).resolve().parent.parent
QUICK_BUDGET_S = 60.0


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


@pytest.mark.slow
def test_quick_benchmark_prints_json_lines_ending_in_a_summary_within_a_minute() -> None:
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "bench.signalling", "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=QUICK_BUDGET_S + 30.0,
    )
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert elapsed < QUICK_BUDGET_S
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    phases = [line["phase"] for line in lines]
    assert phases[0] == "start"
    assert {"connected", "calls", "relay"} <= set(phases)
    summary = lines[-1]
    assert summary["phase"] == "summary"
    not_numbers = {
        key: summary.get(key) for key in SUMMARY_KEYS if not _is_number(summary.get(key))
    }
    assert not_numbers == {}
    # Quick mode holds 300 connections and every call it places rings and is answered.
    assert summary["connections"] == 300
    assert summary["calls"] > 0
    assert summary["calls_unanswered"] == 0
    assert summary["msgs_per_s"] > 0
    assert summary["baseline_msgs_per_s"] > 0
    goals = summary["goals"]
    assert set(goals) == {"connections", "ring_p99", "relay"}
    assert all(isinstance(goal["pass"], bool) for goal in goals.values())
    assert summary["pass"] == all(goal["pass"] for goal in goals.values())


def test_population_fills_the_requested_connections_with_idle_officers_after_the_measured() -> None:
    pop = population(QUICK, ["P", "P01"])
    assert pop.total() == QUICK.connections
    assert len(pop.operators) == 2 * QUICK.operators_per_court
    assert len(pop.callers) == 2 * QUICK.callers_per_court
    idle = [user for share in pop.idle for user in share]
    assert {user.role for user in idle} == {"officer"}
    assert len({user.user for user in pop.measured + tuple(idle)}) == QUICK.connections


def test_percentile_is_nearest_rank_and_nan_without_values() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile([3.0], 99) == 3.0
    assert math.isnan(percentile([], 50))
