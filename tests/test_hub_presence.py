"""Presence through the real server: roster, positions, heartbeats, sign-out after the grace
period, resuming a session, replacing a connection, and what the recorder is handed."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

from commandcenter.keys import HUB
from sessions.recorder import MemoryRecorder, TraceEvent
from signalling.link import LocalCoreLink
from tests.conftest import Serve
from tests.fakeclock import FakeClock
from tests.test_hub_calls import answered_call, place_call
from tests.wsclient import Server

# 2023-11-14, within the protocol's bounds for device_time.
DEVICE_TIME = 1.7e12


def position(lat: float) -> dict[str, Any]:
    return {"lat": lat, "lon": 116.4, "accuracy_m": 5.0, "device_time": DEVICE_TIME}


async def test_sign_in_shows_on_the_roster_of_the_center_in_scope(server: Server) -> None:
    op = await server.connect("op1", "operator", "P0101")
    sup = await server.connect("sup1", "supervisor", "P01")
    other = await server.connect("op3", "operator", "P0102")
    await server.connect("o1", "officer", "P0101", device="phone-7")
    for client in (op, sup):
        update = await client.expect("roster_update")
        entry = update["entry"]
        assert (entry["officer"]["id"], entry["status"], entry["device"]) == (
            "o1",
            "online",
            "phone-7",
        )
        assert entry["call_id"] is None
    await other.assert_no("roster_update", within=0.1)

    roster = await op.request("get_roster", reply="roster")
    assert [e["officer"]["id"] for e in roster["officers"]] == ["o1"]
    assert (await other.request("get_roster", reply="roster"))["officers"] == []
    # A supervisor asks for one court of their scope, or is refused outside it.
    one = await sup.request("get_roster", reply="roster", court="P0101")
    assert [e["officer"]["id"] for e in one["officers"]] == ["o1"]
    outside = await sup.send("get_roster", court="P02")
    error = await sup.error_for(outside)
    assert (error["code"], error["field"]) == ("forbidden", "court")


async def test_positions_are_fanned_out_at_most_once_per_interval(serve: Serve) -> None:
    clock = FakeClock(time.time())
    server = await serve(clock=clock, presence={"position_interval_s": 2.0})
    op = await server.connect("op1", "operator", "P0101")
    officer = await server.connect("o1", "officer", "P0101")
    await op.expect("roster_update")  # the sign-in
    await officer.request("position", **position(30.0))
    first = await op.expect("roster_update")
    assert first["entry"]["position"]["lat"] == 30.0
    for lat in (31.0, 32.0, 33.0):
        await officer.request("position", **position(lat))
    # The three land within one interval: one update, with the latest position, when the
    # interval is over.
    await op.assert_no("roster_update", within=0.1)
    clock.advance(2.0)
    latest = await op.expect("roster_update")
    assert latest["entry"]["position"]["lat"] == 33.0
    clock.advance(10.0)
    await op.assert_no("roster_update", within=0.1)
    await server.wait_recorded("position", user="o1", lat=33.0)
    assert 31.0 not in [e.data["lat"] for e in server.recorder.of_kind("position")]


async def test_heartbeat_ack_reports_the_device_clock_offset(server: Server) -> None:
    officer = await server.connect("o1", "officer", "P0101")
    ahead_ms = 5000.0
    device_time = time.time() * 1000 + ahead_ms
    ack = await officer.request(
        "heartbeat", reply="heartbeat_ack", device_time=device_time, rtt_ms=100.0
    )
    assert ack["device_time"] == device_time
    assert ack["rtt_ms"] == 100.0
    # Offset = device - server + rtt/2; loopback adds a few milliseconds at most.
    assert abs(ack["offset_ms"] - (ahead_ms + 50.0)) < 500
    assert abs(ack["server_time"] - time.time() * 1000) < 1000


async def test_close_marks_away_then_signs_out_after_the_grace_period(serve: Serve) -> None:
    clock = FakeClock(time.time())
    server = await serve(clock=clock)
    op = await server.connect("op1", "operator", "P0101")
    officer = await server.connect("o1", "officer", "P0101")
    await op.expect("roster_update", where=lambda m: m["entry"]["status"] == "online")
    await officer.close()
    away = await op.expect("roster_update")
    assert away["entry"]["status"] == "away"
    clock.advance(server.config.presence.grace_s)
    offline = await op.expect("roster_update")
    assert offline["entry"]["status"] == "offline"
    await server.wait_recorded("sign_out", user="o1", reason="grace_expired")
    assert (await op.request("get_roster", reply="roster"))["officers"] == []


async def test_resume_within_grace_keeps_the_session_and_the_call(serve: Serve) -> None:
    server = await serve(presence={"grace_s": 5.0})
    officer, op, call_id = await answered_call(server)
    session_id = officer.welcome["session_id"]
    await officer.close()
    away = await op.expect("party_away", call_id=call_id)
    assert (away["user"]["id"], away["grace_s"]) == ("o1", 5.0)

    back = await server.connect("o1", "officer", "P0101", resume=officer.welcome["resume_token"])
    assert back.welcome["resumed"] is True
    assert back.welcome["session_id"] == session_id
    (call,) = back.welcome["calls"]
    assert (call["call_id"], call["state"]) == (call_id, "active")
    returned = await op.expect("party_back", call_id=call_id)
    assert returned["user"]["id"] == "o1"
    await back.request("hangup", call_id=call_id)
    assert (await op.expect("call_ended", call_id=call_id))["reason"] == "hangup"
    # A resume is not a sign-in.
    assert [e.data["user"] for e in server.recorder.of_kind("sign_in")].count("o1") == 1


async def test_reconnect_after_grace_is_a_new_session_and_the_call_was_lost(
    serve: Serve,
) -> None:
    clock = FakeClock(time.time())
    server = await serve(clock=clock)
    officer, op, call_id = await answered_call(server)
    await officer.close()
    await op.expect("party_away", call_id=call_id)
    clock.advance(server.config.presence.grace_s)
    ended = await op.expect("call_ended", call_id=call_id)
    assert (ended["reason"], ended["by"]) == ("party_lost", "o1")
    late = await server.connect("o1", "officer", "P0101", resume=officer.welcome["resume_token"])
    assert late.welcome["resumed"] is False
    assert late.welcome["session_id"] != officer.welcome["session_id"]
    assert late.welcome["calls"] == []


async def test_second_connection_without_resume_replaces_the_first(server: Server) -> None:
    first = await server.connect("o1", "officer", "P0101")
    second = await server.connect("o1", "officer", "P0101")
    reason = await first.expect_close(4409)
    assert reason == "signed in elsewhere"
    assert second.welcome["resumed"] is False
    assert second.welcome["session_id"] != first.welcome["session_id"]
    # The new connection is the live one.
    await second.request("heartbeat", reply="heartbeat_ack", device_time=DEVICE_TIME)
    await server.wait_recorded("sign_out", user="o1", reason="replaced")


async def test_resume_while_the_old_connection_is_open_keeps_the_session_live(
    serve: Serve,
) -> None:
    """The replaced connection closing (4409) must not mark the resumed session away."""
    clock = FakeClock(time.time())
    server = await serve(clock=clock)
    officer, op, call_id = await answered_call(server)
    back = await server.connect("o1", "officer", "P0101", resume=officer.welcome["resume_token"])
    assert back.welcome["resumed"] is True
    assert await officer.expect_close(4409) == "resumed elsewhere"
    # Well past the grace period, the call is still up and the officer online.
    clock.advance(2 * server.config.presence.grace_s)
    await op.assert_no("party_away", within=0.2)
    roster = await op.request("get_roster", reply="roster")
    assert roster["officers"][0]["status"] == "online"
    await back.request("hangup", call_id=call_id)
    ended = await op.expect("call_ended", call_id=call_id)
    assert ended["reason"] == "hangup"


async def test_recorder_is_handed_the_whole_life_of_a_call(serve: Serve) -> None:
    server = await serve(presence={"grace_s": 0.0})
    officer, op, call_id = await answered_call(server)
    await op.request("hangup", call_id=call_id)
    await officer.expect("call_ended", call_id=call_id)
    await officer.close()
    await server.wait_recorded("sign_out", user="o1", reason="closed")
    await op.close()
    await server.wait_recorded("sign_out", user="op1", reason="closed")
    kinds = [
        (e.kind, e.data.get("user") or e.data.get("call"))
        for e in server.recorder.events
        if e.kind != "position"
    ]
    assert kinds == [
        ("sign_in", "op1"),
        ("sign_in", "o1"),
        ("call_created", call_id),
        ("call_queued", call_id),
        ("call_ringing", call_id),
        ("call_answered", call_id),
        ("call_ended", call_id),
        ("sign_out", "o1"),
        ("sign_out", "op1"),
    ]
    ended = server.recorder.of_kind("call_ended")[0].data
    assert (ended["reason"], ended["officer"], ended["operator"], ended["answered"]) == (
        "hangup",
        "o1",
        "op1",
        True,
    )


async def test_officer_call_placed_while_nobody_is_on_duty_rings_the_operator_who_signs_in(
    server: Server,
) -> None:
    officer = await server.connect("o1", "officer", "P0101")
    call_id = await place_call(officer)
    queued = await officer.expect("call_queued", call_id=call_id)
    assert queued["position"] == 1
    op = await server.connect("op1", "operator", "P0101")
    ringing = await op.expect("call_ringing")
    assert ringing["call"]["call_id"] == call_id


# ---- the driver: ordering against the recorder, shutdown ------------------------------------


class GatedRecorder(MemoryRecorder):
    """A store that can be made to hold every write until it is opened again: a slow disk."""

    def __init__(self) -> None:
        super().__init__()
        self.open = asyncio.Event()
        self.open.set()
        self.waiting = 0

    async def record(self, events: Sequence[TraceEvent]) -> None:
        self.waiting += 1
        await self.open.wait()
        self.waiting -= 1
        await super().record(events)


class FailingRecorder(MemoryRecorder):
    async def record(self, events: Sequence[TraceEvent]) -> None:
        raise OSError("disk full")


async def test_no_client_hears_of_a_fact_before_the_recorder_has_it(serve: Serve) -> None:
    recorder = GatedRecorder()
    server = await serve(recorder=recorder)
    op = await server.connect("op1", "operator", "P0101")
    officer = await server.connect("o1", "officer", "P0101")
    recorder.open.clear()
    msg_id = await officer.send("call_center")
    await server.wait_for(lambda: recorder.waiting == 1, what="the write is held")
    await officer.assert_no("call_placed", within=0.1)
    await op.assert_no("call_ringing", within=0.0)
    recorder.open.set()
    await officer.expect("call_placed", ref=msg_id)
    await op.expect("call_ringing")
    assert "call_created" in recorder.kinds()


async def test_a_connection_hears_nothing_before_its_welcome(serve: Serve) -> None:
    """A roster update queued for the user's old connection while a new one replaces it
    goes to the old connection (then closed 4409), never ahead of the new one's welcome."""
    recorder = GatedRecorder()
    server = await serve(recorder=recorder)
    old = await server.connect("op1", "operator", "P0101")
    hub = server.http.app[HUB]
    recorder.open.clear()
    await server.open("o1", token=server.token("o1", "officer", "P0101"))
    await server.wait_for(lambda: recorder.waiting == 1, what="the sign-in write is held")
    new = await server.open("op1", token=server.token("op1", "operator", "P0101"))
    await server.wait_for(
        lambda: (
            (s := hub.link.session("op1")) is not None and s.session_id != old.welcome["session_id"]
        ),
        what="op1 signed in again",
    )
    recorder.open.set()
    await new.expect("welcome")
    assert new.log[0]["type"] == "welcome"
    update = await old.expect("roster_update")
    assert update["entry"]["officer"]["id"] == "o1"
    await old.expect_close(4409)


