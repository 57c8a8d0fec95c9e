"""The cascade between nodes without a cluster: the sealed datagram (media.cascade_frames),
the plan's routes, the authority's spreading of sites (signalling.cluster.authority), and two
real gateways (media.cascade) over UDP on loopback, each beside a real fabric socket standing
for its node's router worker."""

from __future__ import annotations

import dataclasses
import os
import socket
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from commandcenter.app import create_app
from commandcenter.config_errors import ConfigError
from media import cascade_frames as cf
from media.cascade import CascadeGateway
from media.fabric_frames import KeyframeRequest, Packet, decode, encode, encode_packet
from sessions.recorder import MemoryRecorder
from signalling.cluster import wire as w
from signalling.cluster.authority import Spread, moved_home, spread_sites
from signalling.media_port import Cascade
from tests.conftest import make_config
from tests.polling import wait_until

KEY = bytes(range(32))
STREAM = b"\x00" * 7 + b"\x01"


def sealed(frame: bytes, *, key: bytes = KEY, node: str = "n1", conference: str = "c1") -> bytes:
    return cf.Sealer(key, conference, node, STREAM).seal(frame)


def opened(data: bytes, key: bytes = KEY) -> bytes:
    head = cf.header(data)
    return cf.open_sealed(cf.stream_key(key, head.node.encode(), head.stream), head, data)


# ---- the datagram -------------------------------------------------------------------------


def test_a_sealed_frame_opens_with_the_conference_key_and_names_its_sender() -> None:
    data = sealed(b"frame bytes", node="n1")
    head = cf.header(data)
    assert (head.conference, head.node, head.stream, head.counter) == ("c1", "n1", STREAM, 1)
    assert opened(data) == b"frame bytes"
    assert b"frame bytes" not in data


def test_a_datagram_sealed_with_another_key_is_rejected_as_bad_key() -> None:
    data = sealed(b"frame", key=os.urandom(32))
    with pytest.raises(cf.Rejected) as rejected:
        opened(data)
    assert rejected.value.reason == "bad_key"


def test_a_datagram_moved_to_another_conference_or_sender_does_not_open() -> None:
    """The clear header is authenticated: renaming the conference (same length) fails."""
    data = bytearray(sealed(b"frame", conference="c1"))
    at = data.index(b"c1")
    data[at : at + 2] = b"c2"
    with pytest.raises(cf.Rejected) as rejected:
        opened(bytes(data))
    assert rejected.value.reason == "bad_key"


@given(st.binary(max_size=3000))
def test_any_bytes_give_a_header_or_a_documented_rejection(data: bytes) -> None:
    reasons = {"too_long", "too_short", "version", "bad_header", "bad_name"}
    reason: str | None
    try:
        head = cf.header(data)
    except cf.Rejected as rejected:
        reason = rejected.reason
    else:
        reason = None
        assert head.counter > 0
    assert reason is None or reason in reasons


def test_the_replay_window_takes_each_counter_once_and_nothing_older_than_it() -> None:
    window = cf.ReplayWindow()
    for counter in (1, 3, 2, 10):
        assert window.check(counter)
        window.note(counter)
    assert not window.check(3)
    assert not window.check(10)
    assert window.check(9)
    window.note(2000)
    assert not window.check(2000 - cf.WINDOW)
    assert window.check(2000 - cf.WINDOW + 1)


# ---- the plan's routes ----------------------------------------------------------------------


def plan() -> cf.CascadePlan:
    return cf.CascadePlan(
        home="n1",
        sites={"host": "n1", "a": "n2", "b": "n3"},
        addresses={"n1": "127.0.0.1:1", "n2": "127.0.0.1:2", "n3": "127.0.0.1:3"},
        key=KEY,
    )


def test_home_sends_one_copy_to_each_other_node_and_the_others_only_to_home() -> None:
    routes = plan()
    assert routes.downstream("n1") == ["n2", "n3"]
    assert routes.downstream("n2") == ["n1"]
    # An uplink from n2 reaches n3 through home, and goes back to nobody.
    assert routes.relayed("n1", "n2") == ["n3"]
    assert routes.relayed("n2", "n1") == []


