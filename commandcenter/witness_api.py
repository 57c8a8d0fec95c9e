"""Witness invitations (邀请列席): deputies and procurators watch one conference, view-only.

    POST   /api/conferences/{conference_id}/witnesses   {"name", "label", "expires_in_s"}
    GET    /api/conferences/{conference_id}/witnesses
    DELETE /api/conferences/{conference_id}/witnesses/{witness_id}

A moderator of the conference, or an admin whose scope holds its host court, invites: the
answer carries a witness token (role `witness`, scope `conference:<id>`, valid
`expires_in_s`) and the link that signs in with it (`/app/conference.html#token=...`), shown
once (`Cache-Control: no-store`) and never kept: the store keeps the invitation only
(`sessions.account_store.Witness`). A revoke is kept in the same store, which every node
reads (commandcenter/revocations.py): the token is refused and an open WebSocket of the
witness closes 4403 (`witness_revoked`) at once here and within
`accounts.revocation_poll_s` on the other nodes. Issue and revoke are trace facts
(`witness_invited`, `witness_revoked`); the witness's use of the link is their sign-in and
join, recorded under their user id (`witness-<id>`) like anyone's.

The conference is read through the hub's link (`CoreLink.conference`): from the core where
it runs (one node alone, or the cluster's authority), else from the authority's journal in
Redis, so these routes answer on every node of a cluster (503 only while Redis does not).
A conference just created, and a moderator named or taken back, are journalled at once
(signalling.cluster.journal.DECISION_KINDS), so they show there as soon as Redis has them.
Errors become statuses in the one edge of the API, `http_edge.answering`, with `EDGE`.
"""

from __future__ import annotations

import json
import math
import secrets
from typing import Any, Final

import structlog
from aiohttp import hdrs, web

from commandcenter import http_edge
from commandcenter.account_api import ACCOUNTS
from commandcenter.auth import Identity, Role, issue_token
from commandcenter.bodies import read_at_most
from commandcenter.http_edge import Refused
from commandcenter.keys import CONFIG, COURTS, HUB, RECORDER, REVOCATIONS
from identity.names import BadName, normalised
from sessions.account_store import Witness
from sessions.recorder import TraceEvent
from signalling.core.conference import Conference, ConferenceStatus
from signalling.link import CoreUnreachable

log = structlog.get_logger(__name__)

PATH: Final = "/api/conferences/{conference_id}/witnesses"
MAX_BODY_BYTES: Final = 2048
MAX_NAME_CHARS: Final = 32
MAX_LABEL_CHARS: Final = 32
# A link lives at least a minute and at most `auth.max_ttl_s` (a day by default).
MIN_EXPIRES_S: Final = 60
MAX_ID_CHARS: Final = 64
# Trace kinds: who invited whom to watch which conference, and who revoked it.
INVITED: Final = "witness_invited"
REVOKED: Final = "witness_revoked"
USER_PREFIX: Final = "witness-"
LINK_PAGE: Final = "/app/conference.html"


def _bad(reason: str, field: str | None = None) -> Refused:
    return Refused(400, "bad_request", reason, field)


def summary_of(w: Witness) -> dict[str, Any]:
    """A witness as the list shows it (times in epoch ms, as on the WebSocket)."""
    return {
        "witness_id": w.witness_id,
        "user": w.user_id,
        "name": w.name,
        "label": w.label,
        "by": w.by,
        "issued_at": w.issued_at * 1000,
        "expires_at": w.expires_at * 1000,
        "revoked_at": None if w.revoked_at is None else w.revoked_at * 1000,
    }


async def _conference(request: web.Request, who: Identity) -> Conference:
    """The conference named in the path, if `who` may invite witnesses to it: one of its
    moderators, or an admin over its host court. Another's conference is answered as one that
    does not exist."""
    raw = request.match_info["conference_id"]
    if not 0 < len(raw) <= MAX_ID_CHARS:
        raise Refused(404, "not_found", "no such conference")
    if who.role is Role.WITNESS or who.role is Role.AUDITOR or who.role is Role.OFFICER:
        raise Refused(403, "forbidden", "only a moderator or an admin invites witnesses")
    try:
        conf = await request.app[HUB].link.conference(raw)
    except CoreUnreachable:
        raise Refused(
            503, "unavailable", "the conferences cannot be read now", retry=True
        ) from None
    if conf is None or conf.status is ConferenceStatus.ENDED:
        raise Refused(404, "not_found", "no such conference")
    courts = request.app[COURTS]
    admin = who.role is Role.ADMIN and courts.in_scope(who, conf.court)
    if who.user_id not in conf.moderators and not admin:
        raise Refused(404, "not_found", "no such conference")
    return conf


async def _json_body(request: web.Request) -> dict[str, Any]:
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise Refused(413, "too_large", f"the body is larger than {MAX_BODY_BYTES} bytes")
    raw = await read_at_most(request.content, MAX_BODY_BYTES)
    if len(raw) > MAX_BODY_BYTES:
        raise Refused(413, "too_large", f"the body is larger than {MAX_BODY_BYTES} bytes")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise _bad("the body is not JSON") from None
    if not isinstance(body, dict):
        raise _bad("the body must be a JSON object")
    unknown = sorted(set(body) - {"name", "label", "expires_in_s"})
    if unknown:
        raise _bad("unknown field", unknown[0])
    return body


