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
class Stage:
    """What a conference's media forwards: the core decides whose media may flow, the media
    server which of it goes in which of a member's slots (media.stage)."""

    # Whose audio every other member hears, most important first: the chair, the other
    # moderators, then the floor holders in the order they were granted.
    audible: tuple[str, ...]
    # Whose video every member sees (None: nobody's yet).
    spotlight: str | None
    # Who also receive the grid of sites' video.
    moderators: tuple[str, ...]
    # Every site may be heard (after unmute all): the loudest take the free audio slots.
    open: bool = False
    # Record what is forwarded (the voices heard, the spotlight), as evidence.
    record: bool = False
    # Live calls shown to the conference: (officer, call id), whose media is the call's.
    feeds: tuple[tuple[str, str], ...] = ()
    # A concentrated enforcement action: its witnesses watch all of it (the grid too).
    action: bool = False


@dataclass(frozen=True, slots=True)
class Room:
    """Call (or conference) `call_id`'s media is for `members` now (empty: it ends). `silent`
    members (covert supervisors, witnesses) receive the others' media but nothing of theirs is
    forwarded. A conference's room has a `stage`; a call's forwards everyone to everyone."""

    call_id: str
    members: tuple[str, ...]
    silent: tuple[str, ...]
    # What the call's recording and snapshots are filed under as evidence.
    court: str
    officer: str
    case_number: str | None
    stage: Stage | None = None
    # A video wall's watch (signalling.core.watches): the officer's uplink for silent
    # watchers, neither recorded nor filed as evidence.
    watch: bool = False


@dataclass(frozen=True, slots=True)
class Negotiate:
    """Hand `user`'s checked media message to the media server."""

    user: str
    message: Offer | Answer | IceCandidate | Snapshot


Action = Send | Record | Disconnect | Room | Negotiate
