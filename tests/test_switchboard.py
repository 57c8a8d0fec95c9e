"""The switchboard's flows, driven directly with a fake clock: sign-in and roster, calls in
both directions, queueing, emergencies, presence and resume, supervision and transfer.

Courts (the default config): P > P01, P02 > P0101, P0102 (under P01), P0201 (under P02).
Unless a test says otherwise officers o1..o4 and operators op1, op2 are of P0101, op3 of
P0102, op4 of P01; supervisor sup1 is at P01 (sees P01, P0101, P0102), sup2 at P02.
"""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from commandcenter.auth import Role
from commandcenter.config import CallsConfig, PresenceConfig
from signalling import protocol as p
from signalling.core.actions import Action, Send
from signalling.errors import (
    CLOSE_REPLACED,
    Busy,
    CallAlreadyTaken,
    Forbidden,
    InvalidState,
    MediaUnavailable,
    NotFound,
)
from signalling.protocol import Direction, EndReason
from tests.corehelpers import (
    Board,
    admin,
    disconnects,
    ended,
    ident,
    ids_of,
    messages,
    officer,
    operator,
    placed,
    recipients,
    record_kinds,
    records,
    rung,
    supervisor,
)

RING = CallsConfig().ring_timeout_s
QUEUE = CallsConfig().queue_timeout_s
GRACE = PresenceConfig().grace_s
INTERVAL = PresenceConfig().position_interval_s


def board(**calls: Any) -> Board:
    return Board(calls=msgspec.structs.replace(CallsConfig(), **calls))


def court_of_two() -> Board:
    """o1, o2, o3 and operators op1, op2 of P0101, plus op3 of P0102, all signed in."""
    b = board()
    b.sign_in(
        officer("o1"),
        officer("o2"),
        officer("o3"),
        operator("op1"),
        operator("op2"),
        operator("op3", "P0102"),
    )
    return b


def active_call(b: Board, officer_id: str = "o1", op: str = "op1") -> str:
    """`officer_id` calls the center and `op` answers; returns the call id."""
    call_id = placed(b.call_center(officer_id))
    b.accept(op, call_id)
    assert b.call_state(call_id) == "active"
    return call_id


# ---- sign-in, roster, positions, heartbeats -----------------------------------------------


def test_sign_in_records_device_and_app_and_welcomes() -> None:
    b = board()
    session, actions = b.connect(officer("o1"), device="bodycam-7", app="2.3.1")
    (rec,) = records(actions, "sign_in")
    assert rec.at == b.now
    assert rec.data["user"] == "o1"
    assert rec.data["role"] == "officer"
    assert rec.data["court"] == "P0101"
    assert rec.data["device"] == "bodycam-7"
    assert rec.data["app_version"] == "2.3.1"
    assert rec.data["session"] == session.session_id
    (welcome,) = messages(actions, p.Welcome, to="o1")
    assert welcome.resumed is False
    assert welcome.session_id == session.session_id
    assert welcome.resume_token == session.resume_token
    assert welcome.calls == []
    assert welcome.server_time == b.now * 1000.0
    assert b.sb.online_officers("P0101") == ["o1"]


def test_officer_sign_in_is_announced_to_watchers_in_scope_only() -> None:
    """Operators of the court, supervisors and admins above it hear; other courts and
    officers do not."""
    b = board()
    b.sign_in(
        operator("op1"),
        operator("op3", "P0102"),
        supervisor("sup1"),
        supervisor("sup2", "P02"),
        admin("adm"),
        officer("o2"),
    )
    _, actions = b.connect(officer("o1"))
    assert recipients(actions, p.RosterUpdate) == {"op1", "sup1", "adm"}
    (update,) = messages(actions, p.RosterUpdate)
    assert update.entry.officer.id == "o1"
    assert update.entry.status == "online"
    assert update.entry.device == "phone-1"


def test_center_user_sign_in_sends_no_roster_update() -> None:
    b = board()
    b.sign_in(operator("op1"), supervisor("sup1"))
    _, actions = b.connect(operator("op2"))
    assert messages(actions, p.RosterUpdate) == []


def test_roster_is_scoped_to_the_requesters_courts() -> None:
    """An operator sees their court, a supervisor their subtree, filtered by `court`."""
    b = board()
    b.sign_in(
        officer("o1"),
        officer("o5", "P0102"),
        officer("o6", "P0201"),
        operator("op1"),
        supervisor("sup1"),
        admin("adm"),
    )
    assert [e.officer.id for e in b.roster("op1").officers] == ["o1"]
    assert [e.officer.id for e in b.roster("sup1").officers] == ["o1", "o5"]
    assert [e.officer.id for e in b.roster("sup1", "P0102").officers] == ["o5"]
    assert [e.officer.id for e in b.roster("adm").officers] == ["o1", "o5", "o6"]


def test_roster_out_of_scope_court_is_forbidden_and_unknown_court_not_found() -> None:
    b = board()
    b.sign_in(officer("o1"), operator("op1"), supervisor("sup1"))
    with pytest.raises(Forbidden) as info:
        b.roster("op1", "P0102")
    assert info.value.field == "court"
    with pytest.raises(Forbidden):
        b.roster("sup1", "P0201")
    with pytest.raises(NotFound):
        b.roster("sup1", "X99")


def test_officer_may_not_read_the_roster() -> None:
    b = board()
    b.sign_in(officer("o1"))
    with pytest.raises(Forbidden):
        b.roster("o1")


def test_position_is_fanned_out_and_recorded_at_most_once_per_interval() -> None:
    """A second position within the interval waits for the deadline; the latest one wins."""
    b = board()
    b.sign_in(operator("op1"), officer("o1"))
    first = b.position("o1", 30.0)
    (update,) = messages(first, p.RosterUpdate, to="op1")
    assert update.entry.position == p.GeoPosition(
        lat=30.0, lon=120.0, accuracy_m=5.0, device_time=b.now * 1000.0
    )
    assert len(records(first, "position")) == 1
    assert messages(first, p.Ack, to="o1")

    b.clock.advance(0.5)
    second = b.position("o1", 31.0)
    b.clock.advance(0.5)
    third = b.position("o1", 32.0)
    assert messages(second + third, p.RosterUpdate) == []
    assert records(second + third, "position") == []
    assert len(messages(second + third, p.Ack, to="o1")) == 2
    assert b.sb.next_deadline() == pytest.approx(b.now - 1.0 + INTERVAL)

    assert b.advance(0.5) == []  # not due yet
    due = b.advance(INTERVAL)
    (update,) = messages(due, p.RosterUpdate, to="op1")
    assert update.entry.position is not None
    assert update.entry.position.lat == 32.0
    (rec,) = records(due, "position")
    assert rec.data["lat"] == 32.0
    assert b.sb.next_deadline() is None


