"""Calls through the real server over loopback WebSockets: officer to center (ringing,
answering, declining, timing out, cancelling, queueing), center to officer, emergencies,
hangups, supervision and transfer."""

from __future__ import annotations

import time
from typing import Any

from tests.conftest import Serve
from tests.fakeclock import FakeClock
from tests.wsclient import Client, Server

DEVICE_TIME = 1.7e12


async def place_call(caller: Client, kind: str = "call_center", **fields: Any) -> str:
    """`caller` places a call; returns its id from call_placed."""
    placed = await caller.request(kind, reply="call_placed", **fields)
    call_id: str = placed["call_id"]
    return call_id


async def answered_call(server: Server) -> tuple[Client, Client, str]:
    """An officer of P0101 in an answered call with an operator of P0101."""
    op = await server.connect("op1", "operator", "P0101")
    officer = await server.connect("o1", "officer", "P0101")
    call_id = await place_call(officer)
    await op.expect("call_ringing", where=lambda m: m["call"]["call_id"] == call_id)
    await op.request("accept", call_id=call_id)
    await officer.expect("call_answered")
    return officer, op, call_id


# ---- officer to center ---------------------------------------------------------------------


async def test_officer_call_rings_every_operator_of_the_court_and_no_other(
    server: Server,
) -> None:
    op1 = await server.connect("op1", "operator", "P0101")
    op2 = await server.connect("op2", "operator", "P0101")
    other = await server.connect("op3", "operator", "P0102")
    officer = await server.connect("o1", "officer", "P0101")
    call_id = await place_call(officer, case_number="(2024)P0101-1")
    for op in (op1, op2):
        ringing = await op.expect("call_ringing")
        call = ringing["call"]
        assert call["call_id"] == call_id
        assert call["direction"] == "officer_to_center"
        assert call["state"] == "ringing"
        assert call["officer"]["id"] == "o1"
        assert call["case_number"] == "(2024)P0101-1"
        assert call["emergency"] is False
    await other.assert_no("call_ringing")


async def test_first_accept_wins_the_other_operator_is_told_and_a_late_accept_fails(
    server: Server,
) -> None:
    op1 = await server.connect("op1", "operator", "P0101")
    op2 = await server.connect("op2", "operator", "P0101")
    officer = await server.connect("o1", "officer", "P0101")
    call_id = await place_call(officer)
    await op1.expect("call_ringing")
    await op2.expect("call_ringing")

    await op1.request("accept", call_id=call_id)
    answered = await op1.expect("call_answered")
    assert answered["call"]["operator"]["id"] == "op1"
    assert answered["call"]["state"] == "active"
    officer_view = await officer.expect("call_answered")
    assert officer_view["call"]["operator"]["id"] == "op1"
    taken = await op2.expect("call_taken", call_id=call_id)
    assert taken["by"]["id"] == "op1"

    late = await op2.send("accept", call_id=call_id)
    error = await op2.error_for(late)
    assert error["code"] == "call_taken"


async def test_decline_leaves_the_call_ringing_for_the_others(server: Server) -> None:
    op1 = await server.connect("op1", "operator", "P0101")
    op2 = await server.connect("op2", "operator", "P0101")
    officer = await server.connect("o1", "officer", "P0101")
    call_id = await place_call(officer)
    await op1.expect("call_ringing")
    await op2.expect("call_ringing")
    await op1.request("decline", call_id=call_id)
    await officer.assert_no("call_ended", within=0.1)
    await op2.request("accept", call_id=call_id)
    answered = await officer.expect("call_answered")
    assert answered["call"]["operator"]["id"] == "op2"
    # op1 declined and stopped ringing: nobody tells it the call was taken.
    await op1.assert_no("call_taken", within=0.1)


async def test_decline_by_every_operator_ends_the_call_declined(server: Server) -> None:
    op1 = await server.connect("op1", "operator", "P0101")
    officer = await server.connect("o1", "officer", "P0101")
    call_id = await place_call(officer)
    await op1.expect("call_ringing")
    await op1.request("decline", call_id=call_id)
    ended = await officer.expect("call_ended", call_id=call_id)
    assert (ended["reason"], ended["by"]) == ("declined", "op1")


async def test_unanswered_call_ends_missed_after_the_ring_timeout(serve: Serve) -> None:
    clock = FakeClock(time.time())
    server = await serve(clock=clock)
    op1 = await server.connect("op1", "operator", "P0101")
    officer = await server.connect("o1", "officer", "P0101")
    call_id = await place_call(officer)
    await op1.expect("call_ringing")
    clock.advance(server.config.calls.ring_timeout_s - 0.5)
    await officer.assert_no("call_ended", within=0.1)
    clock.advance(0.5)
    ended = await officer.expect("call_ended", call_id=call_id)
    assert ended["reason"] == "missed"
    assert ended["by"] is None
    op_ended = await op1.expect("call_ended", call_id=call_id)
    assert op_ended["reason"] == "missed"
    await server.wait_recorded("call_ended", call=call_id, reason="missed", answered=False)


