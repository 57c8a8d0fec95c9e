"""The records side of the console over HTTP: an evidence item's audit trail, the chain
check on demand, the calls of a period and a call's audit view (timeline and who watched).

`GET /api/evidence` (the evidence search) is evidence_api's; this module owns
`GET /api/evidence/{id}/audit`, `POST /api/trace/verify`, `GET /api/calls` and
`GET /api/calls/{call_id}/audit`, and the conferences' `GET /api/conferences` and
`GET /api/conferences/{conference_id}/audit`. What is read comes from the trace; the rules
of what a record means are `sessions.records`. Errors become statuses in the one edge of the
API, `http_edge.answering`, with this module's `EDGE`: 401 for the token, 403 for the role,
400 naming a bad parameter, 404 for a call or item that is missing or outside the caller's
scope (the same answer for both), 409 while a chain check runs already or when the last
check's signed position does not verify, 503 when the trace cannot be read; anything else
is logged and answered 500 with the request's id only.

The chain check is incremental: each check that finds the chain intact signs where it
ended (a `verified` checkpoint, sessions/checkpoint.py), and the next one reads only the
records after it; `full=1` reads from record 1.
"""

from __future__ import annotations

import asyncio
import time
from typing import Final

import structlog
from aiohttp import web

from commandcenter.auth import Identity, Role
from commandcenter.checkpoints import CHECKPOINTER
from commandcenter.http_edge import Edge, Refused, Unavailable, answering, identity_of
from commandcenter.keys import CONFIG, COURTS, EVIDENCE, HUB, RECORDER, REINDEXER, TRACE
from sessions import conference_records as confs
from sessions import evidence as ev
from sessions import records, subjects
from sessions.checkpoint import RememberedForged, last_verified
from sessions.durable import verify_store, zone_of
from sessions.errors import BadQuery
from sessions.recorder import TraceEvent
from sessions.statistics import parse_moment
from sessions.store import MAX_ABOUT, StoredRecord, TraceStore
from sessions.trace import GENESIS, Head

log = structlog.get_logger(__name__)

EVIDENCE_AUDIT: Final = "/api/evidence/{evidence_id:" + ev.EVIDENCE_ID_RE + "}/audit"
VERIFY: Final = "/api/trace/verify"
CALLS: Final = "/api/calls"
CALL_ID_RE: Final = r"[A-Za-z0-9_.:-]{1,64}"
CALL_AUDIT: Final = CALLS + "/{call_id:" + CALL_ID_RE + "}/audit"
# Who may read calls' records: the console's people, each over their scope, and auditors.
RECORD_ROLES: Final = frozenset({Role.OPERATOR, Role.SUPERVISOR, Role.ADMIN, Role.AUDITOR})
# Who may run the chain check: it reads the whole trace, so not every operator.
VERIFY_ROLES: Final = frozenset({Role.SUPERVISOR, Role.ADMIN, Role.AUDITOR})
# The record of a chain check run from the console: who ran it and what it found.
TRACE_VERIFIED: Final = "trace_verified"
# The longest period a call listing may span.
MAX_CALL_PERIOD_S: Final = 93 * 86400
_VERIFY_LOCK: Final = web.AppKey("records_verify_lock", asyncio.Lock)
CONFERENCES: Final = "/api/conferences"
CONFERENCE_ID_RE: Final = r"[A-Za-z0-9_.:-]{1,64}"
CONFERENCE_AUDIT: Final = CONFERENCES + "/{conference_id:" + CONFERENCE_ID_RE + "}/audit"
# Who may read conferences' records: those who oversee them, each over their scope.
CONFERENCE_ROLES: Final = frozenset({Role.SUPERVISOR, Role.ADMIN, Role.AUDITOR})


def _not_found() -> Refused:
    return Refused(404, "not_found", "no such call")


# What this module's routes answer besides what every route does (http_edge.answering): a
# bad parameter (`BadQuery`) and an evidence item's errors as they say; the trace out of
# reach is worth a log line of its own.
EDGE: Final = Edge(
    declared=(ev.EvidenceError, BadQuery),
    unavailable=Unavailable(
        "the trace cannot be read now, retry later",
        log_event="records unavailable",
        logger=__name__,
    ),
    failed="records request failed",
)