def test_only_officers_report_positions() -> None:
    b = board()
    b.sign_in(operator("op1"))
    with pytest.raises(Forbidden):
        b.position("op1", 10.0)


def test_heartbeat_measures_clock_offset_corrected_by_half_the_round_trip() -> None:
    b = board()
    b.sign_in(officer("o1"))
    server_ms = b.now * 1000.0
    # The device is 1500 ms ahead and the last round trip took 200 ms: stamped 100 ms ago.
    msg = p.Heartbeat(id="h1", device_time=server_ms + 1500.0 - 100.0, rtt_ms=200.0)
    (ack,) = messages(b.send("o1", msg), p.HeartbeatAck, to="o1")
    assert ack.ref == "h1"
    assert ack.offset_ms == pytest.approx(1500.0)
    assert ack.rtt_ms == 200.0
    assert ack.server_time == server_ms
    session = b.sb.session("o1")
    assert session is not None
    assert session.clock_offset_ms == pytest.approx(1500.0)
    assert session.rtt_ms == 200.0


def test_first_heartbeat_without_rtt_takes_the_raw_difference() -> None:
    b = board()
    b.sign_in(officer("o1"))
    msg = p.Heartbeat(id="h1", device_time=b.now * 1000.0 - 250.0)
    (ack,) = messages(b.send("o1", msg), p.HeartbeatAck)
    assert ack.offset_ms == pytest.approx(-250.0)
    assert ack.rtt_ms is None


def test_the_position_record_carries_the_latest_clock_offset() -> None:
    b = board()
    b.sign_in(officer("o1"))
    b.send("o1", p.Heartbeat(id="h1", device_time=b.now * 1000.0 + 40.0))
    (rec,) = records(b.position("o1", 10.0), "position")
    assert rec.data["clock_offset_ms"] == pytest.approx(40.0)


# ---- officer to center ------------------------------------------------------------------


def test_officer_call_rings_every_free_operator_of_the_court_only() -> None:
    b = court_of_two()
    actions = b.call_center("o1", case_number="(2026)P0101-1")
    call_id = placed(actions)
    assert rung(actions, call_id) == {"op1", "op2"}
    (created,) = records(actions, "call_created")
    assert created.data["direction"] == "officer_to_center"
    assert created.data["case_number"] == "(2026)P0101-1"
    (ringing,) = records(actions, "call_ringing")
    assert ringing.data["users"] == ["op1", "op2"]
    assert b.call_state(call_id) == "ringing"
    assert messages(actions, p.CallQueued) == []


def test_first_accept_wins_and_the_others_are_told_it_was_taken() -> None:
    b = court_of_two()
    call_id = placed(b.call_center("o1"))
    actions = b.accept("op2", call_id)
    (taken,) = messages(actions, p.CallTaken)
    assert recipients(actions, p.CallTaken) == {"op1"}
    assert taken.by.id == "op2"
    assert recipients(actions, p.CallAnswered) == {"o1", "op2"}
    (answered,) = messages(actions, p.CallAnswered, to="o1")
    assert answered.call.operator is not None
    assert answered.call.operator.id == "op2"
    assert answered.call.state == "active"
    assert records(actions, "call_answered")[0].data["by"] == "op2"

    with pytest.raises(CallAlreadyTaken) as info:
        b.accept("op1", call_id)
    assert info.value.code == "call_taken"


def test_a_decline_keeps_the_others_ringing() -> None:
    b = court_of_two()
    call_id = placed(b.call_center("o1"))
    actions = b.decline("op1", call_id)
    assert record_kinds(actions) == ["call_declined"]
    assert messages(actions, p.CallEnded) == []
    assert b.sb.dispatch.ringing(call_id) == {"op2"}
    assert b.call_state(call_id) == "ringing"
    # The decliner is not rung again for this call when it spreads.
    assert "op1" not in rung(b.sign_in(operator("op5")), call_id)


def test_when_everyone_declines_the_call_ends_declined() -> None:
    b = court_of_two()
    call_id = placed(b.call_center("o1"))
    b.decline("op1", call_id)
    actions = b.decline("op2", call_id)
    msg = ended(actions, call_id)
    assert msg.reason is EndReason.DECLINED
    assert "o1" in recipients(actions, p.CallEnded)
    assert b.call_state(call_id) is None
    assert b.sb.session("o1") is not None
    assert b.sb.calls.call_id_of("o1") is None


def test_unanswered_ringing_becomes_a_missed_call() -> None:
    b = court_of_two()
    call_id = placed(b.call_center("o1"))
    assert b.sb.next_deadline() == b.now + RING
    assert b.advance(RING - 0.1) == []
    actions = b.advance(0.1)
    assert ended(actions, call_id).reason is EndReason.MISSED
    assert recipients(actions, p.CallEnded) == {"o1", "op1", "op2"}
    (rec,) = records(actions, "call_ended")
    assert rec.data["reason"] == "missed"
    assert rec.data["answered"] is False
    assert b.sb.next_deadline() is None


def test_officer_cancels_a_ringing_call() -> None:
    b = court_of_two()
    call_id = placed(b.call_center("o1"))
    actions = b.cancel("o1", call_id)
    msg = ended(actions, call_id)
    assert msg.reason is EndReason.CANCELLED
    assert msg.by == "o1"
    assert recipients(actions, p.CallEnded) == {"o1", "op1", "op2"}
    assert b.sb.dispatch.ringing_at("op1") == set()


def test_only_the_caller_may_cancel() -> None:
    b = court_of_two()
    call_id = placed(b.call_center("o1"))
    with pytest.raises(Forbidden):
        b.cancel("op1", call_id)


