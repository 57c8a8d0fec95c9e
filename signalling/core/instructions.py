"""Text instructions from the command center to officers, and their receipts.

Theory of operation
-------------------
A center user sends an instruction to one signed-in officer of their scope, or to every
officer of a court of their scope. It is valid for `instructions.ttl_s`: every officer it
is for who is signed in, or signs in (or resumes) before it expires, is sent it, and sent
it again after every sign-in or resume until they have read it, because a push to a phone
in the background or out of coverage is lost with its connection. The page keeps one
instruction per id, so sending it again is harmless.

Each recipient moves sent -> delivered (their page showed it) -> read (the officer tapped
to acknowledge), by the receipts their page sends. The moves are data (`TRANSITIONS`); a
receipt that moves nothing (a repeat, a `delivered` after `read`) is answered like the
first and records nothing, so a page may resend receipts after a reconnect. Every move,
and the instruction itself, is a record in the trace; the sender and every console watching
the court are told of each (`instruction_update`, `receipt_update`), and a console that was
away asks for the list (`list_instructions`) with the receipts as they are now.

This module owns the instructions not yet expired, who each was sent to, and the
`InstructionExpiry` timer. It is the authority's, like every sub-core: in a cluster the
instructions live on the node holding the lease, which journals them, and a new authority
after a failover carries them on (`restore`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from identity import Courts, Role
from identity.names import BadName, free_text
from signalling import protocol as p
from signalling.core.actions import Action, Send
from signalling.core.calls import CENTER_ROLES
from signalling.core.deadlines import Deadlines
from signalling.core.presence import WATCHER_ROLES, Session
from signalling.errors import Busy, Forbidden, InvalidMessage, NotFound
from signalling.settings import InstructionsConfig

if TYPE_CHECKING:
    from signalling.core.switchboard import Switchboard

# (recipient state, receipt) -> the state it moves to, or None: nothing moves (a repeat, or
# a receipt that comes after a later one). `read` straight from `sent` is a page that was
# shown and acknowledged before its `delivered` was heard (both are recorded then).
TRANSITIONS: Final[dict[tuple[p.RecipientState, p.ReceiptState], p.RecipientState | None]] = {
    ("sent", "delivered"): "delivered",
    ("sent", "read"): "read",
    ("delivered", "delivered"): None,
    ("delivered", "read"): "read",
    ("read", "delivered"): None,
    ("read", "read"): None,
}
# The most instructions one `instructions` reply lists (the protocol bounds `limit` by it).
MAX_LISTED: Final = p.MAX_INSTRUCTIONS_LISTED
# What the trace calls each move.
RECORD_KINDS: Final[dict[p.RecipientState, str]] = {
    "delivered": "instruction_delivered",
    "read": "instruction_read",
}


@dataclass(frozen=True, slots=True)
class InstructionExpiry:
    """Deadline: `instruction_id` is no longer sent to anyone, nor listed."""

    instruction_id: str


@dataclass(slots=True)
class Recipient:
    officer: p.UserInfo
    sent_at: float
    state: p.RecipientState = "sent"
    delivered_at: float | None = None
    read_at: float | None = None

    def receive(self, receipt: p.ReceiptState, now: float) -> list[p.RecipientState]:
        """Apply `receipt` at `now`; the states entered, in order (none for a repeat)."""
        new = TRANSITIONS[(self.state, receipt)]
        if new is None:
            return []
        entered: list[p.RecipientState] = []
        if self.delivered_at is None:
            self.delivered_at = now
            entered.append("delivered")
        if new == "read":
            self.read_at = now
            entered.append("read")
        self.state = new
        return entered

    def info(self) -> p.RecipientInfo:
        return p.RecipientInfo(
            officer=self.officer,
            state=self.state,
            sent_at=p.epoch_ms(self.sent_at),
            delivered_at=None if self.delivered_at is None else p.epoch_ms(self.delivered_at),
            read_at=None if self.read_at is None else p.epoch_ms(self.read_at),
        )


@dataclass(slots=True)
class Instruction:
    instruction_id: str
    by: p.UserInfo
    court: str
    # None: every officer of `court`.
    officer: str | None
    text: str
    sent_at: float
    expires_at: float
    recipients: dict[str, Recipient] = field(default_factory=dict)

    def is_for(self, officer: str, court: str) -> bool:
        if self.officer is None:
            return court == self.court
        return officer == self.officer

    def info(self) -> p.InstructionInfo:
        return p.InstructionInfo(
            instruction_id=self.instruction_id,
            by=self.by,
            court=self.court,
            officer=self.officer,
            text=self.text,
            sent_at=p.epoch_ms(self.sent_at),
            expires_at=p.epoch_ms(self.expires_at),
            recipients=[self.recipients[u].info() for u in sorted(self.recipients)],
        )

    def push(self, officer: str) -> p.Instruction:
        """What `officer`'s page is sent."""
        return p.Instruction(
            instruction_id=self.instruction_id,
            by=self.by,
            text=self.text,
            court_wide=self.officer is None,
            sent_at=p.epoch_ms(self.sent_at),
            expires_at=p.epoch_ms(self.expires_at),
            state=self.recipients[officer].state,
        )


