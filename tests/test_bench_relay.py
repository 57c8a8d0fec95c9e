"""`python -m bench.relay --quick` runs end to end as a real process: in its own network
namespace, one publisher and N = 1, 2 counting subscribers through our server, aiortc's
MediaRelay and Janus (installed by the benchmark when missing), then a summary line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench.relay import QUICK, QUICK_TARGETS, SUMMARY_KEYS, parse_args, slope, summarize

ROOT = Path(__file__).resolve().parent.parent
SIZE_KEYS = ("cpu_s_per_s", "fps_min", "fps_mean", "rss_mb", "threads", "join_s")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_quick_relay_benchmark_measures_every_target_and_ends_in_a_summary() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bench.relay", "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=150.0,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert lines[0]["phase"] == "start"
    sizes = [line for line in lines if line["phase"] == "size"]
    measured = {(line["target"], line["n"]) for line in sizes}
    assert measured == {(t, n) for t in QUICK_TARGETS for n in QUICK.sizes}
    for line in sizes:
        not_numbers = {k: line.get(k) for k in SIZE_KEYS if not _is_number(line.get(k))}
        assert not_numbers == {}, line
        # Every subscriber received video during the measured window.
        assert line["fps_min"] > 0, line
        assert line["client_errors"] == [], line
    summary = lines[-1]
    assert summary["phase"] == "summary"
    assert set(SUMMARY_KEYS) <= set(summary)
    for key in ("cpu_per_subscriber", "relay_cpu_per_subscriber", "janus_cpu_per_subscriber"):
        assert _is_number(summary[key]), key
    # N = 16 is not part of a quick run.
    assert summary["fps_min_n16"] is None
    assert all(isinstance(goal["pass"], bool) for goal in summary["goals"].values())
    assert summary["pass"] is False


def test_slope_is_the_least_squares_fit_and_none_without_two_sizes() -> None:
    assert slope([(1, 0.01), (2, 0.02), (4, 0.04)]) == pytest.approx(0.01)
    assert slope([(1, 0.5), (3, 0.5)]) == pytest.approx(0.0)
    assert slope([(2, 0.1)]) is None
    assert slope([(2, 0.1), (2, 0.2)]) is None


def test_summary_passes_only_below_the_goal_and_below_janus_with_29_fps_at_16() -> None:
    def line(target: str, n: int, cpu: float, fps: float = 30.0) -> dict[str, Any]:
        return {"target": target, "n": n, "cpu_s_per_s": cpu, "fps_min": fps}

    settings = parse_args(["--sizes", "1,16"])
    good = [line("commandcenter", 1, 0.01), line("commandcenter", 16, 0.055)]
    janus = [line("janus", 1, 0.01), line("janus", 16, 0.1)]
    summary = summarize(good + janus, settings)
    assert summary["cpu_per_subscriber"] == pytest.approx(0.003)
    assert summary["janus_cpu_per_subscriber"] == pytest.approx(0.006)
    assert summary["pass"] is True
    # Without Janus in the run, nothing shows the relay beat it.
    assert summarize(good, settings)["goals"]["cpu_per_subscriber"]["pass"] is False
    slow = [line("commandcenter", 1, 0.01), line("commandcenter", 16, 0.055, fps=28.5)]
    assert summarize(slow + janus, settings)["goals"]["fps_n16"]["pass"] is False
    costly = [line("commandcenter", 1, 0.01), line("commandcenter", 16, 0.1)]
    assert summarize(costly + janus, settings)["goals"]["cpu_per_subscriber"]["pass"] is False


def test_options_pick_sizes_targets_and_cap_the_mediarelay_baseline() -> None:
    settings = parse_args(["--sizes", "4,1,2", "--targets", "mediarelay", "--relay-max-n", "2"])
    assert settings.sizes == (1, 2, 4)
    assert settings.targets == ("mediarelay",)
    summary = summarize([], settings)
    assert summary["relay_sizes"] == [1, 2]
    with pytest.raises(SystemExit):
        parse_args(["--targets", "nginx"])