def _trace(request: web.Request) -> TraceStore:
    trace = request.app.get(TRACE)
    if trace is None:
        raise Refused(503, "unavailable", "this server keeps no trace")
    return trace


def _now(request: web.Request) -> float:
    # The hub's clock, which every other record of this server is dated by.
    return request.app[HUB].clock.now()


def _index_note(request: web.Request) -> dict[str, int]:
    """While the server files the records of a trace written before its subject index
    (sessions/reindexer.py), an audit read by the index may miss older ones: the reply says
    so with how many are left, and says nothing once there are none."""
    reindexer = request.app.get(REINDEXER)
    left = None if reindexer is None else reindexer.remaining
    return {"reindex_remaining": left} if left else {}


def _allowed(who: Identity, roles: frozenset[Role]) -> None:
    if who.role not in roles:
        raise Refused(403, "forbidden", f"a {who.role.value} may not read these records")


# --- evidence ------------------------------------------------------------------------------


@answering(EDGE)
async def evidence_audit(request: web.Request) -> web.StreamResponse:
    who = identity_of(request)
    ev.single_params(request.query.items(), ())
    history, trail = await request.app[EVIDENCE].audit(who, request.match_info["evidence_id"])
    return web.json_response({"item": history.to_json(), **trail, **_index_note(request)})


# --- the chain check -----------------------------------------------------------------------


def _full_asked(params: dict[str, str]) -> bool:
    raw = params.get("full", "0")
    if raw not in ("0", "1"):
        raise BadQuery("0 or 1", "full")
    return raw == "1"


async def _remembered(request: web.Request, trace: TraceStore) -> Head:
    """Where the last check ended (its signed `verified` checkpoint), GENESIS for none.
    Refuses (409) when that checkpoint does not verify: starting anywhere else would let
    whoever changed it choose what is left unread."""
    checkpointer = request.app.get(CHECKPOINTER)
    if checkpointer is None:
        return GENESIS
    try:
        # The latest `verified` row only, not the whole table (1,440 checkpoints a day).
        latest = await trace.latest_checkpoints("verified")
        found = last_verified(latest, checkpointer.public_key)
    except RememberedForged as exc:
        log.error("chain check refused", alarm=True, error=str(exc))
        raise Refused(
            409,
            "checkpoint_invalid",
            "the last check's signed position does not verify; run a full check (full=1)",
        ) from exc
    return GENESIS if found is None else found.head


@answering(EDGE)
async def verify(request: web.Request) -> web.StreamResponse:
    who = identity_of(request)
    _allowed(who, VERIFY_ROLES)
    params = ev.single_params(request.query.items(), ("full",))
    full = _full_asked(params)
    trace = _trace(request)
    lock = request.app[_VERIFY_LOCK]
    if lock.locked():
        # One at a time: a second check would learn nothing the first will not say in a
        # moment (and both would sign the position they reached).
        raise Refused(409, "busy", "a chain check is running; retry when it ends")
    async with lock:
        started = time.monotonic()
        start = GENESIS if full else await _remembered(request, trace)
        result = await verify_store(trace, start=start)
        seconds = round(time.monotonic() - started, 3)
        checkpointer = request.app.get(CHECKPOINTER)
        if result.ok and checkpointer is not None and result.head.seq > start.seq:
            # The next check starts here: signed, so a changed position is refused.
            await checkpointer.remember_verified(result.head)
    checked = max(result.records - start.seq, 0)
    answer: dict[str, object] = {
        "ok": result.ok,
        "full": start.seq == 0,
        "from_seq": start.seq,
        "checked": checked,
        "records": result.records,
        "head_seq": result.head.seq,
        "head_hash": result.head.hash,
        "seconds": seconds,
    }
    if result.tampering is not None:
        answer |= {
            "seq": result.tampering.seq,
            "problem": result.tampering.problem,
            "detail": result.tampering.detail,
        }
    data = {
        "user": who.user_id,
        "role": who.role.value,
        "court": who.court,
        "ok": result.ok,
        "from_seq": start.seq,
        "records": result.records,
        "head_seq": result.head.seq,
        "head_hash": result.head.hash,
        "problem_seq": result.tampering.seq if result.tampering is not None else None,
    }
    await request.app[RECORDER].record([TraceEvent(TRACE_VERIFIED, _now(request), data)])
    return web.json_response(answer)


