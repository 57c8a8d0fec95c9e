"""The video wall across the cluster: a watcher on one node, the officer on another, the
watch's media on whichever node the authority placed it, and one trace in PostgreSQL."""

from __future__ import annotations

import operator
from functools import partial
from typing import Any

import pytest
from aiortc.mediastreams import VideoStreamTrack

from sessions.postgres_store import PostgresTraceStore
from tests.clusterhelpers import private_redis
from tests.clusternodes import Cluster, Node, cluster
from tests.mediahelpers import Member, count_frames
from tests.polling import wait_until

pytestmark = [pytest.mark.cluster, pytest.mark.postgres]

__all__ = ["cluster", "private_redis"]

COURT = "P0101"


async def three(cluster: Cluster) -> list[Node]:
    """Three nodes, the authority last."""
    for n in ("n1", "n2", "n3"):
        cluster.start(n)
    authority = await cluster.formed()
    return sorted(cluster.nodes.values(), key=lambda node: node.node_id == authority)


async def trace(cluster: Cluster) -> list[tuple[str, dict[str, Any]]]:
    store = await PostgresTraceStore.open(cluster.pg.dsn, schema=cluster.pg.schema, readonly=True)
    try:
        return [(r.kind, dict(r.data)) for r in await store.records(limit=100_000)]
    finally:
        await store.close()


async def test_a_watch_across_nodes_carries_video_and_is_recorded_once(cluster: Cluster) -> None:
    a, b, c = await three(cluster)
    officer_ws = await a.connect("of-1", "officer", COURT)
    op_ws = await b.connect("op-1", "operator", COURT)
    sv_ws = await c.connect("sv-1", "supervisor", "P01")
    # A 16-tile wall on another node than the officer's: the authority caps the uplink.
    await op_ws.request("wall_layout", tiles=16)
    reply = await op_ws.request("watch", reply="watching", officer="of-1")
    watch_id = reply["watch_id"]
    await officer_ws.expect("watch_opened", timeout=5.0, watch_id=watch_id)
    policy = await officer_ws.expect("video_policy", timeout=5.0, watch_id=watch_id)
    assert (policy["max_height"], policy["max_fps"], policy["max_kbps"]) == (180, 12, 200)
    officer = Member(officer_ws, watch_id, [VideoStreamTrack()])
    watcher = Member(op_ws, watch_id, [])
    try:
        await officer.join()
        await watcher.join()
        await watcher.renegotiate()
        await wait_until(lambda: "of-1" in watcher.media.tracks, within=10.0, what="video")
        await count_frames(watcher.media.tracks["of-1"][0], 10)
        rooms = {n.node_id: (await n.health())["media_rooms"] for n in cluster.nodes.values()}
        assert sorted(rooms.values()) == [0, 0, 1], rooms
        # A second watcher on a third node gets the same watch, and is told when the
        # officer goes.
        again = await sv_ws.request("watch", reply="watching", officer="of-1")
        assert again["watch_id"] == watch_id
    finally:
        await officer.close()
        await watcher.close()
    await officer_ws.close()
    for ws in (op_ws, sv_ws):
        ended = await ws.expect("watch_ended", timeout=5.0, watch_id=watch_id)
        assert ended["reason"] == "officer_offline"

    async def stopped() -> bool:
        return len([k for k, _ in await trace(cluster) if k == "watch_stopped"]) == 2

    await wait_until(stopped, within=5.0, what="both stops recorded")
    facts = [(k, d) for k, d in await trace(cluster) if k.startswith("watch_")]
    assert sorted((k, d["by"]) for k, d in facts) == [
        ("watch_started", "op-1"),
        ("watch_started", "sv-1"),
        ("watch_stopped", "op-1"),
        ("watch_stopped", "sv-1"),
    ]
    assert {d["court"] for _, d in facts} == {COURT}

    async def released() -> bool:
        return all([(await n.health())["media_rooms"] == 0 for n in cluster.nodes.values()])

    await wait_until(released, within=5.0, what="the watch's media room closed")


async def test_authority_killed_during_a_watch(cluster: Cluster) -> None:
    """The watch died with its authority: the next one records each watcher's stop
    `node_lost` from the journal, tells the watcher and the officer, and a wall may watch
    again at once."""
    a, b, boss = await three(cluster)
    officer = await a.connect("of-1", "officer", COURT)
    watcher = await b.connect("op-1", "operator", COURT)
    watch_id = (await watcher.request("watch", reply="watching", officer="of-1"))["watch_id"]
    await officer.expect("watch_opened", timeout=5.0, watch_id=watch_id)

    async def journalled() -> bool:
        return any(k == "watch_started" for k, _ in await trace(cluster))

    await wait_until(journalled, within=5.0, what="the start recorded")
    boss.kill()
    ended = await watcher.expect("watch_ended", timeout=15.0, watch_id=watch_id)
    assert ended["reason"] == "node_lost"
    await officer.expect("watch_closed", timeout=5.0, watch_id=watch_id)
    await cluster.formed(a.node_id, b.node_id)
    await watcher.expect("welcome", timeout=10.0)
    again = await watcher.request("watch", reply="watching", officer="of-1")
    assert again["watch_id"] != watch_id

    async def stopped() -> list[dict[str, Any]]:
        return [d for k, d in await trace(cluster) if k == "watch_stopped"]

    async def any_stopped() -> bool:
        return bool(await stopped())

    await wait_until(any_stopped, within=5.0, what="the stop recorded")
    stops = await stopped()
    assert [(d["watch"], d["by"], d["reason"]) for d in stops] == [(watch_id, "op-1", "node_lost")]


async def test_a_dead_authoritys_watch_rooms_are_closed_on_the_media_nodes(
    cluster: Cluster,
) -> None:
    """The next authority has every media node close the dead one's watch rooms (a
    broadcast), so the officers' uplinks go without waiting for their phones to close them
    on `watch_closed` (the test's phones never do)."""
    a, b, boss = await three(cluster)
    op_ws = await b.connect("op-1", "operator", COURT)
    members: list[Member] = []
    try:
        # Two watches: the authority puts their rooms on two nodes (the fewest rooms
        # first), so at least one is on a node that outlives it.
        for officer_id in ("of-1", "of-2"):
            officer_ws = await a.connect(officer_id, "officer", COURT)
            reply = await op_ws.request("watch", reply="watching", officer=officer_id)
            watch_id = reply["watch_id"]
            await officer_ws.expect("watch_opened", timeout=5.0, watch_id=watch_id)
            officer = Member(officer_ws, watch_id, [VideoStreamTrack()])
            watcher = Member(op_ws, watch_id, [])
            members += [officer, watcher]
            await officer.join()
            await watcher.join()
            await watcher.renegotiate()
            tracks = watcher.media.tracks
            await wait_until(
                partial(operator.contains, tracks, officer_id), within=10.0, what="video"
            )
            await count_frames(watcher.media.tracks[officer_id][0], 5)

        async def rooms() -> int:
            return sum([(await n.health())["media_rooms"] for n in (a, b)])

        assert await rooms() >= 1
        boss.kill()
        for _ in range(2):
            ended = await op_ws.expect("watch_ended", timeout=15.0)
            assert ended["reason"] == "node_lost"

        async def closed() -> bool:
            return await rooms() == 0

        await wait_until(closed, within=5.0, what="the dead authority's watch rooms closed")
    finally:
        for member in members:
            await member.close()
