"""Three hub processes on one Redis (each test under its own key prefix) and one PostgreSQL
trace schema: calls, roster, accepts, node death and resumes across nodes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiortc.mediastreams import AudioStreamTrack, VideoStreamTrack
from redis.asyncio import Redis

from sessions.postgres_store import PostgresTraceStore
from signalling.cluster import wire as w
from tests.clusterhelpers import REDIS_URL, PrivateRedis, private_redis
from tests.clusternodes import HEARTBEAT_S, NODE_TIMEOUT_S, Cluster, Node, cluster
from tests.mediahelpers import Member, count_frames, media_call
from tests.polling import wait_until
from tests.wsclient import Client

pytestmark = [pytest.mark.cluster, pytest.mark.postgres]

__all__ = ["cluster", "private_redis"]

COURT = "P0101"
# A dead node is noticed within its timeout plus one heartbeat of the authority's registry
# read; the rest is slack for a loaded CI machine.
DEATH_NOTICED_S = NODE_TIMEOUT_S + HEARTBEAT_S + 2.0


async def three(cluster: Cluster, **env: str) -> tuple[str, list[Node]]:
    """Three nodes; returns the authority's id and the nodes, the authority last."""
    for n in ("n1", "n2", "n3"):
        cluster.start(n, **env)
    authority = await cluster.formed()
    nodes = sorted(cluster.nodes.values(), key=lambda node: node.node_id == authority)
    return authority, nodes


async def call(officer: Client, operator: Client) -> str:
    placed = await officer.request("call_center", reply="call_placed")
    call_id: str = placed["call_id"]
    await operator.expect("call_ringing", timeout=5.0, where=about(call_id))
    await operator.request("accept", call_id=call_id)
    await officer.expect("call_answered", timeout=5.0, where=about(call_id))
    return call_id


def about(call_id: str) -> Callable[[dict[str, Any]], bool]:
    """Matches a message whose `call` is `call_id` (call_ringing, call_answered)."""
    return lambda msg: bool(msg["call"]["call_id"] == call_id)


async def trace_kinds(cluster: Cluster) -> list[tuple[str, dict[str, Any]]]:
    store = await PostgresTraceStore.open(cluster.pg.dsn, schema=cluster.pg.schema, readonly=True)
    try:
        return [(r.kind, dict(r.data)) for r in await store.records(limit=100_000)]
    finally:
        await store.close()


async def test_cross_node_call_with_roster_and_one_trace(cluster: Cluster) -> None:
    _, (a, b, c) = await three(cluster)
    operator = await b.connect("op-1", "operator", COURT)
    officer = await a.connect("of-1", "officer", COURT)
    # Each welcome names the node the client is connected to.
    assert (officer.welcome["node_id"], operator.welcome["node_id"]) == (a.node_id, b.node_id)
    update = await operator.expect("roster_update", timeout=5.0)
    assert update["entry"]["officer"]["id"] == "of-1"
    roster = await operator.request("get_roster", reply="roster")
    assert [e["officer"]["id"] for e in roster["officers"]] == ["of-1"]
    call_id = await call(officer, operator)
    # The operator is busy: a call from an officer on a third node queues, and rings them
    # when they are free again.
    waiter = await c.connect("of-2", "officer", COURT)
    queued = (await waiter.request("call_center", reply="call_placed"))["call_id"]
    await waiter.expect("call_queued", timeout=5.0, call_id=queued)
    await officer.request("hangup", call_id=call_id)
    ended = await operator.expect("call_ended", timeout=5.0, call_id=call_id)
    assert ended["reason"] == "hangup"
    await operator.expect("call_ringing", timeout=5.0, where=about(queued))
    await waiter.request("cancel", call_id=queued)

    async def recorded() -> bool:
        kinds = [k for k, _ in await trace_kinds(cluster)]
        return "call_ended" in kinds

    await wait_until(recorded, within=5.0, what="call recorded")
    records = await trace_kinds(cluster)
    # One trace for the cluster, each fact once, whichever node the users came through.
    sign_ins = sorted(d["user"] for k, d in records if k == "sign_in")
    assert sign_ins == ["of-1", "of-2", "op-1"]
    assert [d["call"] for k, d in records if k == "call_created"] == [call_id, queued]
    assert [d["call"] for k, d in records if k == "call_ended"][:1] == [call_id]


