"""Text instructions from the command center to officers, with delivered and read receipts.

A center user sends an instruction to one officer or to every officer of a court
(`send_instruction`); each officer's page is pushed the `instruction`, answers a `delivered`
receipt on its own and a `read` receipt when the officer taps to acknowledge it
(`instruction_receipt`). The sender and every console watching the court are told of the
instruction (`instruction_update`) and of each receipt (`receipt_update`), and can ask for
every instruction still valid (`list_instructions`), so receipts that came while a console
was away are there when it is back. docs/protocol.md, "Instructions", has the rules.
"""

from __future__ import annotations

from typing import Annotated, Final, Literal

import msgspec

from identity.names import NO_CONTROL_PATTERN
from signalling.protocol.base import (
    CourtCode,
    Id,
    UserId,
    UserInfo,
    _ClientMessage,
    _ServerMessage,
)

# The wire's ceiling on an instruction's text; the core bounds it again after NFC
# (`instructions.max_chars`), which may change its length.
InstructionText = Annotated[
    str, msgspec.Meta(min_length=1, max_length=2000, pattern=NO_CONTROL_PATTERN)
]
InstructionId = Id
# What an officer's page has done with an instruction: shown to the officer (`delivered`),
# acknowledged by them (`read`).
ReceiptState = Literal["delivered", "read"]
# Where a recipient is: told by the server (`sent`), then as their receipts say.
RecipientState = Literal["sent", "delivered", "read"]


# --- client messages ----------------------------------------------------------------------


class SendInstruction(_ClientMessage, tag="send_instruction", frozen=True):
    """An instruction to `officer`, or to every officer of `court` (exactly one of them)."""

    text: InstructionText
    officer: UserId | None = None
    court: CourtCode | None = None


class InstructionReceipt(_ClientMessage, tag="instruction_receipt", frozen=True):
    """The officer's page has shown (`delivered`) or the officer acknowledged (`read`) it."""

    instruction_id: InstructionId
    state: ReceiptState


# The most one `instructions` reply lists: a province-wide scope may hold thousands, each
# with its court's recipients, and one reply must stay well under `limits.max_backlog_bytes`.
MAX_INSTRUCTIONS_LISTED: Final = 100
ListLimit = Annotated[int, msgspec.Meta(ge=1, le=MAX_INSTRUCTIONS_LISTED)]


class ListInstructions(_ClientMessage, tag="list_instructions", frozen=True):
    # Absent: every court in the requester's scope.
    court: CourtCode | None = None
    # A page: the newest `limit` sent before the instruction `before` (absent: the newest).
    before: InstructionId | None = None
    limit: ListLimit = MAX_INSTRUCTIONS_LISTED


# --- shared shapes -----------------------------------------------------------------------


class RecipientInfo(msgspec.Struct, frozen=True, kw_only=True):
    officer: UserInfo
    state: RecipientState
    sent_at: float
    delivered_at: float | None = None
    read_at: float | None = None


class InstructionInfo(msgspec.Struct, frozen=True, kw_only=True):
    instruction_id: str
    by: UserInfo
    court: str
    # None: every officer of `court`.
    officer: str | None
    text: str
    sent_at: float
    expires_at: float
    # Everyone it was sent to so far: for a court-wide instruction, officers who sign in
    # later are added as they are sent it.
    recipients: list[RecipientInfo]


# --- server messages ---------------------------------------------------------------------


class InstructionSent(_ServerMessage, tag="instruction_sent", frozen=True):
    ref: str
    instruction_id: str


class Instruction(_ServerMessage, tag="instruction", frozen=True):
    """To an officer: an instruction to show until they acknowledge it (sent again after
    every sign-in or resume while it is not read: the page keeps one per id)."""

    instruction_id: str
    by: UserInfo
    text: str
    court_wide: bool
    sent_at: float
    expires_at: float
    state: RecipientState


class InstructionUpdate(_ServerMessage, tag="instruction_update", frozen=True):
    instruction: InstructionInfo


class ReceiptUpdate(_ServerMessage, tag="receipt_update", frozen=True):
    instruction_id: str
    court: str
    recipient: RecipientInfo


class Instructions(_ServerMessage, tag="instructions", frozen=True):
    ref: str
    instructions: list[InstructionInfo]
    # Older ones remain: ask again with `before` the first listed.
    more: bool = False
