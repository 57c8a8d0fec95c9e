"""A conference survives the SIGKILL of the cluster's authority (docs/cluster.md, *Failure*):
three real hub processes on the real Redis and PostgreSQL; the next authority restores the
conference from the journal (`journal:conferences`, `journal:media`) with the same floor
holder and mode, its media stays on its live node (a site there keeps seeing the holder),
and a site whose node died leaves `node_lost` after the grace."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from typing import Any

import msgspec
import pytest
from aiortc.mediastreams import AudioStreamTrack, VideoStreamTrack
from redis.asyncio import Redis

from media import cascade_frames as cf
from signalling.cluster import wire as w
from signalling.cluster.nodes import OVERLOADED_CPU, NodeStatus
from tests.clusternodes import HEARTBEAT_S, Cluster, Node, cluster
from tests.mediahelpers import Member, count_frames
from tests.polling import wait_until
from tests.test_cluster_hub import trace_kinds

pytestmark = [pytest.mark.cluster, pytest.mark.postgres]

__all__ = ["cluster"]

GRACE_S = 4.0  # presence.grace_s: how long a site not back keeps its place


async def home_of(cluster: Cluster, cid: str) -> str:
    """The media node the authority journalled for conference `cid`."""
    redis = Redis.from_url(cluster.redis_url)
    try:
        found: list[str] = []

        async def placed() -> bool:
            value = await redis.hget(cluster.keys.journal_media, cid)
            if value is not None:
                found[:] = [w.decode_journal_media(_raw(value)).home]
            return bool(found)

        await wait_until(placed, within=5.0, what=f"{cid}'s media placement journalled")
        return found[0]
    finally:
        await redis.aclose()


async def snapshot_of(cluster: Cluster, cid: str) -> dict[str, Any] | None:
    redis = Redis.from_url(cluster.redis_url)
    try:
        value = await redis.hget(cluster.keys.journal_conferences, cid)
        return None if value is None else w.decode_journal_conference(_raw(value)).snapshot
    finally:
        await redis.aclose()


async def received(member: Member) -> int:
    """RTP packets `member`'s peer connection has received, every track."""
    report = await member.media.pc.getStats()
    return sum(
        int(getattr(stat, "packetsReceived", 0))
        for stat in report.values()
        if getattr(stat, "type", "") == "inbound-rtp"
    )


async def _more(member: Member, than: int) -> bool:
    return await received(member) > than