async def test_simultaneous_accepts_on_two_nodes_have_one_winner(cluster: Cluster) -> None:
    # The officer places 100 calls in a few seconds: above the default message rate.
    _, (a, b, c) = await three(cluster, COMMANDCENTER_LIMITS_MESSAGES_PER_S="1000")
    op1 = await a.connect("op-1", "operator", COURT)
    op2 = await b.connect("op-2", "operator", COURT)
    officer = await c.connect("of-1", "officer", COURT)
    wins = {"op-1": 0, "op-2": 0}
    for _ in range(100):
        placed = await officer.request("call_center", reply="call_placed")
        call_id = placed["call_id"]
        for op in (op1, op2):
            await op.expect("call_ringing", timeout=5.0, where=about(call_id))
        ids = await asyncio.gather(*(op.send("accept", call_id=call_id) for op in (op1, op2)))
        replies = [await op.reply_to(i, timeout=5.0) for op, i in zip((op1, op2), ids, strict=True)]
        kinds = sorted(r["type"] for r in replies)
        assert kinds == ["ack", "error"], replies
        loser = next(r for r in replies if r["type"] == "error")
        assert loser["code"] == "call_taken"
        winner = op1 if replies[0]["type"] == "ack" else op2
        wins[winner.user] += 1
        await officer.expect("call_answered", timeout=5.0, where=about(call_id))
        await officer.request("hangup", call_id=call_id)
        await winner.expect("call_ended", timeout=5.0, call_id=call_id)
    assert sum(wins.values()) == 100


@pytest.mark.slow
async def test_node_killed_mid_call(cluster: Cluster) -> None:
    _, (a, b, authority) = await three(cluster)
    officer = await a.connect("of-1", "officer", COURT)
    operator = await b.connect("op-1", "operator", COURT)
    watcher = await authority.connect("sv-1", "supervisor", "P")
    call_id = await call(officer, operator)
    redis = Redis.from_url(REDIS_URL)
    try:
        assert await redis.exists(cluster.keys.presence("of-1"))
        a.kill()
        killed_at = time.monotonic()
        ended = await operator.expect("call_ended", timeout=DEATH_NOTICED_S, call_id=call_id)
        told_after = time.monotonic() - killed_at
        assert ended["reason"] == "node_lost"
        assert told_after < DEATH_NOTICED_S
        offline = await watcher.expect(
            "roster_update",
            timeout=DEATH_NOTICED_S,
            where=lambda m: (
                m["entry"]["officer"]["id"] == "of-1" and m["entry"]["status"] == "offline"
            ),
        )
        assert offline["entry"]["call_id"] is None
        # The roster converged: nobody sees the officer online, on either live node.
        roster = await operator.request("get_roster", reply="roster")
        assert roster["officers"] == [] or all(e["status"] == "offline" for e in roster["officers"])
        # Their presence key expires by its TTL, with nobody to refresh it.
        await wait_until(
            lambda: _gone(redis, cluster.keys.presence("of-1")),
            within=NODE_TIMEOUT_S + 2.0,
            what="presence key expired",
        )

        async def two_alive() -> bool:
            views = [await node.health() for node in (b, authority)]
            return all(v["cluster"]["nodes"] == 2 for v in views)

        # Every live node's registry agrees, each within a heartbeat of the others.
        await wait_until(two_alive, within=HEARTBEAT_S * 2 + 2.0, what="registries converge")
    finally:
        await redis.aclose()
    records = await trace_kinds(cluster)
    assert [d["reason"] for k, d in records if k == "call_ended"] == ["node_lost"]
    assert [d["reason"] for k, d in records if k == "sign_out"] == ["node_lost"]


async def _gone(redis: Redis, key: str) -> bool:
    return not await redis.exists(key)


