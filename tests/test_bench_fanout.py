"""`python -m bench.fanout --quick` runs end to end as a real process and prints a line per
path, layout, payload and N, then a summary that tooling can read."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from media import fanout

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
@pytest.mark.skipif(fanout.unavailable() is not None, reason=str(fanout.unavailable()))
def test_quick_fanout_benchmark_measures_both_paths_and_sends_every_packet() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bench.fanout", "--quick", "--subscribers", "8", "--packets", "16"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert lines[0]["phase"] == "start"
    measured = [line for line in lines if line["phase"] == "fanout"]
    assert {(m["path"], m["layout"], m["kind"]) for m in measured} == {
        (path, layout, kind)
        for path in ("python", "c", "c-sendto")
        for layout in ("own", "shared")
        for kind in ("video", "audio")
    }
    for m in measured:
        # The benchmark itself fails if a packet went missing; every C subscriber is carried.
        assert m["packets"] == 8 * 16
        assert m["carried_in_c"] == (0 if m["path"] == "python" else 8)
        assert m["us_per_subscriber_packet"] > 0
    summary = lines[-1]
    assert summary["phase"] == "summary"
    assert set(summary["speedup_c_over_python"]) == {
        f"{path}_{kind}_{layout}"
        for path in ("c", "c-sendto")
        for kind in ("video", "audio")
        for layout in ("own", "shared")
    }
    assert isinstance(summary["pass"], bool)
