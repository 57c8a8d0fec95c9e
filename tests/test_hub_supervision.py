"""An operator asks the supervisors over a call's court into it (`invite_supervisor`), and a
party tells the others its camera went off or on (`set_camera`), through the real server
over loopback WebSockets."""

from __future__ import annotations

from tests.conftest import Serve
from tests.test_hub_calls import answered_call
from tests.wsclient import Server


async def test_invitation_reaches_the_supervisors_over_the_court_and_one_joins(
    server: Server,
) -> None:
    officer, op, call_id = await answered_call(server)
    sup = await server.connect("sup1", "supervisor", "P01")
    admin = await server.connect("adm1", "admin", "P")
    elsewhere = await server.connect("sup2", "supervisor", "P02")
    await op.request("invite_supervisor", call_id=call_id)
    for invited in (sup, admin):
        msg = await invited.expect("supervisor_invited")
        assert (msg["call"]["call_id"], msg["by"]["id"]) == (call_id, "op1")
        assert msg["call"]["state"] == "active"
    await elsewhere.assert_no("supervisor_invited", within=0.1)
    await server.wait_recorded("supervisor_invited", call=call_id, by="op1", users=["adm1", "sup1"])
    # The answer is an ordinary join: announced to the parties, as policy has it.
    await sup.request("join_call", call_id=call_id)
    for party in (officer, op):
        joined = await party.expect("participant_joined", call_id=call_id)
        assert joined["user"]["id"] == "sup1"


async def test_only_the_calls_operator_invites(server: Server) -> None:
    officer, _, call_id = await answered_call(server)
    await server.connect("sup1", "supervisor", "P01")
    msg_id = await officer.send("invite_supervisor", call_id=call_id)
    assert (await officer.error_for(msg_id))["code"] == "forbidden"


async def test_inviting_with_no_supervisor_to_ask_is_unavailable(server: Server) -> None:
    _, op, call_id = await answered_call(server)
    msg_id = await op.send("invite_supervisor", call_id=call_id)
    assert (await op.error_for(msg_id))["code"] == "unavailable"
    sup = await server.connect("sup1", "supervisor", "P01")
    await sup.request("join_call", call_id=call_id)
    # Everyone over the court is in the call already: nobody left to ask.
    msg_id = await op.send("invite_supervisor", call_id=call_id)
    assert (await op.error_for(msg_id))["code"] == "unavailable"


async def test_inviting_to_an_unknown_call_is_not_found(server: Server) -> None:
    op = await server.connect("op1", "operator", "P0101")
    msg_id = await op.send("invite_supervisor", call_id="c-nope")
    assert (await op.error_for(msg_id))["code"] == "not_found"


async def test_camera_off_and_on_reach_the_other_members_only(server: Server) -> None:
    officer, op, call_id = await answered_call(server)
    sup = await server.connect("sup1", "supervisor", "P01")
    await sup.request("join_call", call_id=call_id)
    await op.request("set_camera", call_id=call_id, on=False)
    for other in (officer, sup):
        msg = await other.expect("camera_changed", call_id=call_id)
        assert (msg["user"], msg["on"]) == ("op1", False)
    await op.request("set_camera", call_id=call_id, on=True)
    msg = await officer.expect("camera_changed", where=lambda m: m["on"] is True)
    assert msg["user"] == "op1"
    assert not [m for m in op.log if m["type"] == "camera_changed"]


async def test_a_covert_monitor_and_an_outsider_have_no_camera_in_the_call(
    serve: Serve,
) -> None:
    server = await serve(calls={"allow_covert_monitoring": True})
    officer, _, call_id = await answered_call(server)
    covert = await server.connect("sup1", "supervisor", "P01")
    await covert.request("join_call", call_id=call_id, covert=True)
    outsider = await server.connect("op2", "operator", "P0101")
    for client in (covert, outsider):
        msg_id = await client.send("set_camera", call_id=call_id, on=False)
        assert (await client.error_for(msg_id))["code"] == "forbidden"
    await officer.assert_no("camera_changed", within=0.1)


async def test_set_camera_needs_a_boolean(server: Server) -> None:
    _, op, call_id = await answered_call(server)
    msg_id = await op.send("set_camera", call_id=call_id, on="off")
    assert (await op.error_for(msg_id))["code"] == "invalid_message"
