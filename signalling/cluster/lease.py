"""The authority lease: at most one node at a time holds it, and knows when it stops holding.

The key (`ClusterKeys.authority`) holds the holder's node id with a PX expiry. It is taken
with SET NX PX, and renewed and released only by its holder, each in one Lua script that
compares the value first (so a node whose lease expired can never extend or delete its
successor's). Every new holding gets a fencing `epoch` (`ClusterKeys.authority_epoch`),
higher than any before it, for writes that must be refused from a deposed holder.

`LeaseTerm` is the pure core: from the times our acquisitions and renewals were *sent*, it
says until when we may believe we hold the lease and when to renew. Counting from the send
time, not the reply, keeps our belief ending before Redis's expiry (Redis starts the PX
later than we sent it), so two nodes never both believe they hold it, whatever the network
delay. Clock rates differ negligibly over one TTL.

`Lease` is the driver: once held it renews every `ttl_s / 3` in a background task and calls
`on_lost()` the moment a renewal is refused (the key expired, was deleted or overwritten)
or the TTL runs out without one succeeding (Redis unreachable). A lost lease is not
retaken by itself: the caller decides when to `acquire()` again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import structlog
from redis.asyncio import Redis

from signalling.cluster.retry import REDIS_ERRORS, RedisHealth, RetryLoop

log = structlog.get_logger(__name__)

# Default until [redis] carries it.
LEASE_TTL_S: Final = 5.0
# Renew when this fraction of the TTL has passed since the last renewal was sent: two more
# attempts fit before it expires.
RENEW_FRACTION: Final = 1 / 3
# After a renewal failed to reach Redis, try again this fraction of the TTL later.
RETRY_FRACTION: Final = 1 / 10


@dataclass
class LeaseTerm:
    """Our belief about holding the lease; times are seconds on one monotonic clock."""

    ttl_s: float
    valid_until: float | None = None
    renew_at: float | None = None

    def confirmed(self, sent_at: float) -> None:
        """An acquisition or renewal sent at `sent_at` succeeded."""
        self.valid_until = sent_at + self.ttl_s
        self.renew_at = sent_at + self.ttl_s * RENEW_FRACTION

    def unreachable(self, now: float) -> None:
        """A renewal could not reach Redis at `now`: try again soon, but not past expiry."""
        if self.valid_until is not None:
            self.renew_at = min(now + self.ttl_s * RETRY_FRACTION, self.valid_until)

    def ended(self) -> None:
        self.valid_until = self.renew_at = None

    def held(self, now: float) -> bool:
        return self.valid_until is not None and now < self.valid_until

    def expired(self, now: float) -> bool:
        """We held it and the TTL ran out with no renewal confirmed."""
        return self.valid_until is not None and now >= self.valid_until

    def next_deadline(self) -> float | None:
        """When the driver should act next (renew), or None if not held."""
        return self.renew_at


# KEYS[1] lease, KEYS[2] epoch, KEYS[3] last holder; ARGV[1] holder id, ARGV[2] TTL in ms.
# Returns {epoch of the caller's holding, the holder before it ('' if unknown)}, or {0, ''}
# if another node holds the lease. Taking a lease already ours (a retried command whose
# reply was lost) refreshes it, same epoch. The epoch is at least the server time in ms, so
# it keeps rising even if Redis lost its data.
_ACQUIRE = """
local current = redis.call('GET', KEYS[1])
local epoch = redis.call('GET', KEYS[2])
local last = redis.call('GET', KEYS[3]) or ''
if current == ARGV[1] and epoch then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return {tonumber(epoch), last}
end
if current and current ~= ARGV[1] then
  return {0, ''}
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('SET', KEYS[3], ARGV[1])
local t = redis.call('TIME')
local floor = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local next_epoch = tonumber(epoch or '0') + 1
if next_epoch < floor then
  next_epoch = floor
