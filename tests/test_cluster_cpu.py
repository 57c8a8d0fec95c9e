"""The node's CPU as the registry reports it (signalling.cluster.cpu): steady whatever the
beat, blind to a worker's start-up, and not fooled by a restart."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from signalling.cluster.cpu import CpuMeter


def test_a_worker_reporting_once_a_second_reads_steady_at_a_fast_beat() -> None:
    """One core of two busy in a worker that reports whole seconds once a second, read every
    0.3 s: never more than its share plus a little, where the raw read showed 3 cores."""
    meter = CpuMeter(cores=2)
    readings = []
    for beat in range(100):
        now = beat * 0.3
        # The worker's report (1 s of CPU per second) lands once a second; 2 s of start-up.
        reported = 2.0 + float(int(now))
        readings.append(meter.reading(now, own_s=0.0, workers={41: reported}))
    late = readings[30:]
    assert max(late) <= 0.5 * 1.25, late
    assert min(late) >= 0.5 * 0.75, late


def test_a_workers_start_up_is_not_load() -> None:
    meter = CpuMeter(cores=2)
    meter.reading(0.0, 0.0, {})
    # A worker appears having spent 3 s importing, then idles.
    assert meter.reading(1.0, 0.0, {7: 3.0}) == 0.0
    assert meter.reading(2.0, 0.0, {7: 3.0}) == 0.0


def test_a_restarted_worker_counts_from_its_own_second_report() -> None:
    meter = CpuMeter(cores=1, window_s=1.0)
    meter.reading(0.0, 0.0, {7: 1.0})
    assert meter.reading(1.0, 0.0, {7: 1.5}) == pytest.approx(0.5)
    # pid 7 died; pid 8 took its place, its start-up ignored, its work counted.
    assert meter.reading(2.0, 0.0, {8: 2.0}) == pytest.approx(0.0)
    assert meter.reading(3.0, 0.0, {8: 2.25}) == pytest.approx(0.25)


def test_the_server_process_own_cpu_counts() -> None:
    meter = CpuMeter(cores=4, window_s=1.0)
    meter.reading(0.0, 10.0, {})
    assert meter.reading(1.0, 12.0, {}) == pytest.approx(0.5)


@given(
    st.lists(
        st.tuples(st.floats(0.01, 5.0), st.floats(0.0, 3.0), st.floats(0.0, 3.0)),
        max_size=50,
    )
)
def test_a_reading_is_always_a_share_between_zero_and_one(
    steps: list[tuple[float, float, float]],
) -> None:
    meter = CpuMeter(cores=2)
    now = own = worker = 0.0
    for dt, d_own, d_worker in steps:
        now, own, worker = now + dt, own + d_own, worker + d_worker
        assert 0.0 <= meter.reading(now, own, {5: worker}) <= 1.0