def test_calls_queue_when_no_operator_is_free_and_officers_learn_their_position() -> None:
    b = court_of_two()
    first = active_call(b, "o1", "op1")
    second = active_call(b, "o2", "op2")
    a3 = b.call_center("o3")
    third = placed(a3)
    assert b.call_state(third) == "queued"
    assert [(m.call_id, m.position) for m in messages(a3, p.CallQueued, to="o3")] == [(third, 1)]
    b.sign_in(officer("o4"))
    fourth = placed(b.call_center("o4"))
    assert b.call_state(fourth) == "queued"
    assert [c.call_id for c in b.sb.queue("P0101")] == [third, fourth]
    assert [m.position for m in messages(b.log, p.CallQueued, to="o4")] == [2]

    # op1 hangs up: the head of the queue rings at once, and o4 moves up.
    actions = b.hangup("op1", first)
    assert ended(actions, first).reason is EndReason.HANGUP
    assert rung(actions, third) == {"op1"}
    assert rung(actions, fourth) == set()
    assert [(m.call_id, m.position) for m in messages(actions, p.CallQueued)] == [(fourth, 1)]
    assert recipients(actions, p.CallQueued) == {"o4"}
    assert b.call_state(second) == "active"


def test_a_cancelled_head_of_queue_moves_the_others_up() -> None:
    b = court_of_two()
    active_call(b, "o1", "op1")
    active_call(b, "o2", "op2")
    b.sign_in(officer("o4"))
    third = placed(b.call_center("o3"))
    fourth = placed(b.call_center("o4"))
    actions = b.cancel("o3", third)
    assert ended(actions, third).reason is EndReason.CANCELLED
    assert [(m.call_id, m.position) for m in messages(actions, p.CallQueued, to="o4")] == [
        (fourth, 1)
    ]


def test_a_queued_call_times_out() -> None:
    b = board(queue_timeout_s=60.0)
    b.sign_in(officer("o1"))
    call_id = placed(b.call_center("o1"))
    assert b.call_state(call_id) == "queued"
    assert b.advance(59.0) == []
    actions = b.advance(1.0)
    assert ended(actions, call_id).reason is EndReason.QUEUE_TIMEOUT
    assert b.sb.queue("P0101") == []


def test_a_call_requeued_after_its_queue_deadline_times_out_at_once() -> None:
    """The queue timeout bounds the whole wait: a call that rang late and was declined
    back into the queue ends at the next timeout check, leaving no deadline behind."""
    b = court_of_two()
    active_call(b, "o1", "op1")
    second = active_call(b, "o2", "op2")
    queued = placed(b.call_center("o3"))
    b.clock.advance(QUEUE - 5.0)
    b.hangup("op2", second)
    assert b.sb.dispatch.ringing(queued) == {"op2"}
    b.clock.advance(10.0)
    b.decline("op2", queued)
    assert b.call_state(queued) == "queued"
    actions = b.advance(0.0)
    assert ended(actions, queued).reason is EndReason.QUEUE_TIMEOUT
    deadline = b.sb.next_deadline()
    assert deadline is None or deadline > b.now


def test_a_full_queue_refuses_the_call() -> None:
    b = board(max_queue=1)
    b.sign_in(officer("o1"), officer("o2"))
    first = placed(b.call_center("o1"))
    actions = b.call_center("o2")
    second = placed(actions)
    assert b.call_state(first) == "queued"
    assert ended(actions, second).reason is EndReason.QUEUE_FULL
    assert b.sb.calls.call_id_of("o2") is None


def test_no_operator_in_court_falls_back_to_the_parent_court() -> None:
    b = board()
    b.sign_in(officer("o1"), operator("op4", "P01"), operator("op5", "P"))
    actions = b.call_center("o1")
    call_id = placed(actions)
    assert rung(actions, call_id) == {"op4"}
    b.accept("op4", call_id)
    assert b.sb.calls.table[call_id].operator == "op4"


def test_courts_falling_back_to_one_parent_share_its_line() -> None:
    """Queue positions count every call waiting for the same operators, from any court."""
    b = board()
    b.sign_in(
        officer("o1"),
        officer("o2"),
        officer("o5", "P0102"),
        operator("op4", "P01"),
    )
    first = placed(b.call_center("o1"))
    assert b.sb.dispatch.ringing(first) == {"op4"}
    second = placed(b.call_center("o5"))
    third = placed(b.call_center("o2"))
    assert [m.position for m in messages(b.log, p.CallQueued, to="o5")] == [1]
    assert [m.position for m in messages(b.log, p.CallQueued, to="o2")] == [2]
    actions = b.decline("op4", first)
    assert ended(actions, first).reason is EndReason.DECLINED
    assert rung(actions, second) == {"op4"}
    assert messages(actions, p.CallQueued, to="o2") == [p.CallQueued(call_id=third, position=1)]


def test_max_queue_bounds_the_shared_line() -> None:
    b = board(max_queue=1)
    b.sign_in(officer("o1"), officer("o2"), officer("o5", "P0102"), operator("op4", "P01"))
    b.call_center("o1")
    b.call_center("o5")
    actions = b.call_center("o2")
    assert ended(actions, placed(actions)).reason is EndReason.QUEUE_FULL


def test_no_fallback_when_configured_off() -> None:
    b = board(fallback_to_parent=False)
    b.sign_in(officer("o1"), operator("op4", "P01"))
    actions = b.call_center("o1")
    call_id = placed(actions)
    assert rung(actions, call_id) == set()
    assert b.call_state(call_id) == "queued"


def test_an_operator_signing_in_rings_the_queued_call() -> None:
    b = board()
    b.sign_in(officer("o1"))
    call_id = placed(b.call_center("o1"))
    actions = b.sign_in(operator("op1"))
    assert rung(actions, call_id) == {"op1"}
    # The welcome comes first, so the client knows its session before the call rings.
    to_op1 = [type(a.message) for a in actions if isinstance(a, Send) and "op1" in a.to]
    assert to_op1 == [p.Welcome, p.CallRinging, p.QueueUpdate]