def test_keyframe_requests_meet_at_home_which_asks_the_publishers_node() -> None:
    routes = plan()
    assert routes.keyframe_to("n2", "b") == "n1"
    assert routes.keyframe_to("n1", "b") == "n3"
    assert routes.keyframe_to("n1", "host") is None


def test_a_node_with_only_a_shown_call_sends_it_to_home_and_gets_nothing() -> None:
    """n4 has the shown call's media and no site: its datagrams are taken, it sends to
    home, home asks it for the officer's keyframes, and nothing of the conference goes to
    it."""
    routes = dataclasses.replace(plan(), feeds={"o-1": "n4"})
    assert routes.senders() == {"n1", "n2", "n3", "n4"}
    assert routes.nodes() == {"n1", "n2", "n3"}
    assert routes.downstream("n4") == ["n1"]
    assert routes.downstream("n1") == ["n2", "n3"]
    assert routes.relayed("n1", "n4") == ["n2", "n3"]
    assert routes.keyframe_to("n1", "o-1") == "n4"
    assert routes.keyframe_to("n2", "o-1") == "n1"


def test_a_member_moved_between_two_other_nodes_is_told_apart_from_one_come_or_gone() -> None:
    before = {"a": "n2", "b": "n3", "c": "n1", "d": "n2"}
    after = {"a": "n3", "b": "n3", "c": "n2", "d": "n1", "e": "n3"}
    assert cf.moved_elsewhere(before, after, "n1") == {"a"}


def test_the_key_is_never_in_a_plans_repr() -> None:
    """Neither the media plan nor the node channel's envelope shows it, should either be
    logged; the envelope still carries it."""
    assert repr(KEY) not in repr(plan())
    cascade = Cascade(
        home="n1", sites={"a": "n2"}, addresses={"n1": "h:1"}, key=KEY, feeds={"o-1": "n3"}
    )
    envelope = w.CascadeChanged(node="n1", run=1.0, conference_id="c1", cascade=cascade)
    assert repr(KEY) not in repr(envelope)
    decoded = w.decode_node(w.encode(envelope))
    assert isinstance(decoded, w.CascadeChanged)
    assert decoded.cascade is not None
    assert decoded.cascade.key == KEY
    assert decoded.cascade.feeds == {"o-1": "n3"}


# ---- the authority's placement --------------------------------------------------------------


def test_sites_spread_evenly_over_the_nodes_home_first_and_placed_ones_stay() -> None:
    where = spread_sites(home="b", members=["h", "s1", "s2", "s3"], placed={}, nodes=["a", "b"])
    assert where == {"h": "b", "s1": "a", "s2": "b", "s3": "a"}
    again = spread_sites(
        home="b", members=["h", "s1", "s2", "s3", "s4"], placed=where, nodes=["a", "b"]
    )
    assert {k: again[k] for k in where} == where
    assert again["s4"] == "b"


def test_a_dead_nodes_sites_go_to_the_live_nodes_and_its_home_to_the_busiest() -> None:
    spread = Spread(home="a", key=KEY, sites={"h": "a", "s1": "b", "s2": "c", "s3": "c"})
    assert moved_home(spread, "a", ["b", "c"]) == "c"
    kept = {u: n for u, n in spread.sites.items() if n != "a"}
    where = spread_sites(home="c", members=["h", "s1", "s2", "s3"], placed=kept, nodes=["b", "c"])
    assert where["h"] == "b"
    assert {where["s1"], where["s2"], where["s3"]} == {"b", "c"}


# ---- two gateways over UDP --------------------------------------------------------------------


