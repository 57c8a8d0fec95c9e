"""One conference over every node of a cluster (media.cascade, docs/cluster.md): two real hub
processes on the real Redis, each with a media worker and a cascade UDP socket on its own
loopback address (127.0.0.1, 127.0.0.2), real aiortc sites. The authority spreads the sites
over both nodes; what the stage lets cross goes over the sealed UDP cascade, nothing else."""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest
from aiortc.mediastreams import AudioStreamTrack, VideoStreamTrack
from redis.asyncio import Redis

from media import cascade_frames as cf
from media import ice
from signalling.cluster.nodes import OVERLOADED_CPU, NodeStatus
from tests.clusternodes import Cluster, Node, cluster
from tests.mediahelpers import Member, count_frames, media_call
from tests.polling import wait_until
from tests.test_media_conference import lineup, media_of
from tests.wsclient import Client

pytestmark = pytest.mark.cluster
__all__ = ["cluster"]

# Each node: one media worker (the cascade is one more place on its fabric), its media and
# its cascade on an address of its own, so a test can tell from an answer's candidates which
# node terminates a site.
ADDRESSES = {"n1": "127.0.0.1", "n2": "127.0.0.2"}


def node_env(address: str) -> dict[str, str]:
    return {
        "COMMANDCENTER_MEDIA_WORKERS": "1",
        "COMMANDCENTER_MEDIA_RECORD": "false",
        "COMMANDCENTER_MEDIA_ICE_ADDRESSES": address,
        "COMMANDCENTER_MEDIA_CASCADE_ADDRESS": address,
    }


@pytest.fixture(autouse=True)
def loopback_ice() -> Iterator[None]:
    ice.use_addresses(["127.0.0.1"])
    yield
    ice.use_addresses([])


async def two_nodes(cluster: Cluster) -> tuple[Node, Node]:
    """n1 and n2 formed, each advertising its cascade address; (the authority, the other)."""
    for node_id, address in ADDRESSES.items():
        cluster.start(node_id, **node_env(address))
    for node in cluster.nodes.values():
        await node.server.wait_healthy()
    authority = await cluster.formed()
    redis = Redis.from_url(cluster.redis_url)
    try:

        async def advertised() -> bool:
            for node_id in ADDRESSES:
                raw = await redis.hget(cluster.keys.nodes, node_id)
                if raw is None:
                    return False
                assert isinstance(raw, bytes)
                status = msgspec.msgpack.decode(raw, type=NodeStatus)
                # Past the start's CPU (workers importing aiortc): a node that looks
                # overloaded would take no conference's home, and the tests place by load.
                if not status.cascade_address or status.load.cpu >= OVERLOADED_CPU:
                    return False
            return True

        await wait_until(advertised, within=20.0, what="both nodes advertise their cascade")
    finally:
        await redis.aclose()
    other = next(n for n in cluster.nodes.values() if n.node_id != authority)
    # Every node's registry sees the other's address a heartbeat later.
    await wait_until(
        lambda: _seen(cluster.nodes[authority]), within=5.0, what="the authority sees both"
    )
    return cluster.nodes[authority], other


async def _seen(node: Node) -> bool:
    health = await node.health()
    return int(health["cluster"]["nodes"]) >= 2


async def meeting(node: Node) -> tuple[Client, dict[str, Client], str]:
    """sup0 hosts a meeting of P01's courts; op1 and op3 join; all connected to `node`."""
    host = await node.connect("sup0", "supervisor", "P")
    sites = {
        "op1": await node.connect("op1", "operator", "P0101"),
        "op3": await node.connect("op3", "operator", "P0102"),
    }
    created = await host.request(
        "create_conference", reply="conference_created", title="Across nodes", invite_below=["P01"]
    )
    cid: str = created["conference"]["conference_id"]
    await host.request("join_conference", reply="conference_joined", conference_id=cid)
    for client in sites.values():
        await client.request("join_conference", reply="conference_joined", conference_id=cid)
    return host, sites, cid


def node_of(member: Member) -> str:
    """The node whose media address the server's answer offered."""
    sdp = member.media.pc.remoteDescription.sdp
    found = {n for n, address in ADDRESSES.items() if f" {address} " in sdp}
    assert len(found) == 1, sdp
    return found.pop()


async def cascade_of(node: Node) -> dict[str, Any]:
    health = await node.health()
    cascade: dict[str, Any] = health["media_cascade"]
    return cascade