async def test_reconnect_to_another_node_resumes(cluster: Cluster) -> None:
    _, (a, b, c) = await three(cluster)
    officer = await a.connect("of-1", "officer", COURT)
    operator = await b.connect("op-1", "operator", COURT)
    call_id = await call(officer, operator)
    token = officer.welcome["resume_token"]
    await officer.close()
    await operator.expect("party_away", timeout=5.0, call_id=call_id)
    again = await c.connect("of-1", "officer", COURT, resume=token)
    assert again.welcome["resumed"] is True
    assert [x["call_id"] for x in again.welcome["calls"]] == [call_id]
    await operator.expect("party_back", timeout=5.0, call_id=call_id)
    # Their presence names the new node (the old one deleted only what was still its own).
    redis = Redis.from_url(REDIS_URL)
    try:

        async def moved() -> bool:
            value = await redis.get(cluster.keys.presence("of-1"))
            if value is None:
                return False
            raw = value.encode() if isinstance(value, str) else value
            return w.decode_presence(raw).node == c.node_id

        await wait_until(moved, within=5.0, what="presence moved to the new node")
    finally:
        await redis.aclose()
    # The call goes on through the new node.
    await again.request("hangup", call_id=call_id)
    await operator.expect("call_ended", timeout=5.0, call_id=call_id)
    records = await trace_kinds(cluster)
    assert sorted(d["user"] for k, d in records if k == "sign_in") == ["of-1", "op-1"]


async def test_same_user_on_two_nodes_keeps_the_newer(cluster: Cluster) -> None:
    _, (a, b, _) = await three(cluster)
    first = await a.connect("of-1", "officer", COURT)
    second = await b.connect("of-1", "officer", COURT)
    await first.expect_close(4409, timeout=5.0)
    ack = await second.request("heartbeat", reply="heartbeat_ack", device_time=time.time() * 1000)
    assert ack["ref"]


async def test_cross_node_call_with_media(cluster: Cluster) -> None:
    _, (a, b, _) = await three(cluster)
    officer_ws = await a.connect("of-1", "officer", COURT)
    operator_ws = await b.connect("op-1", "operator", COURT)
    officer, operator, call_id = await media_call(officer_ws, operator_ws)
    try:
        video = next(t for t in operator.media.tracks["of-1"] if t.kind == "video")
        audio = next(t for t in officer.media.tracks["op-1"] if t.kind == "audio")
        await count_frames(video, 10)
        await count_frames(audio, 10)
        # One node relays the call; the member(s) connected elsewhere negotiated through it.
        rooms = {n.node_id: (await n.health())["media_rooms"] for n in cluster.nodes.values()}
        assert sorted(rooms.values()) == [0, 0, 1], rooms
    finally:
        await officer.close()
        await operator.close()
    await officer_ws.request("hangup", call_id=call_id)

    async def released() -> bool:
        return all([(await n.health())["media_rooms"] == 0 for n in cluster.nodes.values()])

    await wait_until(released, within=5.0, what="media room closed")


@pytest.mark.slow
async def test_redis_restarted_mid_run(tmp_path: Path, private_redis: PrivateRedis) -> None:
    cluster = Cluster(tmp_path, private_redis.url, {})
    try:
        authority, (a, b, boss) = await three(cluster)
        officer = await a.connect("of-1", "officer", COURT)
        operator = await b.connect("op-1", "operator", COURT)
        call_id = await call(officer, operator)

        await private_redis.kill()

        async def degraded() -> bool:
            views = [await n.health() for n in (a, b, boss)]
            return all(v["status"] == "degraded" for v in views)

        await wait_until(degraded, within=10.0, what="every node reports degraded")

        async def leaderless() -> bool:
            views = [await n.health() for n in (a, b, boss)]
            return all(v["cluster"]["role"] == "gateway" for v in views)

        # Down for longer than the lease: the authority stops acting as one.
        await wait_until(leaderless, within=10.0, what="the lease ran out")
        # A gateway cannot reach the authority: it says so rather than leaving the client
        # waiting.
        msg_id = await operator.send("get_roster")
        refused = await operator.reply_to(msg_id, timeout=5.0)
        assert (refused["type"], refused["code"]) == ("error", "unavailable")

        await private_redis.start()
        # The same authority takes the lease back, with its calls.
        assert await cluster.formed(within=20.0) == authority
        # Everyone was welcomed again with the current state (the call included).
        again = await operator.expect("welcome", timeout=10.0)
        assert [c["call_id"] for c in again["calls"]] == [call_id]
        await officer.request("hangup", call_id=call_id)
        ended = await operator.expect("call_ended", timeout=5.0, call_id=call_id)
        assert ended["reason"] == "hangup"
        roster = await operator.request("get_roster", reply="roster")
        assert [(e["officer"]["id"], e["status"]) for e in roster["officers"]] == [
            ("of-1", "online")
        ]
        await call(officer, operator)
        assert all(n.proc.poll() is None for n in (a, b, boss))
        # Presence, lost with Redis's data, was written again by each user's node.
        redis = Redis.from_url(private_redis.url)
        try:
            for user in ("of-1", "op-1"):
                assert await redis.exists(cluster.keys.presence(user))
        finally:
            await redis.aclose()
    finally:
        await cluster.close()


