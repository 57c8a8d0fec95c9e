"""The cluster's one retry policy (signalling/cluster/retry.py), without Redis: the backoff
after failures in a row, health told once per outage, and loops that end on their stop
event rather than on a cancel (which Python 3.11 can swallow inside a redis-py call)."""

from __future__ import annotations

import asyncio

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from signalling.cluster.retry import RedisHealth, RetryLoop


def loop() -> RetryLoop:
    return RetryLoop(asyncio.Event(), RedisHealth("test unreachable", "test reachable again"))


def test_the_backoff_doubles_from_a_tenth_of_a_second_to_two_and_starts_again_on_success() -> None:
    retry = loop()
    waits = []
    for _ in range(7):
        retry.failed(RedisConnectionError("refused"))
        waits.append(retry.backoff_s)
    assert waits == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0])
    retry.answered()
    retry.failed(RedisConnectionError("refused"))
    assert retry.backoff_s == pytest.approx(0.1)


def test_health_is_down_from_the_first_failure_until_an_answer() -> None:
    health = RedisHealth("test unreachable", "test reachable again")
    assert health.ok
    assert health.failed(OSError("refused"))
    assert not health.failed(OSError("refused"))
    assert not health.ok
    assert health.answered()
    assert not health.answered()
    assert health.ok


async def test_a_pause_ends_as_soon_as_the_loop_is_stopped() -> None:
    retry = loop()
    asyncio.get_running_loop().call_soon(retry.stop.set)
    async with asyncio.timeout(5.0):
        assert not await retry.pause(60.0)
    assert not await retry.back_off()


async def test_a_command_is_tried_again_until_redis_answers() -> None:
    retry = loop()
    failures: list[Exception] = [OSError("refused"), RedisConnectionError("reset")]

    async def command() -> str:
        if failures:
            raise failures.pop(0)
        return "journal"

    async with asyncio.timeout(5.0):
        assert await retry.until_answered(command) == "journal"
    assert retry.failures == 0
    assert retry.health.ok


async def test_trying_again_stops_when_the_caller_no_longer_wants_it() -> None:
    retry = loop()
    wanted = [True]

    async def command() -> str:
        wanted[0] = False
        raise OSError("refused")

    async with asyncio.timeout(5.0):
        assert await retry.until_answered(command, still=lambda: wanted[0]) is None
    assert not retry.health.ok


async def test_a_worker_finishes_what_is_ready_and_then_ends_on_its_stop_event() -> None:
    retry = loop()
    ready = asyncio.Event()
    ready.set()
    retry.stop.set()
    assert await retry.wait_for(ready)
    assert not ready.is_set()
    assert not await retry.wait_for(ready)