# --- calls ---------------------------------------------------------------------------------


def _period(request: web.Request, params: dict[str, str]) -> tuple[float, float]:
    zone = zone_of(request.app[CONFIG].recorder.time_zone)
    start = parse_moment(params.get("from"), zone, "from").timestamp()
    end = parse_moment(params.get("to"), zone, "to").timestamp()
    if end <= start:
        raise BadQuery("must be later than from (the period is [from, to))", "to")
    if end - start > MAX_CALL_PERIOD_S:
        raise BadQuery(f"the period is at most {MAX_CALL_PERIOD_S // 86400} days", "to")
    return start, end


def _court_filter(request: web.Request, who: Identity, raw: str | None) -> frozenset[str]:
    """The courts whose calls may be listed: the caller's scope, narrowed to a court."""
    courts = request.app[COURTS]
    scope = courts.scope(who)
    if raw is None:
        return scope
    code = records.parse_term(raw, "court")
    if code not in courts:
        raise BadQuery("unknown court", "court")
    if code not in scope:
        raise Refused(403, "forbidden", "court is outside your scope", "court")
    return courts.subtree(code) & scope


@answering(EDGE)
async def list_calls(request: web.Request) -> web.StreamResponse:
    who = identity_of(request)
    _allowed(who, RECORD_ROLES)
    params = ev.single_params(request.query.items(), ("from", "to", "court", "officer", "limit"))
    since, until = _period(request, params)
    courts = _court_filter(request, who, params.get("court"))
    limit = records.parse_count(
        params.get("limit"), "limit", default=100, low=1, high=records.MAX_CALLS
    )
    key = {}
    if "officer" in params:
        key["officer"] = records.parse_term(params["officer"], "officer")
    trace = _trace(request)
    created = await trace.find(
        kinds=[records.CALL_CREATED], data_equals=key, since=since, until=until
    )
    mine = [r for r in created if r.data.get("court") in courts]
    mine.sort(key=lambda r: r.seq, reverse=True)
    shown = mine[:limit]
    # One read for every end: a call ends after it was placed, so at or after `since`.
    ends: dict[object, StoredRecord] = {}
    if shown:
        for record in await trace.find(kinds=[records.CALL_ENDED], since=since):
            ends.setdefault(record.data.get("call"), record)
    calls = [records.call_summary(r, ends.get(r.data.get("call"))) for r in shown]
    return web.json_response({"calls": calls, "total": len(mine), "limit": limit})


@answering(EDGE)
async def call_audit(request: web.Request) -> web.StreamResponse:
    who = identity_of(request)
    _allowed(who, RECORD_ROLES)
    ev.single_params(request.query.items(), ())
    call_id = request.match_info["call_id"]
    trace = _trace(request)
    # By the subject index: one index range, not a scan of every call's records.
    found = await trace.records_about(subjects.subject(subjects.CALL, call_id), limit=MAX_ABOUT)
    created = [r for r in found if r.kind == records.CALL_CREATED]
    if not created:
        raise _not_found()
    court = created[0].data.get("court")
    if not isinstance(court, str) or not request.app[COURTS].in_scope(who, court):
        # The same answer as a missing call: whether another court had this call is not
        # the caller's business.
        log.info("call audit refused", call_id=call_id, user=who.user_id)
        raise _not_found()
    answer = records.call_audit(found)
    # Looking at a call's record is itself a fact of it, as reading evidence is; written
    # after the view is taken, so the view shows the looks before this one.
    data = {
        "call": call_id,
        "court": court,
        "user": who.user_id,
        "role": who.role.value,
        "user_court": who.court,
    }
    await request.app[RECORDER].record([TraceEvent(records.CALL_AUDIT_READ, _now(request), data)])
    return web.json_response({**answer, **_index_note(request)})


# --- conferences ---------------------------------------------------------------------------


