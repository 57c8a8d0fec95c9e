"""`python -m bench.names --quick` runs end to end as a real process and its summary says
the names lookups of one request met their goal on a trace with a busy integration id."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_quick_names_benchmark_ends_in_a_summary_that_meets_the_goal() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bench.names", "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [ln["phase"] for ln in lines] == ["load", "lookup_last", "lookup_whole", "summary"]
    summary = lines[-1]
    assert summary["ids_per_request"] == 100
    assert summary["goal_met"] is True
    assert isinstance(summary["contended"], bool)