def _text(body: dict[str, Any], field: str, limit: int) -> str:
    value = body.get(field)
    if not isinstance(value, str):
        raise _bad("must be a string", field)
    try:
        text = normalised(value.strip(), max_chars=limit)
    except BadName as exc:
        raise _bad(str(exc), field) from None
    if not text:
        raise _bad("must not be empty", field)
    return text


def _expires_in(body: dict[str, Any], most: int) -> int:
    value = body.get("expires_in_s")
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _bad("must be a number of seconds", "expires_in_s")
    if not MIN_EXPIRES_S <= value <= most:
        raise _bad(f"must be {MIN_EXPIRES_S} to {most} seconds", "expires_in_s")
    return int(value)


async def invite(request: web.Request) -> web.StreamResponse:
    who = http_edge.identity_of(request)
    conf = await _conference(request, who)
    body = await _json_body(request)
    name = _text(body, "name", MAX_NAME_CHARS)
    label = _text(body, "label", MAX_LABEL_CHARS)
    config = request.app[CONFIG]
    expires_in = _expires_in(body, config.auth.max_ttl_s)
    accounts = request.app[ACCOUNTS]
    store = accounts.store
    limit = config.conferences.max_invitations
    if len(await store.witnesses_of(conf.conference_id, limit=limit)) >= limit:
        raise Refused(409, "busy", f"at most {limit} witnesses per conference")
    now = request.app[HUB].clock.now()
    witness_id = "wi-" + secrets.token_hex(8)
    user_id = USER_PREFIX + witness_id[3:]
    token = issue_token(
        accounts.token_secret,
        user=user_id,
        role=Role.WITNESS,
        court=conf.court,
        name=name,
        ttl_s=expires_in,
        now=now,
        scope=f"conference:{conf.conference_id}",
    )
    witness = Witness(
        witness_id=witness_id,
        conference_id=conf.conference_id,
        user_id=user_id,
        name=name,
        label=label,
        court=conf.court,
        by=who.user_id,
        issued_at=now,
        expires_at=float(math.floor(now + expires_in)),
    )
    # The fact first: an invitation the trace does not hold is never handed out.
    await request.app[RECORDER].record([TraceEvent(INVITED, now, _fact(witness))])
    await store.add_witness(witness)
    log.info(
        "witness invited",
        witness_id=witness_id,
        conference_id=conf.conference_id,
        by=who.user_id,
        expires_in_s=expires_in,
    )
    response = web.json_response(
        {
            **summary_of(witness),
            "token": token,
            "link": f"{LINK_PAGE}#token={token}",
        },
        status=201,
    )
    # The token is shown once: no cache keeps it.
    response.headers[hdrs.CACHE_CONTROL] = "no-store"
    return response


async def listed(request: web.Request) -> web.StreamResponse:
    who = http_edge.identity_of(request)
    conf = await _conference(request, who)
    limit = request.app[CONFIG].conferences.max_invitations
    found = await request.app[ACCOUNTS].store.witnesses_of(conf.conference_id, limit=limit)
    return web.json_response({"witnesses": [summary_of(w) for w in found]})


async def revoke(request: web.Request) -> web.StreamResponse:
    who = http_edge.identity_of(request)
    conf = await _conference(request, who)
    store = request.app[ACCOUNTS].store
    wanted = request.match_info["witness_id"]
    limit = request.app[CONFIG].conferences.max_invitations
    found = await store.witnesses_of(conf.conference_id, limit=limit)
    witness = next((w for w in found if w.witness_id == wanted), None)
    if witness is None:
        raise Refused(404, "not_found", "no such witness")
    if witness.revoked_at is None:
        now = request.app[HUB].clock.now()
        await request.app[RECORDER].record(
            [TraceEvent(REVOKED, now, {**_fact(witness), "by": who.user_id})]
        )
        await store.revoke_witness(witness.witness_id, now)
        log.info(
            "witness revoked",
            witness_id=witness.witness_id,
            conference_id=conf.conference_id,
            by=who.user_id,
        )
        revocations = request.app.get(REVOCATIONS)
        if revocations is not None:
            # This node at once; the others within accounts.revocation_poll_s.
            revocations.witness_revoked_now(witness.user_id)
    return web.Response(status=204)


def _fact(w: Witness) -> dict[str, Any]:
    return {
        "witness_id": w.witness_id,
        "conference": w.conference_id,
        "user": w.user_id,
        "name": w.name,
        "label": w.label,
        "court": w.court,
        "by": w.by,
        "expires_at": w.expires_at,
    }


# What this module's routes answer besides what every route does (http_edge.answering).
EDGE: Final = http_edge.Edge(
    unavailable=http_edge.Unavailable(
        "witnesses cannot be changed right now; try again shortly", retry_after=True
    )
)


def install(app: web.Application) -> None:
    """The routes, beside `account_api.install` (whose store and secret they use)."""
    answered = http_edge.answering(EDGE)
    app.router.add_post(PATH, answered(invite))
    app.router.add_get(PATH, answered(listed))
    app.router.add_delete(PATH + "/{witness_id}", answered(revoke))


__all__ = ["INVITED", "PATH", "REVOKED", "install", "summary_of"]
