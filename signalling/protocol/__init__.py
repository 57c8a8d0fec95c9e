"""The wire protocol, declared once: every client and server message as a msgspec Struct.

Browsers send JSON text frames, native clients msgpack binary frames; both decode into the
same Structs, so a constraint written here (a length bound, a range) holds for both encodings.
Structs are tagged by their `type` field and reject unknown fields: a typo in a client is an
error the client sees, not a field silently dropped. `docs/protocol.md` documents each message.

The package holds them by what they are about: `base` (what every message shares), `calls`
(sessions, presence and calls), `media` (media negotiation), `conferences` (provincial video
conferences), `instructions` (text instructions to officers, with receipts); this module
gathers them into the two unions the codec decodes and encodes, and re-exports every name
(`from signalling import protocol as p; p.Accept`).

Bump PROTOCOL_VERSION on any incompatible change; clients state the version they speak in the
`v` query parameter of the WebSocket URL.
"""

from __future__ import annotations

from signalling.protocol.base import (
    PROTOCOL_VERSION,
    AccuracyM,
    Ack,
    CallId,
    Candidate,
    CaseNumber,
    CourtCode,
    EpochMs,
    Error,
    Id,
    Latitude,
    Longitude,
    MLineIndex,
    Note,
    RttMs,
    Sdp,
    SdpMid,
    UserId,
    UserInfo,
    epoch_ms,
)
from signalling.protocol.callflow import (
    CALLFLOW_CLIENT_MESSAGES,
    AcceptTransfer,
    AvailabilityChoice,
    CallRequeued,
    CameraChanged,
    CancelTransfer,
    DeclineTransfer,
    EmergencyAlarm,
    GetOperators,
    GetQueue,
    InviteSupervisor,
    OperatorEntry,
    Operators,
    OperatorState,
    OperatorStatus,
    Queue,
    QueueEntry,
    QueueUpdate,
    SendBack,
    SetAvailability,
    SetCamera,
    SupervisorInvited,
    TransferEnded,
    TransferOffered,
    TransferOutcome,
)
from signalling.protocol.calls import (
    Accept,
    AcknowledgeEmergency,
    CallAnswered,
    CallCenter,
    CallEnded,
    CallInfo,
    CallOfficer,
    CallPlaced,
    CallQueued,
    CallRinging,
    CallRingingCenter,
    CallTaken,
    CallTransferred,
    Cancel,
    ClearEmergency,
    Decline,
    Direction,
    Emergency,
    EmergencyAcknowledged,
    EmergencyCleared,
    EmergencyNote,
    EmergencyNoted,
    EmergencyOutcome,
    EndReason,
    GeoPosition,
    GetRoster,
    Hangup,
    Heartbeat,
    HeartbeatAck,
    JoinCall,
    LeaveCall,
    ParticipantJoined,
    ParticipantLeft,
    PartyAway,
    PartyBack,
    Position,
    PresenceStatus,
    RingStopped,
    RingStopReason,
    Roster,
    RosterEntry,
    RosterUpdate,
    Transfer,
    Welcome,
)
from signalling.protocol.conferences import (
    AudioMode,
    ConferenceChanges,
    ConferenceCreated,
    ConferenceEnded,
    ConferenceEndReason,
    ConferenceId,
    ConferenceInfo,
    ConferenceInvitation,
    ConferenceJoined,
    ConferenceKind,
    ConferenceLeft,
    ConferenceRole,
    Conferences,
    ConferenceState,
    ConferenceStatus,
    ConferenceUpdate,
    ConferenceWaiting,
    CreateConference,
    DeclineConference,
    EndConference,
    FeedEnded,
    FeedEndReason,
    FeedInfo,
    FloorInfo,
    FloorMode,
    FloorStatus,
    GrantFloor,
    HandOver,
    InvitationInfo,
    InvitationState,
    InvitationStopped,
    InvitationStopReason,
    InvitedBelow,
    InvitedCourts,
    InvitedUsers,
    InviteToConference,
    JoinConference,
    LeaveConference,
    LeftReason,
    ListConferences,
    LockConference,
    LowerHand,
    MaxSpeakers,
    MuteAll,
    NameModerator,
    RaiseHand,
    RecordConference,
    ReleaseFloor,
    RemoveModerator,
    RemoveSite,
    Revision,
    RevokeFloor,
    SetFloor,
    ShareCall,
    SiteFloorState,
    SiteInfo,
    SitesChanged,
    SiteStatus,
    Spotlight,
    StartConference,
    TalkSeconds,
    Title,
    UnmuteAll,
    UnshareCall,
    WithdrawInvitation,
)
from signalling.protocol.instructions import (
    MAX_INSTRUCTIONS_LISTED,
    Instruction,
    InstructionId,
    InstructionInfo,
    InstructionReceipt,
    Instructions,
    InstructionSent,
    InstructionText,
    InstructionUpdate,
    ListInstructions,
    ListLimit,
    ReceiptState,
    ReceiptUpdate,
    RecipientInfo,
    RecipientState,
    SendInstruction,
)
from signalling.protocol.media import (
    Answer,
    ConferenceMedia,
    ConferenceSpeaking,
    IceCandidate,
    MediaRestart,
    Offer,
    ServerAnswer,
    ServerIceCandidate,
    ServerOffer,
    Snapshot,
    SnapshotTaken,
)
from signalling.protocol.watches import (
    Unwatch,
    VideoPolicy,
    WallLayout,
    WallTiles,
    Watch,
    WatchClosed,
    WatchEnded,
    WatchEndReason,
    Watching,
    WatchOpened,
)