def test_officer_in_a_call_cannot_place_another() -> None:
    b = court_of_two()
    call_id = placed(b.call_center("o1"))
    before = b.snapshot()
    with pytest.raises(Busy):
        b.call_center("o1")
    assert b.snapshot() == before
    assert b.call_state(call_id) == "ringing"


def test_a_normal_call_rings_an_operator_only_while_no_other_call_rings_them() -> None:
    """Calls are taken in order: the second call waits until the first is answered."""
    b = board()
    b.sign_in(officer("o1"), officer("o2"), operator("op1"))
    first = placed(b.call_center("o1"))
    a2 = b.call_center("o2")
    second = placed(a2)
    assert rung(a2, second) == set()
    assert b.call_state(second) == "queued"
    b.sign_in(operator("op2"))
    assert b.sb.dispatch.ringing(second) == {"op2"}
    assert b.sb.dispatch.ringing(first) == {"op1"}


# ---- center to officer ------------------------------------------------------------------


def test_operator_calls_an_officer_who_answers() -> None:
    b = court_of_two()
    actions = b.call_officer("op1", "o1")
    call_id = placed(actions)
    assert rung(actions, call_id) == {"o1"}
    (created,) = records(actions, "call_created")
    assert created.data["direction"] == "center_to_officer"
    assert created.data["caller"] == "op1"
    # The caller does not ring for incoming calls meanwhile.
    o2_call = placed(b.call_center("o2"))
    assert b.sb.dispatch.ringing(o2_call) == {"op2"}
    actions = b.accept("o1", call_id)
    assert recipients(actions, p.CallAnswered) == {"o1", "op1"}
    call = b.sb.calls.table[call_id]
    assert (call.state.value, call.operator) == ("active", "op1")


def test_officer_declines_a_call_from_the_center() -> None:
    b = court_of_two()
    call_id = placed(b.call_officer("op1", "o1"))
    actions = b.decline("o1", call_id)
    msg = ended(actions, call_id)
    assert (msg.reason, msg.by) == (EndReason.DECLINED, "o1")
    assert recipients(actions, p.CallEnded) == {"o1", "op1"}
    assert b.sb.calls.call_id_of("op1") is None


def test_a_call_to_an_officer_who_does_not_answer_is_missed() -> None:
    b = court_of_two()
    call_id = placed(b.call_officer("op1", "o1"))
    actions = b.advance(RING)
    assert ended(actions, call_id).reason is EndReason.MISSED
    assert recipients(actions, p.CallEnded) == {"o1", "op1"}
    assert b.sb.calls.call_id_of("o1") is None


def test_calling_an_officer_in_a_call_ends_busy_without_ringing_them() -> None:
    b = court_of_two()
    active_call(b, "o1", "op1")
    actions = b.call_officer("op2", "o1")
    call_id = placed(actions)
    assert ended(actions, call_id).reason is EndReason.BUSY
    assert recipients(actions, p.CallEnded) == {"op2"}
    assert rung(actions, call_id) == set()
    assert b.sb.calls.call_id_of("op2") is None


def test_calling_an_officer_not_signed_in_ends_unavailable() -> None:
    b = court_of_two()
    actions = b.call_officer("op1", "nobody")
    call_id = placed(actions)
    assert ended(actions, call_id).reason is EndReason.UNAVAILABLE
    assert recipients(actions, p.CallEnded) == {"op1"}


def test_calling_a_user_who_is_no_officer_ends_unavailable_like_an_unknown_id() -> None:
    """The answer must not reveal that the id belongs to a signed-in operator."""
    b = court_of_two()
    actions = b.call_officer("op1", "op2")
    call_id = placed(actions)
    assert ended(actions, call_id).reason is EndReason.UNAVAILABLE
    assert recipients(actions, p.CallEnded) == {"op1"}
    assert b.sb.dispatch.ringing_at("op2") == set()


def test_an_operator_already_in_a_call_cannot_call_out() -> None:
    b = court_of_two()
    active_call(b, "o1", "op1")
    before = b.snapshot()
    with pytest.raises(Busy):
        b.call_officer("op1", "o2")
    assert b.snapshot() == before


def test_calling_an_officer_outside_ones_scope_is_forbidden() -> None:
    b = court_of_two()
    b.sign_in(officer("o5", "P0102"))
    before = b.snapshot()
    with pytest.raises(Forbidden):
        b.call_officer("op1", "o5")
    with pytest.raises(Forbidden):
        b.call_officer("o2", "o1")  # officers do not call officers
    assert b.snapshot() == before


def test_supervisor_calls_an_officer_in_their_subtree() -> None:
    b = court_of_two()
    b.sign_in(supervisor("sup1"), officer("o5", "P0102"))
    call_id = placed(b.call_officer("sup1", "o5"))
    assert b.sb.dispatch.ringing(call_id) == {"o5"}
    assert b.sb.calls.table[call_id].court == "P0102"


def test_operator_cancels_a_call_to_an_officer() -> None:
    b = court_of_two()
    call_id = placed(b.call_officer("op1", "o1"))
    actions = b.hangup("op1", call_id)
    assert ended(actions, call_id).reason is EndReason.CANCELLED
    assert recipients(actions, p.CallEnded) == {"o1", "op1"}


# ---- emergencies ------------------------------------------------------------------------


def test_emergency_rings_operators_and_supervisors_in_scope_with_priority() -> None:
    b = court_of_two()
    b.sign_in(supervisor("sup1"), supervisor("sup2", "P02"), admin("adm"))
    actions = b.emergency("o1", note="under threat")
    call_id = placed(actions)
    assert rung(actions, call_id) == {"op1", "op2", "sup1", "adm"}
    (raised,) = records(actions, "emergency_raised")
    assert raised.data["note"] == "under threat"
    call = b.sb.calls.table[call_id]
    assert call.emergency
    (info,) = {m.call.emergency for m in messages(actions, p.CallRinging)}
    assert info is True
    assert b.sb.presence.sessions["o1"].emergency