@pytest.mark.slow
@pytest.mark.timeout(150)
async def test_a_conference_survives_its_authoritys_death(cluster: Cluster) -> None:
    """Two conferences (sup-p moderating; op-1 and op-2 on the surviving nodes, op-3 on the
    authority's): their media go to two different nodes (the fewest rooms first), so one is
    on a survivor, where its viewer must keep seeing the holder through the failover."""
    grace = {"COMMANDCENTER_PRESENCE_GRACE_S": str(GRACE_S)}
    boss = cluster.start("n1", **grace)
    assert await cluster.formed("n1") == "n1"
    a = cluster.start("n2", **grace)
    b = cluster.start("n3", **grace)
    assert await cluster.formed() == "n1"

    host = await a.connect("sup-p", "supervisor", "P")
    speaker = await a.connect("op-1", "operator", "P0101")
    viewer = await b.connect("op-2", "operator", "P0102")
    doomed = await boss.connect("op-3", "operator", "P0101")
    conferences: dict[str, str] = {}
    for title in ("Survives", "Also survives"):
        created = await host.request(
            "create_conference", reply="conference_created", title=title, invite_below=["P01"]
        )
        cid = created["conference"]["conference_id"]
        for client in (host, speaker, viewer, doomed):
            await client.request("join_conference", reply="conference_joined", conference_id=cid)
        await host.request("set_floor", conference_id=cid, max_speakers=2, mode="open")
        await host.request("grant_floor", conference_id=cid, site="op-1")
        conferences[cid] = await home_of(cluster, cid)
    assert len(set(conferences.values())) == 2, conferences
    cid = next(c for c, home in conferences.items() if home != "n1")
    members = [
        Member(ws, cid, [VideoStreamTrack(), AudioStreamTrack()]) for ws in (speaker, viewer)
    ]
    try:
        for member in members:
            await member.join()
            await member.renegotiate()
        await viewer.expect(
            "conference_media",
            timeout=10.0,
            where=lambda m: m["conference_id"] == cid and m["spotlight"] == "op-1",
        )
        tracks = members[1].media.tracks
        await wait_until(lambda: "spotlight" in tracks, what="op-2's spotlight slot")
        await count_frames(tracks["spotlight"][0], 5)
        for each in conferences:

            async def journalled(each: str = each) -> bool:
                snap = await snapshot_of(cluster, each)
                return snap is not None and [h[0] for h in snap["holders"]] == ["op-1"]

            await wait_until(journalled, within=5.0, what="the conference's snapshot")

        boss.kill()
        killed = time.monotonic()
        assert await cluster.formed("n2", "n3") in ("n2", "n3")
        await host.expect("welcome", timeout=10.0)  # its session adopted
        # The site on a surviving node keeps seeing the holder, served by the same node,
        # after the new authority sent that node the conference's room again: packets keep
        # arriving (not frames buffered before the kill).
        before = await received(members[1])
        await wait_until(
            lambda: _more(members[1], before + 60),
            within=max(0.5, 10.0 - (time.monotonic() - killed)),
            what="op-2 receiving the holder's media after the failover",
        )
        await count_frames(tracks["spotlight"][0], 10)
        media_s = time.monotonic() - killed
        assert media_s < 10.0, media_s
        # Both conferences run on: same holder, same mode (a moderator joining again is
        # answered with its state).
        for each in conferences:
            joined = await host.request(
                "join_conference", reply="conference_joined", conference_id=each
            )
            state = joined["state"]
            assert [h["id"] for h in state["holders"]] == ["op-1"]
            assert (state["mode"], state["max_speakers"]) == ("open", 2)
            assert state["status"] == "running"

        # op-3's node died with the authority: it leaves `node_lost` once the grace is over.
        async def lost() -> bool:
            records = await trace_kinds(cluster)
            gone = {
                d["conference"]
                for k, d in records
                if k == "site_left" and d["user"] == "op-3" and d["reason"] == "node_lost"
            }
            return gone == set(conferences)

        await wait_until(lost, within=GRACE_S + 10.0, what="op-3 left node_lost")
        # The others are still in: the moderator raises no site_left for them.
        records = await trace_kinds(cluster)
        left = {d["user"] for k, d in records if k == "site_left"}
        assert left == {"op-3"}
        adopted = sorted(
            (d["conference"], d["holders"], d["mode"])
            for k, d in records
            if k == "conference_adopted"
        )
        assert adopted == sorted((c, ["op-1"], "open") for c in conferences)
        assert not [d for k, d in records if k == "conference_ended"]
        # The floor still works on the new authority.
        await host.request("revoke_floor", conference_id=cid, site="op-1")
        await speaker.expect(
            "floor_status", timeout=10.0, where=lambda m: m["floor"]["state"] == "pending_revoke"
        )
    finally:
        for member in members:
            await member.close()


@pytest.mark.slow
@pytest.mark.timeout(90)
async def test_a_moderators_last_decision_survives_the_authoritys_death(
    cluster: Cluster,
) -> None:
    """Site churn is journalled at most every `redis.journal_conference_s` (here a minute),
    a moderator's decision at once: the floor granted and the mode set just before the
    authority is killed are what the next authority carries on with."""
    churn = {"COMMANDCENTER_REDIS_JOURNAL_CONFERENCE_S": "60"}
    boss = cluster.start("n1", **churn)
    assert await cluster.formed("n1") == "n1"
    node = cluster.start("n2", **churn)
    assert await cluster.formed() == "n1"
    host = await node.connect("sup-p", "supervisor", "P")
    site = await node.connect("op-1", "operator", "P0101")
    created = await host.request(
        "create_conference", reply="conference_created", title="Decided", invite_below=["P01"]
    )
    cid = created["conference"]["conference_id"]
    for client in (host, site):
        await client.request("join_conference", reply="conference_joined", conference_id=cid)
    await host.request("set_floor", conference_id=cid, max_speakers=2, mode="open")
    await host.request("grant_floor", conference_id=cid, site="op-1")

    async def journalled() -> bool:
        snap = await snapshot_of(cluster, cid)
        return (
            snap is not None
            and [h[0] for h in snap["holders"]] == ["op-1"]
            and snap["policy"]["mode"] == "open"
        )

    # Well within the minute the churn waits: the decision was written at once.
    await wait_until(journalled, within=5.0, what="the grant journalled at once")
    boss.kill()
    assert await cluster.formed("n2") == "n2"
    await host.expect("welcome", timeout=10.0)
    joined = await host.request("join_conference", reply="conference_joined", conference_id=cid)
    state = joined["state"]
    assert [h["id"] for h in state["holders"]] == ["op-1"]
    assert (state["mode"], state["max_speakers"]) == ("open", 2)


