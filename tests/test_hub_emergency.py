"""Emergencies through the real server: the officer's note reaches the consoles (with the
SOS or added after), a console that connects later learns who took the SOS on, and the
phone's welcome names its court."""

from __future__ import annotations

from tests.wsclient import Server

COURT_NAME = "一中院辖区第一基层人民法院"


async def test_the_note_raised_with_an_sos_and_one_added_after_reach_the_consoles(
    server: Server,
) -> None:
    op = await server.connect("op1", "operator", "P0101")
    sup = await server.connect("sup1", "supervisor", "P01")
    other = await server.connect("op9", "operator", "P0102")
    officer = await server.connect("o1", "officer", "P0101")
    await officer.request("emergency", reply="call_placed", note="门口有人持刀")
    for console in (op, sup):
        noted = await console.expect("emergency_noted")
        assert (noted["officer"]["id"], noted["note"]) == ("o1", "门口有人持刀")
    await server.wait_recorded("emergency_raised", officer="o1", note="门口有人持刀")

    await officer.request("emergency_note", note="两人受伤，需要救护车")
    for console in (op, sup):
        noted = await console.expect("emergency_noted", where=lambda m: "救护车" in m["note"])
        assert noted["officer"]["id"] == "o1"
    await server.wait_recorded("emergency_noted", officer="o1", note="两人受伤，需要救护车")
    roster = await sup.request("get_roster", reply="roster")
    (entry,) = roster["officers"]
    assert entry["emergency_note"] == "两人受伤，需要救护车"
    await other.assert_no("emergency_noted", within=0.1)

    # Cleared: the note goes with the flag, and a note without an emergency is refused.
    await op.request("clear_emergency", officer="o1")
    await officer.expect("emergency_cleared")
    roster = await sup.request("get_roster", reply="roster")
    assert "emergency_note" not in roster["officers"][0]
    late = await officer.send("emergency_note", note="还在吗")
    assert (await officer.error_for(late))["code"] == "invalid_state"


async def test_an_emergency_note_is_bounded_and_only_officers_send_one(server: Server) -> None:
    op = await server.connect("op1", "operator", "P0101")
    officer = await server.connect("o1", "officer", "P0101")
    await officer.request("emergency", reply="call_placed")
    too_long = await officer.send("emergency_note", note="x" * 257)
    error = await officer.error_for(too_long)
    assert (error["code"], error["field"]) == ("invalid_message", "note")
    empty = await officer.send("emergency_note", note="")
    assert (await officer.error_for(empty))["code"] == "invalid_message"
    refused = await op.send("emergency_note", note="不是我的")
    assert (await op.error_for(refused))["code"] == "forbidden"
    await op.assert_no("emergency_noted", within=0.1)


async def test_a_console_that_connects_after_the_sos_was_taken_on_learns_who_took_it(
    server: Server,
) -> None:
    op1 = await server.connect("op1", "operator", "P0101", name="张敏")
    officer = await server.connect("o1", "officer", "P0101")
    await officer.request("emergency", reply="call_placed", note="被围堵")
    await op1.expect("call_ringing")
    roster = await op1.request("get_roster", reply="roster")
    assert "emergency_taken_by" not in roster["officers"][0]
    await op1.request("acknowledge_emergency", officer="o1")
    await officer.expect("emergency_acknowledged")

    late = await server.connect("op2", "operator", "P0101")
    roster = await late.request("get_roster", reply="roster")
    (entry,) = roster["officers"]
    assert entry["emergency"] is True
    assert entry["emergency_taken_by"] == {
        "id": "op1",
        "name": "张敏",
        "role": "operator",
        "court": "P0101",
    }
    assert entry["emergency_note"] == "被围堵"


async def test_the_welcome_names_the_users_court(server: Server) -> None:
    officer = await server.connect("o1", "officer", "P0101")
    assert officer.welcome["court_name"] == COURT_NAME
    above = await server.connect("sup1", "supervisor", "P01")
    assert above.welcome["court_name"] not in ("", COURT_NAME, "P01")