end
redis.call('SET', KEYS[2], string.format('%d', next_epoch))
return {next_epoch, last}
"""

# KEYS[1] lease; ARGV[1] holder id, ARGV[2] TTL in ms. 1 if renewed, 0 if not ours.
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

# KEYS[1] lease; ARGV[1] holder id. 1 if deleted, 0 if not ours.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class Lease:
    """One node's handle on a lease key (for the authority: `ClusterKeys.authority` and
    `authority_epoch`). `acquire`, `renew` and `holder` raise RedisError (or OSError) when
    Redis cannot be reached; the background renewal never does."""

    def __init__(
        self,
        redis: Redis,
        key: str,
        epoch_key: str,
        holder_id: str,
        *,
        ttl_s: float = LEASE_TTL_S,
        on_lost: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        last_key: str | None = None,
    ) -> None:
        if ttl_s < 0.01:
            raise ValueError("ttl_s must be at least 10 ms")
        self.key = key
        self.epoch_key = epoch_key
        self.holder_id = holder_id
        self.ttl_s = ttl_s
        self.epoch: int | None = None
        """The fencing epoch of our current holding; None when not held."""
        self.last_key = last_key if last_key is not None else key + ":last"
        self.previous_holder: str | None = None
        """Who took the lease before our current holding (ourselves, if we took it again
        with nobody in between); None if Redis does not know (it lost its data)."""
        self._redis = redis
        self._ttl_ms = round(ttl_s * 1000)
        self._on_lost = on_lost
        self._clock = clock
        self._term = LeaseTerm(ttl_s)
        self._acquire = redis.register_script(_ACQUIRE)
        self._renew = redis.register_script(_RENEW)
        self._release = redis.register_script(_RELEASE)
        self._keeper: asyncio.Task[None] | None = None
        # Set when the holding its keeper keeps is over (retry.py: a cancel may be swallowed).
        self._keeper_stop = asyncio.Event()
        self._health = RedisHealth(
            "lease renewal failed", "lease renewal reached Redis again", key=key, holder=holder_id
        )
        # Raised at each new holding, release and loss. A renewal's reply, or a keeper task,
        # from an older holding is ignored: Python 3.11's asyncio.wait_for (which redis-py
        # uses around each write) can swallow the cancellation of a keeper, so a cancelled
        # keeper may still be running, and must not act on a holding that is over.
        self._generation = 0

    @property
    def held(self) -> bool:
        """We hold it, as far as we can know: the last acquisition or renewal succeeded
        less than `ttl_s` before now (counted from when it was sent)."""
        return self._term.held(self._clock())

    async def acquire(self) -> bool:
        """Take the lease if nobody holds it (or we already do); then keep it renewed."""
        sent_at = self._clock()
        reply = await self._acquire(
            keys=[self.key, self.epoch_key, self.last_key], args=[self.holder_id, self._ttl_ms]
        )
        epoch = int(reply[0])
        if epoch == 0:
            return False
        last = reply[1].decode() if isinstance(reply[1], bytes) else str(reply[1])
        if self._term.expired(self._clock()):
            # Our previous holding ran out before its keeper noticed: that is a loss, even
            # if the lease is ours again now.
            self._lose("no renewal reached Redis within the TTL")
        if not self._term.held(self._clock()):
            log.info("lease acquired", key=self.key, holder=self.holder_id, epoch=epoch)
            self._end_holding()
            self.previous_holder = last or None
        self.epoch = epoch
        self._confirmed(sent_at)
        return True

    async def renew(self) -> bool:
        """Extend our holding if the lease is still ours. False if not, and then, if we held
        it, it is lost (`on_lost` is called)."""
        generation = self._generation
        sent_at = self._clock()
        renewed = bool(await self._renew(keys=[self.key], args=[self.holder_id, self._ttl_ms]))
        if generation != self._generation or self._term.valid_until is None:
            # Released, lost or taken anew meanwhile, or never held: there is no holding of
            # ours for this reply to extend (to take the lease, `acquire`).
            return renewed
        if renewed:
            self._confirmed(sent_at)
        else:
            self._lose("renewal refused: the lease is not ours")
        return renewed

    async def release(self) -> None:
        """Stop renewing and give the lease up if it is ours. Never raises: if Redis cannot
        be reached within the TTL, the key expires by itself. `on_lost` is not called."""
        self._end_holding()
        try:
            async with asyncio.timeout(self.ttl_s):
                await self._release(keys=[self.key], args=[self.holder_id])
        except REDIS_ERRORS as exc:
            log.warning(
                "lease release failed; it expires by its TTL", key=self.key, error=repr(exc)
            )

    async def holder(self) -> str | None:
        """The node id holding the lease in Redis now, or None."""
        value = await self._redis.get(self.key)
        if value is None:
            return None
        return value.decode() if isinstance(value, bytes) else str(value)

    # ---- internals --------------------------------------------------------------------

    def _confirmed(self, sent_at: float) -> None:
        self._term.confirmed(sent_at)
        if self._keeper is None:
            self._keeper_stop = asyncio.Event()
            retry = RetryLoop(self._keeper_stop, self._health)
            keep = self._keep(self._generation, retry)
            self._keeper = asyncio.get_running_loop().create_task(keep)

    def _end_holding(self) -> None:
        """Forget the current holding (if any) and stop its keeper."""
        self._generation += 1
        self._term.ended()
        self.epoch = None
        self._keeper_stop.set()
        keeper, self._keeper = self._keeper, None
        if keeper is not None and keeper is not asyncio.current_task():
            keeper.cancel()

    def _lose(self, reason: str) -> None:
        if self._term.valid_until is None:
            return
        self._end_holding()
        log.warning("lease lost", key=self.key, holder=self.holder_id, reason=reason)
        if self._on_lost is not None:
            try:
                self._on_lost()
            except Exception:
                log.exception("on_lost failed", key=self.key)

    async def _keep(self, generation: int, retry: RetryLoop) -> None:
        """Renew at each deadline until this holding is released or lost. The deadlines,
        after a failure too, are the pure `LeaseTerm`'s: never past the expiry."""
        term = self._term
        while generation == self._generation:
            renew_at = term.next_deadline()
            if renew_at is None:
                return
            delay = renew_at - self._clock()
            if delay > 0:
                if not await retry.pause(delay):
                    return
                continue  # the deadline may have moved (a renewal or release meanwhile)
            now = self._clock()
            if term.expired(now):
                self._lose("no renewal reached Redis within the TTL")
                return
            assert term.valid_until is not None
            # Waiting on Redis past the TTL is waiting in vain: the lease is gone by then.
            deadline = asyncio.timeout(term.valid_until - now)
            try:
                async with deadline:
                    await self.renew()
            except REDIS_ERRORS as exc:
                if deadline.expired():
                    self._lose("no renewal reached Redis within the TTL")
                    return
                retry.failed(exc)
                term.unreachable(self._clock())
            else:
                retry.answered()


__all__ = ["LEASE_TTL_S", "Lease", "LeaseTerm"]
