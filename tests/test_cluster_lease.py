"""The authority lease: the pure `LeaseTerm` with explicit times, then `Lease` against the
real Redis on a private key prefix (contention, expiry, theft) and against a private
redis-server that dies under the holder."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable

import pytest
from redis.asyncio import Redis

from signalling.cluster.keys import ClusterKeys
from signalling.cluster.lease import Lease, LeaseTerm
from tests.clusterhelpers import PrivateRedis, connect, keys, private_redis
from tests.polling import wait_until

# Fixtures from tests.clusterhelpers; naming them here makes pytest use them.
__all__ = ["connect", "keys", "private_redis"]

TTL_S = 0.6


# ---- the pure core ------------------------------------------------------------------------


def test_a_confirmed_term_holds_for_the_ttl_from_when_it_was_sent() -> None:
    term = LeaseTerm(ttl_s=3.0)
    assert not term.held(0.0)
    assert term.next_deadline() is None
    term.confirmed(sent_at=10.0)
    assert term.held(12.999)
    assert not term.held(13.0)
    assert not term.expired(12.999)
    assert term.expired(13.0)
    assert term.next_deadline() == 11.0


def test_an_unreachable_redis_is_retried_soon_but_never_past_the_expiry() -> None:
    term = LeaseTerm(ttl_s=3.0)
    term.confirmed(sent_at=10.0)
    term.unreachable(11.0)
    assert term.next_deadline() == pytest.approx(11.3)
    term.unreachable(12.9)
    assert term.next_deadline() == 13.0
    # A later renewal that gets through moves everything on.
    term.confirmed(sent_at=12.95)
    assert term.held(15.9)
    assert term.next_deadline() == pytest.approx(13.95)


def test_an_ended_term_is_neither_held_nor_expired() -> None:
    term = LeaseTerm(ttl_s=3.0)
    term.confirmed(sent_at=10.0)
    term.ended()
    assert not term.held(10.5)
    assert not term.expired(20.0)
    assert term.next_deadline() is None
    term.unreachable(11.0)
    assert term.next_deadline() is None


# ---- against Redis ------------------------------------------------------------------------


class Losses:
    """Counts on_lost calls."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> None:
        self.count += 1


