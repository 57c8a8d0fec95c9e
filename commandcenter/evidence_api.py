"""The evidence HTTP API: upload, list by case, read, download and correct evidence items.

Handlers here only authenticate, parse and answer; what is stored, recorded and allowed is
decided by `sessions.evidence_store.EvidenceStore` (app[EVIDENCE]). Errors become HTTP
statuses in the one edge of the API, `http_edge.answering`, with this module's `EDGE`: an
`EvidenceError` or `AuthError` is the client's fault and gets its status and short reason;
anything else is ours, logged with its traceback and answered 500 with the request's id only.
docs/evidence.md documents the endpoints.

An upload's metadata travels in query parameters (UTF-8, percent-encoded as every client
library does by itself) and the body is the raw bytes, streamed to disk as they arrive.
Clients that send `Expect: 100-continue` learn of a refusal (bad metadata, token, role, size)
before they send the body.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Final
from urllib.parse import quote

import structlog
from aiohttp import hdrs, web
from redis.asyncio import Redis

from commandcenter.auth import AuthError, Identity, bearer_token
from commandcenter.byte_range import ByteRange, parse_range
from commandcenter.http_edge import (
    Edge,
    Unavailable,
    answering,
    error_response,
    failure_response,
    identity_of,
    identity_of_token,
)
from commandcenter.keys import CONFIG, COURTS, EVIDENCE, HUB
from commandcenter.player_views import VIEW_ID_RE
from commandcenter.view_keepers import LocalViews, RedisViews, ViewKeeper
from sessions import evidence as ev
from sessions import records
from sessions.durable import zone_of
from sessions.errors import BadQuery
from sessions.evidence_store import EvidenceStore
from sessions.originals import DownloadCheck
from sessions.statistics import parse_moment
from signalling.settings import RedisConfig

log = structlog.get_logger(__name__)

BASE: Final = "/api/evidence"
_ID: Final = "{evidence_id:" + ev.EVIDENCE_ID_RE + "}"
# Download read size: each piece is hashed as it is sent.
DOWNLOAD_CHUNK: Final = 1024 * 1024
# A <video src> cannot carry the Authorization header, so the console's player asks for
# its token in an HttpOnly cookie (POST PLAYER), sent by the browser with the media requests
# (ranges, as it seeks). Only the content route reads it: uploads and corrections still need
# the header, so the cookie cannot be used to change anything. Path-scoped and
# SameSite=Strict; it lives as long as the token in it.
PLAYER: Final = f"{BASE}/player"
PLAYER_COOKIE: Final = "cc_evidence"
# The player's views on this node (commandcenter/player_views.py): a recording streamed in
# ranges is recorded once, as a view, not once per range.
VIEWS: Final = web.AppKey("player_views", ViewKeeper)
_MAX_COOKIE_CHARS: Final = 4096
# How much of an upload's body aiohttp may hold before it stops reading the socket (twice
# this, in fact). Its default, 64 KiB, is less than one read from the socket, so the
# connection would be paused and resumed for every read: at 2 MiB an upload costs the server
# about an eighth less CPU (bench.evidence).
UPLOAD_READ_BUFFER: Final = 2 * 1024 * 1024


# What this module's routes answer besides what every route does (http_edge.answering): an
# `EvidenceError` as it says; the trace out of reach is worth a log line of its own. Uploads
# are counted for a graceful stop, and one refused before its end closes its connection.
EDGE: Final = Edge(
    declared=(ev.EvidenceError,),
    # The trace cannot be written now: nothing was stored or served, the client may retry.
    unavailable=Unavailable(
        "the evidence record is unavailable, retry later",
        log_event="evidence trace unavailable",
        logger=__name__,
    ),
    failed="evidence request failed",
    in_flight=True,
    close_unread=True,
)


# --- helpers -------------------------------------------------------------------------------


def _upload_request(request: web.Request) -> tuple[Identity, ev.UploadRequest]:
    who = identity_of(request)
    encoding = request.headers.get(hdrs.CONTENT_ENCODING, "").strip().lower()
    if encoding not in ("", "identity"):
        # aiohttp would hand us the compressed bytes as they came: stored, they would pass
        # for the original while hashing differently from the file the officer holds, and
        # decoding them here would let a small body expand past the size limit.
        raise ev.UnsupportedEncoding(
            "send the original bytes, without Content-Encoding", "content-encoding"
        )
    upload = ev.parse_upload(request.query.items(), request.headers.get(hdrs.CONTENT_TYPE))
    return who, upload


def _clock_check(request: web.Request, who: Identity, upload: ev.UploadRequest) -> ev.ClockCheck:
    # The offset the server holds for the uploader's live session on this node when the
    # upload begins: its latest heartbeat.
    session = request.app[HUB].link.session(who.user_id)
    return ev.check_clock(
        upload_device=upload.device,
        session_device=session.device if session is not None else None,
        session_offset_ms=session.clock_offset_ms if session is not None else None,
        threshold_ms=request.app[CONFIG].evidence.clock_offset_threshold_ms,
    )


def _content_disposition(file_name: str) -> str:
    # RFC 6266: an ASCII fallback for old clients, the exact name in filename*.
    fallback = "".join(c if 32 <= ord(c) < 127 and c not in '"\\' else "_" for c in file_name)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(file_name, safe='')}"


async def _body(request: web.Request) -> AsyncIterator[bytes]:
    """The request body as it arrives, in the pieces aiohttp received (`iter_any` would
    join the pieces waiting in its buffer, copying every byte once more), at the pace the
    configuration asks for: a read that does not come by its deadline ends the upload
    with `TooSlow`."""
    cfg = request.app[CONFIG].evidence
    pace = ev.UploadPace(
        min_rate=cfg.upload_min_bytes_per_s, grace_s=cfg.upload_grace_s, max_s=cfg.upload_max_s
    )
    loop = asyncio.get_running_loop()
    started = loop.time()
    received = 0
    content = request.content
    content.set_read_chunk_size(UPLOAD_READ_BUFFER)
    while True:
        try:
            async with asyncio.timeout_at(pace.deadline(started, received)):
                chunk, end_of_chunk = await content.readchunk()
        except TimeoutError:
            raise pace.refusal(started, received, loop.time()) from None
        if not chunk:
            if not end_of_chunk:
                return  # (b"", False): the end of the body
            continue
        received += len(chunk)
        yield chunk


async def _read_bounded(request: web.Request, limit: int) -> bytes:
    if request.content_length is not None and request.content_length > limit:
        raise ev.TooLarge(f"at most {limit} bytes", "body")
    parts: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_any():
        size += len(chunk)
        if size > limit:
            raise ev.TooLarge(f"at most {limit} bytes", "body")
        parts.append(chunk)
    return b"".join(parts)


# --- handlers ------------------------------------------------------------------------------


async def _expect_upload(request: web.Request) -> web.StreamResponse | None:
    """Answers `Expect: 100-continue`: refuses before the body is sent if the upload would
    be refused anyway, otherwise tells the client to go on."""
    if request.headers.get(hdrs.EXPECT, "").lower() != "100-continue":
        return error_response(417, "expectation_failed", "only 100-continue is supported", "expect")
    try:
        who, upload = _upload_request(request)
        await request.app[EVIDENCE].admit(who, upload, declared_size=request.content_length)
    except Exception as exc:
        return failure_response(EDGE, request, exc)
    await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    # As aiohttp's own handler does: the 100 is not part of the response that follows.
    request.writer.output_size = 0
    return None


@answering(EDGE)
async def upload(request: web.Request) -> web.StreamResponse:
    who, upload = _upload_request(request)
    history, created = await request.app[EVIDENCE].receive(
        who,
        upload,
        _body(request),
        declared_size=request.content_length,
        clock_check=_clock_check(request, who, upload),
    )
    body = {**history.to_json(), "duplicate": not created}
    location = f"{BASE}/{history.original.evidence_id}"
    return web.json_response(
        body, status=201 if created else 200, headers={hdrs.LOCATION: location}
    )


@answering(EDGE)
async def list_case(request: web.Request) -> web.StreamResponse:
    who = identity_of(request)
    params = ev.single_params(request.query.items(), SEARCH_PARAMS)
    if params.keys() != {"case"}:
        return await _search(request, who, params)
    case_number = ev.parse_case_number(params["case"])
    items = await request.app[EVIDENCE].list_case(who, case_number)
    return web.json_response({"case_number": case_number, "items": [h.to_json() for h in items]})


# The evidence browser's search (docs/evidence.md): any of these; `case` alone lists a case.
SEARCH_PARAMS: Final = ("case", "officer", "court", "from", "to", "limit", "offset")


async def _search(
    request: web.Request, who: Identity, params: dict[str, str]
) -> web.StreamResponse:
    if not params:
        raise ev.BadRequest("give a case, an officer, a court or a period", "case")
    zone = zone_of(request.app[CONFIG].recorder.time_zone)
    since = until = None
    try:
        if "from" in params:
            since = parse_moment(params["from"], zone, "from").timestamp()
        if "to" in params:
            until = parse_moment(params["to"], zone, "to").timestamp()
    except BadQuery as exc:
        raise ev.BadRequest(exc.reason, exc.field) from None
    courts = request.app[COURTS]
    subtree = None
    court = None
    if "court" in params:
        court = records.parse_term(params["court"], "court")
        if court not in courts:
            raise ev.BadRequest("unknown court", "court")
        # A court outside one's scope finds nothing, as its items would not be shown.
        subtree = courts.subtree(court)
    search = records.EvidenceSearch(
        case_number=ev.parse_case_number(params["case"]) if "case" in params else None,
        officer=records.parse_term(params["officer"], "officer") if "officer" in params else None,
        court=court,
        since=since,
        until=until,
        limit=records.parse_count(
            params.get("limit"),
            "limit",
            default=records.DEFAULT_PAGE,
            low=1,
            high=records.MAX_PAGE,
        ),
        offset=records.parse_count(
            params.get("offset"), "offset", default=0, low=0, high=1_000_000
        ),
    )
    items, total = await request.app[EVIDENCE].search(who, search, subtree)
    return web.json_response(
        {
            "case_number": search.case_number,
            "items": [h.to_json() for h in items],
            "total": total,
            "offset": search.offset,
            "limit": search.limit,
        }
    )


@answering(EDGE)
async def read(request: web.Request) -> web.StreamResponse:
    who = identity_of(request)
    ev.single_params(request.query.items(), ())
    history = await request.app[EVIDENCE].read(who, request.match_info["evidence_id"])
    return web.json_response(history.to_json())


@answering(EDGE)
async def player(request: web.Request) -> web.StreamResponse:
    """The bearer token, again, in the cookie the content route also reads (PLAYER)."""
    who = identity_of(request)
    ev.single_params(request.query.items(), ())
    response = web.Response(status=204)
    _set_player_cookie(request, who, response)
    return response


@answering(EDGE)
async def open_view(request: web.Request) -> web.StreamResponse:
    """The player opens a recording: one view, recorded now; its ranges name it (`view`)
    and are not recorded again. Sets the player's cookie as PLAYER does."""
    who = identity_of(request)
    ev.single_params(request.query.items(), ())
    evidence_id = request.match_info["evidence_id"]
    view_id = secrets.token_urlsafe(16)
    await request.app[EVIDENCE].view(who, evidence_id, view_id)
    now = request.app[HUB].clock.now()
    until = await request.app[VIEWS].open(view_id, who.user_id, evidence_id, who.expires_at, now)
    log.info("evidence view opened", evidence_id=evidence_id, view=view_id)
    response = web.json_response({"view": view_id, "expires_at": round(until * 1000)}, status=201)
    response.headers[hdrs.CACHE_CONTROL] = "no-store"
    _set_player_cookie(request, who, response)
    return response