ClientMessage = (
    Heartbeat
    | Position
    | CallCenter
    | Emergency
    | CallOfficer
    | Accept
    | Decline
    | Cancel
    | Hangup
    | JoinCall
    | LeaveCall
    | Transfer
    | ClearEmergency
    | AcknowledgeEmergency
    | EmergencyNote
    | GetRoster
    | Offer
    | Answer
    | IceCandidate
    | Snapshot
    | CreateConference
    | ListConferences
    | StartConference
    | JoinConference
    | DeclineConference
    | LeaveConference
    | RaiseHand
    | LowerHand
    | ReleaseFloor
    | GrantFloor
    | RevokeFloor
    | MuteAll
    | UnmuteAll
    | Spotlight
    | RemoveSite
    | LockConference
    | RecordConference
    | SetFloor
    | NameModerator
    | RemoveModerator
    | InviteToConference
    | WithdrawInvitation
    | HandOver
    | EndConference
    | ShareCall
    | UnshareCall
    # Instructions (signalling.protocol.instructions).
    | SendInstruction
    | InstructionReceipt
    | ListInstructions
    | Watch
    | Unwatch
    | WallLayout
    # the call flow (signalling.protocol.callflow)
    | AcceptTransfer
    | DeclineTransfer
    | CancelTransfer
    | SetAvailability
    | GetOperators
    | SendBack
    | GetQueue
    | InviteSupervisor
    | SetCamera
)

MEDIA_MESSAGES = (Offer, Answer, IceCandidate, Snapshot)
MediaMessage = Offer | Answer | IceCandidate | Snapshot
CONFERENCE_MESSAGES = (
    CreateConference,
    ListConferences,
    StartConference,
    JoinConference,
    DeclineConference,
    LeaveConference,
    RaiseHand,
    LowerHand,
    ReleaseFloor,
    GrantFloor,
    RevokeFloor,
    MuteAll,
    UnmuteAll,
    Spotlight,
    RemoveSite,
    LockConference,
    RecordConference,
    SetFloor,
    NameModerator,
    RemoveModerator,
    InviteToConference,
    WithdrawInvitation,
    HandOver,
    EndConference,
    ShareCall,
    UnshareCall,
)
INSTRUCTION_MESSAGES = (SendInstruction, InstructionReceipt, ListInstructions)

ServerMessage = (
    Welcome
    | Ack
    | Error
    | HeartbeatAck
    | CallPlaced
    | Roster
    | RosterUpdate
    | CallRinging
    | CallQueued
    | CallRingingCenter
    | EmergencyCleared
    | EmergencyAcknowledged
    | EmergencyNoted
    | CallTaken
    | RingStopped
    | CallAnswered
    | CallEnded
    | ParticipantJoined
    | ParticipantLeft
    | CallTransferred
    | PartyAway
    | PartyBack
    | ServerOffer
    | ServerAnswer
    | ServerIceCandidate
    | SnapshotTaken
    | ConferenceMedia
    | ConferenceSpeaking
    | MediaRestart
    | ConferenceCreated
    | Conferences
    | ConferenceInvitation
    | InvitationStopped
    | ConferenceJoined
    | ConferenceUpdate
    | FloorStatus
    | SitesChanged
    | ConferenceWaiting
    | ConferenceLeft
    | FeedEnded
    | ConferenceEnded
    # Instructions (signalling.protocol.instructions).
    | InstructionSent
    | Instruction
    | InstructionUpdate
    | ReceiptUpdate
    | Instructions
    | Watching
    | WatchOpened
    | WatchClosed
    | WatchEnded
    | VideoPolicy
    # the call flow (signalling.protocol.callflow)
    | TransferOffered
    | TransferEnded
    | Operators
    | OperatorStatus
    | CallRequeued
    | EmergencyAlarm
    | Queue
    | QueueUpdate
    | SupervisorInvited
    | CameraChanged
)