async def test_while_the_trace_cannot_be_written_nobody_is_told_and_nothing_new_is_done(
    serve: Serve,
) -> None:
    """A full disk: the hangup the core took is held (the operator hears nothing of a fact
    a crash could take back), later actions are refused `unavailable` at once, new
    connections are refused 1013; heartbeats are not refused (their acks wait in line)."""
    recorder = FlakyRecorder()
    recorder.up = True
    server = await serve(recorder=recorder)
    officer, op, call_id = await answered_call(server)
    recorder.up = False
    await officer.send("hangup", call_id=call_id)
    await op.assert_no("call_ended", within=0.5)
    await server.wait_for(lambda: recorder.failures > 0, what="the failed write")
    placed = await op.send("call_officer", officer="o1")
    refusal = await op.error_for(placed)
    assert refusal["code"] == "unavailable"
    assert "nothing was done" in refusal["reason"]
    beat = await op.send("heartbeat", device_time=DEVICE_TIME)
    await op.assert_no("error", within=0.3, ref=beat)
    newcomer = await server.open("o2", token=server.token("o2", "officer", "P0101"))
    assert "cannot be written" in await newcomer.expect_close(1013)
    # The disk has room again: what was held is recorded, then told, in order.
    recorder.up = True
    ended = await op.expect("call_ended", call_id=call_id, timeout=5.0)
    assert ended["reason"] == "hangup"
    kinds = recorder.kinds()
    assert kinds.index("call_answered") < kinds.index("call_ended")
    assert "call_created" not in kinds[kinds.index("call_ended") :]
    assert [k for k in kinds if k == "sign_in"].count("sign_in") == 2