def test_emergency_rings_operators_already_ringing_for_a_normal_call() -> None:
    b = court_of_two()
    normal = placed(b.call_center("o1"))
    actions = b.emergency("o2")
    sos = placed(actions)
    assert rung(actions, sos) == {"op1", "op2"}
    assert b.sb.dispatch.ringing(normal) == {"op1", "op2"}
    # Taking the emergency stops the normal call ringing at that operator only.
    actions = b.accept("op1", sos)
    assert messages(actions, p.RingStopped, to="op1") == [
        p.RingStopped(call_id=normal, reason="busy")
    ]
    assert b.sb.dispatch.ringing(normal) == {"op2"}


def test_emergency_goes_ahead_of_queued_normal_calls() -> None:
    b = court_of_two()
    first = active_call(b, "o1", "op1")
    active_call(b, "o2", "op2")
    b.sign_in(officer("o4"))
    normal = placed(b.call_center("o3"))
    actions = b.emergency("o4")
    sos = placed(actions)
    assert [c.call_id for c in b.sb.queue("P0101")] == [sos, normal]
    assert messages(actions, p.CallQueued, to="o3") == [p.CallQueued(call_id=normal, position=2)]
    actions = b.hangup("o1", first)
    assert rung(actions, sos) == {"op1"}
    assert rung(actions, normal) == set()


def test_emergency_during_a_queued_call_escalates_it() -> None:
    b = court_of_two()
    active_call(b, "o1", "op1")
    active_call(b, "o2", "op2")
    b.sign_in(supervisor("sup1"))
    call_id = placed(b.call_center("o3"))
    assert b.call_state(call_id) == "queued"
    actions = b.emergency("o3")
    assert placed(actions) == call_id
    assert record_kinds(actions)[:2] == ["emergency_raised", "call_escalated"]
    assert b.sb.calls.table[call_id].emergency
    # The supervisor is free and now rings for it.
    assert rung(actions, call_id) == {"sup1"}


def test_emergency_stays_on_the_roster_until_cleared_in_scope() -> None:
    b = court_of_two()
    b.sign_in(supervisor("sup2", "P02"))
    call_id = placed(b.emergency("o1"))
    b.accept("op1", call_id)
    b.hangup("o1", call_id)
    (entry,) = [e for e in b.roster("op2").officers if e.officer.id == "o1"]
    assert entry.emergency is True

    before = b.snapshot()
    with pytest.raises(Forbidden):
        b.clear_emergency("o2", "o1")
    with pytest.raises(Forbidden):
        b.clear_emergency("op3", "o1")
    with pytest.raises(Forbidden):
        b.clear_emergency("sup2", "o1")
    assert b.snapshot() == before

    actions = b.clear_emergency("op2", "o1")
    (rec,) = records(actions, "emergency_cleared")
    assert rec.data["by"] == "op2"
    (update,) = messages(actions, p.RosterUpdate, to="op1")
    assert update.entry.emergency is False
    with pytest.raises(InvalidState):
        b.clear_emergency("op2", "o1")


# ---- presence: away, resume, grace -------------------------------------------------------


def test_a_party_going_away_is_announced_to_the_other() -> None:
    b = court_of_two()
    call_id = active_call(b)
    actions = b.drop("o1")
    (away,) = messages(actions, p.PartyAway, to="op1")
    assert (away.call_id, away.user.id, away.grace_s) == (call_id, "o1", GRACE)
    assert record_kinds(actions)[0] == "party_away"
    (update,) = messages(actions, p.RosterUpdate, to="op1")
    assert update.entry.status == "away"
    assert b.call_state(call_id) == "active"


def test_resume_within_grace_keeps_the_call_and_is_no_new_sign_in() -> None:
    b = court_of_two()
    call_id = active_call(b)
    token = b.sb.presence.sessions["o1"].resume_token
    session_id = b.sb.presence.sessions["o1"].session_id
    b.drop("o1")
    b.advance(GRACE - 1.0)
    session, actions = b.connect(officer("o1"), resume=token)
    assert session.session_id == session_id
    assert records(actions, "sign_in") == []
    assert "party_back" in record_kinds(actions)
    (back,) = messages(actions, p.PartyBack, to="op1")
    assert back.user.id == "o1"
    (welcome,) = messages(actions, p.Welcome, to="o1")
    assert welcome.resumed is True
    assert [c.call_id for c in welcome.calls] == [call_id]
    assert b.call_state(call_id) == "active"
    assert b.sb.calls.table[call_id].away == set()
    # The grace deadline is gone: nothing happens when it would have run out.
    assert records(b.advance(GRACE), "sign_out") == []


def test_grace_expiry_signs_out_and_ends_the_call_party_lost() -> None:
    b = court_of_two()
    call_id = active_call(b)
    b.drop("o1")
    actions = b.advance(GRACE)
    (out,) = records(actions, "sign_out")
    assert (out.data["user"], out.data["reason"]) == ("o1", "grace_expired")
    msg = ended(actions, call_id)
    assert (msg.reason, msg.by) == (EndReason.PARTY_LOST, "o1")
    assert "op1" in recipients(actions, p.CallEnded)
    update = messages(actions, p.RosterUpdate, to="op1")[-1]
    assert (update.entry.status, update.entry.call_id) == ("offline", None)
    assert b.sb.session("o1") is None
    assert b.sb.calls.call_id_of("op1") is None


def last(kinds: list[tuple[str, str | None]]) -> tuple[str, str | None]:
    return kinds[-1]


def test_an_officer_reconnecting_in_a_loop_is_one_sign_in() -> None:
    """Inside the resume window a reconnect that does not resume (an app restarting, a
    second device) opens a session recorded `session_continued`, naming the one it
    continues, and is not a sign-in; one after the window, after signing out, or as another
    role or court, is."""
    b = court_of_two()
    grace = b.sb.presence.config.grace_s
    kinds: list[tuple[str, str | None]] = []

    def sessions_opened(actions: list[Action]) -> None:
        for kind in ("sign_in", "session_continued"):
            kinds.extend((kind, r.data.get("continues")) for r in records(actions, kind))

    first, actions = b.connect(officer("o9"))
    sessions_opened(actions)
    previous = first.session_id
    for _ in range(5):
        b.drop("o9")
        b.advance(grace / 2)
        session, actions = b.connect(officer("o9"))
        sessions_opened(actions)
        assert last(kinds) == ("session_continued", previous)
        previous = session.session_id
    # Replaced while still connected: continued as well.
    session, actions = b.connect(officer("o9"))
    sessions_opened(actions)
    assert last(kinds) == ("session_continued", previous)
    assert [k for k, _ in kinds].count("sign_in") == 1
    # Gone for longer than the window: a new sign-in.
    b.drop("o9")
    b.advance(grace + 1)
    assert b.sb.session("o9") is None
    _, actions = b.connect(officer("o9"))
    sessions_opened(actions)
    assert last(kinds) == ("sign_in", None)
    # The same id under another court is another sign-in.
    _, actions = b.connect(officer("o9", court="P0102"))
    sessions_opened(actions)
    assert last(kinds) == ("sign_in", None)


