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
from redis.exceptions import RedisError

log = structlog.get_logger(__name__)

# A subscription that failed is retried after this long, doubling up to the maximum.
RETRY_MIN_S: Final = 0.1
RETRY_MAX_S: Final = 2.0
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
        failed: Callable[[BaseException], None],
        stop: asyncio.Event,
        node_id: str,
    ) -> None:
        self._redis = redis
        self._channels = list(channels)
        self._handle = handle
        self._on_subscribed = on_subscribed
        self._failed = failed
        self.stop = stop
        self._node_id = node_id
        self.subscribed = False
        """Subscribed now (False before the first subscription and after a failure)."""
        self.failing = False
        """The latest attempt failed (False until one does)."""
        self._ever = False

    async def run(self) -> None:
        """Subscribe, and subscribe again after each failure, until `stop` is set (which,
        unlike a cancel, Python 3.11 cannot swallow inside a redis-py call)."""
        stop = self.stop
        retry = RETRY_MIN_S
        while not stop.is_set():
            pubsub: PubSub = self._redis.pubsub()
            try:
                await pubsub.subscribe(*self._channels)
                retry = RETRY_MIN_S
                first, self._ever = not self._ever, True
                self.subscribed, self.failing = True, False
                self._on_subscribed(first)
                while not stop.is_set():
                    message = await pubsub.get_message(
                        ignore_subscribe_messages=True, timeout=POLL_S
                    )
                    if message is None or message.get("type") != "message":
                        continue
                    try:
                        self._handle(message["channel"], message["data"])
                    except Exception:
                        log.exception("cluster message failed", node_id=self._node_id)
            except (RedisError, OSError) as exc:
                self._failed(exc)
                self.subscribed, self.failing = False, True
            finally:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(pubsub.aclose(), 1.0)  # type: ignore[no-untyped-call]
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(retry):
                    await stop.wait()
            retry = min(retry * 2, RETRY_MAX_S)


__all__ = ["POLL_S", "RETRY_MAX_S", "RETRY_MIN_S", "Subscription"]