@answering(EDGE)
async def list_conferences(request: web.Request) -> web.StreamResponse:
    """The conferences started in a period, newest first, a page at a time, with the
    statistics' figures of the same period and courts."""
    who = identity_of(request)
    _allowed(who, CONFERENCE_ROLES)
    params = ev.single_params(
        request.query.items(), ("from", "to", "court", "text", "limit", "offset")
    )
    since, until = _period(request, params)
    courts = _court_filter(request, who, params.get("court"))
    limit = records.parse_count(
        params.get("limit"), "limit", default=confs.DEFAULT_PAGE, low=1, high=confs.MAX_PAGE
    )
    offset = records.parse_count(
        params.get("offset"), "offset", default=0, low=0, high=confs.MAX_OFFSET
    )
    text = records.parse_term(params["text"], "text") if "text" in params else None
    trace = _trace(request)
    started = [
        r
        for r in await trace.find(kinds=[confs.CONFERENCE_STARTED], since=since, until=until)
        if r.data.get("court") in courts
    ]
    started.sort(key=lambda r: r.seq, reverse=True)
    titles: dict[object, object] = {}
    if text is not None and started:
        # Titles are in `conference_created`, written at or before the start.
        for r in await trace.find(kinds=[confs.CONFERENCE_CREATED], until=until):
            titles[r.data.get("conference")] = r.data.get("title")
    ids = [
        cid
        for cid in (r.data.get("conference") for r in started)
        if isinstance(cid, str) and confs.matches(cid, titles.get(cid), text)
    ]
    shown = []
    for cid in ids[offset : offset + limit]:
        found = await trace.records_about(
            subjects.subject(subjects.CONFERENCE, cid), limit=MAX_ABOUT
        )
        shown.append(confs.summary(cid, found))
    return web.json_response(
        {
            "conferences": shown,
            "total": len(ids),
            "limit": limit,
            "offset": offset,
            "figures": confs.figures(started).to_json(),
            **_index_note(request),
        }
    )


@answering(EDGE)
async def conference_audit(request: web.Request) -> web.StreamResponse:
    who = identity_of(request)
    _allowed(who, CONFERENCE_ROLES)
    ev.single_params(request.query.items(), ())
    conference_id = request.match_info["conference_id"]
    trace = _trace(request)
    found = await trace.records_about(
        subjects.subject(subjects.CONFERENCE, conference_id), limit=MAX_ABOUT + 1
    )
    court = confs.court_of(found)
    if court is None or not request.app[COURTS].in_scope(who, court):
        # The same answer for another court's conference as for one that never was.
        log.info("conference audit refused", conference_id=conference_id, user=who.user_id)
        raise Refused(404, "not_found", "no such conference")
    answer = confs.audit(conference_id, found[:MAX_ABOUT], cut=len(found) > MAX_ABOUT)
    # Reading it is a fact of the conference, recorded after the view is taken.
    data = {
        "conference": conference_id,
        "court": court,
        "user": who.user_id,
        "role": who.role.value,
        "user_court": who.court,
    }
    event = TraceEvent(confs.CONFERENCE_AUDIT_READ, _now(request), data)
    await request.app[RECORDER].record([event])
    return web.json_response({**answer, **_index_note(request)})


def add_routes(app: web.Application, *, evidence: bool) -> None:
    """The records routes; `evidence`: whether the app serves evidence (its audit trail is
    served with it)."""
    app[_VERIFY_LOCK] = asyncio.Lock()
    if evidence:
        app.router.add_get(EVIDENCE_AUDIT, evidence_audit)
    app.router.add_post(VERIFY, verify)
    app.router.add_get(CALLS, list_calls)
    app.router.add_get(CALL_AUDIT, call_audit)
    app.router.add_get(CONFERENCES, list_conferences)
    app.router.add_get(CONFERENCE_AUDIT, conference_audit)


__all__ = [
    "CALLS",
    "CALL_AUDIT",
    "CONFERENCES",
    "CONFERENCE_AUDIT",
    "EVIDENCE_AUDIT",
    "TRACE_VERIFIED",
    "VERIFY",
    "add_routes",
]
