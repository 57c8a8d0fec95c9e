"""Durations kept as a histogram in plain Python, so that every layer can time what it owns
(the trace's appends here, ring latency in the switchboard) without a metrics library: only
`commandcenter/metrics.py` knows Prometheus, and reads these when it is scraped.

It lives in the bottom layer that every other can import; it does no I/O and reads no clock.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

# Upper bounds, seconds: from a local commit (about a millisecond) to a database that stalls.
STORE_BOUNDS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
# Upper bounds, seconds: from an operator answering at once to a call rung out (30 s) and
# one queued for minutes.
HUMAN_BOUNDS: Final = (0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 15.0, 20.0, 30.0, 60.0, 120.0, 300.0)


@dataclass(frozen=True)
class Histogram:
    """A copy of a `Timings` at one moment: `buckets` pairs each upper bound with how many
    durations were at most that (cumulative, ending with infinity and `count`)."""

    buckets: tuple[tuple[float, int], ...]
    count: int
    sum: float


class Timings:
    """Counts durations by upper bound, with their sum."""

    def __init__(self, bounds: Sequence[float]) -> None:
        if list(bounds) != sorted(set(bounds)) or not bounds:
            raise ValueError("bounds must be increasing")
        self.bounds = tuple(bounds)
        # One count per bound and one past the last (cumulated only when read).
        self._counts = [0] * (len(self.bounds) + 1)
        self._sum = 0.0

    def observe(self, seconds: float) -> None:
        self._counts[bisect.bisect_left(self.bounds, seconds)] += 1
        self._sum += seconds

    def snapshot(self) -> Histogram:
        buckets: list[tuple[float, int]] = []
        total = 0
        for bound, n in zip((*self.bounds, float("inf")), self._counts, strict=True):
            total += n
            buckets.append((bound, total))
        return Histogram(buckets=tuple(buckets), count=total, sum=self._sum)


__all__ = ["HUMAN_BOUNDS", "STORE_BOUNDS", "Histogram", "Timings"]
