"""Everything a node writes to Redis for the cluster, in order, pipelined.

Publications (to the inbox and the node channels), presence keys and journal fields are
queued as commands and sent by one task, a burst in one round trip: one connection, one
order, which is what keeps each client's messages in order across nodes (Redis delivers a
publisher's messages on a channel in the order it sent them). A publication may carry an
`unheard` callback, called when nobody received it (PUBLISH answered 0: no authority is
listening) or Redis could not be reached, so the caller can tell its client at once.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from redis.asyncio import Redis

from signalling.cluster.retry import REDIS_ERRORS, RedisHealth, RetryLoop

# Most commands sent to Redis in one pipeline.
MAX_PIPELINE: Final = 512

# KEYS[1] presence key; ARGV[1] the value this node wrote. Deletes it only if it is still
# ours: the user may have connected to another node since.
_DELETE_IF_OURS = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


@dataclass(frozen=True, slots=True)
class _Publish:
    channel: str
    payload: bytes
    # Called when nobody heard it (0 subscribers) or Redis failed; None: nobody cares.
    unheard: Callable[[], None] | None = None


@dataclass(frozen=True, slots=True)
class _SetPresence:
    key: str
    value: bytes


@dataclass(frozen=True, slots=True)
class _DeletePresence:
    key: str
    value: bytes


@dataclass(frozen=True, slots=True)
class _HashField:
    """Set (value) or delete (None) one field of a hash."""

    key: str
    field: str
    value: bytes | None


_Command = _Publish | _SetPresence | _DeletePresence | _HashField


class RedisWriter:
    """The queue and the task that drains it, until `stopping` is set; whether Redis
    answered goes to `health` (the node's). A failed batch is not retried: its unheard
    publications' senders are told at once."""

    def __init__(
        self,
        redis: Redis,
        *,
        presence_ttl_s: float,
        health: RedisHealth,
        stopping: asyncio.Event,
    ) -> None:
        self._redis = redis
        self._presence_ttl_ms = round(presence_ttl_s * 1000)
        self._health = health
        self._stopping = stopping
        self._delete_if_ours = redis.register_script(_DELETE_IF_OURS)
        self._commands: collections.deque[_Command] = collections.deque()
        self._ready = asyncio.Event()
        # Set while nothing is queued (what a stopping node waits for).
        self.idle = asyncio.Event()
        self.idle.set()

    # ---- what callers queue ---------------------------------------------------------------

    def publish(
        self, channel: str, payload: bytes, unheard: Callable[[], None] | None = None
    ) -> None:
        self._queue(_Publish(channel, payload, unheard))

    def set_presence(self, key: str, value: bytes) -> None:
        """SET with the presence TTL: refreshed by the caller, or gone with it."""
        self._queue(_SetPresence(key, value))

    def delete_presence(self, key: str, value: bytes) -> None:
        """DEL if the key still holds `value` (ours, not a newer node's)."""
        self._queue(_DeletePresence(key, value))

    def hash_field(self, key: str, field: str, value: bytes | None) -> None:
        """HSET, or HDEL when `value` is None."""
        self._queue(_HashField(key, field, value))

    def _queue(self, command: _Command) -> None:
        self._commands.append(command)
        self.idle.clear()
        self._ready.set()

    # ---- the task -----------------------------------------------------------------------

    async def run(self) -> None:
        """Sends queued commands in order until stopped; never raises for Redis."""
        retry = RetryLoop(self._stopping, self._health)
        commands = self._commands
        while await retry.wait_for(self._ready):
            while commands:
                batch = [commands.popleft() for _ in range(min(len(commands), MAX_PIPELINE))]
                try:
                    results = await self._execute(batch)
                except REDIS_ERRORS as exc:
                    retry.failed(exc)
                    for command in batch:
                        if isinstance(command, _Publish) and command.unheard is not None:
                            command.unheard()
                    continue
                retry.answered()
                for command, result in zip(batch, results, strict=True):
                    if isinstance(command, _Publish) and command.unheard is not None and not result:
                        command.unheard()
            self.idle.set()

    async def _execute(self, batch: list[_Command]) -> list[object]:
        async with self._redis.pipeline(transaction=False) as pipe:
            for command in batch:
                match command:
                    case _Publish():
                        pipe.publish(command.channel, command.payload)
                    case _SetPresence():
                        pipe.set(command.key, command.value, px=self._presence_ttl_ms)
                    case _DeletePresence():
                        await self._delete_if_ours(
                            keys=[command.key], args=[command.value], client=pipe
                        )
                    case _HashField(value=None):
                        pipe.hdel(command.key, command.field)
                    case _HashField():
                        assert command.value is not None
                        pipe.hset(command.key, command.field, command.value)
            results: list[object] = await pipe.execute()
        return results


__all__ = ["MAX_PIPELINE", "RedisWriter"]