@pytest.mark.slow
async def test_authority_killed_mid_call(cluster: Cluster) -> None:
    _, (a, b, boss) = await three(cluster)
    officer = await a.connect("of-1", "officer", COURT)
    operator = await b.connect("op-1", "operator", COURT)
    await boss.connect("sv-1", "supervisor", "P")
    waiter = await b.connect("of-2", "officer", COURT)
    call_id = await call(officer, operator)
    # The only operator is busy: this call waits in the queue.
    queued = (await waiter.request("call_center", reply="call_placed"))["call_id"]
    await waiter.expect("call_queued", timeout=5.0, call_id=queued)
    boss.kill()
    # Its call state died with it: the next authority ends the call for everyone in it.
    for client in (officer, operator):
        ended = await client.expect("call_ended", timeout=15.0, call_id=call_id)
        assert ended["reason"] == "node_lost"
    await cluster.formed(a.node_id, b.node_id)
    # Their sessions carry on under the new authority: welcomed again, same session.
    for client in (officer, operator):
        again = await client.expect("welcome", timeout=10.0)
        assert again["session_id"] == client.welcome["session_id"]
        assert again["resumed"] is True
    # The waiting call was taken over in its place: it rings the operator, free now.
    await operator.expect("call_ringing", timeout=10.0, where=about(queued))
    await operator.request("accept", call_id=queued)
    await waiter.expect("call_answered", timeout=5.0, where=about(queued))
    await waiter.request("hangup", call_id=queued)
    await operator.expect("call_ended", timeout=5.0, call_id=queued)
    roster = await operator.request("get_roster", reply="roster")
    statuses = sorted((e["officer"]["id"], e["status"]) for e in roster["officers"])
    assert statuses == [("of-1", "online"), ("of-2", "online")]
    second = await call(officer, operator)
    await officer.request("hangup", call_id=second)
    await operator.expect("call_ended", timeout=5.0, call_id=second)

    async def settled() -> bool:
        records = await trace_kinds(cluster)
        return any(k == "sign_out" and d["user"] == "sv-1" for k, d in records)

    # The supervisor's session, served by the dead node, is recorded closed.
    await wait_until(settled, within=10.0, what="supervisor signed out")
    records = await trace_kinds(cluster)
    # Counted once: adopted sessions are not sign-ins again, and each call ends once.
    sign_ins = sorted(d["user"] for k, d in records if k == "sign_in")
    assert sign_ins == ["of-1", "of-2", "op-1", "sv-1"]
    adopted = sorted(d["user"] for k, d in records if k == "session_adopted")
    assert adopted == ["of-1", "of-2", "op-1"]
    assert sorted(d["call"] for k, d in records if k == "call_created") == sorted(
        [call_id, queued, second]
    )
    assert [d["call"] for k, d in records if k == "call_taken_over"] == [queued]
    ends = {d["call"]: d["reason"] for k, d in records if k == "call_ended"}
    assert ends == {call_id: "node_lost", queued: "hangup", second: "hangup"}
    signed_out = [(d["user"], d["reason"]) for k, d in records if k == "sign_out"]
    assert signed_out == [("sv-1", "node_lost")]


