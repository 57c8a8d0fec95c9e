"""The node's CPU use as the registry reports it (`NodeLoad.cpu`, a share of its cores), from
cumulative CPU seconds: the server process's own and each media worker's.

A worker reports its CPU seconds about once a second (media.pool), while the registry reads
them every heartbeat (0.3 s in tests). Read raw, a report that lands between two close reads
counts a whole second of the worker's work in a fraction of one: the node looked several
cores busy for a beat and the authority placed elsewhere what it should not have. And a
worker's first report carries its start-up (imports), not load. So a worker's seconds count
from its second report on (per pid: a restarted worker starts again), and the rate is taken
over the last `window_s` at least, never over one beat alone.

Pure: time and the readings are arguments.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from typing import Final

# How far back a reading's rate looks, seconds: a few worker reports.
WINDOW_S: Final = 5.0


class CpuMeter:
    def __init__(self, cores: int, window_s: float = WINDOW_S) -> None:
        self._cores = max(1, cores)
        self._window_s = window_s
        # Worker pid -> the CPU seconds it last reported.
        self._workers: dict[int, float] = {}
        # The workers' seconds counted so far (their increments only).
        self._workers_total = 0.0
        # (time, the node's counted CPU seconds) of recent readings, oldest first.
        self._samples: deque[tuple[float, float]] = deque()

    def reading(self, now: float, own_s: float, workers: Mapping[int, float]) -> float:
        """The node's CPU use (0 to 1, a share of all its cores) at `now`, given the server
        process's CPU seconds and each live worker's (pid -> seconds) as last reported."""
        for pid, seconds in workers.items():
            before = self._workers.get(pid)
            if before is not None and seconds > before:
                self._workers_total += seconds - before
            self._workers[pid] = seconds
        for pid in set(self._workers) - set(workers):
            del self._workers[pid]
        total = own_s + self._workers_total
        samples = self._samples
        samples.append((now, total))
        # Keep the newest reading at least a window old as the base, and none older.
        while len(samples) > 2 and samples[1][0] <= now - self._window_s:
            samples.popleft()
        then, total_then = samples[0]
        if now <= then:
            return 0.0
        return min(1.0, max(0.0, (total - total_then) / ((now - then) * self._cores)))


__all__ = ["WINDOW_S", "CpuMeter"]