def _set_player_cookie(request: web.Request, who: Identity, response: web.Response) -> None:
    token = bearer_token(request.headers.get(hdrs.AUTHORIZATION, "")) or ""
    left = who.expires_at - request.app[HUB].clock.now()
    response.set_cookie(
        PLAYER_COOKIE,
        token,
        max_age=max(1, int(left)),
        path=BASE,
        httponly=True,
        secure=request.secure,
        samesite="Strict",
    )


def _reader(request: web.Request) -> Identity:
    """Who reads an original: the Authorization header's token, else the player's cookie."""
    if hdrs.AUTHORIZATION in request.headers:
        return identity_of(request)
    cookie = request.cookies.get(PLAYER_COOKIE, "")
    if not cookie or len(cookie) > _MAX_COOKIE_CHARS:
        raise AuthError("token missing")
    return identity_of_token(request, cookie)


@answering(EDGE)
async def download(request: web.Request) -> web.StreamResponse:
    who = _reader(request)
    params = ev.single_params(request.query.items(), ("view",))
    view = params.get("view")
    if view is not None and not VIEW_ID_RE.fullmatch(view):
        raise ev.BadRequest("not a view id", "view")
    store = request.app[EVIDENCE]
    evidence_id = request.match_info["evidence_id"]
    asked: list[ByteRange | None] = []
    # Asked before the store is: the keeper may be Redis (any node's views), and `accept`
    # runs inside the store's download.
    in_view = view is not None and await request.app[VIEWS].covers(
        view, who.user_id, evidence_id, request.app[HUB].clock.now()
    )

    def accept(size: int) -> bool:
        """Refused (416) before the download is recorded. A part asked for in a view (opened
        on any node of the cluster) is that view's, recorded already; the whole original is
        a download, view or not (player_views.py)."""
        part = parse_range(request.headers.get(hdrs.RANGE), size)
        asked.append(part)
        return part is None or not in_view

    history, path = await store.download(who, evidence_id, accept)
    item = history.current()
    original = history.original
    headers = {
        hdrs.CONTENT_TYPE: item.media_type,
        hdrs.CONTENT_DISPOSITION: _content_disposition(item.file_name),
        # Never rendered as something other than what it was uploaded as.
        "X-Content-Type-Options": "nosniff",
        hdrs.CACHE_CONTROL: "private, no-store",
        "X-Evidence-SHA256": original.sha256,
        hdrs.ACCEPT_RANGES: "bytes",
    }
    part = asked[0] if asked else None
    if part is not None:
        return await _send_range(request, path, part, headers)
    response = web.StreamResponse(headers=headers)
    response.content_length = original.size
    check = DownloadCheck(sha256=original.sha256, size=original.size)
    loop = asyncio.get_running_loop()
    with await asyncio.to_thread(path.open, "rb") as fh:
        await response.prepare(request)
        # Each piece is sent once the next one has been read, so the last is held back
        # until the whole file has hashed to the recorded value: bytes that changed on
        # disk are never delivered complete.
        held = b""
        while chunk := await loop.run_in_executor(None, fh.read, DOWNLOAD_CHUNK):
            check.update(chunk)
            if held:
                await response.write(held)
            held = chunk
    if not check.matches():
        store.alarm(
            "evidence original corrupt",
            original.evidence_id,
            original.sha256,
            sent=check.sent,
        )
        # The status is gone already: cut the connection short of Content-Length, which
        # every HTTP client reports as an incomplete download.
        if request.transport is not None:
            request.transport.abort()
        return response
    await response.write(held)
    await response.write_eof()
    return response


