"""One conference's record: its life as a table, its sites, its invitations and its floor.

Theory of operation
-------------------
A conference is created SCHEDULED (for a set time) and STARTs then, or is created and started
at once. Once RUNNING, invited courts' consoles and invited users are rung; sites join and
leave, the moderators act on the floor and the room. END (by a moderator, when no moderator
came back within the grace, or when the server stops) makes it ENDED, which is final. The
table holds only those state changes and the timers they start or stop; everything that
happens to a running conference without changing its state (joins, floor, spotlight, lock)
is checked against the state by `signalling.core.conferences` and `moderation` first. A
missing pair raises `IllegalTransition`: our bug, never the client's.

Every change a site or a moderator can see raises `revision`, which moderators quote so that
of two acting at once on the same state one wins and the other is told `conflict`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final, Literal

from signalling import protocol as p
from signalling.core.call import IllegalTransition
from signalling.core.floor import Floor, SiteFloor
from signalling.errors import Conflict, Forbidden, InvalidState, NotFound


class ConferenceStatus(StrEnum):
    SCHEDULED = "scheduled"
    RUNNING = "running"
    ENDED = "ended"


class ConferenceEvent(StrEnum):
    START = "start"
    END = "end"


class ConferenceEffect(StrEnum):
    """What a transition asks of the conferences sub-core, in the order listed."""

    STOP_START_TIMER = "stop_start_timer"  # a scheduled start that will not come
    RING_INVITATIONS = "ring_invitations"
    STOP_INVITATIONS = "stop_invitations"  # ringing stops; timers of the floor and the chair too
    STOP_TIMERS = "stop_timers"


_S, _R, _E = ConferenceStatus.SCHEDULED, ConferenceStatus.RUNNING, ConferenceStatus.ENDED

TRANSITIONS: Final[
    dict[
        tuple[ConferenceStatus, ConferenceEvent],
        tuple[ConferenceStatus, tuple[ConferenceEffect, ...]],
    ]
] = {
    (_S, ConferenceEvent.START): (
        _R,
        (ConferenceEffect.STOP_START_TIMER, ConferenceEffect.RING_INVITATIONS),
    ),
    (_S, ConferenceEvent.END): (_E, (ConferenceEffect.STOP_START_TIMER,)),
    (_R, ConferenceEvent.END): (
        _E,
        (ConferenceEffect.STOP_INVITATIONS, ConferenceEffect.STOP_TIMERS),
    ),
}

Role = Literal["moderator", "site", "witness"]


@dataclass
class Site:
    """A user joined to the conference: a court's console, an officer's phone, a moderator or
    a witness (who only watches)."""

    user: str
    court: str
    role: Role
    joined_at: float
    away: bool = False
    # Given the floor without asking (a roll call), until it is taken back.
    called: bool = False


@dataclass
class Invitation:
    """A court's invitation (any of its consoles may answer for it) or a user's."""

    invitee: str
    kind: Literal["court", "user"]
    state: Literal["ringing", "joined", "declined", "no_answer", "withdrawn"] = "ringing"
    by: str | None = None
    # Users it rings at now.
    ringing: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class Feed:
    """A live call shown to the conference: its officer's media, shared `by` someone."""

    call_id: str
    officer: str
    emergency: bool
    by: str


@dataclass
class Conference:
    conference_id: str
    title: str
    court: str
    host: str
    created_at: float
    starts_at: float
    floor: Floor
    invited_courts: tuple[str, ...] = ()
    invited_users: tuple[str, ...] = ()
    kind: Literal["meeting", "action"] = "meeting"
    status: ConferenceStatus = ConferenceStatus.SCHEDULED
    # The host first, then the co-moderators in the order named; `chair` is the one leading.
    moderators: list[str] = field(default_factory=list)
    chair: str | None = None
    sites: dict[str, Site] = field(default_factory=dict)
    invitations: dict[str, Invitation] = field(default_factory=dict)
    banned: set[str] = field(default_factory=set)
    locked: bool = False
    # Recording what it hears and sees, as evidence (a moderator's `record_conference`).
    recording: bool = False
    # Live calls shown to it, by call id, in the order shared.
    feeds: dict[str, Feed] = field(default_factory=dict)
    audio: Literal["floor", "open"] = "floor"
    spotlight: str | None = None
    # Holders being revoked (in their grace) -> the moderator who revoked them.
    revoked_by: dict[str, str] = field(default_factory=dict)
    revision: int = 0
    history: list[tuple[float, ConferenceEvent, ConferenceStatus]] = field(default_factory=list)

    def apply(self, event: ConferenceEvent, now: float) -> tuple[ConferenceEffect, ...]:
        """Move along the table; unchanged if it raises."""
        try:
            new, effects = TRANSITIONS[(self.status, event)]
        except KeyError:
            raise IllegalTransition(
                f"conference cannot {event.value} while {self.status.value}"
            ) from None
        self.status = new
        self.history.append((now, event, new))
        return effects

    def changed(self) -> None:
        """What every site sees changed: the floor holders, the spotlight, the audio, the
        lock, the floor's limits, the chair, the status. (Joins, hands and places do not
        count: two moderators acting at once on the same state conflict, not a moderator and
        a site raising a hand.)"""
        self.revision += 1

    def members(self) -> tuple[str, ...]:
        """Everyone joined, witnesses included."""
        return tuple(self.sites)

    def moderators_here(self) -> tuple[str, ...]:
        return tuple(u for u in self.moderators if u in self.sites)

    def feed_of(self, user: str) -> Feed | None:
        """The feed showing `user` (an officer in a shared call), if any."""
        return next((f for f in self.feeds.values() if f.officer == user), None)

    def shown_spotlight(self) -> str | None:
        """Whose video every site sees: the one spotlighted, else the first floor holder."""
        if self.spotlight is not None:
            return self.spotlight
        holders = self.floor.holders()
        return holders[0] if holders else None