__all__ = [
    "CALLFLOW_CLIENT_MESSAGES",
    "CONFERENCE_MESSAGES",
    "INSTRUCTION_MESSAGES",
    "MAX_INSTRUCTIONS_LISTED",
    "MEDIA_MESSAGES",
    "PROTOCOL_VERSION",
    "Accept",
    "AcceptTransfer",
    "AccuracyM",
    "Ack",
    "AcknowledgeEmergency",
    "Answer",
    "AudioMode",
    "AvailabilityChoice",
    "CallAnswered",
    "CallCenter",
    "CallEnded",
    "CallId",
    "CallInfo",
    "CallOfficer",
    "CallPlaced",
    "CallQueued",
    "CallRequeued",
    "CallRinging",
    "CallRingingCenter",
    "CallTaken",
    "CallTransferred",
    "CameraChanged",
    "Cancel",
    "CancelTransfer",
    "Candidate",
    "CaseNumber",
    "ClearEmergency",
    "ClientMessage",
    "ConferenceChanges",
    "ConferenceCreated",
    "ConferenceEndReason",
    "ConferenceEnded",
    "ConferenceId",
    "ConferenceInfo",
    "ConferenceInvitation",
    "ConferenceJoined",
    "ConferenceKind",
    "ConferenceLeft",
    "ConferenceMedia",
    "ConferenceRole",
    "ConferenceSpeaking",
    "ConferenceState",
    "ConferenceStatus",
    "ConferenceUpdate",
    "ConferenceWaiting",
    "Conferences",
    "CourtCode",
    "CreateConference",
    "Decline",
    "DeclineConference",
    "DeclineTransfer",
    "Direction",
    "Emergency",
    "EmergencyAcknowledged",
    "EmergencyAlarm",
    "EmergencyCleared",
    "EmergencyNote",
    "EmergencyNoted",
    "EmergencyOutcome",
    "EndConference",
    "EndReason",
    "EpochMs",
    "Error",
    "FeedEndReason",
    "FeedEnded",
    "FeedInfo",
    "FloorInfo",
    "FloorMode",
    "FloorStatus",
    "GeoPosition",
    "GetOperators",
    "GetQueue",
    "GetRoster",
    "GrantFloor",
    "HandOver",
    "Hangup",
    "Heartbeat",
    "HeartbeatAck",
    "IceCandidate",
    "Id",
    "Instruction",
    "InstructionId",
    "InstructionInfo",
    "InstructionReceipt",
    "InstructionSent",
    "InstructionText",
    "InstructionUpdate",
    "Instructions",
    "InvitationInfo",
    "InvitationState",
    "InvitationStopReason",
    "InvitationStopped",
    "InviteSupervisor",
    "InviteToConference",
    "InvitedBelow",
    "InvitedCourts",
    "InvitedUsers",
    "JoinCall",
    "JoinConference",
    "Latitude",
    "LeaveCall",
    "LeaveConference",
    "LeftReason",
    "ListConferences",
    "ListInstructions",
    "ListLimit",
    "LockConference",
    "Longitude",
    "LowerHand",
    "MLineIndex",
    "MaxSpeakers",
    "MediaMessage",
    "MediaRestart",
    "MuteAll",
    "NameModerator",
    "Note",
    "Offer",
    "OperatorEntry",
    "OperatorState",
    "OperatorStatus",
    "Operators",
    "ParticipantJoined",
    "ParticipantLeft",
    "PartyAway",
    "PartyBack",
    "Position",
    "PresenceStatus",
    "Queue",
    "QueueEntry",
    "QueueUpdate",
    "RaiseHand",
    "ReceiptState",
    "ReceiptUpdate",
    "RecipientInfo",
    "RecipientState",
    "RecordConference",
    "ReleaseFloor",
    "RemoveModerator",
    "RemoveSite",
    "Revision",
    "RevokeFloor",
    "RingStopReason",
    "RingStopped",
    "Roster",
    "RosterEntry",
    "RosterUpdate",
    "RttMs",
    "Sdp",
    "SdpMid",
    "SendBack",
    "SendInstruction",
    "ServerAnswer",
    "ServerIceCandidate",
    "ServerMessage",
    "ServerOffer",
    "SetAvailability",
    "SetCamera",
    "SetFloor",
    "ShareCall",
    "SiteFloorState",
    "SiteInfo",
    "SiteStatus",
    "SitesChanged",
    "Snapshot",
    "SnapshotTaken",
    "Spotlight",
    "StartConference",
    "SupervisorInvited",
    "TalkSeconds",
    "Title",
    "Transfer",
    "TransferEnded",
    "TransferOffered",
    "TransferOutcome",
    "UnmuteAll",
    "UnshareCall",
    "Unwatch",
    "UserId",
    "UserInfo",
    "VideoPolicy",
    "WallLayout",
    "WallTiles",
    "Watch",
    "WatchClosed",
    "WatchEndReason",
    "WatchEnded",
    "WatchOpened",
    "Watching",
    "Welcome",
    "WithdrawInvitation",
    "epoch_ms",
]
