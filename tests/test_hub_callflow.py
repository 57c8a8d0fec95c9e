"""The console's call flow through the real server over loopback WebSockets: a transfer
offered, declined, expiring and accepted; operators away and back, listed and shown to the
other consoles of their court; every step in the trace."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from tests.conftest import Serve
from tests.test_hub_calls import answered_call, place_call
from tests.wsclient import Server


async def test_a_declined_transfer_leaves_the_call_and_an_accepted_one_moves_it(
    server: Server,
) -> None:
    officer, op1, call_id = await answered_call(server)
    op2 = await server.connect("op2", "operator", "P0101")
    await op1.request("transfer", call_id=call_id, to="op2")
    offered = await op2.expect("transfer_offered")
    assert offered["call"]["officer"]["id"] == "o1"
    assert offered["from_operator"]["id"] == "op1"
    await op2.request("decline_transfer", call_id=call_id)
    for client in (op1, op2):
        ended = await client.expect("transfer_ended", call_id=call_id)
        assert (ended["outcome"], ended["by"]) == ("declined", "op2")
    await officer.assert_no("call_transferred", within=0.1)
    await server.wait_recorded("transfer_declined", call=call_id, by="op2", offered_by="op1")
    # Declined: op1 still holds the call and may offer it again.
    await op1.request("transfer", call_id=call_id, to="op2")
    await op2.expect("transfer_offered")
    await op2.request("accept_transfer", call_id=call_id)
    for client in (officer, op1, op2):
        moved = await client.expect("call_transferred")
        assert moved["call"]["operator"]["id"] == "op2"
    await server.wait_recorded("transfer_accepted", call=call_id, by="op2", offered_by="op1")
    await server.wait_recorded("call_transferred", call=call_id, by="op1", to="op2")


async def test_an_unanswered_transfer_expires_and_a_withdrawn_one_ends(serve: Serve) -> None:
    server = await serve(calls={"transfer_timeout_s": 0.3})
    officer, op1, call_id = await answered_call(server)
    op2 = await server.connect("op2", "operator", "P0101")
    await op1.request("transfer", call_id=call_id, to="op2")
    ended = await op1.expect("transfer_ended", call_id=call_id)
    assert (ended["outcome"], ended["by"]) == ("expired", None)
    await server.wait_recorded("transfer_expired", call=call_id, offered_to="op2")
    late = await op2.send("accept_transfer", call_id=call_id)
    error = await op2.error_for(late)
    assert (error["code"], error["field"]) == ("invalid_state", "call_id")
    await op1.request("transfer", call_id=call_id, to="op2")
    await op1.request("cancel_transfer", call_id=call_id)
    ended = await op2.expect("transfer_ended", call_id=call_id, outcome="cancelled")
    assert ended["by"] == "op1"
    await officer.assert_no("call_transferred", within=0.1)


async def test_an_away_operator_is_not_rung_and_the_other_consoles_see_it(
    server: Server,
) -> None:
    op1 = await server.connect("op1", "operator", "P0101")
    op2 = await server.connect("op2", "operator", "P0101")
    sup = await server.connect("sup1", "supervisor", "P01")
    listed = await op1.request("get_operators", reply="operators")
    assert listed["court"] == "P0101"
    assert [(e["user"]["id"], e["status"]) for e in listed["operators"]] == [
        ("op1", "free"),
        ("op2", "free"),
    ]
    await op2.request("set_availability", status="away")
    for client in (op1, sup):
        shown = await client.expect("operator_status", where=_about("op2", "away"))
        assert shown["entry"]["user"]["name"]
    await server.wait_recorded("operator_away", user="op2", court="P0101")
    officer = await server.connect("o1", "officer", "P0101")
    call_id = await place_call(officer)
    await op1.expect("call_ringing", where=lambda m: m["call"]["call_id"] == call_id)
    await op2.assert_no("call_ringing", within=0.2)
    await op1.request("accept", call_id=call_id)
    await sup.expect("operator_status", where=_about("op1", "busy"))
    # Nobody is free for the next call until op2 is back.
    o2 = await server.connect("o2", "officer", "P0101")
    queued = await place_call(o2)
    await o2.expect("call_queued", call_id=queued)
    await op2.request("set_availability", status="available")
    await op2.expect("call_ringing", where=lambda m: m["call"]["call_id"] == queued)
    await server.wait_recorded("operator_back", user="op2", court="P0101")
    # Officers may neither list operators nor set an availability; another court's list
    # answers like an unknown court.
    refused = await officer.send("get_operators")
    assert (await officer.error_for(refused))["code"] == "forbidden"
    other = await server.connect("op3", "operator", "P0102")
    hidden = await other.send("get_operators", court="P0101")
    error = await other.error_for(hidden)
    assert (error["code"], error["field"]) == ("not_found", "court")
    refused = await sup.send("set_availability", status="away")
    assert (await sup.error_for(refused))["code"] == "forbidden"


def _about(user: str, status: str) -> Callable[[dict[str, Any]], bool]:
    """Matches an `operator_status` of `user` with `status`."""
    return lambda m: bool(m["entry"]["user"]["id"] == user and m["entry"]["status"] == status)


async def test_an_answered_call_sent_back_rings_at_the_other_operator(serve: Serve) -> None:
    """The officer is told it is queued again; op1 is not rung for it during the hold."""
    server = await serve(calls={"send_back_hold_s": 600.0})
    officer, op1, call_id = await answered_call(server)
    op2 = await server.connect("op2", "operator", "P0101")
    await op2.request("set_availability", status="away")
    await op1.request("send_back", call_id=call_id)
    for client in (officer, op1):
        requeued = await client.expect("call_requeued", call_id=call_id)
        assert requeued["by"]["id"] == "op1"
    queued = await officer.expect("call_queued", call_id=call_id)
    assert queued["position"] == 1
    await server.wait_recorded("call_sent_back", call=call_id, by="op1", answered=True)
    await op1.assert_no("call_ringing", within=0.2)
    await op2.request("set_availability", status="available")
    ringing = await op2.expect("call_ringing", where=lambda m: m["call"]["call_id"] == call_id)
    assert ringing["call"]["operator"] is None
    await op2.request("accept", call_id=call_id)
    answered = await officer.expect("call_answered")
    assert answered["call"]["operator"]["id"] == "op2"
    stale = await op1.send("send_back", call_id=call_id)
    assert (await op1.error_for(stale))["code"] == "invalid_state"


async def test_an_emergency_nobody_takes_on_alarms_again_then_at_the_court_above(
    serve: Serve,
) -> None:
    server = await serve(emergency={"repeat_after_s": 0.3, "escalate_after_s": 0.5})
    op1 = await server.connect("op1", "operator", "P0101")
    above = await server.connect("opP01", "operator", "P01")
    officer = await server.connect("o1", "officer", "P0101")
    await place_call(officer, "emergency", note="blocked in")
    first = await op1.expect("emergency_alarm")
    assert (first["officer"]["id"], first["repeat"]) == ("o1", 1)
    shown = await above.expect("roster_update", timeout=5.0)
    assert (shown["entry"]["officer"]["id"], shown["entry"]["emergency"]) == ("o1", True)
    escalated = await above.expect("emergency_alarm", timeout=5.0)
    assert escalated["escalated_to"] == "P01"
    await server.wait_recorded("emergency_escalated", officer="o1", court="P0101", to="P01")
    await server.wait_recorded("emergency_repeated", officer="o1", repeat=1)
    # The court above takes it on: the officer and both consoles are told, and it stops.
    await above.request("acknowledge_emergency", officer="o1")
    for client in (officer, op1, above):
        told = await client.expect("emergency_acknowledged")
        assert told["by"]["id"] == "opP01"
    await server.wait_recorded("emergency_acknowledged", officer="o1", by="opP01")
    repeats = len(server.recorder.of_kind("emergency_repeated"))
    # Three repeat periods later (a window, not a timing assertion): no more repeats.
    await asyncio.sleep(0.9)
    assert len(server.recorder.of_kind("emergency_repeated")) == repeats


async def test_with_a_silent_policy_a_supervisor_is_never_announced(serve: Serve) -> None:
    server = await serve(calls={"supervisor_join": "silent"})
    officer, op, call_id = await answered_call(server)
    sup = await server.connect("sup1", "supervisor", "P01")
    await sup.request("join_call", call_id=call_id)
    joined = await sup.expect("participant_joined", call_id=call_id)
    assert joined["covert"] is True
    await server.wait_recorded("supervisor_joined", call=call_id, user="sup1", covert=True)
    await officer.assert_no("participant_joined", within=0.2)
    await op.assert_no("participant_joined", within=0.0)


async def test_a_console_sees_the_calls_that_ring_elsewhere_and_the_queue_with_their_age(
    server: Server,
) -> None:
    officer, op1, first = await answered_call(server)
    sup = await server.connect("sup1", "supervisor", "P01")
    o2 = await server.connect("o2", "officer", "P0101")
    # Nobody free: the supervisor's console sees the call queued, first in line.
    waiting = await place_call(o2)
    update = await sup.expect("queue_update", where=lambda m: m["calls"] != [])
    (entry,) = update["calls"]
    assert (entry["call"]["call_id"], entry["call"]["state"]) == (waiting, "queued")
    assert (entry["position"], entry["ringing"]) == (1, 0)
    queue = await sup.request("get_queue", reply="queue", court="P0101")
    assert queue["calls"] == update["calls"]
    # op1 hangs up: it rings at op1, then is answered and leaves the list.
    await op1.request("hangup", call_id=first)
    await sup.expect(
        "queue_update",
        where=lambda m: m["calls"][:1] != [] and m["calls"][0]["call"]["state"] == "ringing",
    )
    await op1.expect("call_ringing", where=lambda m: m["call"]["call_id"] == waiting)
    await op1.request("accept", call_id=waiting)
    await sup.expect("queue_update", calls=[])
    refused = await officer.send("get_queue")
    assert (await officer.error_for(refused))["code"] == "forbidden"
