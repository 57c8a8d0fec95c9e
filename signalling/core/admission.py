"""Who may host a conference, whom it invites, who finds it listed and who may join it as
what: pure rules over the court hierarchy, the token's role and scope, and the conference's
invitations (docs/protocol.md, *Who may join*)."""

from __future__ import annotations

from typing import Final

from identity import Courts, Role
from signalling import protocol as p
from signalling.core.conference import Conference
from signalling.core.presence import CONSOLE_ROLES, Session
from signalling.errors import Forbidden, NotFound

# Who hosts conferences: the command center (the roles whose seats are consoles).
HOST_ROLES: Final = CONSOLE_ROLES
# Witness tokens name what they may watch: "conference:<id>", or "action:<id>" for a
# concentrated enforcement action (a conference of kind "action").
WITNESS_SCOPE: Final = "conference:"
ACTION_SCOPE: Final = "action:"


def watches(session: Session, conf: Conference) -> bool:
    """Whether `session`'s witness token names `conf`."""
    scope = session.identity.scope
    return scope == WITNESS_SCOPE + conf.conference_id or (
        conf.kind == "action" and scope == ACTION_SCOPE + conf.conference_id
    )


def sees(courts: Courts, session: Session, conf: Conference) -> bool:
    """Whether `session`'s user finds `conf` in `list_conferences`."""
    if session.role is Role.WITNESS:
        return watches(session, conf)
    if session.role is Role.AUDITOR:
        return False
    user = session.user_id
    return (
        user in conf.moderators
        or user in conf.sites
        or user in conf.invited_users
        or (session.role in HOST_ROLES and session.identity.court in conf.invited_courts)
        or oversees(courts, session, conf)
    )


def oversees(courts: Courts, session: Session, conf: Conference) -> bool:
    """A supervisor or admin over the host court."""
    return session.role in (Role.SUPERVISOR, Role.ADMIN) and courts.in_scope(
        session.identity, conf.court
    )


def invited_courts(
    courts: Courts, session: Session, court: str, msg: p.CreateConference
) -> tuple[str, ...]:
    """The courts a conference hosted by `court` invites: the host court first, then those
    named and every court under those named below; each in `session`'s scope."""
    scope = courts.scope(session.identity)
    if court not in courts:
        raise NotFound("unknown court", field="court")
    if court not in scope:
        raise Forbidden("court is outside your scope", field="court")
    # The host court's own consoles take part too (the host's colleagues).
    invited: dict[str, None] = {court: None}
    for name, codes, below in (
        ("invite_courts", msg.invite_courts, False),
        ("invite_below", msg.invite_below, True),
    ):
        for code in codes:
            if code not in courts:
                raise NotFound(f"unknown court {code}", field=name)
            if code not in scope:
                raise Forbidden(f"court {code} is outside your scope", field=name)
            for c in sorted(courts.subtree(code)) if below else (code,):
                invited[c] = None
    return tuple(invited)


def role_in(courts: Courts, session: Session, conf: Conference) -> p.ConferenceRole:
    """What `session`'s user joins `conf` as; Forbidden if they may not."""
    user = session.user_id
    if session.role is Role.WITNESS:
        if not watches(session, conf):
            raise Forbidden("your invitation is for another conference")
        return "witness"
    if session.role is Role.AUDITOR:
        # Auditors read the record afterwards; watching live is the witnesses' part.
        raise Forbidden("auditors do not join conferences")
    if user in conf.moderators:
        return "moderator"
    invited = user in conf.invited_users or (
        session.role in HOST_ROLES and session.identity.court in conf.invited_courts
    )
    if invited or oversees(courts, session, conf):
        return "site"
    raise Forbidden("you are not invited to this conference")
