"""`python -m bench.cascade` runs end to end as a real process: the fabric alone, then the
cascade (two real gateways over UDP), then a summary line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_the_cascade_benchmark_delivers_every_packet_and_ends_in_a_summary() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bench.cascade", "--seconds", "0.5", "--rate", "500"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=50.0,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [line.get("path") for line in lines[:2]] == ["fabric", "cascade"]
    cascade = lines[1]
    assert cascade["sent"] >= 200
    assert cascade["delivery"] == 1.0
    assert cascade["dropped"] == {"n1": {}, "n2": {}}
    summary = lines[-1]
    assert summary["phase"] == "summary"
    for key in ("extra_us_per_packet", "extra_latency_p50_us", "seal_open_us", "contended"):
        assert key in summary
