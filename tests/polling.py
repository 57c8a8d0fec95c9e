"""Waiting in tests: poll a condition until it holds or a deadline passes, never a bare sleep."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

POLL_S = 0.01


async def wait_until(
    condition: Callable[[], bool | Awaitable[bool]], *, within: float = 5.0, what: str = ""
) -> None:
    """Return once `condition()` (a plain or async predicate) holds; fail after `within` s."""
    deadline = time.monotonic() + within
    while True:
        result = condition()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within}s: {what}")
        await asyncio.sleep(POLL_S)
