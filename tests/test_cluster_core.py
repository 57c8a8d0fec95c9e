"""The pure parts of many nodes: the switchboard's entries for the cluster (adopt, lose,
end_call, the journal's facts), the media node choice and the wire envelopes."""

from __future__ import annotations

import collections

from commandcenter.auth import Role
from signalling import protocol as p
from signalling.cluster import wire as w
from signalling.cluster.authority import pick_media_node
from signalling.cluster.nodes import NodeLoad, NodeRecord, NodeStatus
from signalling.core.facts import WaitingCall
from signalling.core.presence import SessionKeys
from tests.corehelpers import (
    Board,
    disconnects,
    ended,
    messages,
    officer,
    operator,
    placed,
    record_kinds,
    records,
    supervisor,
)


def answered(b: Board) -> str:
    call_id = placed(b.call_center("o1"))
    b.accept("op1", call_id)
    return call_id


def test_adopting_an_unknown_session_welcomes_it_without_a_new_sign_in() -> None:
    b = Board()
    b.sign_in(operator("op1"))
    actions = b.sb.adopt(
        officer("o1"), keys=SessionKeys("s-old", "r-old"), device="d", app_version="1", now=b.now
    )
    assert record_kinds(actions) == ["session_adopted"]
    (welcome,) = messages(actions, p.Welcome, to="o1")
    assert (welcome.session_id, welcome.resume_token, welcome.resumed) == ("s-old", "r-old", True)
    # The watchers see the officer online, as after a sign-in.
    assert messages(actions, p.RosterUpdate, to="op1")[0].entry.status == "online"
    session = b.sb.session("o1")
    assert session is not None
    assert session.connected


def test_adopting_a_known_session_welcomes_it_again_with_its_calls() -> None:
    b = Board()
    b.sign_in(officer("o1"), operator("op1"))
    call_id = answered(b)
    session = b.sb.session("o1")
    assert session is not None
    keys = SessionKeys(session.session_id, session.resume_token)
    actions = b.sb.adopt(officer("o1"), keys=keys, device="d", app_version="1", now=b.now)
    assert record_kinds(actions) == []
    (welcome,) = messages(actions, p.Welcome, to="o1")
    assert [c.call_id for c in welcome.calls] == [call_id]
    assert disconnects(actions) == []


def test_adopting_an_away_session_brings_it_back() -> None:
    b = Board()
    b.sign_in(officer("o1"), operator("op1"))
    call_id = answered(b)
    b.drop("o1")
    session = b.sb.session("o1")
    assert session is not None
    assert not session.connected
    keys = SessionKeys(session.session_id, session.resume_token)
    actions = b.sb.adopt(officer("o1"), keys=keys, device="d", app_version="1", now=b.now)
    assert [m.call_id for m in messages(actions, p.PartyBack, to="op1")] == [call_id]
    assert session.connected


def test_adopting_a_replaced_session_closes_it() -> None:
    b = Board()
    b.sign_in(officer("o1"))
    actions = b.sb.adopt(
        officer("o1"), keys=SessionKeys("s-stale", "r"), device="d", app_version="1", now=b.now
    )
    assert [(d.user, d.session_id) for d in disconnects(actions)] == [("o1", "s-stale")]


def test_a_lost_session_ends_its_call_with_node_lost_and_signs_out() -> None:
    b = Board()
    b.sign_in(officer("o1"), operator("op1"))
    call_id = answered(b)
    session = b.sb.session("o1")
    assert session is not None
    assert b.sb.lose("o1", "someone-else", b.now) == []
    actions = b.sb.lose("o1", session.session_id, b.now)
    end = ended(actions, call_id)
    assert (end.reason, end.by) == (p.EndReason.NODE_LOST, "o1")
    (out,) = records(actions, "sign_out")
    assert out.data["reason"] == "node_lost"
    assert b.sb.session("o1") is None
    assert messages(actions, p.RosterUpdate, to="op1")[-1].entry.status == "offline"


def test_end_call_ends_a_live_call_for_everyone_in_it() -> None:
    b = Board()
    b.sign_in(officer("o1"), operator("op1"))
    call_id = answered(b)
    actions = b.sb.end_call(call_id, p.EndReason.NODE_LOST, b.now)
    assert ended(actions, call_id).reason == p.EndReason.NODE_LOST
    assert b.sb.end_call(call_id, p.EndReason.NODE_LOST, b.now) == []


def test_journal_facts_are_the_records_a_loss_would_make() -> None:
    b = Board()
    b.sign_in(officer("o1"), operator("op1"), supervisor("sv1"))
    call_id = answered(b)
    facts = b.sb.call_facts(call_id)
    assert facts is not None
    notify, data = facts.notify, facts.ended
    assert notify == ("o1", "op1")
    assert b.sb.session_facts("o1") is not None
    lost = b.sb.lose("o1", b.sb.presence.sessions["o1"].session_id, b.now)
    (end,) = records(lost, "call_ended")
    # What the next authority records from the journal is what this one would have.
    assert dict(end.data) == {**data, "by": "o1"}
    assert b.sb.call_facts(call_id) is None
    assert b.sb.session_facts("o1") is None


def test_shutdown_of_an_authority_signs_out_only_its_own_users() -> None:
    b = Board()
    b.sign_in(officer("o1"), operator("op1"))
    call_id = answered(b)
    actions = b.sb.shutdown(b.now, users={"op1"})
    assert ended(actions, call_id).reason == p.EndReason.SHUTDOWN
    assert [e.data["user"] for e in records(actions, "sign_out")] == ["op1"]
    assert b.sb.session("o1") is not None


