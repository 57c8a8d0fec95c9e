"""Media negotiation over the hub: a member's offer, answer, candidates and snapshots, and
the server's (docs/protocol.md, *Media negotiation*)."""

from __future__ import annotations

from signalling.protocol.base import (
    CallId,
    Candidate,
    MLineIndex,
    Sdp,
    SdpMid,
    UserId,
    _ClientMessage,
    _ServerMessage,
)

# --- client to server --------------------------------------------------------------------


class Offer(_ClientMessage, tag="offer", frozen=True):
    call_id: CallId
    sdp: Sdp


class Answer(_ClientMessage, tag="answer", frozen=True):
    call_id: CallId
    sdp: Sdp


class IceCandidate(_ClientMessage, tag="ice_candidate", frozen=True):
    call_id: CallId
    # Empty candidate: end of candidates.
    candidate: Candidate
    sdp_mid: SdpMid | None = None
    sdp_mline_index: MLineIndex | None = None


class Snapshot(_ClientMessage, tag="snapshot", frozen=True):
    call_id: CallId
    # Whose video; absent: the call's officer.
    of: UserId | None = None


# --- server to client --------------------------------------------------------------------


class ServerOffer(_ServerMessage, tag="offer", frozen=True):
    call_id: str
    sdp: str


class ServerAnswer(_ServerMessage, tag="answer", frozen=True):
    ref: str
    call_id: str
    sdp: str


class ServerIceCandidate(_ServerMessage, tag="ice_candidate", frozen=True):
    call_id: str
    candidate: str
    sdp_mid: str | None
    sdp_mline_index: int | None


class SnapshotTaken(_ServerMessage, tag="snapshot_taken", frozen=True):
    ref: str
    call_id: str
    # Whose video the still is of.
    of: str
    evidence_id: str
    sha256: str
    # Server time the frame was received, epoch milliseconds.
    taken_at: float


class ConferenceMedia(_ServerMessage, tag="conference_media", frozen=True):
    """Whose media each of your conference slots carries now (stream ids `audio-<i>`,
    `spotlight`, `grid-<i>`); null: the slot is idle. Sent whenever one of yours changes."""

    conference_id: str
    audio: list[str | None]
    spotlight: str | None
    grid: list[str | None]


class ConferenceSpeaking(_ServerMessage, tag="conference_speaking", frozen=True):
    """To a conference's moderators: who is speaking now, by the audio levels their packets
    carry (sites without the floor too: they are not heard, but the moderator sees them)."""

    conference_id: str
    speaking: list[str]


class MediaRestart(_ServerMessage, tag="media_restart", frozen=True):
    """The call's media moved to another media worker (the one it was on died): make a new
    peer connection and offer again; everything published before is gone."""

    call_id: str
