"""`python -m bench.fabric` runs end to end as a real process: a source, the router and the
receiving workers, each a process with the real fabric and span, then a summary line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SUMMARY_KEYS = (
    "codec_us_per_packet",
    "router_us_per_packet",
    "router_us_per_copy",
    "worker_us_per_packet",
    "source_us_per_packet",
    "delivery_min",
)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_the_fabric_benchmark_hands_every_packet_to_every_worker_and_ends_in_a_summary() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bench.fabric", "--workers", "1", "2", "--seconds", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=100.0,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert lines[0]["phase"] == "start"
    runs = [line for line in lines if line["phase"] == "handoff"]
    assert [r["workers"] for r in runs] == [1, 2]
    for run in runs:
        assert run["packets"] >= 900
        # At 1,000 packets/s the queues absorb what the scheduler delays: nothing of note lost.
        assert run["delivery_min"] >= 0.99, run
    summary = lines[-1]
    assert summary["phase"] == "summary"
    for key in SUMMARY_KEYS:
        assert isinstance(summary[key], float), key
        assert summary[key] > 0