def test_resume_with_a_wrong_token_starts_a_new_session() -> None:
    b = court_of_two()
    call_id = active_call(b)
    old = b.sb.presence.sessions["o1"].session_id
    b.drop("o1")
    session, actions = b.connect(officer("o1"), resume="not-the-token")
    assert session.session_id != old
    (out,) = records(actions, "sign_out")
    assert (out.data["session"], out.data["reason"]) == (old, "replaced")
    # A new session, inside the resume window: the same sign-in continued, not a new one.
    assert records(actions, "sign_in") == []
    (continued,) = records(actions, "session_continued")
    assert continued.data["continues"] == old
    assert ended(actions, call_id).reason is EndReason.PARTY_LOST
    (welcome,) = messages(actions, p.Welcome, to="o1")
    assert welcome.resumed is False


def test_a_second_connection_with_the_token_replaces_the_first() -> None:
    b = court_of_two()
    call_id = active_call(b)
    first = b.sb.presence.sessions["o1"]
    session, actions = b.connect(officer("o1"), resume=first.resume_token)
    assert session is first
    (d,) = disconnects(actions)
    assert (d.user, d.session_id, d.code) == ("o1", first.session_id, CLOSE_REPLACED)
    assert records(actions, "sign_in") == []
    assert b.call_state(call_id) == "active"


def test_the_replaced_connection_closing_does_not_send_the_resumed_session_away() -> None:
    """The driver reports the old connection's close after the new one took over; the
    session must stay online and its call untouched."""
    b = court_of_two()
    call_id = active_call(b)
    first = b.sb.presence.sessions["o1"]
    b.connect(officer("o1"), resume=first.resume_token)
    actions = b.sb.disconnect("o1", first.session_id, b.now)
    assert messages(actions, p.PartyAway) == []
    assert b.sb.presence.sessions["o1"].connected
    assert b.sb.calls.table[call_id].away == set()
    # The new connection's own close still counts.
    actions = b.drop("o1")
    assert messages(actions, p.PartyAway, to="op1")


def test_an_operator_going_away_stops_ringing_and_the_call_rings_elsewhere_or_queues() -> None:
    b = court_of_two()
    call_id = placed(b.call_center("o1"))
    actions = b.drop("op1")
    assert messages(actions, p.RingStopped, to="op1") == [
        p.RingStopped(call_id=call_id, reason="away")
    ]
    assert b.sb.dispatch.ringing(call_id) == {"op2"}
    b.drop("op2")
    assert b.call_state(call_id) == "queued"
    # Resuming makes the operator free again, and the call rings there.
    token = b.sb.presence.sessions["op1"].resume_token
    _, actions = b.connect(operator("op1"), resume=token)
    assert rung(actions, call_id) == {"op1"}


def test_a_ringing_officer_who_drops_still_rings_and_can_answer_after_resuming() -> None:
    b = court_of_two()
    call_id = placed(b.call_officer("op1", "o1"))
    token = b.sb.presence.sessions["o1"].resume_token
    actions = b.drop("o1")
    assert messages(actions, p.PartyAway, to="op1")
    _, actions = b.connect(officer("o1"), resume=token)
    (welcome,) = messages(actions, p.Welcome, to="o1")
    assert [(c.call_id, c.state) for c in welcome.calls] == [(call_id, "ringing")]
    b.accept("o1", call_id)
    assert b.call_state(call_id) == "active"


def test_operator_answering_a_call_whose_officer_is_away_is_told_so() -> None:
    """The officer went away while ringing: the operator who answers hears party_away with
    the grace left."""
    b = court_of_two()
    call_id = placed(b.call_center("o1"))
    b.drop("o1")
    b.clock.advance(10.0)
    actions = b.accept("op1", call_id)
    (away,) = messages(actions, p.PartyAway, to="op1")
    assert (away.call_id, away.user.id) == (call_id, "o1")
    assert away.grace_s == pytest.approx(GRACE - 10.0)
    assert recipients(actions, p.PartyAway) == {"op1"}


def test_supervisor_joining_and_operator_taking_a_transfer_learn_who_is_away() -> None:
    b = court_of_two()
    b.sign_in(supervisor("sup1"))
    call_id = active_call(b)
    b.drop("o1")
    assert recipients(b.join("sup1", call_id), p.PartyAway) == {"sup1"}
    assert recipients(b.hand_over("op1", call_id, "op2"), p.PartyAway) == {"op2"}


def test_officer_answering_while_the_caller_is_away_is_not_told_twice() -> None:
    b = court_of_two()
    call_id = placed(b.call_officer("op1", "o1"))
    assert recipients(b.drop("op1"), p.PartyAway) == {"o1"}
    assert messages(b.accept("o1", call_id), p.PartyAway) == []


def test_a_caller_who_transferred_the_call_is_not_told_of_its_end() -> None:
    b = court_of_two()
    call_id = placed(b.call_officer("op1", "o1"))
    b.accept("o1", call_id)
    b.hand_over("op1", call_id, "op2")
    actions = b.hangup("o1", call_id)
    assert recipients(actions, p.CallEnded) == {"o1", "op2"}
    (rec,) = records(actions, "call_ended")
    assert rec.data["operator"] == "op2"


def test_no_message_is_addressed_to_nobody() -> None:
    """An officer dropping while their call rings tells no one yet: no empty sends."""
    b = court_of_two()
    call_id = placed(b.call_center("o1"))
    token = b.sb.presence.sessions["o1"].resume_token
    b.drop("o1")
    b.connect(officer("o1"), resume=token)
    b.accept("op1", call_id)
    assert all(a.to for a in b.log if isinstance(a, Send))


