"""The pure core of text instructions (signalling.core.instructions), driven directly through
the switchboard with a fake clock: who may send to whom, the receipts' moves and records,
sending again after a sign-in, court-wide instructions reaching officers who sign in later,
expiry, bounds, and a property test over every sequence of receipts."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from signalling import protocol as p
from signalling.cluster import wire as w
from signalling.cluster.authority import AuthorityState
from signalling.codec import Encoding, decode
from signalling.core.actions import Action
from signalling.core.instructions import MAX_LISTED, TRANSITIONS, InstructionExpiry, Recipient
from signalling.errors import Busy, ClientError, Forbidden, InvalidMessage, NotFound
from signalling.settings import InstructionsConfig
from tests.corehelpers import (
    Board,
    messages,
    officer,
    operator,
    recipients,
    record_kinds,
    records,
    sends,
    supervisor,
)

OFFICER_A = officer("o1", "P0101")
OFFICER_B = officer("o2", "P0101")
OFFICER_OTHER = officer("o3", "P0102")
OPERATOR_A = operator("op1", "P0101")
OPERATOR_OTHER = operator("op2", "P0102")
SUPERVISOR = supervisor("sup", "P01")


def board(**config: float) -> Board:
    b = Board(instructions=InstructionsConfig(**config))  # type: ignore[arg-type]
    b.sign_in(OFFICER_A, OFFICER_B, OFFICER_OTHER, OPERATOR_A, OPERATOR_OTHER, SUPERVISOR)
    return b


def send(
    b: Board, user: str, text: str, *, to: str | None = None, court: str | None = None
) -> list[Action]:
    return b.send(user, p.SendInstruction(id=b.msg_id(), text=text, officer=to, court=court))


def sent_id(actions: list[Action]) -> str:
    (reply,) = messages(actions, p.InstructionSent)
    return reply.instruction_id


def receipt(b: Board, user: str, iid: str, state: p.ReceiptState) -> list[Action]:
    return b.send(user, p.InstructionReceipt(id=b.msg_id(), instruction_id=iid, state=state))


def listed(b: Board, user: str, court: str | None = None) -> list[p.InstructionInfo]:
    (reply,) = messages(
        b.send(user, p.ListInstructions(id=b.msg_id(), court=court)), p.Instructions
    )
    return reply.instructions


def test_an_instruction_to_an_officer_is_pushed_to_them_recorded_and_shown_to_the_court() -> None:
    b = board()
    out = send(b, "op1", "请立即前往二号现场", to="o1")
    iid = sent_id(out)
    (push,) = messages(out, p.Instruction, to="o1")
    assert (push.instruction_id, push.text, push.by.id, push.state) == (
        iid,
        "请立即前往二号现场",
        "op1",
        "sent",
    )
    assert not push.court_wide
    assert recipients(out, p.Instruction) == {"o1"}
    # The sender, the court's operators and the supervisor over it follow it; not P0102.
    assert recipients(out, p.InstructionUpdate) == {"op1", "sup"}
    (update,) = messages(out, p.InstructionUpdate, to="op1")
    assert [r.officer.id for r in update.instruction.recipients] == ["o1"]
    assert update.instruction.recipients[0].state == "sent"
    (fact,) = records(out, "instruction_sent")
    assert fact.data == {
        "instruction": iid,
        "by": "op1",
        "court": "P0101",
        "officer": "o1",
        "text": "请立即前往二号现场",
        "expires_at": b.now + InstructionsConfig().ttl_s,
    }


def test_receipts_move_sent_delivered_read_once_each_and_repeats_record_nothing() -> None:
    b = board()
    iid = sent_id(send(b, "op1", "go", to="o1"))
    b.clock.advance(2)
    out = receipt(b, "o1", iid, "delivered")
    assert record_kinds(out) == ["instruction_delivered"]
    (update,) = messages(out, p.ReceiptUpdate, to="op1")
    assert (update.recipient.state, update.recipient.delivered_at) == ("delivered", b.now * 1000)
    assert recipients(out, p.ReceiptUpdate) == {"op1", "sup"}
    again = receipt(b, "o1", iid, "delivered")
    assert record_kinds(again) == []
    assert messages(again, p.ReceiptUpdate) == []
    assert messages(again, p.Ack, to="o1")
    b.clock.advance(5)
    out = receipt(b, "o1", iid, "read")
    assert record_kinds(out) == ["instruction_read"]
    assert records(out)[0].data == {"instruction": iid, "officer": "o1", "court": "P0101"}
    (update,) = messages(out, p.ReceiptUpdate)
    assert update.recipient.state == "read"
    assert update.recipient.read_at == b.now * 1000
    assert record_kinds(receipt(b, "o1", iid, "delivered")) == []
    assert record_kinds(receipt(b, "o1", iid, "read")) == []


def test_read_before_delivered_records_both() -> None:
    b = board()
    iid = sent_id(send(b, "op1", "go", to="o1"))
    assert record_kinds(receipt(b, "o1", iid, "read")) == [
        "instruction_delivered",
        "instruction_read",
    ]


def test_another_courts_officer_answers_like_a_missing_one() -> None:
    b = board()
    with pytest.raises(NotFound) as outside:
        send(b, "op2", "go", to="o1")
    with pytest.raises(NotFound) as missing:
        send(b, "op2", "go", to="nobody")
    with pytest.raises(NotFound):
        send(b, "op1", "go", to="op2")  # not an officer
    assert outside.value.reason == missing.value.reason
    with pytest.raises(NotFound):
        send(b, "op2", "go", court="P0101")
    with pytest.raises(NotFound):
        send(b, "op1", "go", court="NOPE")


def test_only_the_center_sends_and_only_recipients_answer() -> None:
    b = board()
    with pytest.raises(Forbidden):
        send(b, "o1", "go", to="o2")
    iid = sent_id(send(b, "op1", "go", to="o1"))
    with pytest.raises(Forbidden):
        receipt(b, "op1", iid, "read")
    with pytest.raises(NotFound):
        receipt(b, "o2", iid, "read")  # not sent to o2
    with pytest.raises(NotFound):
        receipt(b, "o1", "i999", "read")
    with pytest.raises(Forbidden):
        listed(b, "o1")


def test_the_text_is_nfc_bounded_and_not_blank_and_the_target_is_one_of_two() -> None:
    b = board(max_chars=5)
    # Chinese punctuation is fullwidth: kept as written (NFKC would make "，" a ",").
    iid = sent_id(send(b, "op1", "前往，注意", to="o1"))
    assert b.sb.instructions.table[iid].text == "前往，注意"
    # Decomposed characters are composed: "e" + combining acute is one "é".
    iid = sent_id(send(b, "op1", "cafe\u0301", to="o1"))
    assert b.sb.instructions.table[iid].text == "caf\u00e9"
    with pytest.raises(InvalidMessage) as long:
        send(b, "op1", "abcdef", to="o1")
    assert long.value.field == "text"
    with pytest.raises(InvalidMessage):
        send(b, "op1", "   ", to="o1")
    with pytest.raises(InvalidMessage):
        send(b, "op1", "go")
    with pytest.raises(InvalidMessage):
        send(b, "op1", "go", to="o1", court="P0101")


def test_control_characters_are_refused_on_the_wire() -> None:
    frame = '{"type": "send_instruction", "id": "1", "officer": "o1", "text": "a\\u001b[31mb"}'
    with pytest.raises(InvalidMessage):
        decode(frame, Encoding.JSON, 65536)
    empty = '{"type": "send_instruction", "id": "1", "officer": "o1", "text": ""}'
    with pytest.raises(InvalidMessage):
        decode(empty, Encoding.JSON, 65536)


def test_an_unread_instruction_is_sent_again_after_a_reconnect_and_not_once_read() -> None:
    b = board()
    iid = sent_id(send(b, "op1", "go", to="o1"))
    b.drop("o1")
    _, again = b.connect(OFFICER_A)
    (push,) = messages(again, p.Instruction, to="o1")
    assert push.instruction_id == iid
    # The welcome comes first, so the page is ready for it.
    kinds = [type(a.message) for a in sends(again) if "o1" in a.to]
    assert kinds.index(p.Welcome) < kinds.index(p.Instruction)
    receipt(b, "o1", iid, "delivered")
    b.drop("o1")
    _, again = b.connect(OFFICER_A)
    assert messages(again, p.Instruction, to="o1")[0].state == "delivered"
    receipt(b, "o1", iid, "read")
    b.drop("o1")
    _, again = b.connect(OFFICER_A)
    assert messages(again, p.Instruction) == []


def test_a_court_wide_instruction_reaches_officers_who_sign_in_later() -> None:
    b = board()
    out = send(b, "sup", "全院注意", court="P0101")
    iid = sent_id(out)
    assert recipients(out, p.Instruction) == {"o1", "o2"}
    assert messages(out, p.Instruction)[0].court_wide
    late = officer("o9", "P0101")
    b.clock.advance(60)
    _, joined = b.connect(late)
    assert messages(joined, p.Instruction, to="o9")[0].instruction_id == iid
    (update,) = messages(joined, p.ReceiptUpdate, to="op1")
    assert (update.recipient.officer.id, update.recipient.state) == ("o9", "sent")
    _, other = b.connect(officer("o8", "P0102"))
    assert messages(other, p.Instruction) == []
    (info,) = listed(b, "op1")
    assert [r.officer.id for r in info.recipients] == ["o1", "o2", "o9"]
    assert info.officer is None


def test_an_instruction_expires_after_its_ttl() -> None:
    b = board(ttl_s=100)
    iid = sent_id(send(b, "op1", "go", court="P0101"))
    receipt(b, "o1", iid, "read")
    out = b.advance(100)
    (fact,) = records(out, "instruction_expired")
    assert fact.data == {"instruction": iid, "court": "P0101", "unread": ["o2"]}
    assert listed(b, "op1") == []
    _, joined = b.connect(officer("o9", "P0101"))
    assert messages(joined, p.Instruction) == []
    with pytest.raises(NotFound):
        receipt(b, "o2", iid, "read")


def test_pending_instructions_are_bounded_per_officer_and_court() -> None:
    b = board(max_pending=2)
    first = sent_id(send(b, "op1", "1", to="o1"))
    send(b, "op1", "2", court="P0101")
    with pytest.raises(Busy):
        send(b, "op1", "3", to="o1")
    receipt(b, "o1", first, "read")
    send(b, "op1", "3", to="o1")
    send(b, "op1", "4", court="P0101")
    with pytest.raises(Busy):
        send(b, "op1", "5", court="P0101")


def test_consoles_list_the_instructions_of_their_scope_with_receipts() -> None:
    b = board()
    iid = sent_id(send(b, "op1", "go", to="o1"))
    receipt(b, "o1", iid, "delivered")
    send(b, "op2", "other court", to="o3")
    (mine,) = listed(b, "op1")
    assert (mine.instruction_id, mine.recipients[0].state) == (iid, "delivered")
    assert [i.court for i in listed(b, "sup")] == ["P0101", "P0102"]
    assert [i.court for i in listed(b, "sup", "P0102")] == ["P0102"]
    with pytest.raises(NotFound):
        listed(b, "op2", "P0101")


def test_a_refused_message_changes_nothing() -> None:
    b = board(max_pending=1)
    send(b, "op1", "1", to="o1")
    before = {k: v.info() for k, v in b.sb.instructions.table.items()}
    with pytest.raises(Busy):
        send(b, "op1", "2", to="o1")
    assert {k: v.info() for k, v in b.sb.instructions.table.items()} == before


@given(st.lists(st.sampled_from(["delivered", "read"]), max_size=8), st.floats(0, 1e6))
def test_any_sequence_of_receipts_ends_in_the_latest_state_reached_once(
    receipts: list[p.ReceiptState], start: float
) -> None:
    """Whatever order and repeats the page sends, each state is entered at most once, in
    order, never backwards, with delivered no later than read."""
    r = Recipient(p.UserInfo(id="o1", name="O1", role="officer", court="P0101"), start)
    entered: list[str] = []
    for n, receipt_state in enumerate(receipts):
        before = r.state
        entered += r.receive(receipt_state, start + n)
        assert (before, receipt_state) in TRANSITIONS
        assert ["sent", "delivered", "read"].index(r.state) >= ["sent", "delivered", "read"].index(
            before
        )
    expected = "read" if "read" in receipts else "delivered" if receipts else "sent"
    assert r.state == expected
    assert (
        entered == {"sent": [], "delivered": ["delivered"], "read": ["delivered", "read"]}[expected]
    )
    if r.read_at is not None:
        assert r.delivered_at is not None
        assert r.delivered_at <= r.read_at


# ---- a new authority carries instructions on (signalling/cluster) ---------------------------


def test_a_new_authority_carries_on_the_journalled_instructions() -> None:
    """What the dead authority journalled comes back as it was: the connected officer who
    has not read it is sent it again (not recorded again), an expired one is dropped, an
    unreadable field too; receipts then go on as before."""
    old = board(ttl_s=100)
    iid = sent_id(send(old, "op1", "go", to="o1"))
    receipt(old, "o1", iid, "delivered")
    short = sent_id(send(old, "op1", "soon gone", court="P0101"))
    journal = {
        i: w.encode(w.journal_instruction(old.sb.instructions.table[i])) for i in (iid, short)
    }
    journal["i-garbled"] = b"\x00"
    new = board(ttl_s=100)
    new.clock.advance(50)
    old.sb.instructions.table[short].expires_at = new.now  # expired by the takeover
    journal[short] = w.encode(w.journal_instruction(old.sb.instructions.table[short]))
    state = AuthorityState(core=new.sb)
    actions, gone = state.inherit_instructions(journal, new.now)
    assert sorted(gone) == sorted([short, "i-garbled"])
    assert records(actions) == []
    (push,) = messages(actions, p.Instruction, to="o1")
    assert (push.instruction_id, push.state) == (iid, "delivered")
    assert new.sb.instructions.table[iid].info() == old.sb.instructions.table[iid].info()
    assert record_kinds(receipt(new, "o1", iid, "read")) == ["instruction_read"]
    assert record_kinds(new.advance(50)) == ["instruction_expired"]


# ---- stateful: random sends, receipts, drops, reconnects and time -----------------------------

USERS = {i.user_id: i for i in (OFFICER_A, OFFICER_B, OFFICER_OTHER, OPERATOR_A, SUPERVISOR)}
ORDER: dict[str, int] = {"sent": 0, "delivered": 1, "read": 2}


class InstructionsMachine(RuleBasedStateMachine):
    """Whatever happens, a refused request changes nothing, receipts only move forward and
    each move is recorded once, every instruction is indexed once and expires on time, and
    an officer signing in is sent exactly the valid instructions for them not yet read."""

    def __init__(self) -> None:
        super().__init__()
        self.b = Board(instructions=InstructionsConfig(ttl_s=30.0, max_pending=3, max_chars=8))
        self.b.sign_in(*USERS.values())
        self.states: dict[tuple[str, str], str] = {}
        self.moves: list[tuple[str, str, str]] = []

    def _state(self) -> object:
        return {i: info.info() for i, info in self.b.sb.instructions.table.items()}

    def _try(self, user: str, msg: p.ClientMessage) -> None:
        session = self.b.sb.session(user)
        if session is None or not session.connected:
            return
        before = self._state()
        try:
            out = self.b.send(user, msg)
        except ClientError:
            assert self._state() == before
            return
        for event in records(out):
            if event.kind in ("instruction_delivered", "instruction_read"):
                self.moves.append((event.data["instruction"], event.data["officer"], event.kind))

    @rule(
        sender=st.sampled_from(["op1", "sup", "o1"]),
        to=st.sampled_from(["o1", "o2", "o3", None]),
        court=st.sampled_from(["P0101", "P0102"]),
        text=st.sampled_from(["go", "  ", "toolongtext", "\uff21"]),
    )
    def send(self, sender: str, to: str | None, court: str, text: str) -> None:
        msg = p.SendInstruction(
            id=self.b.msg_id(), text=text, officer=to, court=None if to else court
        )
        self._try(sender, msg)

    @rule(
        officer=st.sampled_from(["o1", "o2", "o3"]),
        n=st.integers(0, 9),
        state=st.sampled_from(["delivered", "read"]),
    )
    def answer(self, officer: str, n: int, state: p.ReceiptState) -> None:
        ids = sorted(self.b.sb.instructions.table) or ["i-none"]
        iid = ids[n % len(ids)]
        self._try(
            officer, p.InstructionReceipt(id=self.b.msg_id(), instruction_id=iid, state=state)
        )

    @rule(officer=st.sampled_from(["o1", "o2", "o3"]))
    def reconnect(self, officer: str) -> None:
        session = self.b.sb.session(officer)
        if session is not None and session.connected:
            self.b.drop(officer)
        _, out = self.b.connect(USERS[officer])
        court = USERS[officer].court
        unread = {
            i.instruction_id
            for i in self.b.sb.instructions.for_officer(officer, court)
            if i.recipients[officer].state != "read"
        }
        assert {m.instruction_id for m in messages(out, p.Instruction, to=officer)} == unread

    @rule(seconds=st.sampled_from([1.0, 10.0, 31.0]))
    def wait(self, seconds: float) -> None:
        self.b.advance(seconds)

    @invariant()
    def receipts_only_move_forward(self) -> None:
        for iid, instruction in self.b.sb.instructions.table.items():
            assert instruction.expires_at > self.b.now
            for who, r in instruction.recipients.items():
                before = self.states.get((iid, who), "sent")
                assert ORDER[r.state] >= ORDER[before]
                self.states[(iid, who)] = r.state

    @invariant()
    def each_move_is_recorded_once(self) -> None:
        assert len(self.moves) == len(set(self.moves))

    @invariant()
    def every_instruction_is_indexed_once_with_its_timer(self) -> None:
        core = self.b.sb.instructions
        for iid, instruction in core.table.items():
            holders = [o for o in ("o1", "o2", "o3") if iid in core._to_officer.get(o, set())] + [
                c for c in ("P0101", "P0102") if iid in core._to_court.get(c, set())
            ]
            assert len(holders) == 1
            expiry = self.b.sb.deadlines.get(InstructionExpiry(iid))
            assert expiry == instruction.expires_at


TestInstructionsMachine = InstructionsMachine.TestCase
TestInstructionsMachine.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)


def test_a_list_holds_the_newest_instructions_only() -> None:
    b = board(max_pending=1000)
    ids = []
    for n in range(MAX_LISTED + 5):
        b.clock.advance(1)
        ids.append(sent_id(send(b, "sup", f"n{n}", court="P0102")))
    assert [i.instruction_id for i in listed(b, "sup")] == ids[-MAX_LISTED:]


def page(b: Board, user: str, limit: int, before: str | None = None) -> tuple[list[str], bool]:
    (reply,) = messages(
        b.send(user, p.ListInstructions(id=b.msg_id(), before=before, limit=limit)),
        p.Instructions,
    )
    return [i.instruction_id for i in reply.instructions], reply.more


def test_the_list_pages_back_from_the_newest_and_says_when_older_ones_remain() -> None:
    b = board(max_pending=1000)
    ids = []
    for n in range(7):
        b.clock.advance(1)
        ids.append(sent_id(send(b, "sup", f"n{n}", court="P0102")))
    newest, more = page(b, "sup", 3)
    assert (newest, more) == (ids[4:], True)
    older, more = page(b, "sup", 3, before=newest[0])
    assert (older, more) == (ids[1:4], True)
    oldest, more = page(b, "sup", 3, before=older[0])
    assert (oldest, more) == (ids[:1], False)
    assert page(b, "sup", 100) == (ids, False)


def test_paging_from_an_instruction_not_listed_is_not_found() -> None:
    b = board(max_pending=1000)
    iid = sent_id(send(b, "sup", "to P0102", court="P0102"))
    with pytest.raises(NotFound) as refused:
        page(b, "sup", 10, before="i-nonesuch")
    assert refused.value.field == "before"
    # Listed for one court, an instruction of another is not a place to page from.
    with pytest.raises(NotFound):
        b.send("sup", p.ListInstructions(id=b.msg_id(), court="P0101", before=iid))
