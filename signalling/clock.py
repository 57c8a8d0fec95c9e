"""The one clock of a node's drivers: wall time, and timers set at a wall time.

The pure cores take the time as an argument; their drivers (the hub, the core driver, the
cluster) read it here and arm their timers here, so that every deadline and token expiry is
measured on one clock (and every rate on its monotonic companion), and a test can replace it
with one it moves by hand (`tests.fakeclock.FakeClock`): a ring or grace timeout then fires
when the test says, not after real seconds.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Protocol


class Timer(Protocol):
    def cancel(self) -> None: ...


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the epoch: what the cores are given and the trace records."""

    def call_at(self, when: float, callback: Callable[[], None]) -> Timer:
        """Run `callback` on the running event loop at `when` (a `now()` time), or as soon
        as possible if that has passed."""

    def monotonic(self) -> float:
        """Seconds that never go back, for rates (a step of the wall clock must not stop a
        token bucket refilling)."""


class SystemClock:
    """The machine's wall clock. A timer is armed on the event loop's monotonic clock for
    the wall-clock delay left, so a step of the wall clock moves no armed timer."""

    def now(self) -> float:
        return time.time()

    def call_at(self, when: float, callback: Callable[[], None]) -> Timer:
        loop = asyncio.get_running_loop()
        return loop.call_at(loop.time() + max(0.0, when - time.time()), callback)

    def monotonic(self) -> float:
        return time.monotonic()
