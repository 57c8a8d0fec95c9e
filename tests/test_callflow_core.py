"""The console's call flow in the pure core: transfers offered and accepted or not, and the
operators' own availability (free, busy, away), driven with a fake clock."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from signalling import protocol as p
from signalling.core.actions import Room
from signalling.errors import Busy, Forbidden, InvalidState, NotFound
from signalling.settings import CallsConfig, EmergencyConfig
from tests.corehelpers import (
    Board,
    messages,
    officer,
    operator,
    placed,
    recipients,
    records,
    supervisor,
)


def board(**calls: Any) -> Board:
    b = Board(calls=msgspec.structs.replace(CallsConfig(), **calls))
    b.sign_in(
        officer("o1"),
        officer("o2"),
        operator("op1"),
        operator("op2"),
        operator("op3", "P0102"),
        supervisor("sup1"),
    )
    return b


def active_call(b: Board, officer_id: str = "o1", op: str = "op1") -> str:
    call_id = placed(b.call_center(officer_id))
    b.accept(op, call_id)
    assert b.call_state(call_id) == "active"
    return call_id


def statuses(actions: list[Any], to: str) -> dict[str, str]:
    return {m.entry.user.id: m.entry.status for m in messages(actions, p.OperatorStatus, to=to)}


# ---- transfers ----------------------------------------------------------------------------


def test_a_transfer_is_offered_and_the_call_stays_until_the_other_accepts() -> None:
    b = board(transfer_timeout_s=30.0)
    call_id = active_call(b)
    actions = b.transfer("op1", call_id, "op2")
    (offer,) = messages(actions, p.TransferOffered, to="op2")
    assert (offer.call.call_id, offer.from_operator.id) == (call_id, "op1")
    assert offer.call.officer.id == "o1"
    assert offer.expires_in_s == 30.0
    assert messages(actions, p.CallTransferred) == []
    (rec,) = records(actions, "transfer_offered")
    assert (rec.data["by"], rec.data["to"]) == ("op1", "op2")
    assert b.sb.calls.table[call_id].operator == "op1"

    actions = b.accept_transfer("op2", call_id)
    assert recipients(actions, p.CallTransferred) == {"o1", "op1", "op2"}
    assert [r.kind for r in records(actions)] == ["transfer_accepted", "call_transferred"]
    assert b.sb.calls.table[call_id].operator == "op2"
    assert b.sb.calls.call_id_of("op1") is None
    # op1 is free again and op2 busy, and their court's consoles are told.
    assert statuses(actions, "sup1") == {"op1": "free", "op2": "busy"}
    assert b.sb.transfers.open_offers() == []


def test_a_declined_transfer_leaves_the_call_with_its_operator_and_both_are_told() -> None:
    b = board()
    call_id = active_call(b)
    b.transfer("op1", call_id, "op2")
    actions = b.decline_transfer("op2", call_id)
    (ended,) = messages(actions, p.TransferEnded, to="op1")
    assert (ended.outcome, ended.by) == ("declined", "op2")
    assert recipients(actions, p.TransferEnded) == {"op1", "op2"}
    (rec,) = records(actions, "transfer_declined")
    assert (rec.data["offered_by"], rec.data["offered_to"]) == ("op1", "op2")
    assert b.sb.calls.table[call_id].operator == "op1"
    with pytest.raises(InvalidState):
        b.accept_transfer("op2", call_id)


def test_an_unanswered_transfer_expires_after_the_timeout() -> None:
    b = board(transfer_timeout_s=20.0)
    call_id = active_call(b)
    b.transfer("op1", call_id, "op2")
    assert messages(b.advance(19.0), p.TransferEnded) == []
    actions = b.advance(1.0)
    (ended,) = messages(actions, p.TransferEnded, to="op1")
    assert (ended.outcome, ended.by) == ("expired", None)
    assert records(actions, "transfer_expired")
    assert b.sb.calls.table[call_id].operator == "op1"


def test_the_offering_operator_may_withdraw_the_offer() -> None:
    b = board()
    call_id = active_call(b)
    b.transfer("op1", call_id, "op2")
    with pytest.raises(InvalidState):
        b.cancel_transfer("op2", call_id)  # only the one offering withdraws it
    actions = b.cancel_transfer("op1", call_id)
    (ended,) = messages(actions, p.TransferEnded, to="op2")
    assert (ended.outcome, ended.by) == ("cancelled", "op1")
    assert records(actions, "transfer_cancelled")


def test_a_call_ending_during_the_offer_ends_the_offer_first() -> None:
    b = board()
    call_id = active_call(b)
    b.transfer("op1", call_id, "op2")
    actions = b.hangup("o1", call_id)
    (ended,) = messages(actions, p.TransferEnded, to="op2")
    assert ended.outcome == "ended"
    kinds = [r.kind for r in records(actions)]
    assert kinds.index("transfer_ended") < kinds.index("call_ended")
    assert b.sb.next_deadline() is None or b.sb.transfers.open_offers() == []


def test_an_operator_signing_out_lets_the_offer_to_them_lapse() -> None:
    b = Board(calls=msgspec.structs.replace(CallsConfig(), transfer_timeout_s=600.0))
    b.sign_in(officer("o1"), operator("op1"), operator("op2"))
    call_id = active_call(b)
    b.transfer("op1", call_id, "op2")
    b.drop("op2")
    actions = b.advance(b.sb.presence.config.grace_s + 1.0)
    (ended,) = messages(actions, p.TransferEnded, to="op1")
    assert (ended.outcome, ended.by) == ("unavailable", "op2")


def test_refused_transfers_change_nothing() -> None:
    b = board()
    b.sign_in(operator("op4"))
    call_id = active_call(b)
    other = active_call(b, "o2", "op2")
    before = b.snapshot()
    with pytest.raises(Busy):
        b.transfer("op1", call_id, "op2")  # in a call
    with pytest.raises(Forbidden):
        b.transfer("op1", call_id, "op3")  # another court's operator
    with pytest.raises(NotFound):
        b.transfer("op1", call_id, "sup1")
    with pytest.raises(InvalidState):
        b.transfer("op2", call_id, "op4")  # not the call's operator
    with pytest.raises(InvalidState):
        b.accept_transfer("op4", call_id)  # nothing offered
    assert b.snapshot() == before
    b.transfer("op1", call_id, "op4")
    before = b.snapshot()
    with pytest.raises(InvalidState):
        b.transfer("op1", call_id, "op4")  # one offer per call
    with pytest.raises(Busy):
        b.transfer("op2", other, "op4")  # op4 is considering another offer
    with pytest.raises(InvalidState):
        b.accept_transfer("op2", call_id)  # offered to op4, not op2
    assert b.snapshot() == before


def test_an_away_operator_is_not_offered_a_transfer() -> None:
    b = board()
    call_id = active_call(b)
    b.set_availability("op2", "away")
    with pytest.raises(Busy):
        b.transfer("op1", call_id, "op2")


# ---- availability ---------------------------------------------------------------------------


def test_an_away_operator_is_not_rung_and_stops_ringing() -> None:
    b = board()
    ringing = placed(b.call_center("o1"))
    assert b.sb.dispatch.ringing(ringing) == {"op1", "op2"}
    actions = b.set_availability("op2", "away")
    (stopped,) = messages(actions, p.RingStopped, to="op2")
    assert (stopped.call_id, stopped.reason) == (ringing, "away")
    (rec,) = records(actions, "operator_away")
    assert (rec.data["user"], rec.data["court"]) == ("op2", "P0101")
    assert statuses(actions, "op1") == {"op2": "away"}
    assert statuses(actions, "sup1") == {"op2": "away"}
    assert b.sb.dispatch.ringing(ringing) == {"op1"}
    b.accept("op1", ringing)
    # The next call finds nobody free: op1 is busy and op2 away.
    queued = placed(b.call_center("o2"))
    assert b.call_state(queued) == "queued"
    actions = b.set_availability("op2", "available")
    assert records(actions, "operator_back")
    assert b.sb.dispatch.ringing(queued) == {"op2"}
    assert statuses(actions, "op1") == {"op2": "free"}


def test_an_away_operator_is_still_rung_for_an_emergency() -> None:
    b = board()
    b.set_availability("op2", "away")
    call_id = placed(b.emergency("o1"))
    assert "op2" in b.sb.dispatch.ringing(call_id)
    actions = b.set_availability("op2", "away")
    assert records(actions) == []  # already away: nothing new
    assert "op2" in b.sb.dispatch.ringing(call_id)


def test_operators_are_listed_with_their_status_within_scope() -> None:
    b = board()
    active_call(b, "o1", "op1")
    b.set_availability("op2", "away")
    actions = b.send("sup1", p.GetOperators(id="g1", court="P0101"))
    (listed,) = messages(actions, p.Operators, to="sup1")
    assert [(e.user.id, e.status) for e in listed.operators] == [("op1", "busy"), ("op2", "away")]
    (own,) = messages(b.send("op3", p.GetOperators(id="g2")), p.Operators, to="op3")
    assert (own.court, [e.user.id for e in own.operators]) == ("P0102", ["op3"])
    # Another court's operators answer like an unknown court.
    with pytest.raises(NotFound):
        b.send("op3", p.GetOperators(id="g3", court="P0101"))
    with pytest.raises(NotFound):
        b.send("op3", p.GetOperators(id="g4", court="NOPE"))
    with pytest.raises(Forbidden):
        b.send("o1", p.GetOperators(id="g5"))
    with pytest.raises(Forbidden):
        b.set_availability("sup1", "away")


def test_an_operator_signing_in_and_out_is_shown_to_the_consoles() -> None:
    b = board()
    _, actions = b.connect(operator("op5"))
    assert statuses(actions, "op1") == {"op5": "free"}
    assert "op5" not in statuses(actions, "op5")
    b.drop("op5")
    actions = b.advance(b.sb.presence.config.grace_s + 1.0)
    assert statuses(actions, "op1") == {"op5": "offline"}


# ---- sending a call back to the queue ------------------------------------------------------


def test_an_answered_call_sent_back_rings_at_the_others_and_keeps_its_place() -> None:
    b = board(send_back_hold_s=60.0)
    call_id = active_call(b)
    created = b.sb.calls.table[call_id].created_at
    b.advance(5.0)
    actions = b.send_back("op1", call_id)
    assert recipients(actions, p.CallRequeued) == {"o1", "op1"}
    (rec,) = records(actions, "call_sent_back")
    assert (rec.data["by"], rec.data["answered"]) == ("op1", True)
    assert "call_queued" in [r.kind for r in records(actions)]
    call = b.sb.calls.table[call_id]
    assert (call.operator, call.created_at) == (None, created)
    assert b.sb.calls.call_id_of("op1") is None
    assert b.sb.calls.call_id_of("o1") == call_id
    # It rings at op2 at once, never at op1, who is free again.
    assert b.sb.dispatch.ringing(call_id) == {"op2"}
    assert statuses(actions, "sup1")["op1"] == "free"
    # The officer stays in the call's media while it waits.
    rooms = [a for a in actions if isinstance(a, Room) and a.call_id == call_id]
    assert [r.members for r in rooms][-1:] == [("o1",)]
    b.accept("op2", call_id)
    assert b.sb.calls.table[call_id].operator == "op2"


def test_the_operator_who_sent_a_call_back_is_rung_for_it_after_the_hold() -> None:
    b = Board(calls=msgspec.structs.replace(CallsConfig(), send_back_hold_s=20.0))
    b.sign_in(officer("o1"), operator("op1"))
    call_id = active_call(b)
    actions = b.send_back("op1", call_id)
    (queued,) = messages(actions, p.CallQueued, to="o1")
    assert queued.position == 1
    assert b.call_state(call_id) == "queued"
    b.advance(19.0)
    assert b.sb.dispatch.ringing(call_id) == frozenset()
    b.advance(1.0)
    assert b.sb.dispatch.ringing(call_id) == {"op1"}


def test_a_ringing_call_sent_back_rings_on_elsewhere_or_waits() -> None:
    b = board()
    call_id = placed(b.call_center("o1"))
    actions = b.send_back("op1", call_id)
    assert recipients(actions, p.CallRequeued) == {"op1"}
    assert b.sb.dispatch.ringing(call_id) == {"op2"}
    b.send_back("op2", call_id)
    assert b.call_state(call_id) == "queued"


def test_refused_send_backs_change_nothing() -> None:
    b = board()
    call_id = active_call(b)
    to_officer = placed(b.call_officer("op2", "o2"))
    before = b.snapshot()
    with pytest.raises(InvalidState):
        b.send_back("op2", call_id)  # not theirs
    with pytest.raises(InvalidState):
        b.send_back("o1", call_id)
    with pytest.raises(InvalidState):
        b.send_back("op2", to_officer)  # a call from the center has no queue
    with pytest.raises(NotFound):
        b.send_back("op1", "nope")
    assert b.snapshot() == before


# ---- emergencies nobody takes on -------------------------------------------------------------


def alarm_board() -> Board:
    b = Board(emergency=EmergencyConfig(repeat_after_s=30.0, escalate_after_s=60.0))
    b.sign_in(
        officer("o1"),
        operator("op1"),
        operator("opP01", "P01"),
        supervisor("sup1"),
        operator("op3", "P0102"),
    )
    return b


def test_an_unacknowledged_emergency_repeats_then_reaches_the_court_above() -> None:
    b = alarm_board()
    b.emergency("o1")
    assert messages(b.advance(29.0), p.EmergencyAlarm) == []
    actions = b.advance(1.0)
    assert recipients(actions, p.EmergencyAlarm) == {"op1", "sup1"}
    (alarm,) = messages(actions, p.EmergencyAlarm, to="op1")
    assert (alarm.officer.id, alarm.repeat, alarm.escalated_to) == ("o1", 1, None)
    (rec,) = records(actions, "emergency_repeated")
    assert (rec.data["repeat"], rec.data["escalated_to"]) == (1, None)
    # At 60 s it escalates: P01's own console learns of the officer and alarms too.
    actions = b.advance(30.0)
    (esc,) = records(actions, "emergency_escalated")
    assert (esc.data["court"], esc.data["to"]) == ("P0101", "P01")
    (entry,) = messages(actions, p.RosterUpdate, to="opP01")
    assert (entry.entry.officer.id, entry.entry.emergency) == ("o1", True)
    assert recipients(actions, p.EmergencyAlarm) == {"op1", "sup1", "opP01"}
    assert "op3" not in recipients(actions, p.EmergencyAlarm)
    # The court above may take it on; everyone, it included, is told, and it stops.
    actions = b.send("opP01", p.AcknowledgeEmergency(id="a1", officer="o1"))
    assert {"o1", "op1", "sup1", "opP01"} <= recipients(actions, p.EmergencyAcknowledged)
    assert messages(b.advance(300.0), p.EmergencyAlarm) == []
    actions = b.clear_emergency("op1", "o1")
    (cleared,) = messages(actions, p.RosterUpdate, to="opP01")
    assert cleared.entry.emergency is False


def test_a_console_of_the_court_above_that_opens_later_lists_the_escalated_officer() -> None:
    b = alarm_board()
    b.emergency("o1")

    def listed(user: str) -> list[tuple[str, bool]]:
        (roster,) = messages(b.send(user, p.GetRoster(id="r")), p.Roster, to=user)
        return [(e.officer.id, e.emergency) for e in roster.officers]

    assert listed("opP01") == []
    b.advance(60.0)
    # Escalated: P01's console, reconnecting now and asking for its roster, sees the officer
    # it was told of by push; a sibling court's console does not.
    assert listed("opP01") == [("o1", True)]
    assert listed("op3") == []
    assert listed("sup1") == [("o1", True)]
    b.send("opP01", p.AcknowledgeEmergency(id="a1", officer="o1"))
    assert listed("opP01") == [("o1", True)]
    b.clear_emergency("op1", "o1")
    assert listed("opP01") == []


def test_acknowledging_or_answering_stops_the_repeats() -> None:
    b = alarm_board()
    call_id = placed(b.emergency("o1"))
    b.send("op1", p.AcknowledgeEmergency(id="a1", officer="o1"))
    assert messages(b.advance(200.0), p.EmergencyAlarm) == []
    assert b.sb.alarms.pending() == []
    b.clear_emergency("op1", "o1")
    assert b.call_state(call_id) is None  # rang out long ago
    # Raised again and answered (not acknowledged): nobody is alarmed while on the line.
    call_id = placed(b.emergency("o1"))
    b.accept("op1", call_id)
    assert messages(b.advance(31.0), p.EmergencyAlarm) == []


def test_an_operator_of_another_court_may_not_take_on_an_emergency_not_escalated_to_it() -> None:
    b = alarm_board()
    b.emergency("o1")
    with pytest.raises(Forbidden):
        b.send("opP01", p.AcknowledgeEmergency(id="a1", officer="o1"))


# ---- supervisors joining by policy ---------------------------------------------------------


def test_with_a_silent_policy_every_supervisor_joins_unseen() -> None:
    b = Board(calls=msgspec.structs.replace(CallsConfig(), supervisor_join="silent"))
    b.sign_in(officer("o1"), operator("op1"), supervisor("sup1"))
    call_id = active_call(b)
    actions = b.join("sup1", call_id, covert=False)
    (rec,) = records(actions, "supervisor_joined")
    assert rec.data["covert"] is True
    assert recipients(actions, p.ParticipantJoined) == {"sup1"}
    (room,) = [a for a in actions if isinstance(a, Room)]
    assert room.silent == ("sup1",)


def test_with_a_visible_policy_a_supervisor_is_announced_and_heard() -> None:
    b = board()
    call_id = active_call(b)
    with pytest.raises(Forbidden):
        b.join("sup1", call_id, covert=True)
    actions = b.join("sup1", call_id)
    assert recipients(actions, p.ParticipantJoined) == {"o1", "op1", "sup1"}
    (room,) = [a for a in actions if isinstance(a, Room)]
    assert "sup1" in room.members
    assert room.silent == ()


def test_with_either_policy_the_supervisor_chooses() -> None:
    b = Board(calls=msgspec.structs.replace(CallsConfig(), supervisor_join="either"))
    b.sign_in(officer("o1"), operator("op1"), supervisor("sup1"), supervisor("sup2"))
    call_id = active_call(b)
    assert recipients(b.join("sup1", call_id, covert=True), p.ParticipantJoined) == {"sup1"}
    assert "o1" in recipients(b.join("sup2", call_id), p.ParticipantJoined)


# ---- the queue the consoles see ------------------------------------------------------------


def queue_of(b: Board, user: str, court: str | None = None) -> list[tuple[str, str, Any, int]]:
    (reply,) = messages(b.send(user, p.GetQueue(id=b.msg_id(), court=court)), p.Queue, to=user)
    return [(e.call.call_id, e.call.state, e.position, e.ringing) for e in reply.calls]


def last_update(actions: list[Any], to: str) -> list[tuple[str, str, Any, int]]:
    *_, update = messages(actions, p.QueueUpdate, to=to)
    return [(e.call.call_id, e.call.state, e.position, e.ringing) for e in update.calls]


def test_the_consoles_see_every_waiting_call_ringing_or_queued_in_answer_order() -> None:
    b = board()
    b.sign_in(officer("o3"))
    first = placed(b.call_center("o1"))
    # Ringing at both operators: every console of the court and the supervisor see it.
    actions = b.accept("op1", first)
    assert last_update(actions, "op2") == []
    second = placed(actions := b.call_center("o2"))
    assert recipients(actions, p.QueueUpdate) == {"op1", "op2", "sup1"}
    assert last_update(actions, "op1") == [(second, "ringing", None, 1)]
    b.accept("op2", second)
    # Nobody free: queued, with the place told to its officer.
    third = placed(actions := b.call_center("o3"))
    assert last_update(actions, "sup1") == [(third, "queued", 1, 0)]
    assert queue_of(b, "op1") == [(third, "queued", 1, 0)]
    assert queue_of(b, "sup1", "P0101") == [(third, "queued", 1, 0)]
    # An operator of another court sees none of it, and may not ask for it.
    assert "op3" not in recipients(actions, p.QueueUpdate)
    with pytest.raises(NotFound):
        b.send("op3", p.GetQueue(id=b.msg_id(), court="P0101"))
    with pytest.raises(Forbidden):
        b.send("o1", p.GetQueue(id=b.msg_id()))
    # op1 hangs up: the queued call rings at them and leaves the queue as it is answered.
    actions = b.hangup("op1", first)
    assert last_update(actions, "op2") == [(third, "ringing", None, 1)]
    actions = b.accept("op1", third)
    assert last_update(actions, "op2") == []
    assert queue_of(b, "op2") == []


def test_an_emergency_goes_ahead_of_the_queue_and_a_sent_back_call_keeps_its_age() -> None:
    b = board()
    b.sign_in(officer("o3"), officer("o4"))
    active_call(b, "o1", "op1")
    b.accept("op2", placed(b.call_center("o2")))
    b.advance(5.0)
    waiting = placed(b.call_center("o3"))
    b.advance(5.0)
    sos = placed(actions := b.emergency("o4"))
    # Every operator is in a call: the emergency rings the supervisor, ahead of the queue.
    assert last_update(actions, "op1") == [(sos, "ringing", None, 1), (waiting, "queued", 1, 0)]
    (update,) = messages(actions, p.QueueUpdate, to="op1")
    created = {e.call.call_id: e.call.created_at for e in update.calls}
    assert created[waiting] < created[sos]
    assert update.calls[0].call.emergency is True
    # Sent back by the supervisor, it waits again in first place, its age unchanged.
    actions = b.send_back("sup1", sos)
    (update,) = messages(actions, p.QueueUpdate, to="op1")
    head = update.calls[0].call
    assert (head.call_id, head.state) == (sos, "queued")
    assert update.calls[0].call.created_at == created[sos]


def test_a_court_without_operators_shows_its_queue_to_the_court_it_falls_back_to() -> None:
    b = board(fallback_to_parent=True)
    b.sign_in(officer("o9", "P0201"), operator("opP02", "P02"))
    call_id = placed(actions := b.call_center("o9"))
    assert "opP02" in recipients(actions, p.QueueUpdate)
    (update,) = messages(actions, p.QueueUpdate, to="opP02")
    assert (update.court, [e.call.call_id for e in update.calls]) == ("P0201", [call_id])