async def test_officer_cancels_a_ringing_call(server: Server) -> None:
    op1 = await server.connect("op1", "operator", "P0101")
    officer = await server.connect("o1", "officer", "P0101")
    call_id = await place_call(officer)
    await op1.expect("call_ringing")
    await officer.request("cancel", call_id=call_id)
    ended = await op1.expect("call_ended", call_id=call_id)
    assert (ended["reason"], ended["by"]) == ("cancelled", "o1")
    # The cancelled call is gone: accepting it now is not found.
    late = await op1.send("accept", call_id=call_id)
    assert (await op1.error_for(late))["code"] == "not_found"


async def test_second_call_queues_and_rings_when_the_first_hangs_up(server: Server) -> None:
    op1 = await server.connect("op1", "operator", "P0101")
    first = await server.connect("o1", "officer", "P0101")
    second = await server.connect("o2", "officer", "P0101")
    call1 = await place_call(first)
    await op1.expect("call_ringing", where=lambda m: m["call"]["call_id"] == call1)
    # The officer's phone is told its call rings (not merely that it was placed).
    await first.expect("call_ringing_center", call_id=call1)
    call2 = await place_call(second)
    queued = await second.expect("call_queued", call_id=call2)
    assert queued["position"] == 1
    await op1.assert_no("call_ringing", within=0.1, where=lambda m: m["call"]["call_id"] == call2)
    await second.assert_no("call_ringing_center", within=0.05)

    await op1.request("accept", call_id=call1)
    await first.expect("call_answered")
    await op1.request("hangup", call_id=call1)
    ended = await first.expect("call_ended", call_id=call1)
    assert (ended["reason"], ended["by"]) == ("hangup", "op1")
    ringing = await op1.expect("call_ringing", where=lambda m: m["call"]["call_id"] == call2)
    assert ringing["call"]["officer"]["id"] == "o2"
    # Out of the queue: the waiting officer is told it rings now.
    await second.expect("call_ringing_center", call_id=call2)
    await op1.request("accept", call_id=call2)
    await second.expect("call_answered")


async def test_hangup_by_the_officer_ends_the_call_for_both(server: Server) -> None:
    officer, op, call_id = await answered_call(server)
    await officer.request("hangup", call_id=call_id)
    ended = await op.expect("call_ended", call_id=call_id)
    assert (ended["reason"], ended["by"]) == ("hangup", "o1")
    mine = await officer.expect("call_ended", call_id=call_id)
    assert mine["reason"] == "hangup"


async def test_hangup_by_the_operator_ends_the_call_for_both(server: Server) -> None:
    officer, op, call_id = await answered_call(server)
    await op.request("hangup", call_id=call_id)
    ended = await officer.expect("call_ended", call_id=call_id)
    assert (ended["reason"], ended["by"]) == ("hangup", "op1")
    await op.expect("call_ended", call_id=call_id)


async def test_reply_ack_comes_after_the_pushes_it_caused(server: Server) -> None:
    """When the ack of an accept arrives, the caller already holds call_answered."""
    op = await server.connect("op1", "operator", "P0101")
    officer = await server.connect("o1", "officer", "P0101")
    placed_id = await officer.send("call_center")
    placed = await officer.expect("call_placed", ref=placed_id)
    await op.expect("call_ringing")
    accept_id = await op.send("accept", call_id=placed["call_id"])
    await op.expect("ack", ref=accept_id)
    types = [m["type"] for m in op.log]
    assert types.index("call_answered") < types.index("ack")
    # The officer learns the call id (call_placed) before anything about that call.
    officer_types = [m["type"] for m in officer.log]
    assert officer_types[:2] == ["welcome", "call_placed"]


# ---- center to officer ---------------------------------------------------------------------


async def test_operator_calls_an_officer_who_accepts(server: Server) -> None:
    op = await server.connect("op1", "operator", "P0101")
    officer = await server.connect("o1", "officer", "P0101")
    call_id = await place_call(op, "call_officer", officer="o1")
    ringing = await officer.expect("call_ringing")
    assert ringing["call"]["call_id"] == call_id
    assert ringing["call"]["direction"] == "center_to_officer"
    assert ringing["call"]["operator"]["id"] == "op1"
    await officer.request("accept", call_id=call_id)
    for client in (officer, op):
        answered = await client.expect("call_answered")
        assert answered["call"]["state"] == "active"
    await server.wait_recorded("call_answered", call=call_id, by="o1")


