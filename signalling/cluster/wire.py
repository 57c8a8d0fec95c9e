"""What the nodes of one deployment say to each other over Redis pub/sub (msgpack).

Two streams, each ordered because each has one publisher connection per node:

* the authority's inbox (`ClusterKeys.authority_inbox`): what gateways tell the core, in the
  order their clients said it (`InboxMessage`);
* each node's channel (`ClusterKeys.node_channel`): what the core, or a media node, tells
  that node's clients and media service (`NodeMessage`).

Client and server messages travel as the protocol's own structs (`signalling.protocol`),
already validated and bounded by the gateway that decoded them: Redis is inside the trust
boundary, the WebSocket is not. Every envelope names the node it comes from (`node`) and that
node's run (`run`: its start time), so the authority can tell a restarted node's new
connections from its previous run's.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec

from signalling import protocol as p
from signalling.core.actions import Stage
from signalling.core.alarms import EmergencyFacts
from signalling.core.facts import WaitingCall
from signalling.core.instructions import Instruction, Recipient
from signalling.media_port import Cascade


class _Envelope(msgspec.Struct, tag_field="kind", frozen=True, kw_only=True):
    node: str
    run: float


# ---- gateway -> authority -----------------------------------------------------------------


class ConnectionInfo(msgspec.Struct, frozen=True, kw_only=True):
    """A connection as its gateway knows it: who (from the verified token), and the keys the
    gateway drew for it should it open a new session."""

    user: str
    name: str
    role: str
    court: str
    expires_at: float
    session_id: str
    resume_token: str
    device: str
    app_version: str
    # A witness token's conference; None for every other role.
    scope: str | None = None


class Connect(_Envelope, tag="connect", frozen=True, kw_only=True):
    """A WebSocket was authenticated; `resume` is the resume token it presented, if any."""

    conn: ConnectionInfo
    resume: str | None = None


class ClientMessage(_Envelope, tag="message", frozen=True, kw_only=True):
    """A client message of a connection of `session_id` (as in `Closed`)."""

    user: str
    session_id: str
    message: p.ClientMessage


class Closed(_Envelope, tag="closed", frozen=True, kw_only=True):
    """A connection of `session_id` closed (the id the gateway drew, if it closed before its
    welcome told it the session's own)."""

    user: str
    session_id: str


class Revoked(_Envelope, tag="revoked", frozen=True, kw_only=True):
    """`user` (a connection of `session_id`, as in `Closed`) may no longer be signed in:
    their account was disabled (`reason`). The gateway found it; the authority signs the
    session out and has the connection closed."""

    user: str
    session_id: str
    reason: str


class Report(_Envelope, tag="report", frozen=True, kw_only=True):
    """Every connection the gateway serves now, each under its session's id (a resync)."""

    conns: list[ConnectionInfo]


InboxMessage = Connect | ClientMessage | Closed | Revoked | Report


# ---- anyone -> a node ---------------------------------------------------------------------


class Deliver(_Envelope, tag="deliver", frozen=True, kw_only=True):
    to: list[str]
    message: p.ServerMessage


class Disconnect(_Envelope, tag="disconnect", frozen=True, kw_only=True):
    user: str
    session_id: str
    code: int
    reason: str


class RoomChanged(_Envelope, tag="room", frozen=True, kw_only=True):
    """For the call's media node: `signalling.core.actions.Room`."""

    call_id: str
    members: list[str]
    silent: list[str]
    court: str
    officer: str
    case_number: str | None
    # A conference's: what its media forwards.
    stage: Stage | None = None
    # A video wall's watch (no recording, no evidence).
    watch: bool = False


class Signal(_Envelope, tag="signal", frozen=True, kw_only=True):
    """For the call's media node: `signalling.core.actions.Negotiate`."""

    user: str
    message: p.Offer | p.Answer | p.IceCandidate | p.Snapshot


class ResyncRequest(_Envelope, tag="resync", frozen=True, kw_only=True):
    """From a new (or returning) authority: report your connections (`Report`)."""

    epoch: int


class CascadeChanged(_Envelope, tag="cascade", frozen=True, kw_only=True):
    """For each media node of a conference spread over several (sent before its
    `RoomChanged`): `signalling.media_port.Cascade`, or None: on one node only. Holds the
    conference's key: a node never logs it."""

    conference_id: str
    cascade: Cascade | None


NodeMessage = Deliver | Disconnect | RoomChanged | Signal | ResyncRequest | CascadeChanged


class Presence(msgspec.Struct, frozen=True, kw_only=True):
    """The value of `presence:<user>`: the node serving the user's connection."""

    node: str
    session_id: str
    connected_at: float


class JournalCall(msgspec.Struct, frozen=True, kw_only=True):
    """`ClusterKeys.journal_calls`: a live call, as its end would be recorded if lost, and,
    while it waits for an operator, what re-queues it."""

    notify: list[str]
    ended: dict[str, Any]
    waiting: WaitingCall | None = None


class JournalConference(msgspec.Struct, frozen=True, kw_only=True):
    """`ClusterKeys.journal_conferences`: a conference not ended, as its end would be
    recorded if lost, and who to tell."""

    notify: list[str]
    ended: dict[str, Any]
    # Its state (`signalling.core.conference_snapshot`), for the next authority to carry it
    # on; None: it is ended instead.
    snapshot: dict[str, Any] | None = None


class JournalMedia(msgspec.Struct, frozen=True, kw_only=True):
    """`ClusterKeys.journal_media`: where a conference's media is: its home node (its
    router) and, spread over the nodes with the cascade, each site's node. Never the
    cascade's key: the next authority draws a new one."""

    home: str
    sites: dict[str, str] = {}


class JournalWatch(msgspec.Struct, frozen=True, kw_only=True):
    """`ClusterKeys.journal_watches`: an open watch, as its stops would be recorded if lost,
    and who to tell."""

    officer: str
    watchers: list[str]
    stopped: list[dict[str, Any]]


class JournalSession(msgspec.Struct, frozen=True, kw_only=True):
    """`ClusterKeys.journal_sessions`: a session, as its sign-out would be recorded if lost."""

    session_id: str
    sign_out: dict[str, Any]


class JournalEmergency(msgspec.Struct, frozen=True, kw_only=True):
    """`ClusterKeys.journal_emergencies`: an officer's raised emergency (the field is the
    officer), carried on by the next authority (`core.alarms.EmergencyFacts`)."""

    court: str
    session_id: str
    raised_at: float
    note: str | None
    taken_by: str | None
    escalated_to: str | None
    repeats: int
    repeating: bool


def journal_emergency(facts: EmergencyFacts) -> JournalEmergency:
    return JournalEmergency(
        court=facts.court,
        session_id=facts.session_id,
        raised_at=facts.raised_at,
        note=facts.note,
        taken_by=facts.taken_by,
        escalated_to=facts.escalated_to,
        repeats=facts.repeats,
        repeating=facts.repeating,
    )


def emergency_of(officer: str, entry: JournalEmergency) -> EmergencyFacts:
    return EmergencyFacts(
        officer=officer,
        court=entry.court,
        session_id=entry.session_id,
        raised_at=entry.raised_at,
        note=entry.note,
        taken_by=entry.taken_by,
        escalated_to=entry.escalated_to,
        repeats=entry.repeats,
        repeating=entry.repeating,
    )


_encoder = msgspec.msgpack.Encoder()


def encode(
    message: InboxMessage
    | NodeMessage
    | Presence
    | JournalCall
    | JournalConference
    | JournalMedia
    | JournalSession
    | JournalInstruction
    | JournalWatch
    | JournalEmergency,
) -> bytes:
    return _encoder.encode(message)


class JournalRecipient(msgspec.Struct, frozen=True, kw_only=True):
    officer: p.UserInfo
    state: p.RecipientState
    sent_at: float
    delivered_at: float | None = None
    read_at: float | None = None


class JournalInstruction(msgspec.Struct, frozen=True, kw_only=True):
    """`ClusterKeys.journal_instructions`: an instruction still valid, with who it was sent
    to and their receipts (times in seconds of the authorities' clock), carried on by the
    next authority."""

    by: p.UserInfo
    court: str
    officer: str | None
    text: str
    sent_at: float
    expires_at: float
    recipients: list[JournalRecipient]


def journal_instruction(instruction: Instruction) -> JournalInstruction:
    return JournalInstruction(
        by=instruction.by,
        court=instruction.court,
        officer=instruction.officer,
        text=instruction.text,
        sent_at=instruction.sent_at,
        expires_at=instruction.expires_at,
        recipients=[
            JournalRecipient(
                officer=r.officer,
                state=r.state,
                sent_at=r.sent_at,
                delivered_at=r.delivered_at,
                read_at=r.read_at,
            )
            for r in instruction.recipients.values()
        ],
    )


def instruction_of(instruction_id: str, entry: JournalInstruction) -> Instruction:
    return Instruction(
        instruction_id=instruction_id,
        by=entry.by,
        court=entry.court,
        officer=entry.officer,
        text=entry.text,
        sent_at=entry.sent_at,
        expires_at=entry.expires_at,
        recipients={
            r.officer.id: Recipient(
                officer=r.officer,
                sent_at=r.sent_at,
                state=r.state,
                delivered_at=r.delivered_at,
                read_at=r.read_at,
            )
            for r in entry.recipients
        },
    )


# Each raises msgspec.DecodeError / ValidationError on a payload no node of ours wrote.
decode_inbox: Final = msgspec.msgpack.Decoder(InboxMessage).decode
decode_node: Final = msgspec.msgpack.Decoder(NodeMessage).decode
decode_presence: Final = msgspec.msgpack.Decoder(Presence).decode
decode_journal_call: Final = msgspec.msgpack.Decoder(JournalCall).decode
decode_journal_conference: Final = msgspec.msgpack.Decoder(JournalConference).decode
decode_journal_media: Final = msgspec.msgpack.Decoder(JournalMedia).decode
decode_journal_session: Final = msgspec.msgpack.Decoder(JournalSession).decode
decode_journal_instruction: Final = msgspec.msgpack.Decoder(JournalInstruction).decode
decode_journal_watch: Final = msgspec.msgpack.Decoder(JournalWatch).decode
decode_journal_emergency: Final = msgspec.msgpack.Decoder(JournalEmergency).decode


__all__ = [
    "CascadeChanged",
    "ClientMessage",
    "Closed",
    "Connect",
    "ConnectionInfo",
    "Deliver",
    "Disconnect",
    "InboxMessage",
    "JournalCall",
    "JournalConference",
    "JournalEmergency",
    "JournalInstruction",
    "JournalRecipient",
    "JournalSession",
    "JournalWatch",
    "NodeMessage",
    "Presence",
    "Report",
    "ResyncRequest",
    "RoomChanged",
    "Signal",
    "decode_inbox",
    "decode_journal_call",
    "decode_journal_conference",
    "decode_journal_emergency",
    "decode_journal_instruction",
    "decode_journal_media",
    "decode_journal_session",
    "decode_journal_watch",
    "decode_node",
    "decode_presence",
    "emergency_of",
    "encode",
    "instruction_of",
    "journal_emergency",
    "journal_instruction",
]
