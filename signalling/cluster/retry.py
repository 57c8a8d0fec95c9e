"""The one way the cluster's loops wait, try Redis again, and say how Redis is doing.

Every task of the cluster is a loop around Redis that must not exit, nor spin, while Redis
is away: the subscriptions, the leader looking for the lease, the lease's keeper, the
registry's heartbeat, the presence keeper, the lookups, the ordered writer, the journal's
inheritance. Each runs in a `RetryLoop`, which holds what they share:

* Stopping. A loop waits on its stop event, never in a bare sleep, and its owner sets the
  event before cancelling it: Python 3.11 can swallow a cancel delivered inside a redis-py
  call (its asyncio.wait_for), and a loop that swallowed one stops at its next wait instead
  of running on (`pause`, `wait_for`).
* Backing off. After a failure a loop that retries the same thing waits redis-py's
  `ExponentialBackoff`: 0.1 s after the first failure in a row, doubling up to 2 s, and from
  0.1 s again once Redis answered (`back_off`, `until_answered`). Loops with a period of
  their own (a heartbeat, the lease's renewals, the leader's look at the lease) keep it:
  the period is what the protocol promises, and a failure only waits for the next round.
  The writer retries nothing: it tells each unheard publication's sender at once.
* Telling. The first failure of a run of them is logged with its error, the recovery once,
  and `RedisHealth.ok` says meanwhile whether Redis answered last (`/healthz`). The loops
  of one node share one `RedisHealth`; the registry and the lease keep their own.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any, Final, TypeVar

import structlog
from redis.backoff import ExponentialBackoff
from redis.exceptions import RedisError

log = structlog.get_logger(__name__)

T = TypeVar("T")

# What Redis being unreachable, refusing, or too slow raises (TimeoutError is an OSError).
REDIS_ERRORS: Final = (RedisError, OSError)
# The wait after the first failure in a row, and the longest.
BACKOFF_MIN_S: Final = 0.1
BACKOFF_MAX_S: Final = 2.0


def _always() -> bool:
    return True


class RedisHealth:
    """Whether Redis answered the latest command of the loops that report here; logs the
    first failure of a run (`unreachable`) and the recovery (`reachable`)."""

    def __init__(self, unreachable: str, reachable: str, **context: Any) -> None:
        self.unreachable = unreachable
        self.reachable = reachable
        self.context = context
        self.ok = True

    def failed(self, exc: BaseException) -> bool:
        """A command failed with `exc`; True if it is the first of a run."""
        first = self.ok
        if first:
            log.warning(self.unreachable, error=repr(exc), **self.context)
        self.ok = False
        return first

    def answered(self) -> bool:
        """A command was answered; True if that ends a run of failures."""
        recovered = not self.ok
        if recovered:
            log.info(self.reachable, **self.context)
        self.ok = True
        return recovered


class RetryLoop:
    """One task's loop: its stop event, its failures in a row, and the health it reports to."""

    def __init__(self, stop: asyncio.Event, health: RedisHealth) -> None:
        self.stop = stop
        self.health = health
        # compute(n) = min(cap, base * 2**n) for the n-th failure in a row: 0.1 s, 0.2 s, ...
        self._backoff = ExponentialBackoff(cap=BACKOFF_MAX_S, base=BACKOFF_MIN_S / 2)
        self.failures = 0

    @property
    def stopping(self) -> bool:
        return self.stop.is_set()

    async def pause(self, seconds: float) -> bool:
        """Wait `seconds`, or less if the loop is stopped; True if it goes on."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self.stop.wait()
        return not self.stop.is_set()

    async def wait_for(self, ready: asyncio.Event) -> bool:
        """Wait for work (`ready`, cleared on return); False once the loop is stopped with
        nothing left to do. The stop is looked at only before waiting: a cancel is never
        swallowed in this wait, only in the work before it."""
        if not ready.is_set():
            if self.stop.is_set():
                return False
            await ready.wait()
        ready.clear()
        return True

    def failed(self, exc: BaseException) -> None:
        """Redis did not answer (`exc`)."""
        self.failures += 1
        self.health.failed(exc)

    def answered(self) -> bool:
        """Redis answered; True if that ends a run of failures."""
        self.failures = 0
        return self.health.answered()

    @property
    def backoff_s(self) -> float:
        """The wait after the failures in a row so far."""
        return float(self._backoff.compute(self.failures))

    async def back_off(self) -> bool:
        """After a failure: wait `backoff_s` (or until stopped); True if the loop goes on."""
        return await self.pause(self.backoff_s)

    async def until_answered(
        self, command: Callable[[], Awaitable[T]], *, still: Callable[[], bool] = _always
    ) -> T | None:
        """`command()` again after each failure, backing off, until Redis answers; None
        if the loop stops or `still()` turns false first."""
        while still() and not self.stop.is_set():
            try:
                result = await command()
            except REDIS_ERRORS as exc:
                self.failed(exc)
                await self.back_off()
                continue
            self.answered()
            return result
        return None


__all__ = ["BACKOFF_MAX_S", "BACKOFF_MIN_S", "REDIS_ERRORS", "RedisHealth", "RetryLoop"]