async def test_a_conference_spreads_over_two_nodes_and_the_stage_crosses_the_cascade(
    cluster: Cluster,
) -> None:
    """The host and op3 on one node, op1 on the other. op1 granted the floor: the host and op3
    see and hear it across the cascade; op3 granted: op1 hears and sees it the other way. A
    site without the floor is never sent across (the cascade's per-track counters), and a
    datagram sealed with another key is dropped and counted."""
    authority, _ = await two_nodes(cluster)
    host_ws, sites, cid = await meeting(authority)
    started = time.monotonic()
    async with media_of(cid, host_ws, sites["op1"], sites["op3"]) as members:
        host, op1, op3 = members
        where = {m.ws.user: node_of(m) for m in members}
        # Home first, then the node with the fewest sites: the host and op3 share a node.
        assert where["sup0"] == where["op3"] != where["op1"], where
        home, away = cluster.nodes[where["sup0"]], cluster.nodes[where["op1"]]

        await host_ws.request("grant_floor", conference_id=cid, site="op1")
        await lineup(sites["op3"], cid, spotlight="op1")
        await lineup(host_ws, cid, spotlight="op1")
        for member in (host, op3):
            tracks = member.media.tracks
            await wait_until(lambda t=tracks: "spotlight" in t, what="the spotlight")  # type: ignore[misc]
            await count_frames(tracks["spotlight"][0], 5, 15.0)
            await wait_until(lambda t=tracks: "audio-1" in t, what="op1's voice")  # type: ignore[misc]
            await count_frames(tracks["audio-1"][0], 20, 15.0)

        # op3 holds no floor: its voice has not crossed. op1's has, from the other node.
        out_home = (await cascade_of(home))["tracks_out"]
        out_away = (await cascade_of(away))["tracks_out"]
        assert out_away.get("op1:audio", 0) > 0, out_away
        assert out_away.get("op1:video", 0) > 0, out_away
        assert out_home.get("sup0:audio", 0) > 0, out_home
        assert out_home.get("op3:audio", 0) == 0, out_home
        assert out_away.get("op3:audio", 0) == 0, out_away

        # Now op3 (on the home node) speaks: op1, on the other, sees and hears it.
        await host_ws.request("revoke_floor", conference_id=cid, site="op1")
        await host_ws.request("grant_floor", conference_id=cid, site="op3")
        await lineup(sites["op1"], cid, spotlight="op3", audio=["sup0", "op3", None])
        await wait_until(lambda: "spotlight" in op1.media.tracks, what="op1's spotlight")
        await count_frames(op1.media.tracks["spotlight"][0], 10, 15.0)
        await wait_until(lambda: "audio-1" in op1.media.tracks, what="op3's voice at op1")
        await count_frames(op1.media.tracks["audio-1"][0], 20, 15.0)

        async def op3_heard_across() -> bool:
            out = (await cascade_of(home))["tracks_out"]
            return int(out.get("op3:audio", 0)) >= 20 and int(out.get("op3:video", 0)) > 0

        await wait_until(op3_heard_across, within=10.0, what="op3's voice crossed")

        # A datagram sealed with any other key: dropped and counted, never handed on.
        before = await cascade_of(away)
        host_addr, port = cf.parse_address(before["address"])
        forged = cf.Sealer(os.urandom(cf.KEY_BYTES), cid, home.node_id, os.urandom(8))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for _ in range(3):
                sock.sendto(forged.seal(b"\x01\x01\x00\x00 not a frame"), (host_addr, port))

        async def dropped() -> bool:
            return int((await cascade_of(away))["dropped"].get("bad_key", 0)) >= 3

        await wait_until(dropped, within=5.0, what="forged datagrams dropped as bad_key")

        # A live call shown to the conference: its media stays on its node (its members are
        # told nothing), which sends the officer's tracks across like a site's uplink, and
        # the sites on both nodes see the officer.
        officer_ws = await authority.connect("o-1", "officer", "P0101")
        operator_ws = await authority.connect("op2", "operator", "P0101")
        officer, operator, call_id = await media_call(officer_ws, operator_ws)
        try:
            await host_ws.request("share_call", conference_id=cid, call_id=call_id)
            for ws in (host_ws, sites["op1"], sites["op3"]):
                await lineup(ws, cid, spotlight="o-1")
            shown_from = cluster.nodes[node_of(officer)]
            for member in members:
                spotlight = member.media.tracks["spotlight"][0]
                await count_frames(spotlight, 10, 15.0)

            async def officer_crossed() -> bool:
                out = (await cascade_of(shown_from))["tracks_out"]
                return int(out.get("o-1:video", 0)) > 0 and int(out.get("o-1:audio", 0)) > 0

            await wait_until(officer_crossed, within=10.0, what="the officer's tracks crossed")
            for member in (officer, operator):
                assert not [m for m in member.ws.unread() if m["type"] == "media_restart"]
        finally:
            await officer.close()
            await operator.close()

        # Keyframe requests cross at most once per track and interval (each router paces
        # its own, media.keyframe_interval_s = 0.5), whatever its sites asked.
        most = (time.monotonic() - started) / 0.5 + 1
        for node in (home, away):
            asked = (await cascade_of(node))["keyframes_out"]
            assert all(count <= most for count in asked.values()), (asked, most)