def test_zero_grace_signs_out_at_once() -> None:
    b = Board(presence=msgspec.structs.replace(PresenceConfig(), grace_s=0.0))
    b.sign_in(officer("o1"), operator("op1"))
    call_id = active_call(b)
    actions = b.drop("o1")
    assert records(actions, "sign_out")[0].data["reason"] == "closed"
    assert ended(actions, call_id).reason is EndReason.PARTY_LOST


def test_messages_from_an_away_user_are_refused() -> None:
    b = court_of_two()
    b.drop("o1")
    with pytest.raises(InvalidState):
        b.call_center("o1")


# ---- hangup -----------------------------------------------------------------------------


@pytest.mark.parametrize("who", ["o1", "op1"])
def test_either_party_hangs_up(who: str) -> None:
    b = court_of_two()
    call_id = active_call(b)
    actions = b.hangup(who, call_id)
    msg = ended(actions, call_id)
    assert (msg.reason, msg.by) == (EndReason.HANGUP, who)
    assert recipients(actions, p.CallEnded) == {"o1", "op1"}
    (rec,) = records(actions, "call_ended")
    assert (rec.data["operator"], rec.data["answered"]) == ("op1", True)
    assert b.sb.calls.call_id_of("o1") is None
    assert b.sb.calls.call_id_of("op1") is None
    with pytest.raises(NotFound):
        b.hangup(who, call_id)


def test_a_stranger_cannot_hang_up_a_call() -> None:
    b = court_of_two()
    call_id = active_call(b)
    before = b.snapshot()
    with pytest.raises(InvalidState):
        b.hangup("op2", call_id)
    assert b.snapshot() == before


# ---- supervision ------------------------------------------------------------------------


def test_supervisor_joins_openly_and_the_parties_are_told() -> None:
    b = court_of_two()
    b.sign_in(supervisor("sup1"))
    call_id = active_call(b)
    actions = b.join("sup1", call_id)
    assert recipients(actions, p.ParticipantJoined) == {"o1", "op1", "sup1"}
    (joined,) = records(actions, "supervisor_joined")
    assert joined.data["covert"] is False
    (answered,) = messages(actions, p.CallAnswered, to="sup1")
    assert ids_of(answered.call.supervisors) == ["sup1"]
    actions = b.leave("sup1", call_id)
    assert recipients(actions, p.ParticipantLeft) == {"o1", "op1", "sup1"}
    assert records(actions, "supervisor_left")
    assert b.sb.calls.table[call_id].supervisors == {}


def test_supervisor_out_of_scope_cannot_join() -> None:
    b = court_of_two()
    b.sign_in(supervisor("sup2", "P02"))
    call_id = active_call(b)
    before = b.snapshot()
    with pytest.raises(Forbidden):
        b.join("sup2", call_id)
    assert b.snapshot() == before


@pytest.mark.parametrize("who", ["op2", "o2"])
def test_operators_and_officers_cannot_join(who: str) -> None:
    b = court_of_two()
    call_id = active_call(b)
    with pytest.raises(Forbidden):
        b.join(who, call_id)


def test_covert_join_is_forbidden_by_default() -> None:
    b = court_of_two()
    b.sign_in(supervisor("sup1"))
    call_id = active_call(b)
    with pytest.raises(Forbidden) as info:
        b.join("sup1", call_id, covert=True)
    assert info.value.field == "covert"


def test_covert_join_when_allowed_is_recorded_but_not_told_to_the_parties() -> None:
    b = board(allow_covert_monitoring=True)
    b.sign_in(officer("o1"), operator("op1"), supervisor("sup1"))
    call_id = active_call(b)
    actions = b.join("sup1", call_id, covert=True)
    assert recipients(actions, p.ParticipantJoined) == {"sup1"}
    (rec,) = records(actions, "supervisor_joined")
    assert rec.data["covert"] is True
    # Covert supervisors do not appear in what the parties see of the call.
    b.drop("o1")
    token = b.sb.presence.sessions["o1"].resume_token
    _, actions = b.connect(officer("o1"), resume=token)
    (welcome,) = messages(actions, p.Welcome, to="o1")
    assert welcome.calls[0].supervisors == []
    actions = b.leave("sup1", call_id)
    assert recipients(actions, p.ParticipantLeft) == {"sup1"}
    assert records(actions, "supervisor_left")[0].data["covert"] is True


def test_supervisor_cannot_join_a_call_that_is_not_answered() -> None:
    b = court_of_two()
    b.sign_in(supervisor("sup1"))
    call_id = placed(b.call_center("o1"))
    with pytest.raises(InvalidState):
        b.join("sup1", call_id)


def test_a_supervisors_hangup_leaves_without_ending_the_call() -> None:
    b = court_of_two()
    b.sign_in(supervisor("sup1"))
    call_id = active_call(b)
    b.join("sup1", call_id)
    actions = b.hangup("sup1", call_id)
    assert messages(actions, p.CallEnded) == []
    assert b.call_state(call_id) == "active"
    assert b.sb.calls.monitoring("sup1") == set()


# ---- transfer ---------------------------------------------------------------------------


def test_transfer_hands_the_call_to_another_operator_who_was_free() -> None:
    b = court_of_two()
    call_id = active_call(b, "o1", "op1")
    actions = b.hand_over("op1", call_id, "op2")
    assert recipients(actions, p.CallTransferred) == {"o1", "op1", "op2"}
    (msg,) = messages(actions, p.CallTransferred, to="o1")
    assert msg.from_operator.id == "op1"
    assert msg.call.operator is not None
    assert msg.call.operator.id == "op2"
    (rec,) = records(actions, "call_transferred")
    assert (rec.data["by"], rec.data["to"]) == ("op1", "op2")
    assert b.sb.calls.table[call_id].operator == "op2"
    assert b.sb.calls.call_id_of("op2") == call_id
    assert b.sb.calls.call_id_of("op1") is None
    # op1 is free again: the next call rings there.
    nxt = placed(b.call_center("o2"))
    assert b.sb.dispatch.ringing(nxt) == {"op1"}


