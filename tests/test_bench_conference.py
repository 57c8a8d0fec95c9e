"""`python -m bench.conference --quick` runs end to end as a real process: in its own network
namespace, a moderator, one speaker and N = 2, 4 receive-only sites in a conference on our
server, and Janus's VideoRoom with one publisher and N subscribers, then a summary line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench.conference import (
    QUICK,
    SUMMARY_KEYS,
    TARGETS,
    audio_rates,
    audio_seq_delivery,
    grant_delays,
    parse_args,
    summarize,
)

ROOT = Path(__file__).resolve().parent.parent
SIZE_KEYS = ("cpu_s_per_s", "fps_min", "fps_mean", "rss_mb", "join_s")
CONFERENCE_KEYS = (
    "audio_delivery_min",
    "audio_seq_delivery_min",
    "audio_pps_sent",
    "join_p95_ms",
    "grant_to_audio_p50_ms",
    "grant_to_audio_p99_ms",
)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_quick_conference_benchmark_measures_both_targets_and_ends_in_a_summary() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bench.conference", "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=90.0,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert lines[0]["phase"] == "start"
    sizes = [line for line in lines if line["phase"] == "size"]
    assert {(line["target"], line["n"]) for line in sizes} == {
        (t, n) for t in TARGETS for n in QUICK.sizes
    }
    for line in sizes:
        not_numbers = {k: line.get(k) for k in SIZE_KEYS if not _is_number(line.get(k))}
        assert not_numbers == {}, line
        # Every site received video during the measured window.
        assert line["fps_min"] > 0, line
        assert line["client_errors"] == [], line
    for line in (ln for ln in sizes if ln["target"] == "commandcenter"):
        not_numbers = {k: line.get(k) for k in CONFERENCE_KEYS if not _is_number(line.get(k))}
        assert not_numbers == {}, line
        # Opus: 50 packets a second; every site heard most of them, and every grant.
        assert 40 <= line["audio_pps_sent"] <= 60, line
        assert line["audio_delivery_min"] > 0.5, line
        assert line["grant_samples"] == QUICK.cycles * line["n"], line
        assert line["grant_missing"] == 0, line
        assert 0 < line["grant_to_audio_p99_ms"] < 5000, line
        assert 0 < line["join_p95_ms"] < 30_000, line
    summary = lines[-1]
    assert summary["phase"] == "summary"
    assert set(SUMMARY_KEYS) <= set(summary)
    assert summary["sites"] == list(QUICK.sizes)
    assert set(summary["fps_min"]) == {str(n) for n in QUICK.sizes}
    for key in ("server_cpu_per_site", "janus_cpu_per_site", "grant_to_audio_p99_ms"):
        assert _is_number(summary[key]), key
    # N = 32 is not part of a quick run, so its goals cannot pass.
    assert all(isinstance(goal["pass"], bool) for goal in summary["goals"].values())
    assert summary["goals"]["fps_n32"]["pass"] is False
    assert summary["pass"] is False


def test_audio_counted_against_the_sequence_numbers_sent_and_as_a_rate() -> None:
    first = [{"t": 10.0, "audio": {"0": 100, "1": 100}, "audio_expected": {"0": 100, "1": 110}}]
    last = [{"t": 12.5, "audio": {"0": 200, "1": 150}, "audio_expected": {"0": 200, "1": 210}}]
    assert audio_seq_delivery(first, last) == pytest.approx({"0": 1.0, "1": 0.5})
    assert audio_rates(first, last) == pytest.approx({"0": 40.0, "1": 20.0})


def test_grant_delays_take_each_sites_first_burst_after_each_grant() -> None:
    grants = [1.0, 3.0]
    bursts = {"0": [0.2, 1.05, 3.02], "1": [1.1, 2.0]}
    delays, missing = grant_delays(grants, bursts, ["0", "1"])
    assert sorted(delays) == pytest.approx([0.02, 0.05, 0.1])
    # Site 1 heard nothing after the second grant.
    assert missing == 1


def test_summary_passes_only_with_every_goal_met_at_32_sites() -> None:
    def line(target: str, n: int, cpu: float, **more: Any) -> dict[str, Any]:
        base = {"target": target, "n": n, "cpu_s_per_s": cpu, "fps_min": 30.0}
        if target == "commandcenter":
            base |= {
                "audio_delivery_min": 1.0,
                "_join_s": [0.2] * n,
                "_delays_s": [0.03] * n,
                "grant_missing": 0,
            }
        return base | more

    settings = parse_args(["--sizes", "16,32"])
    good = [line("commandcenter", 16, 0.05), line("commandcenter", 32, 0.074)]
    janus = [line("janus", 16, 0.1), line("janus", 32, 0.2)]
    summary = summarize(good + janus, settings)
    assert summary["server_cpu_per_site"] == pytest.approx(0.0015)
    assert summary["janus_cpu_per_site"] == pytest.approx(0.00625)
    assert summary["join_p95_ms"] == pytest.approx(200.0)
    assert summary["pass"] is True
    costly = [line("commandcenter", 16, 0.05), line("commandcenter", 32, 0.1)]
    assert summarize(costly, settings)["goals"]["cpu_per_site"]["pass"] is False
    lossy = [good[0], line("commandcenter", 32, 0.074, audio_delivery_min=0.98)]
    assert summarize(lossy, settings)["goals"]["audio_n32"]["pass"] is False
    slow = [good[0], line("commandcenter", 32, 0.074, _delays_s=[0.2] * 32)]
    assert summarize(slow, settings)["goals"]["grant_to_audio"]["pass"] is False
    unheard = [good[0], line("commandcenter", 32, 0.074, grant_missing=1)]
    assert summarize(unheard, settings)["goals"]["grant_to_audio"]["pass"] is False


def test_options_pick_sizes_targets_and_cycles() -> None:
    settings = parse_args(["--sizes", "8,2", "--targets", "janus", "--cycles", "4"])
    assert settings.sizes == (2, 8)
    assert settings.targets == ("janus",)
    assert settings.cycles == 4
    assert settings.relay().targets == ("janus",)
    with pytest.raises(SystemExit):
        parse_args(["--targets", "nginx"])
    with pytest.raises(SystemExit):
        parse_args(["--cycles", "0"])
