"""Provincial video conferences: hosting, invitations, sites, the floor and the moderator's
actions (docs/protocol.md, *Conferences*; the floor's rules in docs/floor.md).

A conference is hosted by a court and moderated by its host (the chair) and the co-moderators
the chair names; it invites courts (whose consoles ring) and users (an officer's phone rings).
Sites join receive-only and ask for the floor by raising a hand; the moderator grants it,
revokes it, mutes all, spotlights a site, removes one, locks the conference and ends it.
Moderator messages may carry the `revision` of the state they were decided on: one decided on
a state that has changed since is refused `conflict`, so of two moderators acting at once one
wins and the other is told.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import UNSET, UnsetType

from identity.names import NO_CONTROL_PATTERN
from signalling.protocol.base import (
    CallId,
    CourtCode,
    EpochMs,
    UserId,
    UserInfo,
    _ClientMessage,
    _ServerMessage,
)

ConferenceId = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=NO_CONTROL_PATTERN)]
Title = Annotated[str, msgspec.Meta(min_length=1, max_length=128, pattern=NO_CONTROL_PATTERN)]
MaxSpeakers = Annotated[int, msgspec.Meta(ge=1, le=16)]
TalkSeconds = Annotated[float, msgspec.Meta(gt=0.0, le=3600.0)]
Revision = Annotated[int, msgspec.Meta(ge=0)]
# A province has about 180 courts; 500 leaves room and still bounds the work of one message.
InvitedCourts = Annotated[tuple[CourtCode, ...], msgspec.Meta(max_length=500)]
InvitedBelow = Annotated[tuple[CourtCode, ...], msgspec.Meta(max_length=50)]
InvitedUsers = Annotated[tuple[UserId, ...], msgspec.Meta(max_length=500)]

ConferenceStatus = Literal["scheduled", "running", "ended"]
# "meeting": a video dispatch meeting (执行会商); "action": a concentrated enforcement action
# (集中执行行动) followed live, its officers' phones among the sites, witnesses watching all.
ConferenceKind = Literal["meeting", "action"]
FloorMode = Literal["moderated", "open"]
# "floor": only the floor holders are heard (the moderator always); "open": every site.
AudioMode = Literal["floor", "open"]
SiteFloorState = Literal["not_permitted", "queued", "permitted", "pending_revoke"]
ConferenceRole = Literal["moderator", "site", "witness"]
SiteStatus = Literal["joined", "away"]
InvitationState = Literal["ringing", "joined", "declined", "no_answer", "withdrawn"]
InvitationStopReason = Literal["answered", "expired", "ended", "withdrawn"]
ConferenceEndReason = Literal["ended", "no_moderator", "shutdown", "node_lost"]
# node_lost: its place was kept after the authority died, and it did not come back in time.
LeftReason = Literal["removed", "banned", "node_lost"]


# --- client to server --------------------------------------------------------------------


class CreateConference(_ClientMessage, tag="create_conference", frozen=True):
    """Host a conference now, or at `starts_at`."""

    title: Title
    # The hosting court; absent: your own. It must be in your scope.
    court: CourtCode | None = None
    invite_courts: InvitedCourts = ()
    # Every court under each of these, the court itself included ("every court under X").
    invite_below: InvitedBelow = ()
    invite_users: InvitedUsers = ()
    # Absent: it starts now.
    starts_at: EpochMs | None = None
    max_speakers: MaxSpeakers = 1
    max_talk_s: TalkSeconds | None = None
    kind: ConferenceKind = "meeting"


class ListConferences(_ClientMessage, tag="list_conferences", frozen=True):
    """The conferences you host, moderate, are invited to, or (supervisors, admins) that a
    court of your scope hosts; not the ended ones."""


class StartConference(_ClientMessage, tag="start_conference", frozen=True):
    """A moderator starts a scheduled conference before its time."""

    conference_id: ConferenceId


class JoinConference(_ClientMessage, tag="join_conference", frozen=True):
    """Join (or, already joined, be sent the state again): receive-only until given the floor."""

    conference_id: ConferenceId


class DeclineConference(_ClientMessage, tag="decline_conference", frozen=True):
    conference_id: ConferenceId


class LeaveConference(_ClientMessage, tag="leave_conference", frozen=True):
    conference_id: ConferenceId


class RaiseHand(_ClientMessage, tag="raise_hand", frozen=True):
    conference_id: ConferenceId


class LowerHand(_ClientMessage, tag="lower_hand", frozen=True):
    conference_id: ConferenceId


class ReleaseFloor(_ClientMessage, tag="release_floor", frozen=True):
    conference_id: ConferenceId


class GrantFloor(_ClientMessage, tag="grant_floor", frozen=True):
    """The moderator gives `site` the floor; to a site that did not ask, this is a roll call."""

    conference_id: ConferenceId
    site: UserId
    revision: Revision | None = None


class RevokeFloor(_ClientMessage, tag="revoke_floor", frozen=True):
    """The moderator takes the floor back, after the revoke grace."""

    conference_id: ConferenceId
    site: UserId
    revision: Revision | None = None


class MuteAll(_ClientMessage, tag="mute_all", frozen=True):
    """Every floor holder loses the floor at once and only holders are heard from now on."""

    conference_id: ConferenceId
    revision: Revision | None = None


class UnmuteAll(_ClientMessage, tag="unmute_all", frozen=True):
    """Open discussion: every site is heard."""

    conference_id: ConferenceId
    revision: Revision | None = None


class Spotlight(_ClientMessage, tag="spotlight", frozen=True):
    """Every site sees `site`'s video; absent: the floor holder's (the default)."""

    conference_id: ConferenceId
    site: UserId | None = None
    revision: Revision | None = None


class RemoveSite(_ClientMessage, tag="remove_site", frozen=True):
    conference_id: ConferenceId
    site: UserId
    # Also refuse it when it tries to join again.
    ban: bool = False
    revision: Revision | None = None


class LockConference(_ClientMessage, tag="lock_conference", frozen=True):
    """A locked conference takes no new joins (sites already in may come back)."""

    conference_id: ConferenceId
    locked: bool
    revision: Revision | None = None


class RecordConference(_ClientMessage, tag="record_conference", frozen=True):
    """Start (`on`) or stop recording what the conference hears and sees, as evidence."""

    conference_id: ConferenceId
    on: bool
    revision: Revision | None = None


class SetFloor(_ClientMessage, tag="set_floor", frozen=True):
    conference_id: ConferenceId
    max_speakers: MaxSpeakers
    max_talk_s: TalkSeconds | None = None
    mode: FloorMode = "moderated"
    revision: Revision | None = None


class NameModerator(_ClientMessage, tag="name_moderator", frozen=True):
    """The chair names a co-moderator, who may then act as a moderator too."""

    conference_id: ConferenceId
    user: UserId
    revision: Revision | None = None


class RemoveModerator(_ClientMessage, tag="remove_moderator", frozen=True):
    """The chair takes a co-moderator's part back: they stay in the conference as a site."""

    conference_id: ConferenceId
    user: UserId
    revision: Revision | None = None


