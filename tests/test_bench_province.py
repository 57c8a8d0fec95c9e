"""`python -m bench.province` holds the seed article's 224 conferences through the real server
and `commandcenter stats` counts exactly 224, and, for one intermediate court, exactly the
conferences that court hosted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_a_scripted_province_holding_224_conferences_counts_224() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bench.province", "--conferences", "224"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    summary = lines[-1]
    assert summary["phase"] == "summary"
    assert summary["conferences_held"] == summary["conferences_counted"] == 224
    ((court, counted),) = summary["counted_for_court"].items()
    assert counted == summary["held_by_court"][court]
    assert summary["pass"] is True
