"""Text instructions through the real server over loopback WebSockets: an operator's
instruction reaches the officer, receipts reach the sender and the court's other consoles,
an unread instruction comes again after a reconnect, a court-wide one reaches an officer
who signs in later, a console that was away lists the receipts, and the trace holds every
step in a form the trace takes."""

from __future__ import annotations

from sessions.trace import encode_data
from tests.wsclient import Server


async def test_an_instruction_is_pushed_receipted_and_recorded(server: Server) -> None:
    op = await server.connect("op1", "operator", "P0101")
    watcher = await server.connect("op2", "operator", "P0101")
    other = await server.connect("op3", "operator", "P0102")
    officer = await server.connect("o1", "officer", "P0101", name="Li Wei")
    sent = await op.request(
        "send_instruction", reply="instruction_sent", officer="o1", text="请立即前往二号现场"
    )
    iid = sent["instruction_id"]
    push = await officer.expect("instruction", instruction_id=iid)
    assert (push["text"], push["by"]["id"], push["state"]) == ("请立即前往二号现场", "op1", "sent")
    for console in (op, watcher):
        update = await console.expect("instruction_update")
        assert update["instruction"]["instruction_id"] == iid
        assert [r["officer"]["name"] for r in update["instruction"]["recipients"]] == ["Li Wei"]
    await other.assert_no("instruction_update")

    await officer.request("instruction_receipt", instruction_id=iid, state="delivered")
    for console in (op, watcher):
        update = await console.expect("receipt_update", instruction_id=iid)
        assert update["recipient"]["state"] == "delivered"
        assert update["recipient"]["delivered_at"] is not None
    # A repeat is acknowledged and tells nobody anything.
    await officer.request("instruction_receipt", instruction_id=iid, state="delivered")
    await officer.request("instruction_receipt", instruction_id=iid, state="read")
    update = await op.expect("receipt_update", instruction_id=iid)
    assert update["recipient"]["state"] == "read"
    await op.assert_no("receipt_update")

    await server.wait_recorded("instruction_sent", instruction=iid, officer="o1", by="op1")
    await server.wait_recorded("instruction_delivered", instruction=iid, officer="o1")
    await server.wait_recorded("instruction_read", instruction=iid, officer="o1")
    assert len(server.recorder.of_kind("instruction_delivered")) == 1
    # What the recorder hashes: every record of the instruction encodes as trace data.
    for event in server.recorder.events:
        if event.kind.startswith("instruction_"):
            encode_data(event.data)


async def test_refusals_name_their_code_and_field(server: Server) -> None:
    op = await server.connect("op1", "operator", "P0102")
    officer = await server.connect("o1", "officer", "P0101")
    outside = await op.error_for(await op.send("send_instruction", officer="o1", text="go"))
    missing = await op.error_for(await op.send("send_instruction", officer="zz", text="go"))
    assert (outside["code"], outside["field"]) == ("not_found", "officer")
    assert outside["reason"] == missing["reason"]
    court = await op.error_for(await op.send("send_instruction", court="P0101", text="go"))
    assert (court["code"], court["field"]) == ("not_found", "court")
    blank = await op.error_for(await op.send("send_instruction", court="P0102", text="  "))
    assert (blank["code"], blank["field"]) == ("invalid_message", "text")
    control = await op.error_for(await op.send("send_instruction", officer="o1", text="a\x1bb"))
    assert control["code"] == "invalid_message"
    long = await op.error_for(await op.send("send_instruction", court="P0102", text="x" * 501))
    assert (long["code"], long["field"]) == ("invalid_message", "text")
    by_officer = await officer.error_for(
        await officer.send("send_instruction", court="P0101", text="go")
    )
    assert by_officer["code"] == "forbidden"
    unknown = await officer.error_for(
        await officer.send("instruction_receipt", instruction_id="i-nope", state="read")
    )
    assert (unknown["code"], unknown["field"]) == ("not_found", "instruction_id")


async def test_an_unread_instruction_comes_again_after_the_officer_reconnects(
    server: Server,
) -> None:
    op = await server.connect("op1", "operator", "P0101")
    officer = await server.connect("o1", "officer", "P0101")
    sent = await op.request("send_instruction", reply="instruction_sent", officer="o1", text="go")
    iid = sent["instruction_id"]
    await officer.expect("instruction", instruction_id=iid)
    await officer.request("instruction_receipt", instruction_id=iid, state="delivered")
    await officer.close()
    again = await server.connect("o1", "officer", "P0101")
    push = await again.expect("instruction", instruction_id=iid)
    assert push["state"] == "delivered"
    await again.request("instruction_receipt", instruction_id=iid, state="read")
    await again.close()
    third = await server.connect("o1", "officer", "P0101")
    await third.assert_no("instruction")


async def test_a_court_wide_instruction_reaches_an_officer_who_signs_in_later(
    server: Server,
) -> None:
    sup = await server.connect("sup1", "supervisor", "P01")
    early = await server.connect("o1", "officer", "P0101")
    elsewhere = await server.connect("o3", "officer", "P0102")
    sent = await sup.request(
        "send_instruction", reply="instruction_sent", court="P0101", text="全院注意"
    )
    iid = sent["instruction_id"]
    assert (await early.expect("instruction", instruction_id=iid))["court_wide"] is True
    await elsewhere.assert_no("instruction")
    late = await server.connect("o2", "officer", "P0101")
    await late.expect("instruction", instruction_id=iid)
    joined = await sup.expect(
        "receipt_update", where=lambda m: m["recipient"]["officer"]["id"] == "o2"
    )
    assert joined["recipient"]["state"] == "sent"


async def test_a_console_that_was_away_lists_the_receipts_it_missed(server: Server) -> None:
    op = await server.connect("op1", "operator", "P0101")
    officer = await server.connect("o1", "officer", "P0101")
    sent = await op.request("send_instruction", reply="instruction_sent", officer="o1", text="go")
    iid = sent["instruction_id"]
    await op.close()
    await officer.request("instruction_receipt", instruction_id=iid, state="read")
    back = await server.connect("op1", "operator", "P0101")
    listed = await back.request("list_instructions", reply="instructions")
    (info,) = listed["instructions"]
    assert info["instruction_id"] == iid
    assert info["recipients"][0]["state"] == "read"
    other = await server.connect("op3", "operator", "P0102")
    assert (await other.request("list_instructions", reply="instructions"))["instructions"] == []