# ---- who may act on it ---------------------------------------------------------------------


def moderated(
    conf: Conference, user: str, revision: int | None, *, chair: bool = False
) -> Conference:
    """`conf`, running, if `user` moderates (or chairs) it and `revision` (if quoted) is its
    own: a moderator's decision on a state that has changed since is refused `conflict`."""
    if user not in conf.moderators:
        raise Forbidden("only a moderator may do this")
    if chair and conf.chair != user:
        raise Forbidden("only the chair may do this")
    if conf.status is not ConferenceStatus.RUNNING:
        raise InvalidState(f"conference is {conf.status.value}")
    check_revision(conf, revision)
    return conf


def check_revision(conf: Conference, revision: int | None) -> None:
    if revision is not None and revision != conf.revision:
        raise Conflict(
            f"the conference changed since revision {revision} (now {conf.revision})",
            field="revision",
        )


def target(
    conf: Conference,
    user: str,
    *,
    field: str = "site",
    witness_ok: bool = False,
    moderator_ok: bool = False,
) -> Site:
    """The site `user` of `conf`, that a moderator acts on."""
    site = conf.sites.get(user)
    if site is None:
        raise NotFound("no such site in this conference", field=field)
    if site.role == "witness" and not witness_ok:
        raise Forbidden("witnesses watch; they do not speak", field=field)
    if site.role == "moderator" and not moderator_ok:
        raise InvalidState("moderators are always heard", field=field)
    return site


# ---- how a conference is shown ------------------------------------------------------------


def conference_info(
    conf: Conference, info: Callable[[str], p.UserInfo], *, invited: bool = True
) -> p.ConferenceInfo:
    """`invited`: with the invited courts and users (their lists grow with the conference;
    sites are not sent them)."""
    return p.ConferenceInfo(
        conference_id=conf.conference_id,
        title=conf.title,
        court=conf.court,
        host=info(conf.host),
        status=conf.status.value,
        starts_at=p.epoch_ms(conf.starts_at),
        created_at=p.epoch_ms(conf.created_at),
        invited_courts=list(conf.invited_courts) if invited else [],
        invited_users=list(conf.invited_users) if invited else [],
        moderators=list(conf.moderators),
        chair=conf.chair,
        sites=len(conf.sites),
        locked=conf.locked,
        kind=conf.kind,
    )


def conference_state(conf: Conference, info: Callable[[str], p.UserInfo]) -> p.ConferenceState:
    policy = conf.floor.policy
    spotlight = conf.shown_spotlight()
    return p.ConferenceState(
        conference_id=conf.conference_id,
        revision=conf.revision,
        status=conf.status.value,
        chair=info(conf.chair) if conf.chair is not None else None,
        holders=[info(u) for u in conf.floor.holders()],
        spotlight=info(spotlight) if spotlight is not None else None,
        audio=conf.audio,
        locked=conf.locked,
        recording=conf.recording,
        feeds=[
            p.FeedInfo(f.call_id, info(f.officer), f.emergency, info(f.by))
            for f in conf.feeds.values()
        ],
        max_speakers=policy.max_speakers,
        max_talk_s=policy.max_talk_s,
        mode=policy.mode.value,
        sites=len(conf.sites),
    )


def floor_info(conf: Conference, user: str) -> p.FloorInfo:
    state = conf.floor.state_of(user)
    site = conf.sites.get(user)
    holding = state in (SiteFloor.PERMITTED, SiteFloor.PENDING_REVOKE)
    until = conf.floor.until(user) if holding else None
    return p.FloorInfo(
        state=state.value,
        position=conf.floor.position(user),
        until=p.epoch_ms(until) if until is not None else None,
        called=site is not None and site.called and holding,
    )


def site_info(conf: Conference, site: Site, info: Callable[[str], p.UserInfo]) -> p.SiteInfo:
    return p.SiteInfo(
        user=info(site.user),
        role=site.role,
        status="away" if site.away else "joined",
        floor=floor_info(conf, site.user),
        joined_at=p.epoch_ms(site.joined_at),
    )


def invitation_info(inv: Invitation, info: Callable[[str], p.UserInfo]) -> p.InvitationInfo:
    return p.InvitationInfo(
        invitee=inv.invitee,
        kind=inv.kind,
        state=inv.state,
        by=info(inv.by) if inv.by is not None else None,
    )
