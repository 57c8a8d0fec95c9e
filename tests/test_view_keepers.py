"""Where the player's views are kept (commandcenter/view_keepers.py), on the real Redis under
a key prefix of this test's: a view opened through one keeper covers its user's requests for
its item through another (another node), expires with the view, and a keeper whose Redis
does not answer covers nothing (the ranges are then recorded as downloads) without failing."""

from __future__ import annotations

import secrets
import time

from redis.asyncio import Redis

from commandcenter.view_keepers import VIEW_KEY, RedisViews
from tests.clusterhelpers import REDIS_URL
from tests.polling import wait_until

V1 = "a" * 22
EV = "ev-" + "1" * 32


async def test_a_view_opened_on_one_node_covers_its_requests_on_another_until_it_expires() -> None:
    prefix = f"test-views-{secrets.token_hex(4)}:"
    opener = RedisViews(Redis.from_url(REDIS_URL), prefix)
    other = RedisViews(Redis.from_url(REDIS_URL), prefix)
    raw = Redis.from_url(REDIS_URL)
    try:
        now = time.time()
        until = await opener.open(V1, "o1", EV, now + 60, now)
        assert until == now + 60
        assert await other.covers(V1, "o1", EV, now)
        assert not await other.covers(V1, "o2", EV, now)
        assert not await other.covers(V1, "o1", "ev-" + "2" * 32, now)
        assert not await other.covers("b" * 22, "o1", EV, now)
        # Kept as long as the view lives (the token's 60 s here), then gone.
        ttl_ms = await raw.pttl(prefix + VIEW_KEY.format(view_id=V1))
        assert 55_000 < ttl_ms <= 60_000
        # Its life cut short, as if its token ran out: the key goes, and with it the cover.
        await raw.pexpire(prefix + VIEW_KEY.format(view_id=V1), 50)

        async def gone() -> bool:
            return not await other.covers(V1, "o1", EV, now)

        await wait_until(gone, within=5, what="the view expired in Redis")
    finally:
        await raw.delete(prefix + VIEW_KEY.format(view_id=V1))
        for keeper in (opener, other):
            await keeper.close()
        await raw.aclose()


async def test_a_keeper_whose_redis_does_not_answer_covers_nothing_and_does_not_fail() -> None:
    # Nothing listens on port 1: every command fails at once.
    dead = RedisViews(Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.5), "x:")
    try:
        now = time.time()
        assert await dead.open(V1, "o1", EV, now + 60, now) == now + 60
        assert not await dead.covers(V1, "o1", EV, now)
    finally:
        await dead.close()