class InviteToConference(_ClientMessage, tag="invite_to_conference", frozen=True):
    """A moderator invites a signed-in user (a console, an officer's phone) to the running
    conference: it rings at them now, as the invitations sent when it started did."""

    conference_id: ConferenceId
    user: UserId
    revision: Revision | None = None


class WithdrawInvitation(_ClientMessage, tag="withdraw_invitation", frozen=True):
    """A moderator withdraws a user's invitation that was not answered by joining: it stops
    ringing (`invitation_stopped`, "withdrawn") and the user is no longer invited."""

    conference_id: ConferenceId
    user: UserId
    revision: Revision | None = None


class HandOver(_ClientMessage, tag="hand_over", frozen=True):
    """The chair hands the chair to a co-moderator."""

    conference_id: ConferenceId
    to: UserId
    revision: Revision | None = None


class EndConference(_ClientMessage, tag="end_conference", frozen=True):
    conference_id: ConferenceId
    revision: Revision | None = None


class ShareCall(_ClientMessage, tag="share_call", frozen=True):
    """Show a live call's officer (an emergency too) to the conference: their video in the
    spotlight, their audio heard while they are in it."""

    conference_id: ConferenceId
    call_id: CallId
    revision: Revision | None = None


class UnshareCall(_ClientMessage, tag="unshare_call", frozen=True):
    conference_id: ConferenceId
    call_id: CallId
    revision: Revision | None = None


# --- shared shapes -----------------------------------------------------------------------


class ConferenceInfo(msgspec.Struct, frozen=True):
    """A conference as a list shows it."""

    conference_id: str
    title: str
    court: str
    host: UserInfo
    status: ConferenceStatus
    starts_at: float  # server time (ms)
    created_at: float  # server time (ms)
    invited_courts: list[str]
    invited_users: list[str]
    moderators: list[str]
    chair: str | None
    sites: int
    locked: bool
    kind: ConferenceKind


class FloorInfo(msgspec.Struct, frozen=True):
    """A site's own floor."""

    state: SiteFloorState
    # 1-based place among the raised hands while queued.
    position: int | None
    # Server time (ms) the floor will be taken: the talk-time limit, or the end of a revoke's
    # grace; null while unlimited or not holding it.
    until: float | None
    # Given the floor by the moderator without asking (a roll call).
    called: bool


class ConferenceState(msgspec.Struct, frozen=True):
    """What every site of a running conference sees; sent whole whenever it changes."""

    conference_id: str
    revision: int
    status: ConferenceStatus
    chair: UserInfo | None
    holders: list[UserInfo]
    # Whose video every site sees: the one spotlighted, else the first floor holder.
    spotlight: UserInfo | None
    audio: AudioMode
    locked: bool
    # Being recorded as evidence now (every site is to know).
    recording: bool
    # Live calls shown to the conference, in the order shared.
    feeds: list[FeedInfo]
    max_speakers: int
    max_talk_s: float | None
    mode: FloorMode
    sites: int


class FeedInfo(msgspec.Struct, frozen=True):
    """A live call shown to the conference (`share_call`)."""

    call_id: str
    officer: UserInfo
    emergency: bool
    by: UserInfo