async def _send_range(
    request: web.Request, path: Path, part: ByteRange, headers: dict[str, str]
) -> web.StreamResponse:
    """206 with `part` of the original. A range cannot be checked against the hash of the
    whole file without reading all of it: its size was checked (`EvidenceStore.download`),
    a full download is hashed, and `audit verify --files` checks every original at rest."""
    response = web.StreamResponse(
        status=206, headers={**headers, hdrs.CONTENT_RANGE: part.content_range()}
    )
    response.content_length = part.length
    loop = asyncio.get_running_loop()
    left = part.length
    with await asyncio.to_thread(path.open, "rb") as fh:
        await loop.run_in_executor(None, fh.seek, part.start)
        await response.prepare(request)
        while left > 0:
            chunk = await loop.run_in_executor(None, fh.read, min(DOWNLOAD_CHUNK, left))
            if not chunk:
                break
            await response.write(chunk)
            left -= len(chunk)
    if left > 0:
        # The file shrank under us: cut the connection short of Content-Length.
        if request.transport is not None:
            request.transport.abort()
        return response
    await response.write_eof()
    return response


@answering(EDGE)
async def correct(request: web.Request) -> web.StreamResponse:
    who = identity_of(request)
    ev.single_params(request.query.items(), ())
    correction = ev.parse_correction(await _read_bounded(request, ev.MAX_CORRECTION_BYTES))
    history = await request.app[EVIDENCE].correct(
        who, request.match_info["evidence_id"], correction
    )
    return web.json_response(history.to_json(), status=201)


