"""`python -m bench.chain_check` runs end to end as a real process, small: its full check
reads every record, its incremental one only those added after the remembered head, and the
incremental check's start is one checkpoint row where it was the whole table."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_a_small_chain_check_benchmark_checks_only_the_added_records_incrementally() -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.chain_check",
            "--records",
            "20000",
            "--added",
            "1000",
            "--checkpoints",
            "5000",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [ln["phase"] for ln in lines] == [
        "load",
        "full",
        "incremental",
        "full_again",
        "checkpoint_read",
        "summary",
    ]
    assert lines[1]["checked"] == 20000
    assert lines[2]["checked"] == 1000
    assert lines[2]["from_seq"] == 20000
    assert lines[3]["checked"] == 21000
    # The same position found, from every row before and from one now.
    assert lines[4]["same"] is True
    assert (lines[4]["checkpoints"], lines[4]["before_rows"], lines[4]["after_rows"]) == (
        5000,
        5000,
        1,
    )
    assert lines[-1]["all_intact"] is True
    assert isinstance(lines[-1]["contended"], bool)
