"""`python -m bench.workers --quick` runs end to end as a real process: calls in process and
through two media workers, then a worker killed under a call; JSON lines, a summary last."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
QUICK_BUDGET_S = 120.0


@pytest.mark.slow
def test_quick_workers_benchmark_prints_every_phase_and_a_summary() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bench.workers", "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=QUICK_BUDGET_S,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [line["phase"] for line in lines] == ["calls", "calls", "restart", "summary"]
    in_process, workers = lines[0], lines[1]
    assert (in_process["workers"], workers["workers"]) == (0, 2)
    # Two calls on two workers: one each.
    assert workers["spread"] == [1, 1]
    summary = lines[-1]
    assert summary["kill_to_frame_s_max"] > 0
    assert summary["offer_ms_workers"] > 0
