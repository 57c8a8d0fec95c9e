"""Requests a drain waits for. aiohttp's own shutdown stops reading request bodies the
moment it begins (its handler drops data once closing), which cut evidence uploads off
mid-body; so the drain first waits, with the listener already closed, until the requests
counted here have finished, and only then lets aiohttp shut down."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator


class InFlight:
    """Counts requests in progress; `draining` is set when the server begins to stop, after
    which new ones are refused by whoever counts them."""

    def __init__(self) -> None:
        self.count = 0
        self.draining = False
        self._idle = asyncio.Event()
        self._idle.set()

    @contextlib.contextmanager
    def track(self) -> Iterator[None]:
        self.count += 1
        self._idle.clear()
        try:
            yield
        finally:
            self.count -= 1
            if not self.count:
                self._idle.set()

    async def drained(self, timeout_s: float) -> bool:
        """Wait until nothing is in progress, at most `timeout_s`; whether that happened."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout_s)
        except TimeoutError:
            return False
        return True


__all__ = ["InFlight"]