class SiteInfo(msgspec.Struct, frozen=True):
    """A site as its moderators see it."""

    user: UserInfo
    role: ConferenceRole
    status: SiteStatus
    floor: FloorInfo
    joined_at: float  # server time (ms)


class InvitationInfo(msgspec.Struct, frozen=True):
    """One invitation and its answer: a court's (any console of it may answer) or a user's."""

    invitee: str
    kind: Literal["court", "user"]
    state: InvitationState
    by: UserInfo | None


# --- server to client --------------------------------------------------------------------


class ConferenceCreated(_ServerMessage, tag="conference_created", frozen=True):
    ref: str
    conference: ConferenceInfo


class Conferences(_ServerMessage, tag="conferences", frozen=True):
    ref: str
    conferences: list[ConferenceInfo]


class ConferenceInvitation(_ServerMessage, tag="conference_invitation", frozen=True):
    """Rings a console of an invited court, or an invited user: answer with
    `join_conference` or `decline_conference`."""

    conference: ConferenceInfo


class InvitationStopped(_ServerMessage, tag="invitation_stopped", frozen=True):
    conference_id: str
    reason: InvitationStopReason
    # Who answered for your court ("answered"); the moderator who withdrew it ("withdrawn").
    by: UserInfo | None = None


class ConferenceJoined(_ServerMessage, tag="conference_joined", frozen=True):
    ref: str
    conference: ConferenceInfo
    state: ConferenceState
    role: ConferenceRole
    floor: FloorInfo
    # Moderators only (empty for others): every site, and every invitation with its answer.
    sites: list[SiteInfo]
    invitations: list[InvitationInfo]


class ConferenceChanges(msgspec.Struct, frozen=True):
    """The fields of `ConferenceState` that changed, each as it is now; those absent did not
    change (absent is not null: a `chair` or `spotlight` that became null is sent as null)."""

    status: ConferenceStatus | UnsetType = UNSET
    chair: UserInfo | UnsetType | None = UNSET
    holders: list[UserInfo] | UnsetType = UNSET
    spotlight: UserInfo | UnsetType | None = UNSET
    audio: AudioMode | UnsetType = UNSET
    locked: bool | UnsetType = UNSET
    recording: bool | UnsetType = UNSET
    feeds: list[FeedInfo] | UnsetType = UNSET
    max_speakers: int | UnsetType = UNSET
    max_talk_s: float | UnsetType | None = UNSET
    mode: FloorMode | UnsetType = UNSET
    sites: int | UnsetType = UNSET


class ConferenceUpdate(_ServerMessage, tag="conference_update", frozen=True):
    """The conference's state changed: what changed since the last `conference_update` (the
    first: since the start), never the sites."""

    conference_id: str
    revision: int
    changes: ConferenceChanges


class FloorStatus(_ServerMessage, tag="floor_status", frozen=True):
    """Your own floor changed (granted, queued at a new place, revoking, taken, released)."""

    conference_id: str
    floor: FloorInfo
    # Why the floor was taken ("moderator", "talk_time", "mute_all", "superseded", ...).
    reason: str | None = None


class SitesChanged(_ServerMessage, tag="sites_changed", frozen=True):
    """Moderators: what changed in their view of the conference since the last one, batched
    (at most one every `conferences.moderator_delta_s`): the sites that joined or changed
    (each as it is now), those that left, and the invitations whose answer changed."""

    conference_id: str
    revision: int
    sites: list[SiteInfo]
    left: list[str]
    invitations: list[InvitationInfo] = msgspec.field(default_factory=list)
    # The raised hands in order (user ids), when places moved; null: unchanged. Sites whose
    # only change is their place are not in `sites`: their place is their index here + 1.
    queue: list[str] | None = None


class ConferenceWaiting(_ServerMessage, tag="conference_waiting", frozen=True):
    """Your join is queued: sites are let into the media at a paced rate
    (`conferences.joins_per_s`); `conference_joined` (with the same `ref`) follows in turn."""

    ref: str
    conference_id: str
    # 1-based place among the sites waiting ahead of the same media worker.
    place: int
    # Estimated seconds until you are let in.
    wait_s: float


class ConferenceLeft(_ServerMessage, tag="conference_left", frozen=True):
    """You were removed from the conference (and, "banned", may not join again)."""

    conference_id: str
    reason: LeftReason
    by: str | None


FeedEndReason = Literal["transferred", "sent_back"]


class FeedEnded(_ServerMessage, tag="feed_ended", frozen=True):
    """A call its operator showed to a conference is no longer shown, because that operator
    left the call (handed it on, or sent it back to the queue): to the conference's
    moderators, to the operator who showed it, and to the call's new operator."""

    conference_id: str
    title: str
    call_id: str
    officer: UserInfo
    reason: FeedEndReason
    # The operator who showed the call and left it.
    by: UserInfo
    # The call's operator now (`transferred`), else null.
    to: UserInfo | None


class ConferenceEnded(_ServerMessage, tag="conference_ended", frozen=True):
    conference_id: str
    reason: ConferenceEndReason
    by: str | None = None
