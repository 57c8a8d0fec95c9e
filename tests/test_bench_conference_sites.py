"""`python -m bench.conference --sites N`: the large conference benchmark (bench.conference_sites)
runs end to end in its network namespace (`--quick`: 12 sites, 2 of them real aiortc clients,
10 pre-keyed sinks, Janus at 1 and 2 subscribers) and ends in a summary; its arithmetic."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench.conference_sites import (
    QUICK,
    SUMMARY_KEYS,
    max_in_window,
    parse_args,
    storm_order,
    summarize,
)

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_quick_large_conference_run_has_sinks_receiving_and_a_full_summary() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bench.conference", "--sites", "12", "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120.0,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    phases = [line["phase"] for line in lines]
    assert phases[0] == "start"
    assert phases[-1] == "summary"
    assert "error" not in phases, lines
    [storm] = [line for line in lines if line["phase"] == "storm"]
    assert storm["sites"] == 12
    assert storm["first_frame_p95_ms"] > 0
    sizes = [ln for ln in lines if ln["phase"] == "size" and ln["target"] == "commandcenter"]
    assert [ln["sites"] for ln in sizes] == [12, 8, 4]
    for line in sizes:
        # The sinks received the spotlight and the voice, and their samples decrypted.
        assert line["sink_pps"] > 100 * line["sinks"], line
        assert line["sink_samples_decrypted"] > 0, line
        assert line["sink_samples_failed"] == 0, line
        assert line["delivery_min"] > 0.9, line
        assert line["fps_min"] > 20, line
        assert line["server_processes"] == 3, line
        assert line["client_errors"] == [], line
    [kill] = [line for line in lines if line["phase"] == "kill"]
    assert kill.get("recovery_s", 0) > 0 or "skipped" in kill
    summary = lines[-1]
    assert set(SUMMARY_KEYS) <= set(summary)
    for key in ("server_cpu_cores", "cpu_per_subscriber", "janus_cpu_per_subscriber"):
        assert isinstance(summary[key], float), key
    assert isinstance(summary["publisher_pli_per_s_max"], int)
    assert all(isinstance(goal["pass"], bool) for goal in summary["goals"].values())


def test_the_real_joins_are_spread_evenly_among_the_sinks() -> None:
    order = storm_order(300, 32)
    assert len(order) == 300
    assert sum(order) == 32
    assert order[0]
    real = [i for i, x in enumerate(order) if x]
    gaps = {b - a for a, b in itertools.pairwise(real)}
    assert gaps <= {9, 10}
    assert storm_order(4, 4) == [True] * 4


def test_the_most_requests_in_any_second_of_the_window() -> None:
    times = [0.0, 0.5, 0.99, 2.0, 3.0, 3.5, 10.0]
    assert max_in_window(times, 0.0, 5.0) == 3
    assert max_in_window(times, 1.0, 5.0) == 2
    assert max_in_window([1.0, 2.0, 3.0], 0.0, 5.0) == 1
    assert max_in_window([], 0.0, 5.0) == 0


def test_options_and_their_defaults() -> None:
    settings = parse_args(["--sites", "300"])
    assert (settings.sites, settings.real, settings.slope_sizes) == (300, 32, (100, 200, 300))
    assert settings.janus_sizes == (16, 32, 64)
    quick = parse_args(["--sites", "12", "--quick"])
    assert quick == QUICK
    assert parse_args(["--sites", "60", "--real", "8", "--no-janus"]).slope_sizes == (20, 40, 60)
    bad_options = (
        ["--sites", "1"],
        ["--sites", "10", "--real", "11"],
        ["--sites", "9", "--slope-sizes", "3,6"],
    )
    for bad in bad_options:
        with pytest.raises(SystemExit):
            parse_args(bad)


def _size(sites: int, cpu: float, **more: Any) -> dict[str, Any]:
    return {
        "phase": "size",
        "target": "commandcenter",
        "sites": sites,
        "n": sites,
        "cpu_s_per_s": cpu,
        "fps_min": 29.9,
        "delivery_min": 0.999,
        "delivery_vs_sent": 0.999,
        "server_processes": 3,
        "others_cpu_pct": 5.0,
    } | more


def test_summary_passes_only_with_every_target_met() -> None:
    settings = parse_args(["--sites", "300"])
    storm = {"phase": "storm", "first_frame_p95_ms": 1500.0, "publisher_pli_per_s_max": 1}
    kill = {"phase": "kill", "recovery_s": 1.2}
    janus = [
        {"phase": "size", "target": "janus_loops2", "n": n, "cpu_s_per_s": 0.002 * n}
        for n in (16, 32, 64)
    ]
    ours = [_size(100, 0.2), _size(200, 0.3), _size(300, 0.4)]
    summary = summarize([storm, *ours, kill, *janus], settings)
    assert summary["cpu_per_subscriber"] == pytest.approx(0.001)
    assert summary["janus_cpu_per_subscriber"] == pytest.approx(0.002)
    assert summary["server_cpu_cores"] == 0.4
    assert summary["worker_kill_recovery_s"] == 1.2
    assert summary["contended"] is False
    assert summary["pass"] is True
    costly = [_size(100, 0.2), _size(200, 0.45), _size(300, 0.7)]
    failed = summarize([storm, *costly, kill, *janus], settings)["goals"]
    assert failed["server_cpu"]["pass"] is False
    assert failed["cpu_per_subscriber"]["pass"] is False
    lossy = [*ours[:2], _size(300, 0.4, delivery_min=0.99)]
    assert summarize([storm, *lossy, *janus], settings)["goals"]["delivery"]["pass"] is False
    stormy = {**storm, "publisher_pli_per_s_max": 2, "first_frame_p95_ms": 2100.0}
    goals = summarize([stormy, *ours, *janus], settings)["goals"]
    assert goals["publisher_pli"]["pass"] is False
    assert goals["first_frame"]["pass"] is False
    # Without Janus's slope, ours cannot be shown below it.
    assert summarize([storm, *ours], settings)["goals"]["cpu_per_subscriber"]["pass"] is False