@pytest.mark.slow
@pytest.mark.timeout(90)
async def test_a_join_queued_by_the_dead_authority_is_let_in_by_the_next(
    cluster: Cluster,
) -> None:
    """A site queued by the join pace (`conference_waiting`) when the authority dies is not
    left waiting for a turn that died with it: its node asks the next authority again, under
    the same id, and the site gets its `conference_joined` (the pace here lets one site in
    every 20 s, so the dead authority's turn cannot be what answers)."""
    slow = {"COMMANDCENTER_CONFERENCES_JOINS_PER_S": "0.05"}
    boss = cluster.start("n1", **slow)
    assert await cluster.formed("n1") == "n1"
    node = cluster.start("n2", **slow)
    assert await cluster.formed() == "n1"
    host = await node.connect("sup-p", "supervisor", "P")
    first = await node.connect("op-1", "operator", "P0101")
    second = await node.connect("op-2", "operator", "P0102")
    created = await host.request(
        "create_conference", reply="conference_created", title="Paced", invite_below=["P01"]
    )
    cid = created["conference"]["conference_id"]
    await host.request("join_conference", reply="conference_joined", conference_id=cid)
    await first.request("join_conference", reply="conference_joined", conference_id=cid)
    ref = await second.send("join_conference", conference_id=cid)
    waiting = await second.expect("conference_waiting", timeout=5.0, ref=ref)
    assert waiting["wait_s"] > 5.0

    async def journalled() -> bool:
        snap = await snapshot_of(cluster, cid)
        return snap is not None and "op-1" in str(snap["sites"])

    await wait_until(journalled, within=5.0, what="op-1's join journalled")
    boss.kill()
    killed = time.monotonic()
    assert await cluster.formed("n2") == "n2"
    await second.expect("welcome", timeout=10.0)
    joined = await second.expect(
        "conference_joined", timeout=max(1.0, 15.0 - (time.monotonic() - killed)), ref=ref
    )
    assert joined["conference"]["conference_id"] == cid
    # The conference carried on has both sites.
    state = await host.request("join_conference", reply="conference_joined", conference_id=cid)
    assert {"op-1", "op-2"} <= {site["user"]["id"] for site in state["sites"]}


def _raw(value: bytes | str) -> bytes:
    """A hash field as redis-py returns it (bytes: the clients here do not decode)."""
    return value if isinstance(value, bytes) else value.encode()


CASCADE = {
    "COMMANDCENTER_MEDIA_WORKERS": "1",
    "COMMANDCENTER_MEDIA_RECORD": "false",
    "COMMANDCENTER_MEDIA_CASCADE_ADDRESS": "127.0.0.1",
}


