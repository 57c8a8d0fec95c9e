"""A conference's state as plain data, for a next authority to carry it on.

Theory of operation
-------------------
The cluster's authority journals each running conference (docs/cluster.md, *Failure*):
`snapshot(conf, now)` is a dict of lists, strings, numbers and booleans (msgpack-able, and
bounded since the conference is), `restored(data, now)` the conference it describes. What
runs out is kept as the time left at `now` (a talk time, a revocation's grace), so that a
node whose clock is a little off the dead authority's gives each the same time left; what
happened at a time (a join, a raised hand, the conference's start) keeps that time.

`restored` decodes into the structs below (bounds and types, msgspec), then checks that the
parts agree with each other (each site's floor state against the floor's holders and hands,
the chair a moderator, a feed's sharer a site, ...): anything else raises `SnapshotError`
naming what was wrong, and no conference is made. A conference is restored whole or not at
all.

Not carried: the floor's history and the conference's transient state held outside it (join
pace waiters are asked again by their node's gateway, signalling.cluster.gateway; invitations'
ring timers and what consoles show are the sub-core's).
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal

import msgspec

from signalling.core.conference import (
    Conference,
    ConferenceEvent,
    ConferenceStatus,
    Feed,
    Invitation,
    Site,
)
from signalling.core.floor import Floor, FloorMode, FloorParts, FloorPolicy, SiteFloor

VERSION: Final = 1
# Hard bounds of a snapshot, above any configured limit (conferences.max_sites is 300 by
# default; invited courts may be every court under one).
MAX_SITES: Final = 5000
MAX_LIST: Final = 5000
MAX_HISTORY: Final = 8

_Text = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
_Title = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
_Time = Annotated[float, msgspec.Meta(ge=0.0, le=1e11)]
_Left = Annotated[float, msgspec.Meta(ge=-1e9, le=1e9)]


class SnapshotError(ValueError):
    """A snapshot that does not describe a conference: nothing was restored."""


class _Site(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    user: _Text
    court: _Text
    role: Literal["moderator", "site", "witness"]
    joined_at: _Time
    away: bool
    called: bool
    floor: SiteFloor


class _Invitation(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    key: Annotated[str, msgspec.Meta(min_length=1, max_length=80)]  # "court:P01", "user:o1"
    invitee: _Text
    kind: Literal["court", "user"]
    state: Literal["ringing", "joined", "declined", "no_answer"]
    by: _Text | None
    ringing: Annotated[list[_Text], msgspec.Meta(max_length=MAX_LIST)]


class _Feed(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    call_id: _Text
    officer: _Text
    emergency: bool
    by: _Text


class _Policy(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    mode: FloorMode
    max_speakers: Annotated[int, msgspec.Meta(ge=1, le=MAX_SITES)]
    max_talk_s: Annotated[float, msgspec.Meta(gt=0, le=1e6)] | None
    revoke_grace_s: Annotated[float, msgspec.Meta(ge=0, le=1e6)]
    max_queue: Annotated[int, msgspec.Meta(ge=0, le=MAX_SITES)]


class _Snapshot(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    version: Literal[1]
    conference_id: _Text
    title: _Title
    court: _Text
    host: _Text
    created_at: _Time
    starts_at: _Time
    kind: Literal["meeting", "action"]
    status: Literal["scheduled", "running"]
    invited_courts: Annotated[list[_Text], msgspec.Meta(max_length=MAX_LIST)]
    invited_users: Annotated[list[_Text], msgspec.Meta(max_length=MAX_LIST)]
    moderators: Annotated[list[_Text], msgspec.Meta(min_length=1, max_length=MAX_LIST)]
    chair: _Text | None
    sites: Annotated[list[_Site], msgspec.Meta(max_length=MAX_SITES)]
    invitations: Annotated[list[_Invitation], msgspec.Meta(max_length=MAX_LIST)]
    banned: Annotated[list[_Text], msgspec.Meta(max_length=MAX_LIST)]
    locked: bool
    recording: bool
    feeds: Annotated[list[_Feed], msgspec.Meta(max_length=MAX_LIST)]
    audio: Literal["floor", "open"]
    spotlight: _Text | None
    revoked_by: Annotated[dict[_Text, _Text], msgspec.Meta(max_length=MAX_SITES)]
    revision: Annotated[int, msgspec.Meta(ge=0)]
    history: Annotated[
        list[tuple[_Time, ConferenceEvent, ConferenceStatus]], msgspec.Meta(max_length=MAX_HISTORY)
    ]
    policy: _Policy
    # (priority, requested at, site), in the order hands are answered.
    hands: Annotated[
        list[tuple[Annotated[int, msgspec.Meta(ge=0, le=100)], _Time, _Text]],
        msgspec.Meta(max_length=MAX_SITES),
    ]
    # (site, priority it can be pre-empted at or None), in grant order.
    holders: Annotated[list[tuple[_Text, int | None]], msgspec.Meta(max_length=MAX_SITES)]
    # Time left, seconds, at the snapshot's `now`.
    talk_left: Annotated[dict[_Text, _Left], msgspec.Meta(max_length=MAX_SITES)]
    # site -> (time left of its revocation's grace, the revocation's reason)
    revoke_left: Annotated[
        dict[_Text, tuple[_Left, Annotated[str, msgspec.Meta(max_length=32)]]],
        msgspec.Meta(max_length=MAX_SITES),
    ]


def snapshot(conf: Conference, now: float) -> dict[str, Any]:
    """`conf` at `now` as plain data. An ended conference has nothing to carry on."""
    if conf.status is ConferenceStatus.ENDED:
        raise SnapshotError(f"conference {conf.conference_id} has ended")
    floor = conf.floor.parts()
    states = dict(floor.states)
    policy = conf.floor.policy
    return {
        "version": VERSION,
        "conference_id": conf.conference_id,
        "title": conf.title,
        "court": conf.court,
        "host": conf.host,
        "created_at": conf.created_at,
        "starts_at": conf.starts_at,
        "kind": conf.kind,
        "status": conf.status.value,
        "invited_courts": list(conf.invited_courts),
        "invited_users": list(conf.invited_users),
        "moderators": list(conf.moderators),
        "chair": conf.chair,
        "sites": [
            {
                "user": s.user,
                "court": s.court,
                "role": s.role,
                "joined_at": s.joined_at,
                "away": s.away,
                "called": s.called,
                "floor": states.get(s.user, SiteFloor.NOT_PERMITTED).value,
            }
            for s in conf.sites.values()
        ],
        "invitations": [
            {
                "key": key,
                "invitee": i.invitee,
                "kind": i.kind,
                "state": i.state,
                "by": i.by,
                "ringing": sorted(i.ringing),
            }
            for key, i in conf.invitations.items()
        ],
        "banned": sorted(conf.banned),
        "locked": conf.locked,
        "recording": conf.recording,
        "feeds": [
            {"call_id": f.call_id, "officer": f.officer, "emergency": f.emergency, "by": f.by}
            for f in conf.feeds.values()
        ],
        "audio": conf.audio,
        "spotlight": conf.spotlight,
        "revoked_by": dict(conf.revoked_by),
        "revision": conf.revision,
        "history": [[at, event.value, status.value] for at, event, status in conf.history],
        "policy": {
            "mode": policy.mode.value,
            "max_speakers": policy.max_speakers,
            "max_talk_s": policy.max_talk_s,
            "revoke_grace_s": policy.revoke_grace_s,
            "max_queue": policy.max_queue,
        },
        "hands": [[priority, at, site] for priority, at, site in floor.queue],
        "holders": [[site, priority] for site, priority in floor.holders],
        "talk_left": {site: at - now for site, at in floor.talk_until},
        "revoke_left": {site: [at - now, reason] for site, at, reason in floor.revoking},
    }


def restored(data: object, now: float) -> Conference:
    """The conference `data` (a `snapshot`) describes, its timers running from `now`;
    SnapshotError if `data` is not one, and nothing is made."""
    try:
        snap = msgspec.convert(data, _Snapshot, strict=False)
    except msgspec.ValidationError as exc:
        raise SnapshotError(f"bad conference snapshot: {exc}") from None
    try:
        return _built(snap, now)
    except ValueError as exc:
        raise SnapshotError(f"bad conference snapshot {snap.conference_id}: {exc}") from None


def _built(snap: _Snapshot, now: float) -> Conference:
    sites = {s.user: s for s in snap.sites}
    if len(sites) != len(snap.sites):
        raise ValueError("a site is listed twice")
    if len(set(snap.moderators)) != len(snap.moderators) or snap.moderators[0] != snap.host:
        raise ValueError("the moderators repeat one or do not start with the host")
    if snap.chair is not None and snap.chair not in snap.moderators:
        raise ValueError("the chair is not a moderator")
    for site in snap.sites:
        if (site.role == "moderator") != (site.user in snap.moderators):
            raise ValueError(f"site {site.user}: its role and the moderators differ")
        if site.role != "site" and site.floor is not SiteFloor.NOT_PERMITTED:
            raise ValueError(f"site {site.user}: a {site.role} has no floor")
    for feed in snap.feeds:
        if feed.by not in snap.moderators and feed.by not in sites:
            raise ValueError(f"feed {feed.call_id}: shared by nobody of the conference")
    if len({f.call_id for f in snap.feeds}) != len(snap.feeds):
        raise ValueError("a feed is listed twice")
    if len({i.key for i in snap.invitations}) != len(snap.invitations):
        raise ValueError("an invitation is listed twice")
    if snap.status == "running" and not snap.history:
        raise ValueError("a running conference that never started")
    states = tuple((s.user, s.floor) for s in snap.sites if s.floor is not SiteFloor.NOT_PERMITTED)
    floor_parts = FloorParts(
        states=states,
        queue=tuple((priority, at, site) for priority, at, site in snap.hands),
        holders=tuple((site, priority) for site, priority in snap.holders),
        talk_until=tuple((site, now + left) for site, left in snap.talk_left.items()),
        revoking=tuple(
            (site, now + left, reason) for site, (left, reason) in snap.revoke_left.items()
        ),
    )
    if not set(snap.revoked_by) <= {s for s, _, _ in floor_parts.revoking}:
        raise ValueError("a revoker for a site not being revoked")
    p = snap.policy
    policy = FloorPolicy(
        mode=p.mode,
        max_speakers=p.max_speakers,
        max_talk_s=p.max_talk_s,
        revoke_grace_s=p.revoke_grace_s,
        max_queue=p.max_queue,
    )
    floor = Floor.from_parts(policy, floor_parts)
    spotlight = snap.spotlight
    on_feed = any(f.officer == spotlight for f in snap.feeds)
    if spotlight is not None and spotlight not in sites and not on_feed:
        raise ValueError("the spotlight is on no site and no feed")
    return Conference(
        conference_id=snap.conference_id,
        title=snap.title,
        court=snap.court,
        host=snap.host,
        created_at=snap.created_at,
        starts_at=snap.starts_at,
        floor=floor,
        invited_courts=tuple(snap.invited_courts),
        invited_users=tuple(snap.invited_users),
        kind=snap.kind,
        status=ConferenceStatus(snap.status),
        moderators=list(snap.moderators),
        chair=snap.chair,
        sites={
            s.user: Site(
                user=s.user,
                court=s.court,
                role=s.role,
                joined_at=s.joined_at,
                away=s.away,
                called=s.called,
            )
            for s in snap.sites
        },
        invitations={
            i.key: Invitation(
                invitee=i.invitee, kind=i.kind, state=i.state, by=i.by, ringing=set(i.ringing)
            )
            for i in snap.invitations
        },
        banned=set(snap.banned),
        locked=snap.locked,
        recording=snap.recording,
        feeds={f.call_id: Feed(f.call_id, f.officer, f.emergency, f.by) for f in snap.feeds},
        audio=snap.audio,
        spotlight=spotlight,
        revoked_by=dict(snap.revoked_by),
        revision=snap.revision,
        history=[(at, event, status) for at, event, status in snap.history],
    )


__all__ = ["MAX_SITES", "VERSION", "SnapshotError", "restored", "snapshot"]