@pytest.mark.slow
async def test_the_node_relaying_a_calls_media_dies(cluster: Cluster) -> None:
    _, (a, b, _) = await three(cluster)
    officer_ws = await a.connect("of-1", "officer", COURT)
    operator_ws = await b.connect("op-1", "operator", COURT)
    officer, operator, call_id = await media_call(officer_ws, operator_ws)
    try:
        rooms = {n.node_id: (await n.health())["media_rooms"] for n in cluster.nodes.values()}
        relay = next(node for node_id, node in cluster.nodes.items() if rooms[node_id] == 1)
        relay.kill()
        # Whoever is still connected is told the call is over: its media is gone. (If the
        # relay was the authority, the next one ends it from the journal: a lease later.)
        for client, gateway in ((officer_ws, a), (operator_ws, b)):
            if gateway is not relay:
                ended = await client.expect("call_ended", timeout=15.0, call_id=call_id)
                assert ended["reason"] == "node_lost"
    finally:
        await officer.close()
        await operator.close()


async def test_a_conference_across_nodes_with_two_moderators_acting_at_once(
    cluster: Cluster,
) -> None:
    """The host, a co-moderator and the sites on three nodes: the authority owns the
    conference; the floor reaches a site on another node; of two grants decided on the same
    revision from two nodes, 20 times in a row, one wins and the other is told `conflict`."""
    _, (a, b, c) = await three(cluster, COMMANDCENTER_LIMITS_MESSAGES_PER_S="1000")
    host = await a.connect("sup-p", "supervisor", "P")
    co = await b.connect("sup-1", "supervisor", "P01")
    sites = [
        await c.connect("op-1", "operator", "P0101"),
        await b.connect("op-2", "operator", "P0102"),
    ]
    created = await host.request(
        "create_conference", reply="conference_created", title="Across nodes", invite_below=["P01"]
    )
    cid = created["conference"]["conference_id"]
    for client in (host, co, *sites):
        await client.request("join_conference", reply="conference_joined", conference_id=cid)
    await host.request("name_moderator", conference_id=cid, user="sup-1")
    wins = {"sup-p": 0, "sup-1": 0}
    for round_no in range(20):
        joined = await host.request("join_conference", reply="conference_joined", conference_id=cid)
        revision = joined["state"]["revision"]
        target = ("op-1", "op-2")[round_no % 2]
        ids = await asyncio.gather(
            *(
                m.send("grant_floor", conference_id=cid, site=target, revision=revision)
                for m in (host, co)
            )
        )
        replies = [await m.reply_to(i, timeout=5.0) for m, i in zip((host, co), ids, strict=True)]
        assert sorted(r["type"] for r in replies) == ["ack", "error"], replies
        loser = next(r for r in replies if r["type"] == "error")
        assert loser["code"] == "conflict"
        wins["sup-p" if replies[0]["type"] == "ack" else "sup-1"] += 1
        holder = sites[round_no % 2]
        await holder.expect(
            "floor_status", timeout=5.0, where=lambda m: m["floor"]["state"] == "permitted"
        )
        await host.request("mute_all", conference_id=cid)
        await holder.expect(
            "floor_status", timeout=5.0, where=lambda m: m["floor"]["state"] == "not_permitted"
        )
    assert sum(wins.values()) == 20
    await host.request("end_conference", conference_id=cid)
    for client in sites:
        await client.expect("conference_ended", timeout=5.0, conference_id=cid)
    kinds = [kind for kind, data in await trace_kinds(cluster) if data.get("conference") == cid]
    assert kinds.count("conference_started") == 1
    assert kinds.count("floor_granted") == 20