class Router:
    """A real fabric socket at a worker's path: what a node's router worker receives."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.setblocking(False)
        self.path = path

    def frames(self) -> list[bytes]:
        out = []
        while True:
            try:
                out.append(self.sock.recv(4096))
            except BlockingIOError:
                return out

    def send(self, to: str, data: bytes) -> None:
        self.sock.sendto(data, to)


@pytest.fixture
def short_dir() -> Iterator[Path]:
    # sockaddr_un's paths are short: not under pytest's long tmp_path.
    path = Path(f"/tmp/cc-cascade-{os.getpid()}-{os.urandom(3).hex()}")
    path.mkdir()
    yield path
    for child in path.iterdir():
        child.unlink()
    path.rmdir()


@pytest.fixture
async def gateways(
    short_dir: Path,
) -> AsyncIterator[tuple[dict[str, CascadeGateway], dict[str, Router]]]:
    nodes = ("n1", "n2", "n3")
    routers = {n: Router(str(short_dir / f"{n}-w0")) for n in nodes}
    made = {
        n: CascadeGateway(
            node_id=n,
            index=1,
            path=str(short_dir / f"{n}-cascade"),
            workers={0: routers[n].path},
            host="127.0.0.1",
        )
        for n in nodes
    }
    for gateway in made.values():
        gateway.open()
    routes = cf.CascadePlan(
        home="n1",
        sites={"host": "n1", "a": "n2", "b": "n3"},
        addresses={n: g.address() for n, g in made.items()},
        key=KEY,
    )
    for gateway in made.values():
        gateway.place("c1", routes, 0)
    yield made, routers
    for gateway in made.values():
        gateway.close()


def packet(sender: int, track: str = "host:audio") -> bytes:
    return encode_packet(
        sender,
        b"c1",
        track.encode(),
        sequence_number=7,
        timestamp=960,
        marker=False,
        payload_type=111,
        keyframe_start=True,
        audio_level=None,
        payload=b"opus",
    )


async def first_packets(routers: dict[str, Router], nodes: Sequence[str]) -> dict[str, Packet]:
    """The first frame each of `nodes`' routers gets, once all have one: each a Packet."""
    got: dict[str, list[bytes]] = {node: [] for node in nodes}

    def arrived() -> bool:
        for node, frames in got.items():
            frames.extend(routers[node].frames())
        return all(got.values())

    await wait_until(arrived, within=5.0, what=f"a packet at the routers of {', '.join(nodes)}")
    first: dict[str, Packet] = {}
    for node, frames in got.items():
        frame = decode(frames[0])
        assert isinstance(frame, Packet), frame
        first[node] = frame
    return first


async def test_a_routers_packet_crosses_to_the_other_nodes_router_as_from_its_cascade(
    gateways: tuple[dict[str, CascadeGateway], dict[str, Router]],
) -> None:
    made, routers = gateways
    routers["n1"].send(made["n1"].endpoint.path, packet(0))
    frame = (await first_packets(routers, ["n2"]))["n2"]
    # To n2's workers it comes from n2's cascade (index 1), not from n1's worker 0.
    assert (frame.sender, frame.track, frame.payload) == (1, "host:audio", b"opus")
    # One copy to each other node with sites (n2 and n3).
    assert made["n1"].tracks_out["host:audio"] == 2
    # A keyframe request from n2's router goes to home, which hands it to its router.
    routers["n2"].send(made["n2"].endpoint.path, encode(KeyframeRequest(0, "c1", "host:video")))

    def asked() -> bool:
        return any(isinstance(decode(f), KeyframeRequest) for f in routers["n1"].frames())

    await wait_until(asked, within=5.0, what="the request at n1's router")
    assert made["n2"].keyframes_out == {"host:video": 1}


async def test_a_replayed_or_forged_datagram_is_dropped_and_counted(
    gateways: tuple[dict[str, CascadeGateway], dict[str, Router]],
) -> None:
    made, routers = gateways
    n2 = made["n2"]
    data = cf.Sealer(KEY, "c1", "n1", STREAM).seal(packet(0))
    n2.take(data)
    with pytest.raises(cf.Rejected) as replayed:
        n2.take(data)
    assert replayed.value.reason == "replayed"
    with pytest.raises(cf.Rejected) as forged:
        n2.take(cf.Sealer(os.urandom(32), "c1", "n1", b"\x02" * 8).seal(packet(0)))
    assert forged.value.reason == "bad_key"
    with pytest.raises(cf.Rejected) as stranger:
        n2.take(cf.Sealer(KEY, "c1", "n9", STREAM).seal(packet(0)))
    assert stranger.value.reason == "unknown_node"
    # Over the socket, each is counted by its reason.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        host, port = cf.parse_address(n2.address())
        sock.sendto(data, (host, port))
        sock.sendto(b"\x07junk", (host, port))
    await wait_until(
        lambda: n2.dropped["replayed"] == 1 and n2.dropped["too_short"] == 1,
        within=5.0,
        what="both counted",
    )
    assert [decode(f).sender for f in routers["n2"].frames()] == [1]


