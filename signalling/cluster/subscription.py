"""A Redis pub/sub subscription kept up for as long as its owner wants it.

Pub/sub keeps nothing for a subscriber that is away, so each time the subscription is made
(again) its owner is told (`on_subscribed`), to ask for what it may have missed: a gateway
reports its connections, the authority asks every gateway for theirs. The node's own
channel and broadcasts are subscribed for the node's whole life, the authority's inbox for
as long as it holds the lease.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from typing import Final

import structlog
from redis.asyncio import Redis
from redis.asyncio.client import PubSub

from signalling.cluster.retry import REDIS_ERRORS, RedisHealth, RetryLoop

log = structlog.get_logger(__name__)

# How long a subscriber waits for a message before looking at its stop event again.
POLL_S: Final = 0.5


class Subscription:
    """`handle(channel, data)` is called for each message, in order; `on_subscribed(first)`
    after each subscription (`first`: none before it)."""

    def __init__(
        self,
        redis: Redis,
        channels: Sequence[str],
        *,
        handle: Callable[[bytes, bytes], None],
        on_subscribed: Callable[[bool], None],
        health: RedisHealth,
        stop: asyncio.Event,
        node_id: str,
    ) -> None:
        self._redis = redis
        self._channels = list(channels)
        self._handle = handle
        self._on_subscribed = on_subscribed
        self._health = health
        self.stop = stop
        self._node_id = node_id
        self.subscribed = False
        """Subscribed now (False before the first subscription and after a failure)."""
        self.failing = False
        """The latest attempt failed (False until one does)."""
        self._ever = False

    async def run(self) -> None:
        """Subscribe, and subscribe again after each failure (backing off), until `stop`
        is set."""
        retry = RetryLoop(self.stop, self._health)
        while not retry.stopping:
            pubsub: PubSub = self._redis.pubsub()
            failed = False
            try:
                await pubsub.subscribe(*self._channels)
                retry.answered()
                first, self._ever = not self._ever, True
                self.subscribed, self.failing = True, False
                self._on_subscribed(first)
                while not retry.stopping:
                    message = await pubsub.get_message(
                        ignore_subscribe_messages=True, timeout=POLL_S
                    )
                    if message is None or message.get("type") != "message":
                        continue
                    try:
                        self._handle(message["channel"], message["data"])
                    except Exception:
                        log.exception("cluster message failed", node_id=self._node_id)
            except REDIS_ERRORS as exc:
                retry.failed(exc)
                self.subscribed, self.failing = False, True
                failed = True
            finally:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(pubsub.aclose(), 1.0)  # type: ignore[no-untyped-call]
            if failed:
                await retry.back_off()


__all__ = ["POLL_S", "Subscription"]