class Instructions:
    def __init__(
        self,
        board: Switchboard,
        courts: Courts,
        config: InstructionsConfig,
        deadlines: Deadlines,
        new_id: Callable[[], str],
    ) -> None:
        self._board = board
        self._courts = courts
        self.config = config
        self._deadlines = deadlines
        self._new_id = new_id
        self.table: dict[str, Instruction] = {}
        # officer -> instructions to them alone; court -> instructions to all its officers.
        self._to_officer: dict[str, set[str]] = {}
        self._to_court: dict[str, set[str]] = {}

    # ---- queries ------------------------------------------------------------------------

    def for_officer(self, officer: str, court: str) -> list[Instruction]:
        """The instructions still valid that are for `officer` (of `court`), oldest first."""
        ids = self._to_officer.get(officer, set()) | self._to_court.get(court, set())
        return sorted((self.table[i] for i in ids), key=lambda i: (i.sent_at, i.instruction_id))

    def unread(self, officer: str, court: str) -> int:
        """How many of them `officer` has not read."""
        return sum(
            1
            for i in self.for_officer(officer, court)
            if (r := i.recipients.get(officer)) is None or r.state != "read"
        )

    # ---- sending ------------------------------------------------------------------------

    def send(self, session: Session, msg: p.SendInstruction, now: float, out: list[Action]) -> None:
        board = self._board
        if session.role not in CENTER_ROLES:
            raise Forbidden("only the command center sends instructions")
        if (msg.officer is None) == (msg.court is None):
            raise InvalidMessage("give either officer or court", field="officer")
        text = self._text(msg.text)
        if msg.officer is not None:
            target = board.presence.session(msg.officer)
            # An officer of another court answers like one who is not signed in, so the
            # answer does not tell which ids exist where.
            if (
                target is None
                or target.role is not Role.OFFICER
                or not self._courts.in_scope(session.identity, target.identity.court)
            ):
                raise NotFound("no such officer signed in", field="officer")
            court = target.identity.court
            if self.unread(msg.officer, court) >= self.config.max_pending:
                raise Busy("the officer has too many instructions not yet read", field="officer")
            recipients = [msg.officer]
        else:
            court = msg.court or ""
            if court not in self._courts or not self._courts.in_scope(session.identity, court):
                raise NotFound("unknown court", field="court")
            if len(self._to_court.get(court, ())) >= self.config.max_pending:
                raise Busy("the court has too many instructions still valid", field="court")
            recipients = board.presence.officers(court)
        instruction = Instruction(
            instruction_id=self._new_id(),
            by=board.presence.info(session.user_id),
            court=court,
            officer=msg.officer,
            text=text,
            sent_at=now,
            expires_at=now + self.config.ttl_s,
        )
        iid = instruction.instruction_id
        self.table[iid] = instruction
        if msg.officer is not None:
            self._to_officer.setdefault(msg.officer, set()).add(iid)
        else:
            self._to_court.setdefault(court, set()).add(iid)
        self._deadlines.set(InstructionExpiry(iid), instruction.expires_at)
        out.append(
            board.facts.record(
                "instruction_sent",
                now,
                instruction=iid,
                by=session.user_id,
                court=court,
                officer=msg.officer,
                text=text,
                expires_at=instruction.expires_at,
            )
        )
        out.append(Send((session.user_id,), p.InstructionSent(ref=msg.id, instruction_id=iid)))
        for officer in recipients:
            instruction.recipients[officer] = Recipient(board.presence.info(officer), now)
            out.append(Send((officer,), instruction.push(officer)))
        update = p.InstructionUpdate(instruction=instruction.info())
        out.append(Send(self._watchers(instruction), update))

    def _text(self, raw: str) -> str:
        try:
            text = free_text(raw, max_chars=self.config.max_chars)
        except BadName as exc:
            raise InvalidMessage(f"text is {exc}", field="text") from None
        if not text.strip():
            raise InvalidMessage("text is blank", field="text")
        return text

    def _watchers(self, instruction: Instruction) -> tuple[str, ...]:
        """Who follows `instruction`'s receipts: its sender and every console of its court."""
        watchers = self._board.views.watchers_of(instruction.court)
        return tuple(dict.fromkeys((instruction.by.id, *watchers)))

    # ---- officers -----------------------------------------------------------------------

    def signed_in(self, session: Session, now: float, out: list[Action]) -> None:
        """`session`'s officer signed in, resumed or was reported again: send what they have
        not read (an instruction to their court that they were not yet sent adds them)."""
        if session.role is not Role.OFFICER:
            return
        officer, court = session.user_id, session.identity.court
        for instruction in self.for_officer(officer, court):
            recipient = instruction.recipients.get(officer)
            if recipient is None:
                recipient = Recipient(self._board.presence.info(officer), now)
                instruction.recipients[officer] = recipient
                update = p.ReceiptUpdate(
                    instruction_id=instruction.instruction_id,
                    court=instruction.court,
                    recipient=recipient.info(),
                )
                out.append(Send(self._watchers(instruction), update))
            if recipient.state != "read":
                out.append(Send((officer,), instruction.push(officer)))

    def receipt(
        self, session: Session, msg: p.InstructionReceipt, now: float, out: list[Action]
    ) -> None:
        board = self._board
        if session.role is not Role.OFFICER:
            raise Forbidden("only officers answer instructions")
        instruction = self.table.get(msg.instruction_id)
        recipient = instruction.recipients.get(session.user_id) if instruction is not None else None
        if instruction is None or recipient is None:
            # Expired, or never sent to this officer: the same answer for both.
            raise NotFound("no such instruction", field="instruction_id")
        entered = recipient.receive(msg.state, now)
        for state in entered:
            out.append(
                board.facts.record(
                    RECORD_KINDS[state],
                    now,
                    instruction=instruction.instruction_id,
                    officer=session.user_id,
                    court=instruction.court,
                )
            )
        if entered:
            update = p.ReceiptUpdate(
                instruction_id=instruction.instruction_id,
                court=instruction.court,
                recipient=recipient.info(),
            )
            out.append(Send(self._watchers(instruction), update))

    # ---- many nodes (signalling/cluster) ------------------------------------------------

    def restore(self, instruction: Instruction, now: float, out: list[Action]) -> None:
        """Carry on `instruction` from a dead authority's journal (not recorded again: its
        records are in the trace). One already here, or expired meanwhile, is left; every
        connected officer it is for and who has not read it is sent it again."""
        iid = instruction.instruction_id
        if iid in self.table or instruction.expires_at <= now:
            return
        self.table[iid] = instruction
        if instruction.officer is not None:
            self._to_officer.setdefault(instruction.officer, set()).add(iid)
        else:
            self._to_court.setdefault(instruction.court, set()).add(iid)
        self._deadlines.set(InstructionExpiry(iid), instruction.expires_at)
        presence = self._board.presence
        if instruction.officer is not None:
            officers = [instruction.officer]
        else:
            officers = presence.officers(instruction.court)
        for officer in officers:
            session = presence.session(officer)
            if session is None or not session.connected or session.role is not Role.OFFICER:
                continue
            if not instruction.is_for(officer, session.identity.court):
                continue
            recipient = instruction.recipients.get(officer)
            if recipient is None:
                recipient = Recipient(presence.info(officer), now)
                instruction.recipients[officer] = recipient
            if recipient.state != "read":
                out.append(Send((officer,), instruction.push(officer)))

    # ---- consoles -----------------------------------------------------------------------

    def listed(self, session: Session, msg: p.ListInstructions) -> p.Instructions:
        if session.role not in WATCHER_ROLES:
            raise Forbidden("only the command center lists instructions")
        scope = self._courts.scope(session.identity)
        if msg.court is not None:
            if msg.court not in self._courts or msg.court not in scope:
                raise NotFound("unknown court", field="court")
            courts: Iterable[str] = (msg.court,)
        else:
            courts = scope
        wanted = set(courts)
        found = sorted(
            (i for i in self.table.values() if i.court in wanted),
            key=lambda i: (i.sent_at, i.instruction_id),
        )
        if msg.before is not None:
            # Paging back from an instruction listed before; one that expired meanwhile (or
            # of a court not asked for) is not a place to page from.
            cursor = self.table.get(msg.before)
            if cursor is None or cursor.court not in wanted:
                raise NotFound("no such instruction", field="before")
            found = found[: found.index(cursor)]
        page = found[-msg.limit :]
        return p.Instructions(
            ref=msg.id, instructions=[i.info() for i in page], more=len(found) > len(page)
        )

    # ---- timers -------------------------------------------------------------------------

    def expired(self, key: InstructionExpiry, now: float, out: list[Action]) -> None:
        """`key`'s instruction is no longer valid: recorded with who never read it."""
        instruction = self.table.pop(key.instruction_id, None)
        if instruction is None:
            return
        iid = instruction.instruction_id
        index = self._to_court if instruction.officer is None else self._to_officer
        holder = instruction.court if instruction.officer is None else instruction.officer
        ids = index.get(holder)
        if ids is not None:
            ids.discard(iid)
            if not ids:
                del index[holder]
        unread = sorted(u for u, r in instruction.recipients.items() if r.state != "read")
        out.append(
            self._board.facts.record(
                "instruction_expired", now, instruction=iid, court=instruction.court, unread=unread
            )
        )
