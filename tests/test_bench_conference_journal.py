"""`python -m bench.conference_journal` runs end to end as a real process: a 300-site
conference's snapshot, encoded and restored equal, in one summary line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.conference_journal import parse_args

ROOT = Path(__file__).resolve().parent.parent


def test_a_provincial_conference_snapshot_is_measured_and_restored_equal() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bench.conference_journal", "--sites", "300", "--rounds", "5"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    (summary,) = (json.loads(line) for line in proc.stdout.splitlines())
    assert summary["phase"] == "summary"
    assert summary["sites"] == 300
    # Every site and invitation is in it, yet it stays well under Redis's comfort (1 MB).
    assert 300 * 60 < summary["snapshot_bytes"] < 1_000_000
    assert 0 < summary["encode_ms"] < 1000
    assert 0 < summary["restore_ms"] < 1000


def test_the_sizes_are_checked() -> None:
    with pytest.raises(SystemExit):
        parse_args(["--sites", "0"])
    assert parse_args(["--sites", "5"]).sites == 5