async def test_operator_call_declined_by_the_officer(server: Server) -> None:
    op = await server.connect("op1", "operator", "P0101")
    officer = await server.connect("o1", "officer", "P0101")
    call_id = await place_call(op, "call_officer", officer="o1")
    await officer.expect("call_ringing")
    await officer.request("decline", call_id=call_id)
    ended = await op.expect("call_ended", call_id=call_id)
    assert (ended["reason"], ended["by"]) == ("declined", "o1")


async def test_operator_call_times_out_missed(serve: Serve) -> None:
    clock = FakeClock(time.time())
    server = await serve(clock=clock)
    op = await server.connect("op1", "operator", "P0101")
    officer = await server.connect("o1", "officer", "P0101")
    call_id = await place_call(op, "call_officer", officer="o1")
    await officer.expect("call_ringing")
    clock.advance(server.config.calls.ring_timeout_s)
    ended = await op.expect("call_ended", call_id=call_id)
    assert ended["reason"] == "missed"
    assert (await officer.expect("call_ended", call_id=call_id))["reason"] == "missed"


async def test_operator_call_to_an_officer_in_a_call_ends_busy(server: Server) -> None:
    officer, _, _ = await answered_call(server)
    op2 = await server.connect("op2", "operator", "P0101")
    call_id = await place_call(op2, "call_officer", officer="o1")
    ended = await op2.expect("call_ended", call_id=call_id)
    assert ended["reason"] == "busy"
    await officer.assert_no("call_ringing", within=0.1)


async def test_operator_call_to_an_officer_not_signed_in_ends_unavailable(
    server: Server,
) -> None:
    op = await server.connect("op1", "operator", "P0101")
    call_id = await place_call(op, "call_officer", officer="o9")
    ended = await op.expect("call_ended", call_id=call_id)
    assert ended["reason"] == "unavailable"


# ---- emergencies ---------------------------------------------------------------------------


async def test_emergency_rings_operator_and_supervisor_and_flags_the_roster(
    server: Server,
) -> None:
    op = await server.connect("op1", "operator", "P0101")
    sup = await server.connect("sup1", "supervisor", "P01")
    officer = await server.connect("o1", "officer", "P0101")
    call_id = await place_call(officer, "emergency", note="under attack")
    for client in (op, sup):
        ringing = await client.expect("call_ringing")
        assert ringing["call"]["call_id"] == call_id
        assert ringing["call"]["emergency"] is True
    await sup.expect("roster_update", where=lambda m: m["entry"]["emergency"] is True)
    roster = await sup.request("get_roster", reply="roster")
    (entry,) = roster["officers"]
    assert (entry["officer"]["id"], entry["emergency"]) == ("o1", True)

    await op.request("accept", call_id=call_id)
    await officer.expect("call_answered")
    await op.request("hangup", call_id=call_id)
    await officer.expect("call_ended", call_id=call_id)
    # The emergency outlives the call until the center clears it.
    roster = await sup.request("get_roster", reply="roster")
    assert roster["officers"][0]["emergency"] is True

    await op.request("clear_emergency", officer="o1")
    cleared = await officer.expect("emergency_cleared")
    assert cleared["by"]["id"] == "op1"
    await sup.expect("roster_update", where=lambda m: m["entry"]["emergency"] is False)
    roster = await op.request("get_roster", reply="roster")
    assert roster["officers"][0]["emergency"] is False
    await server.wait_recorded("emergency_cleared", officer="o1", by="op1")


async def test_emergency_rings_an_operator_already_ringing_for_a_normal_call(
    server: Server,
) -> None:
    """Priority: an SOS rings an operator whom a normal call already rings."""
    op = await server.connect("op1", "operator", "P0101")
    normal = await server.connect("o1", "officer", "P0101")
    sos = await server.connect("o2", "officer", "P0101")
    normal_id = await place_call(normal)
    await op.expect("call_ringing", where=lambda m: m["call"]["call_id"] == normal_id)
    sos_id = await place_call(sos, "emergency")
    ringing = await op.expect("call_ringing", where=lambda m: m["call"]["call_id"] == sos_id)
    assert ringing["call"]["emergency"] is True


# ---- supervision and transfer --------------------------------------------------------------


async def test_supervisor_join_is_announced_to_the_parties(server: Server) -> None:
    officer, op, call_id = await answered_call(server)
    sup = await server.connect("sup1", "supervisor", "P01")
    await sup.request("join_call", call_id=call_id)
    view = await sup.expect("call_answered")
    assert view["call"]["call_id"] == call_id
    for party in (officer, op):
        joined = await party.expect("participant_joined", call_id=call_id)
        assert (joined["user"]["id"], joined["covert"]) == ("sup1", False)
    await sup.request("leave_call", call_id=call_id)
    for party in (officer, op):
        left = await party.expect("participant_left", call_id=call_id)
        assert left["user"]["id"] == "sup1"


