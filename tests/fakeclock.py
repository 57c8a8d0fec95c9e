"""A `signalling.clock.Clock` that a test moves by hand.

Time stands still until `advance(seconds)`, which fires every timer that falls due on the
way, in time order, with `now()` reading each timer's own time while it runs. So a hub test
of a 30 s ring timeout or a grace period takes no real time: it advances the clock past the
deadline and then waits (with a real, short deadline) for what the server says.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable

from signalling.clock import Timer


class _Timer:
    def __init__(self) -> None:
        self.cancelled = False
        self.handle: asyncio.Handle | None = None

    def cancel(self) -> None:
        self.cancelled = True
        if self.handle is not None:
            self.handle.cancel()


class FakeClock:
    def __init__(self, start: float) -> None:
        self.t = start
        # The monotonic reading moves with `t` but never back (a test may set `t` freely).
        self._monotonic = 0.0
        self._timers: list[tuple[float, int, _Timer, Callable[[], None]]] = []
        self._seq = itertools.count()

    def now(self) -> float:
        return self.t

    def __call__(self) -> float:
        """The time, for code that takes a plain `() -> float` clock."""
        return self.t

    def monotonic(self) -> float:
        return self._monotonic

    def call_at(self, when: float, callback: Callable[[], None]) -> Timer:
        timer = _Timer()
        if when <= self.t:
            # Due already: as soon as possible, as the system clock would.
            timer.handle = asyncio.get_running_loop().call_soon(callback)
        else:
            heapq.heappush(self._timers, (when, next(self._seq), timer, callback))
        return timer

    def advance(self, seconds: float) -> None:
        """Move time forward by `seconds`, firing what falls due on the way."""
        target = self.t + seconds
        while self._timers and self._timers[0][0] <= target:
            when, _, timer, callback = heapq.heappop(self._timers)
            if timer.cancelled:
                continue
            self._move_to(when)
            callback()
        self._move_to(target)

    def _move_to(self, when: float) -> None:
        if when > self.t:
            self._monotonic += when - self.t
            self.t = when