# ---- configuration ----------------------------------------------------------------------------


def test_a_cascade_without_media_workers_is_a_configuration_error(tmp_path: Path) -> None:
    """The cascade is the worker pool's: asked for with media in process, it is refused
    rather than silently off."""
    config = make_config(tmp_path, media={"workers": 0, "cascade_address": "127.0.0.1"})
    with pytest.raises(ConfigError, match=r"media\.cascade_address needs media workers"):
        create_app(config, recorder=MemoryRecorder())


async def test_a_sites_uplink_reaches_a_third_node_through_home_only(
    gateways: tuple[dict[str, CascadeGateway], dict[str, Router]],
) -> None:
    """n2's router sends its site's packet: it crosses to home (n1), whose gateway hands it
    to n1's router and sends it on to n3; n2 never sends to n3 itself, nor gets it back."""
    made, routers = gateways
    routers["n2"].send(made["n2"].endpoint.path, packet(0, "a:video"))
    for frame in (await first_packets(routers, ["n1", "n3"])).values():
        assert (frame.sender, frame.track) == (1, "a:video")
    assert made["n2"].sent == 1
    assert made["n2"].tracks_out == {"a:video": 1}
    assert made["n1"].tracks_out == {"a:video": 1}
    assert routers["n2"].frames() == []


async def test_a_node_with_only_a_shown_call_sends_the_feed_through_home(
    short_dir: Path,
) -> None:
    """n4 has the shown call's media and no site: its router's packet of the officer reaches
    home's router and, through home, n2's; home's keyframe request for the officer reaches
    n4; and nothing of the conference's own media is sent to n4."""
    nodes = ("n1", "n2", "n4")
    routers = {n: Router(str(short_dir / f"{n}-w0")) for n in nodes}
    made = {
        n: CascadeGateway(
            node_id=n,
            index=1,
            path=str(short_dir / f"{n}-cascade"),
            workers={0: routers[n].path},
            host="127.0.0.1",
        )
        for n in nodes
    }
    try:
        for gateway in made.values():
            gateway.open()
        routes = cf.CascadePlan(
            home="n1",
            sites={"host": "n1", "a": "n2"},
            addresses={n: g.address() for n, g in made.items()},
            key=KEY,
            feeds={"o-1": "n4"},
        )
        for gateway in made.values():
            gateway.place("c1", routes, 0)
        routers["n4"].send(made["n4"].endpoint.path, packet(0, "o-1:video"))
        for frame in (await first_packets(routers, ["n1", "n2"])).values():
            assert (frame.sender, frame.track) == (1, "o-1:video")
        assert made["n1"].tracks_out == {"o-1:video": 1}

        # Home's own media goes to the site node only; its keyframe request to n4.
        routers["n1"].send(made["n1"].endpoint.path, packet(0, "host:audio"))
        ask = encode(KeyframeRequest(0, "c1", "o-1:video"))
        routers["n1"].send(made["n1"].endpoint.path, ask)
        asked: list[bytes] = []

        def requested() -> bool:
            asked.extend(routers["n4"].frames())
            return bool(asked)

        await wait_until(requested, within=5.0, what="home's keyframe request at n4")
        await wait_until(
            lambda: made["n1"].tracks_out["host:audio"] == 1, what="home's packet sent"
        )
        assert [type(decode(f)) for f in asked] == [KeyframeRequest]
        assert made["n1"].keyframes_out == {"o-1:video": 1}
    finally:
        for gateway in made.values():
            gateway.close()