class FlakyRecorder(MemoryRecorder):
    """A store that is down until `up` is set: a database restart."""

    def __init__(self) -> None:
        super().__init__()
        self.up = False
        self.failures = 0

    async def record(self, events: Sequence[TraceEvent]) -> None:
        if not self.up:
            self.failures += 1
            raise OSError("database unreachable")
        await super().record(events)


async def test_events_refused_by_the_recorder_are_kept_and_recorded_in_order_later(
    serve: Serve,
) -> None:
    """While the store is down the hub reports degraded health and is not ready; once the
    store is back every held event is recorded, in the order the core produced them, and
    only then told."""
    recorder = FlakyRecorder()
    recorder.up = True
    server = await serve(recorder=recorder)
    officer, op, call_id = await answered_call(server)
    recorder.up = False
    recorder.events.clear()
    await officer.send("hangup", call_id=call_id)
    await server.wait_for(lambda: recorder.failures > 0, what="the failed write")
    # The officer's connection closing while the store is down: its away is held too.
    await officer.close()
    health = await (await server.http.get("/healthz")).json()
    assert health["status"] == "degraded"
    assert health["unrecorded_events"] > 0
    # Alive, but not ready for more clients while the trace lags.
    ready = await server.http.get("/readyz")
    assert ready.status == 503
    assert (await ready.json())["checks"]["core"] == "failing"
    assert recorder.events == []
    await op.assert_no("call_ended", within=0.3)
    recorder.up = True
    await op.expect("call_ended", call_id=call_id, timeout=5.0)
    assert recorder.kinds()[0] == "call_ended"
    assert (await server.http.get("/readyz")).status == 200
    health = await (await server.http.get("/healthz")).json()
    assert health == {**health, "status": "ok", "unrecorded_events": 0}