def test_transfer_frees_the_operator_for_the_next_queued_call() -> None:
    """The operator who hands a call over rings at once for the call waiting in the queue."""
    b = court_of_two()
    b.sign_in(operator("op5"))
    first = active_call(b, "o1", "op1")
    second = placed(b.call_center("o2"))
    assert b.sb.dispatch.ringing(second) == {"op2", "op5"}
    b.accept("op2", second)
    queued = placed(b.call_center("o3"))
    assert b.sb.dispatch.ringing(queued) == {"op5"}
    b.decline("op5", queued)
    assert b.call_state(queued) == "queued"
    actions = b.hand_over("op1", first, "op5")
    assert b.sb.calls.table[first].operator == "op5"
    assert rung(actions, queued) == {"op1"}
    assert b.sb.dispatch.ringing(queued) == {"op1"}


def test_transfer_to_a_busy_operator_self_or_non_operator_is_refused() -> None:
    b = court_of_two()
    b.sign_in(supervisor("sup1"))
    call_id = active_call(b, "o1", "op1")
    active_call(b, "o2", "op2")
    before = b.snapshot()
    with pytest.raises(Busy):
        b.transfer("op1", call_id, "op2")
    with pytest.raises(InvalidState):
        b.transfer("op1", call_id, "op1")
    with pytest.raises(NotFound):
        b.transfer("op1", call_id, "sup1")
    with pytest.raises(NotFound):
        b.transfer("op1", call_id, "o3")
    with pytest.raises(NotFound):
        b.transfer("op1", call_id, "nobody")
    with pytest.raises(Forbidden):
        b.transfer("op1", call_id, "op3")  # another court's operator
    with pytest.raises(InvalidState):
        b.transfer("o1", call_id, "op2")  # only the operator transfers
    assert b.snapshot() == before


# ---- refusals change nothing --------------------------------------------------------------


def test_refused_messages_change_nothing() -> None:
    """Every refused request leaves sessions, calls and deadlines exactly as they were."""
    b = court_of_two()
    b.sign_in(supervisor("sup1"), supervisor("sup2", "P02"), officer("o5", "P0102"))
    active = active_call(b, "o1", "op1")
    ringing = placed(b.call_center("o2"))
    attempts: list[tuple[str, p.ClientMessage, type[Exception]]] = [
        ("op2", p.Accept(id="x", call_id=active), CallAlreadyTaken),
        ("op2", p.Accept(id="x", call_id="nope"), NotFound),
        ("op1", p.Accept(id="x", call_id=ringing), InvalidState),
        ("o2", p.Accept(id="x", call_id=ringing), InvalidState),
        ("op1", p.Decline(id="x", call_id=ringing), InvalidState),
        ("op2", p.Cancel(id="x", call_id=ringing), Forbidden),
        ("o2", p.Cancel(id="x", call_id=active), Forbidden),
        ("o1", p.Cancel(id="x", call_id=active), InvalidState),
        ("o3", p.Hangup(id="x", call_id=active), InvalidState),
        ("sup2", p.JoinCall(id="x", call_id=active), Forbidden),
        ("sup1", p.JoinCall(id="x", call_id=ringing), InvalidState),
        ("sup1", p.LeaveCall(id="x", call_id=active), InvalidState),
        ("o1", p.CallCenter(id="x"), Busy),
        ("op1", p.CallCenter(id="x"), Forbidden),
        ("op1", p.Emergency(id="x"), Forbidden),
        ("op3", p.CallOfficer(id="x", officer="o3"), Forbidden),
        ("o3", p.ClearEmergency(id="x", officer="o3"), Forbidden),
        ("op2", p.ClearEmergency(id="x", officer="o3"), InvalidState),
        ("op2", p.ClearEmergency(id="x", officer="o5"), Forbidden),
        ("op2", p.Transfer(id="x", call_id=active, to="op3"), InvalidState),
        ("o3", p.GetRoster(id="x"), Forbidden),
        ("op1", p.Position(id="x", lat=0, lon=0, accuracy_m=1, device_time=1e12), Forbidden),
        ("o1", p.Offer(id="x", call_id=active, sdp="v=0"), MediaUnavailable),
        ("o3", p.Offer(id="x", call_id=active, sdp="v=0"), Forbidden),
        ("o2", p.IceCandidate(id="x", call_id=ringing, candidate=""), InvalidState),
    ]
    for user, msg, error in attempts:
        before = b.snapshot()
        with pytest.raises(error):
            b.send(user, msg)
        assert b.snapshot() == before, (user, msg)


def test_a_user_with_no_session_is_refused() -> None:
    b = board()
    with pytest.raises(InvalidState):
        b.send("ghost", p.Heartbeat(id="x", device_time=1e12))


# ---- records ----------------------------------------------------------------------------


def test_a_call_leaves_a_complete_trace() -> None:
    """Created, queued, ringing, answered, joined, transferred, ended: in that order."""
    b = court_of_two()
    b.sign_in(supervisor("sup1"))
    call_id = active_call(b, "o1", "op1")
    b.join("sup1", call_id)
    b.hand_over("op1", call_id, "op2")
    b.hangup("o1", call_id)
    kinds = [e.kind for e in records(b.log) if e.data.get("call") == call_id]
    assert kinds == [
        "call_created",
        "call_queued",
        "call_ringing",
        "call_answered",
        "supervisor_joined",
        "transfer_offered",
        "transfer_accepted",
        "call_transferred",
        "call_ended",
    ]
    (rec,) = records(b.log, "call_ended")
    assert rec.data["monitored_by"] == ["sup1"]
    assert rec.data["operator"] == "op2"
    assert rec.data["direction"] == Direction.OFFICER_TO_CENTER.value


def test_identity_of_a_resumed_session_may_not_switch_role() -> None:
    """A token for the same user with another role is a new session, not a resume."""
    b = court_of_two()
    token = b.sb.presence.sessions["op1"].resume_token
    session, actions = b.connect(ident("op1", Role.SUPERVISOR, "P01"), resume=token)
    assert session.role is Role.SUPERVISOR
    assert records(actions, "sign_out")[0].data["reason"] == "replaced"
    assert len(records(actions, "sign_in")) == 1