@pytest.mark.slow
async def test_a_killed_node_s_sites_come_back_on_the_live_node(cluster: Cluster) -> None:
    """SIGKILL the node that is not the authority (its hub and its worker): by load, it is
    the home of one conference (X: host sup0, sites op1 and op3) and has a site of the other
    (Y: host sup1, site op5). The sites whose media it terminated are told `media_restart`,
    offer again on the live node and see the spotlight again within seconds; the sites on
    the live node keep their peer connections and their stream (no `media_restart`); a dead
    home's router moves to the live node, its state (the speaker in the spotlight) being the
    authority's."""
    authority, other = await two_nodes(cluster)
    # Conferences homed by load: the second goes where the first is not, unless a node
    # looked busy at a heartbeat (its CPU is sampled every 0.3 s here); up to a third is
    # made to have one homed on each node. Should all share a home, this run kills two homes
    # or none (each conference has sites on both nodes either way).
    hosts: list[tuple[Client, str, Member]] = []
    homes: dict[str, str] = {}
    for user in ("sup0", "sup1", "sup2"):
        if len(hosts) >= 2 and len(set(homes.values())) == 2:
            break
        ws = await authority.connect(user, "supervisor", "P")
        created = await ws.request(
            "create_conference",
            reply="conference_created",
            title=user,
            invite_below=["P01", "P02"],
        )
        conference: str = created["conference"]["conference_id"]
        await ws.request("join_conference", reply="conference_joined", conference_id=conference)
        host = Member(ws, conference, [VideoStreamTrack(), AudioStreamTrack()])
        await host.join()
        await host.renegotiate()
        hosts.append((ws, conference, host))
        homes[conference] = node_of(host)
    # X: homed on the node to kill if any is; Y: another.
    ordered = sorted(hosts, key=lambda h: homes[h[1]] != other.node_id)
    (x_ws, x, x_host), (y_ws, y, y_host) = ordered[0], ordered[-1]
    try:
        x_sites = await join_sites(authority, x, [("op1", "P0101"), ("op3", "P0102")])
        y_sites = await join_sites(authority, y, [("op5", "P0201")])
        async with media_of(x, *x_sites) as x_members, media_of(y, *y_sites) as y_members:
            await x_ws.request("grant_floor", conference_id=x, site="op1")
            await y_ws.request("grant_floor", conference_id=y, site="op5")
            members = [x_host, *x_members, y_host, *y_members]
            spoken = {x: "op1", y: "op5"}
            where = {m.ws.user: node_of(m) for m in members}
            for conference in (x, y):
                # Home first, then the node with the fewest of its sites.
                on = {where[m.ws.user] for m in members if m.call_id == conference}
                assert on == set(ADDRESSES), where
                host = x_host if conference == x else y_host
                assert where[host.ws.user] == homes[conference], where
            # Each conference's speaker is seen by whoever is not the speaker.
            watchers = [m for m in members if m.ws.user != spoken[m.call_id]]
            for member in watchers:
                tracks = member.media.tracks
                await wait_until(lambda t=tracks: "spotlight" in t, what="the spotlight")  # type: ignore[misc]
                await count_frames(tracks["spotlight"][0], 5, 15.0)
            lost = [m for m in members if where[m.ws.user] == other.node_id]
            kept = [m for m in members if where[m.ws.user] != other.node_id]
            killed_at = time.monotonic()
            other.kill()
            for member in lost:
                restart = await member.ws.expect("media_restart", 15.0, call_id=member.call_id)
                assert restart["call_id"] == member.call_id
                sdp = await member.media.restart()
                answer = await member.ws.request(
                    "offer", reply="answer", call_id=member.call_id, sdp=sdp
                )
                await member.media.accept_answer(answer["sdp"])
                assert node_of(member) == authority.node_id
                if member in watchers:
                    # The server offers its slots on the new connection.
                    await member.renegotiate()
            for member in watchers:
                tracks = member.media.tracks
                await wait_until(
                    lambda t=tracks: "spotlight" in t,  # type: ignore[misc]
                    within=10.0,
                    what="a spotlight",
                )
                # More frames than a receiver holds queued: these came after the kill.
                await count_frames(tracks["spotlight"][-1], 45, 15.0)
            recovery = round(time.monotonic() - killed_at, 3)
            killed_homes = sorted(c for c in (x, y) if homes[c] == other.node_id)
            print(
                json.dumps(
                    {
                        "measure": "cascade_node_kill_recovery_s",
                        "value": recovery,
                        "homes_killed": len(killed_homes),
                    }
                )
            )
            for member in kept:
                await member.ws.assert_no("media_restart", within=0.5)
    finally:
        for _, _, member in hosts:
            await member.close()


async def join_sites(node: Node, cid: str, users: list[tuple[str, str]]) -> list[Client]:
    """`users` (user, court), operators connected to `node`, join conference `cid`."""
    sites = [await node.connect(user, "operator", court) for user, court in users]
    for client in sites:
        await client.request("join_conference", reply="conference_joined", conference_id=cid)
    return sites
