"""The video wall's watches over real WebSockets on one node: who may watch whom, the bounds
from `[console]`, the pushes to officer and watchers, and the trace's start and stop facts."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from media import ice
from tests.conftest import Serve
from tests.wsclient import Client, Server

MEDIA = {"ice_addresses": ("127.0.0.1",), "record": False}


@pytest.fixture
async def media_server(serve: Serve) -> AsyncIterator[Server]:
    ice.use_addresses(["127.0.0.1"])
    yield await serve(media=MEDIA, console={"wall_max_feeds": 2, "wall_starts_per_min": 4})
    ice.use_addresses([])


async def test_a_watch_is_opened_told_and_recorded_from_start_to_stop(
    media_server: Server,
) -> None:
    officer = await media_server.connect("o-1", "officer", "P0101", name="王磊")
    op = await media_server.connect("op-1", "operator", "P0101")
    reply = await op.request("watch", reply="watching", officer="o-1")
    assert reply["officer"] == {"id": "o-1", "name": "王磊", "role": "officer", "court": "P0101"}
    watch_id = reply["watch_id"]
    await officer.expect("watch_opened", watch_id=watch_id)
    await media_server.wait_recorded(
        "watch_started", watch=watch_id, officer="o-1", court="P0101", by="op-1"
    )
    await op.request("unwatch", watch_id=watch_id)
    await officer.expect("watch_closed", watch_id=watch_id)
    (started,) = media_server.recorder.of_kind("watch_started")
    (stopped,) = media_server.recorder.of_kind("watch_stopped")
    assert stopped.data["reason"] == "stopped"
    assert stopped.data["started_at"] == started.at
    assert stopped.at >= started.at


async def test_refusals_name_their_cause(media_server: Server) -> None:
    """Officers do not watch; another court's officer is the same not_found as nobody;
    more than wall_max_feeds at once is refused; unwatch of a stranger's watch too."""
    await media_server.connect("o-1", "officer", "P0101")
    await media_server.connect("o-2", "officer", "P0101")
    await media_server.connect("o-3", "officer", "P0101")
    await media_server.connect("o-9", "officer", "P0201")
    officer = await media_server.connect("o-4", "officer", "P0101")
    op = await media_server.connect("op-1", "operator", "P0101")
    other = await media_server.connect("op-2", "operator", "P0101")

    async def refused(client: Client, type_: str, **fields: str) -> dict[str, object]:
        return dict(await client.error_for(await client.send(type_, **fields)))

    assert (await refused(officer, "watch", officer="o-1"))["code"] == "forbidden"
    for who in ("o-9", "nobody"):
        err = await refused(op, "watch", officer=who)
        assert (err["code"], err["field"]) == ("not_found", "officer")
    w1 = (await op.request("watch", reply="watching", officer="o-1"))["watch_id"]
    await op.request("watch", reply="watching", officer="o-2")
    assert (await refused(op, "watch", officer="o-3"))["code"] == "invalid_state"
    err = await refused(other, "unwatch", watch_id=w1)
    assert (err["code"], err["field"]) == ("not_found", "watch_id")
    err = await refused(officer, "offer", call_id=w1, sdp="v=0")
    assert err["code"] == "not_found"


async def test_starts_are_rate_limited(media_server: Server) -> None:
    await media_server.connect("o-1", "officer", "P0101")
    op = await media_server.connect("op-1", "operator", "P0101")
    for _ in range(4):
        reply = await op.request("watch", reply="watching", officer="o-1")
        await op.request("unwatch", watch_id=reply["watch_id"])
    err = await op.error_for(await op.send("watch", officer="o-1"))
    assert err["code"] == "rate_limited"


async def test_the_officer_going_ends_the_watch_for_every_watcher(media_server: Server) -> None:
    officer = await media_server.connect("o-1", "officer", "P0101")
    op = await media_server.connect("op-1", "operator", "P0101")
    sv = await media_server.connect("sv-1", "supervisor", "P01")
    watch_id = (await op.request("watch", reply="watching", officer="o-1"))["watch_id"]
    await sv.request("watch", reply="watching", officer="o-1")
    await officer.close()
    for watcher in (op, sv):
        ended = await watcher.expect("watch_ended", watch_id=watch_id)
        assert ended["reason"] == "officer_offline"
        assert ended["officer"] == "o-1"
    stops = media_server.recorder.of_kind("watch_stopped")
    assert sorted(e.data["by"] for e in stops) == ["op-1", "sv-1"]


async def test_the_last_watcher_going_closes_the_uplink(media_server: Server) -> None:
    officer = await media_server.connect("o-1", "officer", "P0101")
    op = await media_server.connect("op-1", "operator", "P0101")
    watch_id = (await op.request("watch", reply="watching", officer="o-1"))["watch_id"]
    await officer.expect("watch_opened", watch_id=watch_id)
    await op.close()
    await officer.expect("watch_closed", watch_id=watch_id)
    await media_server.wait_recorded("watch_stopped", watch=watch_id, reason="watcher_gone")


async def test_a_wall_layout_caps_the_officers_it_watches_from_wall_config(
    serve: Serve,
) -> None:
    """`wall_layout` is acked; the officer of a watch of a 16-tile wall is told the
    configured `[wall] tiles_16` cap; a layout that is not 1/4/9/16 is invalid, and an
    officer may not say one."""
    ice.use_addresses(["127.0.0.1"])
    try:
        server = await serve(media=MEDIA, wall={"tiles_16": (144, 10, 150)})
        officer = await server.connect("o-1", "officer", "P0101")
        op = await server.connect("op-1", "operator", "P0101")
        await op.request("wall_layout", tiles=16)
        watch_id = (await op.request("watch", reply="watching", officer="o-1"))["watch_id"]
        await officer.expect("watch_opened", watch_id=watch_id)
        policy = await officer.expect("video_policy", watch_id=watch_id)
        assert (policy["max_height"], policy["max_fps"], policy["max_kbps"]) == (144, 10, 150)
        await op.request("wall_layout", tiles=1)
        lifted = await officer.expect("video_policy", watch_id=watch_id)
        assert (lifted["max_height"], lifted["max_fps"], lifted["max_kbps"]) == (None,) * 3
        err = await op.error_for(await op.send("wall_layout", tiles=6))
        assert (err["code"], err["field"]) == ("invalid_message", "tiles")
        err = await officer.error_for(await officer.send("wall_layout", tiles=4))
        assert err["code"] == "forbidden"
    finally:
        ice.use_addresses([])