def install(app: web.Application, store: EvidenceStore, redis: RedisConfig | None = None) -> None:
    """Serve evidence from `store`: its routes, its start (sweeping partial uploads) and its
    close. `redis`: the cluster's, where the player's views are then kept (view_keepers.py);
    None keeps them in this node's memory."""
    app[EVIDENCE] = store
    views: ViewKeeper = LocalViews()
    if redis is not None and redis.url:
        views = RedisViews(
            Redis.from_url(
                redis.url,
                socket_timeout=redis.node_timeout_s / 2,
                socket_connect_timeout=redis.node_timeout_s / 2,
            ),
            redis.key_prefix,
        )
    app[VIEWS] = views

    async def start(app: web.Application) -> None:
        await store.start()

    async def close(app: web.Application) -> None:
        store.close()
        await views.close()

    app.on_startup.append(start)
    app.on_cleanup.append(close)
    _add_routes(app)


def _add_routes(app: web.Application) -> None:
    app.router.add_post(BASE, upload, expect_handler=_expect_upload)
    app.router.add_get(BASE, list_case)
    app.router.add_get(f"{BASE}/{_ID}", read)
    app.router.add_get(f"{BASE}/{_ID}/content", download)
    app.router.add_post(PLAYER, player)
    app.router.add_post(f"{BASE}/{_ID}/view", open_view)
    app.router.add_post(f"{BASE}/{_ID}/corrections", correct)


__all__ = ["BASE", "install"]