def test_shutdown_of_the_last_authority_signs_out_the_away_sessions_too() -> None:
    """Sessions away (no connection on any node, waiting out their grace) have no node to
    take them on: the authority stopping signs them out with its own users, so the last
    node out leaves no sign-in without its sign-out; users connected elsewhere go on."""
    b = Board()
    b.sign_in(officer("o1"), officer("o2"), operator("op1"))
    b.drop("o1")
    actions = b.sb.shutdown(b.now, users={"op1"})
    signed_out = sorted((e.data["user"], e.data["reason"]) for e in records(actions, "sign_out"))
    assert signed_out == [("o1", "shutdown"), ("op1", "shutdown")]
    assert b.sb.session("o2") is not None


def record(node_id: str, *, rooms_cpu: float = 0.0, media: bool = True) -> NodeRecord:
    status = NodeStatus(
        node_id=node_id,
        http_address="127.0.0.1:1",
        media_address="127.0.0.1" if media else "",
        started_at=1.0,
        load=NodeLoad(cpu=rooms_cpu),
    )
    return NodeRecord(status, 0.0)


def test_media_goes_to_the_node_with_the_fewest_rooms_then_least_cpu() -> None:
    nodes = [record("n1", rooms_cpu=0.2), record("n2", rooms_cpu=0.1), record("n3", media=False)]
    rooms: collections.Counter[str] = collections.Counter()
    assert pick_media_node(nodes, rooms, "self") == "n2"
    rooms["n2"] += 1
    assert pick_media_node(nodes, rooms, "self") == "n1"
    # A node near full CPU only when all are.
    busy = [record("n1", rooms_cpu=0.95), record("n2", rooms_cpu=0.1)]
    assert pick_media_node(busy, collections.Counter({"n2": 5}), "self") == "n2"
    assert pick_media_node([record("n3", media=False)], rooms, "self") == "self"


def test_envelopes_round_trip_with_protocol_messages_inside() -> None:
    info = w.ConnectionInfo(
        user="o1",
        name="O",
        role=Role.OFFICER.value,
        court="P0101",
        expires_at=1.0,
        session_id="s",
        resume_token="r",
        device="d",
        app_version="1",
    )
    inbox: list[w.InboxMessage] = [
        w.Connect(node="n1", run=1.0, conn=info, resume=None),
        w.ClientMessage(
            node="n1", run=1.0, user="o1", session_id="s", message=p.CallCenter(id="m1")
        ),
        w.Closed(node="n1", run=1.0, user="o1", session_id="s"),
        w.Report(node="n1", run=1.0, conns=[info]),
    ]
    for message in inbox:
        assert w.decode_inbox(w.encode(message)) == message
    ack = p.Ack(ref="m1")
    node: list[w.NodeMessage] = [
        w.Deliver(node="n2", run=2.0, to=["o1"], message=ack),
        w.Disconnect(node="n2", run=2.0, user="o1", session_id="s", code=4409, reason="x"),
        w.ResyncRequest(node="n2", run=2.0, epoch=7),
        # A video wall's watch: its flag keeps the media node from recording it.
        w.RoomChanged(
            node="n2",
            run=2.0,
            call_id="w-1",
            members=["o1", "op1"],
            silent=["op1"],
            court="P0101",
            officer="o1",
            case_number=None,
            watch=True,
        ),
    ]
    for envelope in node:
        assert w.decode_node(w.encode(envelope)) == envelope
    waiting = WaitingCall("c1", "o1", "P0101", 1.5, None, emergency=True)
    entry = w.JournalCall(notify=["o1"], ended={"call": "c1"}, waiting=waiting)
    assert w.decode_journal_call(w.encode(entry)) == entry


def test_a_waiting_call_is_taken_over_in_its_place_and_rings() -> None:
    b = Board()
    b.sign_in(officer("o1"), officer("o2"), operator("op1"))
    answered(b)
    waiting_id = placed(b.call_center("o2"))
    facts = b.sb.call_facts(waiting_id)
    assert facts is not None
    assert facts.waiting is not None
    # A new authority: the sessions adopted, then the waiting call taken over.
    fresh = Board()
    for ident in (officer("o2"), operator("op1")):
        s = b.sb.presence.sessions[ident.user_id]
        fresh.sb.adopt(
            ident,
            keys=SessionKeys(s.session_id, s.resume_token),
            device="d",
            app_version="1",
            now=fresh.now,
        )
    actions = fresh.sb.take_over(facts.waiting, fresh.now)
    assert record_kinds(actions)[0] == "call_taken_over"
    assert messages(actions, p.CallRinging, to="op1")[0].call.call_id == waiting_id
    (welcome,) = messages(actions, p.Welcome, to="o2")
    assert [c.call_id for c in welcome.calls] == [waiting_id]
    assert fresh.sb.take_over(facts.waiting, fresh.now) == []


def test_a_waiting_call_whose_officer_is_gone_ends_node_lost() -> None:
    b = Board()
    b.sign_in(officer("o1"), operator("op1"))
    facts = b.sb.call_facts(placed(b.call_center("o1")))
    assert facts is not None
    assert facts.waiting is not None
    fresh = Board()
    actions = fresh.sb.take_over(facts.waiting, fresh.now)
    (end,) = records(actions, "call_ended")
    assert end.data["reason"] == "node_lost"