@pytest.mark.slow
@pytest.mark.timeout(150)
async def test_a_cascaded_conference_gets_a_new_key_when_its_authority_dies(
    cluster: Cluster,
) -> None:
    """A conference spread over n2 and n3 (the authority n1 has no cascade): after n1's
    SIGKILL the next authority keeps home and sites where they were and sends both nodes a
    new key over their channels; a datagram sealed with the old key is dropped `bad_key`."""
    grace = {"COMMANDCENTER_PRESENCE_GRACE_S": str(GRACE_S)}
    cluster.start("n1", **grace)
    assert await cluster.formed("n1") == "n1"
    for node_id in ("n2", "n3"):
        cluster.start(node_id, **CASCADE, **grace)
    for node in cluster.nodes.values():
        await node.server.wait_healthy()
    assert await cluster.formed() == "n1"
    redis = Redis.from_url(cluster.redis_url)
    pubsub = redis.pubsub()
    seen: list[tuple[str, w.CascadeChanged]] = []
    await pubsub.subscribe(*(cluster.keys.node_channel(n) for n in ("n2", "n3")))

    async def listen() -> None:
        async for message in pubsub.listen():
            if message["type"] != "message":
                continue
            envelope = w.decode_node(_raw(message["data"]))
            if isinstance(envelope, w.CascadeChanged):
                seen.append((_text(message["channel"]), envelope))

    listener = asyncio.get_running_loop().create_task(listen())
    try:

        async def advertised() -> bool:
            for node_id in ("n2", "n3"):
                raw = await redis.hget(cluster.keys.nodes, node_id)
                if raw is None:
                    return False
                status = msgspec.msgpack.decode(_raw(raw), type=NodeStatus)
                if not status.cascade_address or status.load.cpu >= OVERLOADED_CPU:
                    return False
            return True

        await wait_until(advertised, within=30.0, what="n2 and n3 advertise their cascade")
        await asyncio.sleep(HEARTBEAT_S * 2)  # the authority's registry read catches up
        b, c = cluster.nodes["n2"], cluster.nodes["n3"]
        host = await b.connect("sup-p", "supervisor", "P")
        sites = [await b.connect("op-1", "operator", "P0101")]
        sites.append(await c.connect("op-2", "operator", "P0102"))
        created = await host.request(
            "create_conference", reply="conference_created", title="Cascade", invite_below=["P01"]
        )
        cid = created["conference"]["conference_id"]
        for client in (host, *sites):
            await client.request("join_conference", reply="conference_joined", conference_id=cid)

        def cascades() -> list[tuple[str, Any]]:
            return [(ch, e.cascade) for ch, e in seen if e.conference_id == cid and e.cascade]

        await wait_until(lambda: len(cascades()) >= 2, what="both nodes told the cascade")

        async def journalled() -> bool:
            # The journal takes a conference's state at most every 0.5 s.
            snap = await snapshot_of(cluster, cid)
            return snap is not None and len(snap["sites"]) == 3

        await wait_until(journalled, what="the conference's three sites journalled")
        first = cascades()[-1][1]
        old_key, home, placed = first.key, first.home, dict(first.sites)
        assert set(placed.values()) <= {"n2", "n3"}

        # Before: the key opens the home's cascade (what the datagram carries is then
        # refused for itself, not for its seal).
        away = cluster.nodes[home]
        sender = next(n for n in sorted(placed.values()) if n != home)
        opened = await _send_sealed(away, old_key, cid, sender)
        assert opened["bad_key"] == 0, opened

        cluster.nodes["n1"].kill()
        successor = await cluster.formed("n2", "n3")

        await wait_until(
            lambda: any(cas.key != old_key for _, cas in cascades()),
            within=15.0,
            what="a new cascade key sent",
        )
        latest = {ch: cas for ch, cas in cascades() if cas.key != old_key}
        # Every node of the conference but the successor (which applies its own placement
        # in process) is told over its channel.
        involved = {*placed.values(), home} - {successor}
        assert set(latest) == {cluster.keys.node_channel(n) for n in involved}, latest
        for cas in latest.values():
            assert len(cas.key) == 32
            assert cas.home == home
            assert cas.sites == placed

        # The old key opens nothing on the nodes that carry the conference on.
        refused = await _send_sealed(away, old_key, cid, sender)
        assert refused["bad_key"] == 3, refused
    finally:
        listener.cancel()
        await pubsub.aclose()  # type: ignore[no-untyped-call]
        await redis.aclose()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


async def _send_sealed(node: Node, key: bytes, cid: str, sender: str) -> dict[str, int]:
    """Three datagrams sealed with `key` as from `sender`, to `node`'s cascade: how its drop
    counters moved once all three are accounted for (dropped for a reason, or received)."""

    async def counters() -> dict[str, int]:
        health = (await node.health())["media_cascade"]
        return {
            "received": int(health["received"]),
            **{k: int(v) for k, v in health["dropped"].items()},
        }

    before = await counters()
    address, port = cf.parse_address((await node.health())["media_cascade"]["address"])
    sealer = cf.Sealer(key, cid, sender, os.urandom(8))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for _ in range(3):
            sock.sendto(sealer.seal(b"\x01\x01\x00\x00 not a frame"), (address, port))
    moved: dict[str, int] = {}

    async def accounted() -> bool:
        after = await counters()
        moved.clear()
        moved.update(
            {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}
        )
        return sum(v for k, v in moved.items() if k != "received") >= 3 or (
            moved.get("received", 0) >= 3
        )

    await wait_until(accounted, what="three sealed datagrams accounted for")
    moved.setdefault("bad_key", 0)
    return moved
