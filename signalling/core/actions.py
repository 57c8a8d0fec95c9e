"""What the pure core asks its driver to do. The driver performs them in this order:
every `Record` first (awaited), then `Send` and `Disconnect` in the order given, so that no
client hears of a fact before the recorder has it."""

from __future__ import annotations

from dataclasses import dataclass

from sessions.recorder import TraceEvent
from signalling.protocol import Answer, IceCandidate, Offer, ServerMessage, Snapshot


@dataclass(frozen=True, slots=True)
class Send:
    """Deliver `message` to each user in `to` (dropped for users with no live connection)."""

    to: tuple[str, ...]
    message: ServerMessage


@dataclass(frozen=True, slots=True)
class Record:
    event: TraceEvent


@dataclass(frozen=True, slots=True)
class Disconnect:
    """Close `user`'s connection if it still belongs to `session_id`."""

    user: str
    session_id: str
    code: int
    reason: str


@dataclass(frozen=True, slots=True)
class Room:
    """Call `call_id`'s media is for `members` now (empty: it ends). `silent` members (covert
    supervisors) receive the others' media but nothing of theirs is forwarded."""

    call_id: str
    members: tuple[str, ...]
    silent: tuple[str, ...]
    # What the call's recording and snapshots are filed under as evidence.
    court: str
    officer: str
    case_number: str | None


@dataclass(frozen=True, slots=True)
class Negotiate:
    """Hand `user`'s checked media message to the media server."""

    user: str
    message: Offer | Answer | IceCandidate | Snapshot


Action = Send | Record | Disconnect | Room | Negotiate
