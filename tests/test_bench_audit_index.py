"""`python -m bench.audit_index` runs end to end as a real process, small, on SQLite and on
PostgreSQL: the index and the scan find the same records, and the summary says so."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.tracehelpers import PG_DSN

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
def test_a_small_audit_index_benchmark_ends_in_a_summary(store: str) -> None:
    extra = ["--postgres", PG_DSN] if store == "postgres" else []
    proc = subprocess.run(
        [sys.executable, "-m", "bench.audit_index", "--records", "3000", "--reads", "4", *extra],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [ln["phase"] for ln in lines] == ["load", "read_indexed", "read_scanning", "summary"]
    summary = lines[-1]
    assert (summary["backend"], summary["records"]) == (store, 3000)
    assert summary["records_per_audit"] == 100
    assert summary["goal_met"] is True
    assert summary["with_index_median_ms"] > 0