@pytest.mark.slow
async def test_authority_killed_during_a_conference(cluster: Cluster) -> None:
    """A conference whose journalled state the next authority cannot restore (here: made
    unreadable) ends `node_lost` from the journal, every site on a surviving node is told, the
    trace holds the end once, and a new conference can be held at once. (One it can restore
    carries on: tests/test_cluster_conference_failover.py.)"""
    _, (a, b, boss) = await three(cluster)
    host = await a.connect("sup-p", "supervisor", "P")
    site = await b.connect("op-1", "operator", "P0101")
    created = await host.request(
        "create_conference", reply="conference_created", title="Doomed", invite_below=["P01"]
    )
    cid = created["conference"]["conference_id"]
    for client in (host, site):
        await client.request("join_conference", reply="conference_joined", conference_id=cid)
    await host.request("grant_floor", conference_id=cid, site="op-1")
    await site.expect(
        "floor_status", timeout=5.0, where=lambda m: m["floor"]["state"] == "permitted"
    )
    redis = Redis.from_url(cluster.redis_url)
    try:

        async def journalled() -> bool:
            value = await redis.hget(cluster.keys.journal_conferences, cid)
            snap = None if value is None else w.decode_journal_conference(_raw(value)).snapshot
            return snap is not None and snap["holders"] == [["op-1", None]]

        await wait_until(journalled, within=5.0, what="the conference's snapshot journalled")
        value = await redis.hget(cluster.keys.journal_conferences, cid)
        assert value is not None
        entry = w.decode_journal_conference(_raw(value))
        bad = w.JournalConference(notify=entry.notify, ended=entry.ended, snapshot={"version": 9})
        await redis.hset(cluster.keys.journal_conferences, cid, w.encode(bad))
    finally:
        await redis.aclose()
    boss.kill()
    for client in (host, site):
        ended = await client.expect("conference_ended", timeout=15.0, conference_id=cid)
        assert ended["reason"] == "node_lost"
    await cluster.formed(a.node_id, b.node_id)
    await host.expect("welcome", timeout=10.0)
    again = await host.request(
        "create_conference", reply="conference_created", title="Again", invite_below=["P01"]
    )
    assert again["conference"]["status"] == "running"
    records = await trace_kinds(cluster)
    ends = [d for k, d in records if k == "conference_ended" and d["conference"] == cid]
    assert [(d["reason"], d["court"]) for d in ends] == [("node_lost", "P")]


async def test_a_conferences_media_across_nodes_follows_the_floor(cluster: Cluster) -> None:
    """The host and two sites on three nodes: one node serves the conference's media, and
    the site granted the floor is heard by the other site through it."""
    _, (a, b, c) = await three(cluster)
    host_ws = await a.connect("sup-p", "supervisor", "P")
    op1_ws = await c.connect("op-1", "operator", "P0101")
    op2_ws = await b.connect("op-2", "operator", "P0102")
    created = await host_ws.request(
        "create_conference",
        reply="conference_created",
        title="Media across nodes",
        invite_below=["P01"],
    )
    cid = created["conference"]["conference_id"]
    members = []
    try:
        for ws in (host_ws, op1_ws, op2_ws):
            await ws.request("join_conference", reply="conference_joined", conference_id=cid)
            member = Member(ws, cid, [VideoStreamTrack(), AudioStreamTrack()])
            members.append(member)
            await member.join()
            await member.renegotiate()
        await host_ws.request("grant_floor", conference_id=cid, site="op-1")
        await op2_ws.expect(
            "conference_media",
            timeout=5.0,
            where=lambda m: m["audio"][:2] == ["sup-p", "op-1"] and m["spotlight"] == "op-1",
        )
        tracks = members[2].media.tracks
        await wait_until(lambda: "audio-1" in tracks, what="op-2's second audio slot")
        await count_frames(tracks["audio-1"][0], 10)
        await count_frames(tracks["spotlight"][0], 10)
        rooms = {n.node_id: (await n.health())["media_rooms"] for n in cluster.nodes.values()}
        assert sorted(rooms.values()) == [0, 0, 1], rooms
    finally:
        for member in members:
            await member.close()
    await host_ws.request("end_conference", conference_id=cid)

    async def released() -> bool:
        return all([(await n.health())["media_rooms"] == 0 for n in cluster.nodes.values()])

    await wait_until(released, within=5.0, what="the conference's media room closed")


def _raw(value: bytes | str) -> bytes:
    """A hash field as redis-py returns it (bytes: the clients here do not decode)."""
    return value if isinstance(value, bytes) else value.encode()
