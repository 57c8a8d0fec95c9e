"""Redis for the cluster tests: a private key prefix on the shared Redis (cleaned up), client
factories, and a redis-server of the test's own that it may kill and restart."""

from __future__ import annotations

import asyncio
import secrets
import shutil
import signal
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from bench._common import free_port
from signalling.cluster.keys import ClusterKeys
from tests.polling import wait_until

REDIS_URL = "redis://127.0.0.1:6379/0"
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


async def delete_prefix(redis: Redis, keys: ClusterKeys) -> None:
    """Delete every key under the test's prefix (SCAN, then DEL)."""
    found = [k async for k in redis.scan_iter(match=keys.all_pattern(), count=1000)]
    if found:
        await redis.delete(*found)


@pytest.fixture
async def keys() -> AsyncIterator[ClusterKeys]:
    """A fresh key prefix on the shared Redis, every key under it deleted afterwards."""
    keys = ClusterKeys(f"cc-test-{secrets.token_hex(6)}:")
    yield keys
    redis = Redis.from_url(REDIS_URL)
    try:
        await delete_prefix(redis, keys)
    finally:
        await redis.aclose()


@pytest.fixture
async def connect() -> AsyncIterator[Callable[..., Redis]]:
    """Makes Redis clients (one connection pool each, as separate nodes have), closed after."""
    made: list[Redis] = []

    def make(url: str = REDIS_URL, **kwargs: Any) -> Redis:
        client = Redis.from_url(url, **kwargs)
        made.append(client)
        return client

    yield make
    for client in made:
        await client.aclose()


class PrivateRedis:
    """A redis-server of the test's own on a free loopback port, without persistence, that
    the test may kill and start again on the same port (the shared one is never restarted)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self._proc = await asyncio.create_subprocess_exec(
            REDIS_SERVER,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        await wait_until(self.answers, within=10.0, what="private redis-server answers")

    async def kill(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.returncode is None:
            proc.kill()
            await proc.wait()

    def freeze(self) -> None:
        """Stop the server without closing its sockets: Redis hangs rather than refuses."""
        assert self._proc is not None
        self._proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        assert self._proc is not None
        self._proc.send_signal(signal.SIGCONT)

    async def answers(self) -> bool:
        # No retries: a refused connection is the answer "not yet".
        client = Redis.from_url(self.url, retry=Retry(NoBackoff(), 0), socket_timeout=1.0)
        try:
            return bool(await client.ping())
        except (RedisError, OSError):
            return False
        finally:
            await client.aclose()


@pytest.fixture
async def private_redis() -> AsyncIterator[PrivateRedis]:
    server = PrivateRedis()
    await server.start()
    try:
        yield server
    finally:
        await server.kill()
