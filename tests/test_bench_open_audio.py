"""`python -m bench.open_audio` runs end to end as real processes (home and two site workers
with the real fabric and spans) at a tiny size, both ways: with the preselection home takes
the audio of at most three sites per worker; with `--no-preselect`, every site's."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Opus: a packet every 20 ms.
PER_SITE_S = 50


def run(*flags: str) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-m", "bench.open_audio", "--sites", "12", "--seconds", "1.5", *flags],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=100.0,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(lines) == 1
    line: dict[str, Any] = lines[0]
    assert line["phase"] == "open_audio"
    assert line["dropped"] == {}
    assert line["home_cores"] > 0
    return line


@pytest.mark.slow
@pytest.mark.timeout(200)
def test_the_open_audio_benchmark_shows_home_taking_three_sites_per_worker_or_all() -> None:
    on = run()
    assert on["preselect"] is True
    # 6 speakers over 2 workers of 6 sites each: the 3 loudest of each go home.
    assert on["home_audio_sites"] == 6
    assert 0 < on["home_packets_in_per_s"] <= 3 * 2 * PER_SITE_S * 1.05
    assert on["held_back_per_s"] > 0
    assert on["voices_from_workers"] == 2
    off = run("--no-preselect")
    assert off["preselect"] is False
    assert off["home_audio_sites"] == 12
    assert off["home_packets_in_per_s"] >= 0.95 * off["site_packets_per_s"]
    assert off["held_back_per_s"] == 0
    assert off["voices_from_workers"] == 0