async def test_shutdown_closes_open_connections_1001_and_leaves_no_tasks(server: Server) -> None:
    officer, op, call_id = await answered_call(server)
    sup = await server.connect("sup1", "supervisor", "P01")
    await sup.request("join_call", call_id=call_id)
    hub = server.http.app[HUB]
    started = time.monotonic()
    await server.http.server.close()
    assert time.monotonic() - started < 3.0
    for client in (officer, op, sup):
        ended = await client.expect("call_ended", call_id=call_id)
        assert ended["reason"] == "shutdown"
        assert await client.expect_close(1001) == "server shutting down"
    # Everyone was signed out and the call ended, so the trace has nothing left open.
    signed_out = server.recorder.of_kind("sign_out")
    assert {e.data["user"] for e in signed_out} == {"o1", "op1", "sup1"}
    assert {e.data["reason"] for e in signed_out} == {"shutdown"}
    (record,) = server.recorder.of_kind("call_ended")
    assert (record.data["call"], record.data["reason"]) == (call_id, "shutdown")
    leftover = [
        t
        for t in asyncio.all_tasks()
        if not t.done() and t.get_coro().__qualname__ in ("Connection._write", "Outbox._pump")  # type: ignore[union-attr]
    ]
    assert leftover == []
    assert isinstance(hub.link, LocalCoreLink)
    assert not hub.link.driver.armed


def writer_tasks() -> list[asyncio.Task[object]]:
    return [
        t
        for t in asyncio.all_tasks()
        if not t.done() and getattr(t.get_coro(), "__qualname__", "") == "Connection._write"
    ]


async def test_every_way_a_connection_ends_releases_its_writer_task(serve: Serve) -> None:
    server = await serve(limits={"bad_frames_before_close": 2})
    left = await server.connect("o1", "officer", "P0101")
    replaced = await server.connect("o2", "officer", "P0101")
    bad = await server.connect("o3", "officer", "P0101")
    await left.close()
    await server.connect("o2", "officer", "P0101")
    await replaced.expect_close(4409)
    await bad.send_raw("{")
    await bad.send_raw("{")
    await bad.expect_close(4400)
    await server.wait_for(lambda: len(writer_tasks()) == 1, what="one live connection left")