async def test_covert_join_is_forbidden_by_default(server: Server) -> None:
    officer, _, call_id = await answered_call(server)
    sup = await server.connect("sup1", "supervisor", "P01")
    msg_id = await sup.send("join_call", call_id=call_id, covert=True)
    error = await sup.error_for(msg_id)
    assert (error["code"], error["field"]) == ("forbidden", "covert")
    await officer.assert_no("participant_joined", within=0.1)


async def test_covert_join_when_allowed_is_invisible_to_the_parties(serve: Serve) -> None:
    server = await serve(calls={"allow_covert_monitoring": True})
    officer, op, call_id = await answered_call(server)
    sup = await server.connect("sup1", "supervisor", "P01")
    await sup.request("join_call", call_id=call_id, covert=True)
    joined = await sup.expect("participant_joined", call_id=call_id)
    assert joined["covert"] is True
    # Still recorded, even though nobody in the call is told.
    await server.wait_recorded("supervisor_joined", call=call_id, user="sup1", covert=True)
    await officer.request("hangup", call_id=call_id)
    await op.expect("call_ended", call_id=call_id)
    assert not [m for m in officer.log + op.log if m["type"] == "participant_joined"]
    await sup.expect("call_ended", call_id=call_id)


async def test_operator_transfers_an_answered_call_to_another_operator(server: Server) -> None:
    officer, op1, call_id = await answered_call(server)
    op2 = await server.connect("op2", "operator", "P0101")
    await op1.request("transfer", call_id=call_id, to="op2")
    offered = await op2.expect("transfer_offered")
    assert (offered["call"]["call_id"], offered["from_operator"]["id"]) == (call_id, "op1")
    await op2.request("accept_transfer", call_id=call_id)
    for client in (officer, op1, op2):
        moved = await client.expect("call_transferred")
        assert moved["call"]["operator"]["id"] == "op2"
        assert moved["from_operator"]["id"] == "op1"
    # The new operator owns the call: their hangup ends it; the old one's is refused.
    stale = await op1.send("hangup", call_id=call_id)
    assert (await op1.error_for(stale))["code"] == "invalid_state"
    await op2.request("hangup", call_id=call_id)
    ended = await officer.expect("call_ended", call_id=call_id)
    assert (ended["reason"], ended["by"]) == ("hangup", "op2")


async def test_one_operator_acknowledges_an_emergency_and_everyone_is_told_who(
    server: Server,
) -> None:
    """The officer and every watcher learn who took the SOS; a second taker is told who was
    first; a false alarm needs a reason, and its outcome reaches the officer and the trace."""
    op1 = await server.connect("op1", "operator", "P0101")
    op2 = await server.connect("op2", "operator", "P0101")
    sup = await server.connect("sup1", "supervisor", "P01")
    officer = await server.connect("o1", "officer", "P0101")
    await place_call(officer, "emergency", note="crowd")
    await op1.expect("call_ringing")
    refused = await officer.send("acknowledge_emergency", officer="o1")
    assert (await officer.error_for(refused))["code"] == "forbidden"

    await op1.request("acknowledge_emergency", officer="o1")
    for client in (officer, op1, op2, sup):
        told = await client.expect("emergency_acknowledged")
        assert (told["officer"]["id"], told["by"]["id"]) == ("o1", "op1")
    late = await op2.send("acknowledge_emergency", officer="o1")
    error = await op2.error_for(late)
    assert (error["code"], error["field"]) == ("invalid_state", "officer")
    assert error["reason"] == "already acknowledged by op1"
    await server.wait_recorded("emergency_acknowledged", officer="o1", by="op1")

    bare = await op1.send("clear_emergency", officer="o1", outcome="false_alarm")
    error = await op1.error_for(bare)
    assert (error["code"], error["field"]) == ("invalid_message", "reason")
    await op1.request(
        "clear_emergency", officer="o1", outcome="false_alarm", reason="pressed in a pocket"
    )
    cleared = await officer.expect("emergency_cleared")
    assert (cleared["by"]["id"], cleared["outcome"]) == ("op1", "false_alarm")
    await server.wait_recorded(
        "emergency_cleared",
        officer="o1",
        outcome="false_alarm",
        reason="pressed in a pocket",
        acknowledged_by="op1",
    )
    # Cleared: nothing left to acknowledge.
    again = await op2.send("acknowledge_emergency", officer="o1")
    assert (await op2.error_for(again))["code"] == "invalid_state"