def lease(
    redis: Redis,
    keys: ClusterKeys,
    node_id: str,
    *,
    ttl_s: float = TTL_S,
    on_lost: Callable[[], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> Lease:
    return Lease(
        redis,
        keys.authority,
        keys.authority_epoch,
        node_id,
        ttl_s=ttl_s,
        on_lost=on_lost,
        clock=clock,
        last_key=keys.authority_last,
    )


@pytest.mark.cluster
async def test_exactly_one_of_twenty_concurrent_acquirers_wins_every_time(
    keys: ClusterKeys, connect: Callable[..., Redis]
) -> None:
    """50 rounds of 20 nodes (one client each) racing for the free lease."""
    nodes = [lease(connect(), keys, f"n{i}", ttl_s=5.0) for i in range(20)]
    observer = connect()
    last_epoch = 0
    for _ in range(50):
        # Warm connections send in gather's order: shuffle so the race is not always won
        # by the first node sent.
        random.shuffle(nodes)
        results = await asyncio.gather(*(n.acquire() for n in nodes))
        won = [n for n, ok in zip(nodes, results, strict=True) if ok]
        assert len(won) == 1
        winner = won[0]
        assert winner.held
        assert [n.held for n in nodes].count(True) == 1
        assert await winner.holder() == winner.holder_id
        assert (await observer.get(keys.authority)) == winner.holder_id.encode()
        assert winner.epoch is not None
        assert winner.epoch > last_epoch
        last_epoch = winner.epoch
        await winner.release()
        assert not winner.held
        assert await winner.holder() is None


@pytest.mark.cluster
async def test_acquiring_a_lease_already_held_refreshes_it_with_the_same_epoch(
    keys: ClusterKeys, connect: Callable[..., Redis]
) -> None:
    a = lease(connect(), keys, "a")
    b = lease(connect(), keys, "b")
    try:
        assert await a.acquire()
        epoch = a.epoch
        assert await a.acquire()
        assert a.epoch == epoch
        assert not await b.acquire()
        assert b.epoch is None
        await a.release()
        assert await b.acquire()
        assert b.epoch is not None
        assert epoch is not None
        assert b.epoch > epoch
    finally:
        await a.release()
        await b.release()


@pytest.mark.cluster
async def test_a_new_holding_knows_who_held_the_lease_before_it(
    keys: ClusterKeys, connect: Callable[..., Redis]
) -> None:
    """What a new authority decides by: keep its state (nobody else held the lease since, or
    Redis forgot), or start afresh and take over a dead authority's calls."""
    a = lease(connect(), keys, "a")
    b = lease(connect(), keys, "b")
    redis = connect()
    try:
        assert await a.acquire()
        assert a.previous_holder is None
        await a.release()
        assert await a.acquire()
        assert a.previous_holder == "a"
        await a.release()
        assert await b.acquire()
        assert b.previous_holder == "a"
        await b.release()
        # Redis lost its data (a restart without persistence): unknown.
        await redis.delete(keys.authority_last)
        assert await a.acquire()
        assert a.previous_holder is None
    finally:
        await a.release()
        await b.release()


class Clock:
    """The real monotonic clock, which a test can stop (a holder whose process stalls)."""

    def __init__(self) -> None:
        self.stopped_at: float | None = None

    def __call__(self) -> float:
        return time.monotonic() if self.stopped_at is None else self.stopped_at


@pytest.mark.cluster
async def test_a_holder_that_stops_renewing_loses_the_lease_after_the_ttl(
    keys: ClusterKeys, connect: Callable[..., Redis]
) -> None:
    """a stalls (its clock stands still, so its renewal never comes due): the key expires
    after the TTL, b takes it with a higher epoch, and a learns it lost it as soon as its
    clock moves again."""
    clock = Clock()
    losses = Losses()
    a = lease(connect(), keys, "a", on_lost=losses, clock=clock)
    b = lease(connect(), keys, "b")
    try:
        assert await a.acquire()
        clock.stopped_at = time.monotonic()
        assert not await b.acquire()
        await wait_until(b.acquire, within=5.0, what="b acquires once a's key expired")
        assert await b.holder() == "b"
        assert a.epoch is not None
        assert b.epoch is not None
        assert b.epoch > a.epoch
        assert losses.count == 0  # a's clock has not moved: it cannot know yet
        clock.stopped_at = None
        await wait_until(lambda: losses.count == 1, what="a notices it lost the lease")
        assert not a.held
        assert a.epoch is None
        assert await b.holder() == "b"
    finally:
        await a.release()
        await b.release()


@pytest.mark.cluster
async def test_renewal_by_a_node_that_does_not_hold_the_lease_fails(
    keys: ClusterKeys, connect: Callable[..., Redis]
) -> None:
    b_losses = Losses()
    a = lease(connect(), keys, "a")
    b = lease(connect(), keys, "b", on_lost=b_losses)
    try:
        assert await a.acquire()
        assert not await b.renew()
        assert not b.held
        assert b_losses.count == 0  # b never held it: nothing was lost
        assert await b.holder() == "a"
        assert a.held
    finally:
        await a.release()
        await b.release()


@pytest.mark.cluster
async def test_release_by_a_node_that_does_not_hold_the_lease_does_nothing(
    keys: ClusterKeys, connect: Callable[..., Redis]
) -> None:
    a = lease(connect(), keys, "a")
    b = lease(connect(), keys, "b")
    try:
        assert await a.acquire()
        await b.release()
        assert await a.holder() == "a"
        assert a.held
        assert await a.renew()
    finally:
        await a.release()
    assert await b.holder() is None


@pytest.mark.cluster
@pytest.mark.parametrize("how", ["deleted", "overwritten"])
async def test_on_lost_fires_once_when_the_key_is_taken_behind_the_holders_back(
    keys: ClusterKeys, connect: Callable[..., Redis], how: str
) -> None:
    losses = Losses()
    a = lease(connect(), keys, "a", on_lost=losses)
    intruder = connect()
    try:
        assert await a.acquire()
        if how == "deleted":
            await intruder.delete(keys.authority)
        else:
            await intruder.set(keys.authority, "intruder", px=60_000)
        await wait_until(lambda: losses.count == 1, what="on_lost fired")
        assert not a.held
        assert a.epoch is None
        # A renewal refused ends the keeping: nothing renews it back, nothing fires again.
        assert not await a.renew()
        assert losses.count == 1
        expected = None if how == "deleted" else "intruder"
        assert await a.holder() == expected
    finally:
        await a.release()


@pytest.mark.cluster
@pytest.mark.parametrize("outage", ["killed", "frozen"])
async def test_a_holder_cut_off_from_redis_loses_the_lease_after_the_ttl(
    private_redis: PrivateRedis, connect: Callable[..., Redis], outage: str
) -> None:
    """Redis dies (connections refused) or hangs (no answer) under the holder: renewals
    fail, and on_lost fires once the TTL has run out without one getting through; no
    exception escapes. Once Redis is back the lease can be taken again."""
    keys = ClusterKeys("cc-lease:")
    losses = Losses()
    a = lease(connect(private_redis.url), keys, "a", on_lost=losses)
    try:
        before_acquire = time.monotonic()
        assert await a.acquire()
        if outage == "killed":
            await private_redis.kill()
        else:
            private_redis.freeze()
        await wait_until(lambda: losses.count == 1, what="on_lost after the TTL")
        # Never before the TTL: until then the key may still be ours in Redis.
        assert time.monotonic() >= before_acquire + TTL_S
        assert not a.held
        if outage == "killed":
            await private_redis.start()
        else:
            private_redis.thaw()
        await wait_until(a.acquire, within=5.0, what="a takes the lease again")
        assert a.held
        assert await a.holder() == "a"
    finally:
        await a.release()
    assert losses.count == 1
