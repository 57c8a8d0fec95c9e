"""A dead authority's emergencies carried on by the next one, and its unreadable journal
entries skipped: the pure `AuthorityState` and `Switchboard` driven directly with a fake
clock (the same with real nodes: tests/test_cluster_emergency.py)."""

from __future__ import annotations

import msgspec

from signalling import protocol as p
from signalling.cluster import wire as w
from signalling.cluster.authority import AuthorityState
from tests.corehelpers import Board, messages, officer, operator, records
from tests.test_cluster_authority import RUN, info

REPEAT_S = 30.0
# `JournalCall` whose `ended` nests 100,000 one-element arrays: decoding it recurses out.
DEEP_CALL = (
    b"\x82"
    + msgspec.msgpack.encode("notify")
    + b"\x90"
    + msgspec.msgpack.encode("ended")
    + b"\x81\xa1a"
    + b"\x91" * 100_000
    + b"\xc0"
)


def boards() -> tuple[Board, Board]:
    """The dead authority's board and the next one's, the same users signed in in the same
    order (so the sessions the next one adopted have the same ids)."""
    old, fresh = Board(), Board()
    for board in (old, fresh):
        board.sign_in(operator("op1"), officer("o1"), officer("o2"))
    return old, fresh


def test_an_emergency_goes_on_where_it_was_with_its_note_and_who_took_it() -> None:
    old, fresh = boards()
    old.emergency("o1", note="被围堵")
    old.emergency("o2")
    old.send("op1", p.AcknowledgeEmergency(id="k1", officer="o1"))
    old.advance(REPEAT_S + 5)  # o2's first repeat
    journal = {}
    for user in ("o1", "o2"):
        facts = old.sb.emergency_facts(user)
        assert facts is not None
        journal[user] = w.encode(w.journal_emergency(facts))
    assert old.sb.emergency_facts("op1") is None

    fresh.clock.advance(REPEAT_S + 15)  # the failover took ten seconds
    state = AuthorityState(core=fresh.sb)
    state.hold_emergencies(journal)
    actions, gone = state.inherit_emergencies(fresh.now)
    assert gone == []
    carried = {e.data["officer"]: e.data for e in records(actions, "emergency_carried_over")}
    assert carried["o1"]["acknowledged_by"] == "op1"
    assert (carried["o2"]["acknowledged_by"], carried["o2"]["repeats"]) == (None, 1)
    entries = {m.entry.officer.id: m.entry for m in messages(actions, p.RosterUpdate, to="op1")}
    assert entries["o1"].emergency
    assert entries["o1"].emergency_note == "被围堵"
    assert entries["o1"].emergency_taken_by is not None
    assert entries["o1"].emergency_taken_by.id == "op1"
    assert entries["o2"].emergency
    assert entries["o2"].emergency_taken_by is None

    # o2's second repeat falls when it would have (60 s after the raise), counting on.
    assert messages(fresh.advance(REPEAT_S - 16), p.EmergencyAlarm) == []
    (alarm,) = messages(fresh.advance(2), p.EmergencyAlarm, to="op1")
    assert (alarm.officer.id, alarm.repeat) == ("o2", 2)
    assert alarm.waiting_s >= 2 * REPEAT_S
    # Taken on already: o1's stays quiet, and the next authority clears it like its own.
    cleared = fresh.clear_emergency("op1", "o1")
    assert records(cleared, "emergency_cleared")[0].data["acknowledged_by"] == "op1"
    assert fresh.sb.emergency_facts("o1") is None


def test_an_emergency_of_a_session_not_taken_over_is_dropped() -> None:
    old, fresh = boards()
    old.emergency("o2")
    facts = old.sb.emergency_facts("o2")
    assert facts is not None
    fresh.drop("o2")
    fresh.advance(1_000)  # o2's grace ran out: signed out here
    state = AuthorityState(core=fresh.sb)
    state.hold_emergencies({"o2": w.encode(w.journal_emergency(facts))})
    actions, gone = state.inherit_emergencies(0)
    assert (actions, gone) == ([], ["o2"])


def test_unreadable_journal_entries_are_skipped_and_kept_for_the_log() -> None:
    """Garbage, a wrong shape and an entry nested deep enough to raise RecursionError in
    the decoder: each skipped and listed, the rest inherited."""
    old, fresh = boards()
    old.emergency("o1")
    facts = old.sb.emergency_facts("o1")
    assert facts is not None
    state = AuthorityState(core=fresh.sb)
    inherited = state.inherit_calls({"c-deep": DEEP_CALL, "c-bad": b"\xc1"}, fresh.now)
    assert inherited.ended == []
    journal = {"o1": w.encode(w.journal_emergency(facts)), "o9": msgspec.msgpack.encode([1])}
    state.hold_emergencies(journal)
    actions, gone = state.inherit_emergencies(fresh.now)
    assert gone == ["o9"]
    assert [e.data["officer"] for e in records(actions, "emergency_carried_over")] == ["o1"]
    skipped = {(u.journal, u.key): u.error for u in state.unreadable}
    assert set(skipped) == {("calls", "c-deep"), ("calls", "c-bad"), ("emergencies", "o9")}
    assert skipped[("calls", "c-deep")].startswith("RecursionError")


def test_an_officer_adopted_with_a_held_emergency_is_flagged_in_the_first_push() -> None:
    """The emergencies are held before the resync: the officer's session is flagged as it
    is adopted, so the first roster update shows it, the carry-over
    is recorded right after the adoption, and nothing is left for the node timeout."""
    old = Board()
    old.sign_in(operator("op1"), officer("o1"), officer("o2"))
    old.emergency("o1", note="被围堵")
    old.emergency("o2")
    journal = {}
    for user in ("o1", "o2"):
        facts = old.sb.emergency_facts(user)
        assert facts is not None
        journal[user] = w.encode(w.journal_emergency(facts))

    def session_of(user: str) -> str:
        session = old.sb.presence.session(user)
        assert session is not None
        return session.session_id

    fresh = Board()
    state = AuthorityState(core=fresh.sb)
    state.hold_emergencies(journal)
    # o2 reconnected meanwhile and signed in anew: its emergency is not this session's.
    conns = [
        info(operator("op1"), session_of("op1")),
        info(officer("o1"), session_of("o1")),
        info(officer("o2"), "s-anew"),
    ]
    actions = state.reconcile(w.Report(node="n2", run=RUN, conns=conns), fresh.now).actions

    entries = {m.entry.officer.id: m.entry for m in messages(actions, p.RosterUpdate, to="op1")}
    assert entries["o1"].emergency
    assert entries["o1"].emergency_note == "被围堵"
    assert not entries["o2"].emergency
    kinds = [(e.kind, e.data.get("user", e.data.get("officer"))) for e in records(actions)]
    adopted = kinds.index(("session_adopted", "o1"))
    assert kinds[adopted + 1] == ("emergency_carried_over", "o1")
    assert ("emergency_carried_over", "o2") not in kinds
    # What the node timeout finds: o2's emergency, dropped; o1's is carried on already.
    late, gone = state.inherit_emergencies(fresh.now)
    assert (late, gone) == ([], ["o2"])
    facts = fresh.sb.emergency_facts("o1")
    assert facts is not None
    assert facts.note == "被围堵"
