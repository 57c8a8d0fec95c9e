"""`python -m bench.conference_signalling` runs end to end as a real process at a small size:
a server it starts, 12 sites joining at once over a join pace of 5 a second (so some wait),
two seconds of floor activity, then a summary line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.conference_signalling import parse_args

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_a_small_run_measures_joins_and_the_floor_and_ends_in_a_summary() -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.conference_signalling",
            "--sites",
            "12",
            "--floor-s",
            "2",
            "--grant-every",
            "1",
            "--settle",
            "0.6",
            "--joins-per-s",
            "5",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=75.0,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    joins, floor, summary = (json.loads(line) for line in proc.stdout.splitlines())
    assert (joins["phase"], floor["phase"], summary["phase"]) == ("joins", "floor", "summary")
    # 12 at 5 a second, 5 at once: the other 7 were told to wait, and let in within ~2 s.
    assert joins["waited"] == 7
    assert joins["site_types"] == {"conference_joined": 12, "conference_waiting": 7}
    assert 1000 <= joins["admit_max_ms"] <= 5000
    # Sites were never sent the moderators' view; the moderator got it in batches.
    assert "sites_changed" not in floor["site_types"]
    assert joins["moderator_types"]["sites_changed"] <= 6
    assert floor["grants"] == 2
    assert summary["sites"] == 12


def test_the_sizes_are_checked() -> None:
    with pytest.raises(SystemExit):
        parse_args(["--sites", "0"])
    assert parse_args(["--sites", "5"]).sites == 5
