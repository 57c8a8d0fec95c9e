"""The node registry: the pure core with explicit (Redis server) times, then `RedisRegistry`
against the real Redis on a private key prefix, and against a private redis-server that is
killed and restarted under it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis

from signalling.cluster.keys import ClusterKeys
from signalling.cluster.nodes import OVERLOADED_CPU, NodeLoad, NodeRecord, NodeStatus, Registry
from signalling.cluster.registry import RedisRegistry
from tests.clusterhelpers import PrivateRedis, connect, keys, private_redis
from tests.polling import wait_until

# Fixtures from tests.clusterhelpers; naming them here makes pytest use them.
__all__ = ["connect", "keys", "private_redis"]

# Short timings so that deaths are seen within a second.
HEARTBEAT_S = 0.1
TIMEOUT_S = 0.4


# ---- the pure core ------------------------------------------------------------------------


def rec(
    node_id: str,
    heard_at: float,
    *,
    started_at: float = 100.0,
    media: str = "",
    peers: int = 0,
    cpu: float = 0.0,
) -> NodeRecord:
    load = NodeLoad(connections=0, calls=0, media_peers=peers, cpu=cpu)
    status = NodeStatus(node_id, f"{node_id}:8080", media, started_at, load)
    return NodeRecord(status, heard_at)


def ids(records: list[NodeRecord]) -> list[str]:
    return [r.node_id for r in records]


def test_a_node_is_alive_until_silent_for_longer_than_the_timeout() -> None:
    reg = Registry(node_timeout_s=5.0)
    assert reg.apply(rec("a", 10.0), now=10.0)
    assert ids(reg.alive(15.0)) == ["a"]
    assert reg.dead(15.0) == []
    assert reg.alive(15.01) == []
    assert reg.dead(15.01) == ["a"]


def test_each_death_is_reaped_exactly_once() -> None:
    reg = Registry(node_timeout_s=5.0)
    reg.apply(rec("a", 10.0), 10.0)
    reg.apply(rec("b", 12.0), 12.0)
    assert reg.reap(15.0) == []
    assert reg.reap(16.0) == ["a"]
    assert reg.reap(16.5) == []
    assert reg.reap(18.0) == ["b"]
    assert reg.reap(30.0) == []
    assert reg.dead(30.0) == ["a", "b"]


def test_a_dead_node_heard_again_is_alive_and_its_next_death_is_reported_again() -> None:
    reg = Registry(node_timeout_s=5.0)
    reg.apply(rec("a", 10.0), 10.0)
    assert reg.reap(16.0) == ["a"]
    assert reg.apply(rec("a", 20.0), 20.0) is True
    assert ids(reg.alive(20.0)) == ["a"]
    assert reg.reap(25.0) == []
    assert reg.reap(25.5) == ["a"]


def test_a_record_already_past_the_timeout_does_not_revive_a_reported_node() -> None:
    reg = Registry(node_timeout_s=5.0)
    reg.apply(rec("a", 10.0), 10.0)
    assert reg.reap(16.0) == ["a"]
    # A newer heartbeat, but read long after it was written: still dead, not re-reported.
    assert reg.apply(rec("a", 11.0), 17.0) is False
    assert reg.reap(17.0) == []


def test_stale_and_repeated_records_change_nothing() -> None:
    reg = Registry(node_timeout_s=5.0)
    reg.apply(rec("a", 10.0, peers=3), 10.0)
    assert reg.apply(rec("a", 8.0, peers=9), 10.5) is False
    assert reg.apply(rec("a", 10.0, peers=9), 10.5) is False
    record = reg.record("a")
    assert record is not None
    assert (record.heard_at, record.status.load.media_peers) == (10.0, 3)


def test_a_restarted_node_has_its_previous_run_reported_dead_once() -> None:
    reg = Registry(node_timeout_s=5.0)
    reg.apply(rec("a", 10.0, started_at=100.0), 10.0)
    # Same id, new run, within the timeout: the first run's calls are gone all the same.
    reg.apply(rec("a", 11.0, started_at=200.0), 11.0)
    assert reg.reap(11.0) == ["a"]
    assert reg.reap(12.0) == []
    record = reg.record("a")
    assert record is not None
    assert record.status.started_at == 200.0
    # A late record of the old run is ignored.
    assert reg.apply(rec("a", 12.0, started_at=100.0), 12.0) is False
    record = reg.record("a")
    assert record is not None
    assert record.heard_at == 11.0


def test_a_restart_after_the_death_was_reported_is_not_reported_again() -> None:
    reg = Registry(node_timeout_s=5.0)
    reg.apply(rec("a", 10.0, started_at=100.0), 10.0)
    assert reg.reap(16.0) == ["a"]
    assert reg.apply(rec("a", 20.0, started_at=200.0), 20.0) is True
    assert reg.reap(20.0) == []


def test_after_an_observation_gap_every_node_gets_a_fresh_timeout() -> None:
    """A Redis outage of 20 s must not kill everyone: the nodes get a timeout from the
    moment we can read again to be heard."""
    reg = Registry(node_timeout_s=5.0)
    reg.apply(rec("a", 10.0), 10.0)
    reg.apply(rec("b", 10.0), 10.0)
    reg.resume(30.0)
    assert reg.reap(30.0) == []
    assert reg.apply(rec("b", 31.0), 31.0) is False  # b was never reported: not a rejoin
    assert reg.reap(35.0) == []
    assert reg.reap(35.5) == ["a"]
    assert ids(reg.alive(35.5)) == ["b"]
    assert reg.reap(36.5) == ["b"]


def test_records_silent_past_forget_are_ignored_and_dropped() -> None:
    reg = Registry(node_timeout_s=5.0, forget_s=60.0)
    assert reg.apply(rec("old", 0.0), 61.0) is False
    assert reg.record("old") is None
    assert reg.reap(61.0) == []
    reg.apply(rec("a", 10.0), 10.0)
    assert reg.reap(16.0) == ["a"]
    assert reg.forget_expired(70.0) == []
    assert reg.forget_expired(70.5) == ["a"]
    assert reg.record("a") is None
    # Its record still in Redis (deletion failed) changes nothing.
    reg.apply(rec("a", 10.0), 71.0)
    assert reg.reap(71.0) == []


def test_forget_keeps_nodes_whose_death_was_not_reported() -> None:
    reg = Registry(node_timeout_s=5.0, forget_s=60.0)
    reg.apply(rec("a", 10.0), 10.0)
    assert reg.forget_expired(100.0) == []
    assert reg.reap(100.0) == ["a"]


def test_least_loaded_media_node_prefers_fewest_media_peers_then_least_cpu() -> None:
    reg = Registry(node_timeout_s=5.0)
    for record in (
        rec("a", 10.0, media="10.0.0.1", peers=5, cpu=0.1),
        rec("b", 10.0, media="10.0.0.2", peers=2, cpu=0.5),
        rec("c", 10.0, media="10.0.0.3", peers=2, cpu=0.3),
        rec("no-media", 10.0, media="", peers=0),
        rec("busy", 10.0, media="10.0.0.4", peers=0, cpu=OVERLOADED_CPU),
        rec("dead", 1.0, media="10.0.0.5", peers=0),
    ):
        reg.apply(record, 10.0)
    best = reg.least_loaded_media_node(10.0)
    assert best is not None
    assert best.node_id == "c"
    assert best.status.media_address == "10.0.0.3"


def test_an_overloaded_node_takes_media_only_when_every_node_is() -> None:
    reg = Registry(node_timeout_s=5.0)
    reg.apply(rec("busy", 10.0, media="m1", peers=0, cpu=0.95), 10.0)
    reg.apply(rec("busier", 10.0, media="m2", peers=0, cpu=0.99), 10.0)
    best = reg.least_loaded_media_node(10.0)
    assert best is not None
    assert best.node_id == "busy"
    reg.apply(rec("fine", 10.0, media="m3", peers=50, cpu=0.5), 10.0)
    best = reg.least_loaded_media_node(10.0)
    assert best is not None
    assert best.node_id == "fine"


def test_no_media_node_when_no_live_node_has_media() -> None:
    reg = Registry(node_timeout_s=5.0)
    assert reg.least_loaded_media_node(0.0) is None
    reg.apply(rec("a", 10.0, media=""), 10.0)
    reg.apply(rec("b", 1.0, media="m"), 10.0)
    assert reg.least_loaded_media_node(10.0) is None


def test_timings_that_would_kill_nodes_by_design_are_refused() -> None:
    with pytest.raises(ValueError, match="node_timeout_s"):
        Registry(node_timeout_s=0.0)
    with pytest.raises(ValueError, match="forget_s"):
        Registry(node_timeout_s=70.0, forget_s=60.0)
    with pytest.raises(ValueError, match="heartbeat_s"):
        RedisRegistry(
            Redis(),
            ClusterKeys("x:"),
            "a",
            http_address="a:1",
            heartbeat_s=5.0,
            node_timeout_s=5.0,
        )


# Steps: ("hb", node, run) a heartbeat at the current time, ("tick", dt) time passes,
# ("gap",) an outage ends now.
_step = st.one_of(
    st.tuples(st.just("hb"), st.sampled_from("abc"), st.integers(0, 2)),
    st.tuples(st.just("tick"), st.floats(0.0, 4.0)),
    st.tuples(st.just("gap")),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_step, max_size=60))
def test_every_life_of_a_node_ends_in_exactly_one_reported_death(
    steps: list[tuple[Any, ...]],
) -> None:
    """After each reap, a node's reported deaths equal the lives it began (joins, revivals,
    new runs), minus one if it is alive now."""
    reg = Registry(node_timeout_s=2.0, forget_s=10.0)
    now = 0.0
    runs: dict[str, int] = {}
    lives: dict[str, int] = {}
    reported: dict[str, int] = {}
    for step in steps:
        if step[0] == "tick":
            now += step[1]
        elif step[0] == "gap":
            reg.resume(now)
        else:
            _, node, run = step
            runs[node] = max(run, runs.get(node, 0))  # a node's runs only move forward
            if reg.apply(rec(node, now, started_at=float(runs[node])), now):
                lives[node] = lives.get(node, 0) + 1
        for node in reg.reap(now):
            reported[node] = reported.get(node, 0) + 1
        alive = set(ids(reg.alive(now)))
        assert alive.isdisjoint(reg.dead(now))
        for node, began in lives.items():
            assert began - reported.get(node, 0) == (1 if node in alive else 0), node


# ---- the Redis driver ---------------------------------------------------------------------


def registry(
    redis: Redis,
    keys: ClusterKeys,
    node_id: str,
    deaths: list[str] | None = None,
    *,
    media: str = "",
    load: Callable[[], NodeLoad] = NodeLoad,
    heartbeat_s: float = HEARTBEAT_S,
    node_timeout_s: float = TIMEOUT_S,
) -> RedisRegistry:
    return RedisRegistry(
        redis,
        keys,
        node_id,
        http_address=f"127.0.0.1:{8000 + len(node_id)}",
        media_address=media,
        load=load,
        heartbeat_s=heartbeat_s,
        node_timeout_s=node_timeout_s,
        on_dead=None if deaths is None else deaths.append,
    )


def sees(reg: RedisRegistry, *node_ids: str) -> Callable[[], bool]:
    return lambda: set(node_ids) <= set(ids(reg.alive()))


@pytest.mark.cluster
async def test_two_nodes_see_each_other_and_stay_alive_while_they_heartbeat(
    keys: ClusterKeys, connect: Callable[..., Redis]
) -> None:
    a_deaths: list[str] = []
    b_deaths: list[str] = []
    a = registry(connect(), keys, "a", a_deaths, load=lambda: NodeLoad(connections=7))
    b = registry(connect(), keys, "b", b_deaths)
    await a.start()
    await b.start()
    try:
        await wait_until(sees(a, "a", "b"), what="a sees both")
        await wait_until(sees(b, "a", "b"), what="b sees both")
        records = {r.node_id: r for r in await b.nodes()}
        assert sorted(records) == ["a", "b"]
        assert records["a"].status.http_address == "127.0.0.1:8001"
        assert records["a"].status.load.connections == 7
        assert b.health() == {"registry": "ok", "nodes_alive": 2}
        # Twice the timeout's worth of heartbeats: nobody is declared dead.
        polls = a.polls
        await wait_until(lambda: a.polls >= polls + 2 * TIMEOUT_S / HEARTBEAT_S)
        assert a_deaths == b_deaths == []
    finally:
        await a.stop()
        await b.stop()


@pytest.mark.cluster
async def test_a_stopped_node_is_reported_dead_once_after_the_timeout(
    keys: ClusterKeys, connect: Callable[..., Redis]
) -> None:
    deaths: list[str] = []
    a = registry(connect(), keys, "a")
    b = registry(connect(), keys, "b", deaths)
    c_deaths: list[str] = []
    c = registry(connect(), keys, "c", c_deaths)
    await a.start()
    await b.start()
    await c.start()
    try:
        await wait_until(sees(b, "a", "b", "c"), what="b sees everyone")
        await wait_until(sees(c, "a", "b", "c"), what="c sees everyone")
        stopped = time.monotonic()
        await a.stop()
        await wait_until(lambda: deaths == ["a"], within=5.0, what="b reports a dead")
        await wait_until(lambda: c_deaths == ["a"], within=5.0, what="c reports a dead")
        # a's last heartbeat was at most one heartbeat before it stopped, so its death
        # cannot have been reported sooner than this (a slow machine only makes it later).
        assert time.monotonic() - stopped >= TIMEOUT_S - HEARTBEAT_S
        polls = b.polls
        await wait_until(lambda: b.polls >= polls + 5, what="b polls on")
        assert deaths == ["a"]
        assert c_deaths == ["a"]
        assert ids(b.alive()) == ["b", "c"]
        # The dead record stays (for nodes starting later) until forget_s.
        assert ids(await b.nodes()) == ["a", "b", "c"]
    finally:
        await b.stop()
        await c.stop()


@pytest.mark.cluster
async def test_least_loaded_media_node_follows_the_published_load(
    keys: ClusterKeys, connect: Callable[..., Redis]
) -> None:
    peers = {"m1": 10, "m2": 2}

    def load_of(node_id: str) -> Callable[[], NodeLoad]:
        return lambda: NodeLoad(media_peers=peers.get(node_id, 0))

    m1 = registry(connect(), keys, "m1", media="10.0.0.1", load=load_of("m1"))
    m2 = registry(connect(), keys, "m2", media="10.0.0.2", load=load_of("m2"))
    plain = registry(connect(), keys, "plain", media="", load=load_of("plain"))
    nodes = (m1, m2, plain)
    for node in nodes:
        await node.start()
    try:
        await wait_until(sees(m1, "m1", "m2", "plain"), what="m1 sees everyone")

        def least_is(node_id: str) -> Callable[[], bool]:
            def check() -> bool:
                best = m1.least_loaded_media_node()
                return best is not None and best.node_id == node_id

            return check

        await wait_until(least_is("m2"), what="m2 is least loaded")
        peers["m2"] = 20
        await wait_until(least_is("m1"), what="m1 is least loaded once m2 is busier")
        await m1.stop()
        # Seen from plain, with m1 dead, m2 is the only media node left.
        await wait_until(least_is("m1"), what="m1's own view is unchanged while stopped")
        await wait_until(
            lambda: (best := plain.least_loaded_media_node()) is not None and best.node_id == "m2",
            within=5.0,
            what="plain picks m2 once m1 is dead",
        )
    finally:
        for node in nodes:
            await node.stop()


@pytest.mark.cluster
async def test_old_and_unreadable_records_neither_break_the_registry_nor_linger(
    keys: ClusterKeys, connect: Callable[..., Redis]
) -> None:
    """A record silent for forget_s is deleted by the first node that reads it, never
    reported; an unreadable record is ignored (and deleted too once that old)."""
    redis = connect()
    seconds, _ = await redis.time()
    old_ms = str((seconds - 120) * 1000)
    now_ms = str(seconds * 1000)
    gone = NodeStatus("gone", "127.0.0.1:1", "", 1.0)
    await redis.hset(keys.nodes, mapping={"gone": msgspec.msgpack.encode(gone)})
    await redis.hset(keys.nodes, mapping={"garbage": b"\xc1", "old-garbage": b"\xc1"})
    await redis.hset(
        keys.nodes_heard, mapping={"gone": old_ms, "garbage": now_ms, "old-garbage": old_ms}
    )
    deaths: list[str] = []
    a = registry(redis, keys, "a", deaths)
    await a.start()
    try:
        # start() has published and read once.
        assert a.polls == 1
        assert a.health()["registry"] == "ok"
        assert ids(await a.nodes()) == ["a"]
        assert sorted(await redis.hkeys(keys.nodes)) == [b"a", b"garbage"]
        assert deaths == []
    finally:
        await a.stop()


@pytest.mark.cluster
@pytest.mark.slow
async def test_the_registry_survives_a_redis_restart_without_false_deaths(
    private_redis: PrivateRedis, connect: Callable[..., Redis]
) -> None:
    """Redis killed for longer than the node timeout and restarted empty: both nodes keep
    running, report degraded, publish again once it is back, and neither declares the other
    dead, even though b reconnects well after a has read the (empty) registry again."""
    keys = ClusterKeys("cc-restart:")
    timeout_s = 1.0
    a_deaths: list[str] = []
    b_deaths: list[str] = []
    a = registry(connect(private_redis.url), keys, "a", a_deaths, node_timeout_s=timeout_s)
    b = registry(connect(private_redis.url), keys, "b", b_deaths, node_timeout_s=timeout_s)
    await a.start()
    await b.start()
    try:
        await wait_until(sees(a, "a", "b"), what="a sees both")
        await wait_until(sees(b, "a", "b"), what="b sees both")

        await private_redis.kill()
        killed = time.monotonic()
        for node in (a, b):
            await wait_until(health_is(node, "degraded"), what=f"{node.node_id} degraded")
        # b is slow to come back: it stays away until a has polled the restarted Redis.
        await b.stop()
        # The outage must outlast the node timeout for the test to mean anything.
        await wait_until(
            lambda: time.monotonic() - killed > 1.5 * timeout_s, what="outage past the timeout"
        )
        await private_redis.start()

        await wait_until(health_is(a, "ok"), what="a recovered")
        polls = a.polls
        await wait_until(lambda: a.polls >= polls + 3, what="a polls the empty registry")
        assert a_deaths == []
        await b.start()
        assert b.health()["registry"] == "ok"
        probe = registry(connect(private_redis.url), keys, "probe")
        await wait_until(
            lambda: _has_records(probe, "a", "b"), within=5.0, what="both records republished"
        )
        polls = a.polls
        await wait_until(lambda: a.polls >= polls + 1.5 * timeout_s / HEARTBEAT_S)
        assert a_deaths == b_deaths == []
        assert ids(a.alive()) == ids(b.alive()) == ["a", "b"]
        assert a.health() == {"registry": "ok", "nodes_alive": 2}
    finally:
        await a.stop()
        await b.stop()


def polled(reg: RedisRegistry, times: int) -> Callable[[], bool]:
    return lambda: reg.polls >= times


def health_is(reg: RedisRegistry, status: str) -> Callable[[], bool]:
    return lambda: reg.health()["registry"] == status


async def _has_records(reg: RedisRegistry, *node_ids: str) -> bool:
    return set(node_ids) <= set(ids(await reg.nodes()))


@pytest.mark.cluster
async def test_a_hung_redis_makes_the_registry_degraded_not_stuck(
    private_redis: PrivateRedis, connect: Callable[..., Redis]
) -> None:
    """Redis stops answering without closing connections: each tick gives up within half
    the node timeout, health says degraded, and heartbeats resume once Redis answers."""
    keys = ClusterKeys("cc-hung:")
    a = registry(connect(private_redis.url), keys, "a", node_timeout_s=1.0)
    await a.start()
    try:
        assert a.health()["registry"] == "ok"
        private_redis.freeze()
        try:
            await wait_until(health_is(a, "degraded"), what="degraded while Redis hangs")
        finally:
            private_redis.thaw()
        polls = a.polls
        await wait_until(health_is(a, "ok"), what="ok once Redis answers")
        await wait_until(lambda: a.polls > polls + 2, what="a polls again")
    finally:
        await a.stop()


@pytest.mark.cluster
async def test_stop_returns_wherever_in_a_tick_it_lands(
    keys: ClusterKeys, connect: Callable[..., Redis]
) -> None:
    """Heartbeats back to back, stopped after a varying number of them: stop() always
    returns, although Python 3.11's asyncio.wait_for inside redis-py sometimes swallows the
    cancellation of the loop."""
    redis = connect()
    for n in range(100):
        node = registry(redis, keys, "a", heartbeat_s=0.001, node_timeout_s=1.0)
        await node.start()
        await wait_until(polled(node, 1 + n % 5))
        async with asyncio.timeout(5.0):
            await node.stop()
