"""`GET /api/feed?after=<seq>`: the trace facts of the caller's court scope as a stream of
NDJSON lines, for case-management systems (docs/feed.md).

The rules are `sessions.feed` (which fact is in which scope, the line format, the stream
limits); this module authenticates, refuses, records the opening, and drives the stream:
read a page of the trace after the last seq examined, look up the court of calls and
conferences created before the stream began, send what is in scope, and when caught up wait
`feed.poll_s` (or until the server stops), with a heartbeat line whenever nothing was sent
for `feed.heartbeat_s`. A stream is not an in-flight request the drain waits for: on
shutdown (SIGTERM, commandcenter/serving.py) every stream sends a last heartbeat with its
seq, ends its response and returns, so a stop never waits on a feed.

Errors become statuses before the stream starts, in the one edge of the API
(`http_edge.failure_response`, with this module's `EDGE`); once it has started, a failure
can only end it (logged), and the client resumes with `after`.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Final

import msgspec
import structlog
from aiohttp import hdrs, web

from commandcenter.auth import Identity, Role
from commandcenter.http_edge import (
    Edge,
    Refused,
    Unavailable,
    failure_response,
    identity_of,
    serving,
)
from commandcenter.keys import CONFIG, COURTS, HUB, IN_FLIGHT, RECORDER, TRACE
from sessions import feed
from sessions.recorder import TraceEvent
from sessions.settings import FeedConfig
from sessions.store import TraceStore

log = structlog.get_logger(__name__)

PATH: Final = "/api/feed"
CONTENT_TYPE: Final = "application/x-ndjson"
FEED_ROLES: Final = frozenset({Role.SUPERVISOR, Role.ADMIN, Role.AUDITOR})
_PARAMS: Final = frozenset({"after"})


class FeedStreams:
    """This node's open streams: their slots, and the signal that ends them all."""

    def __init__(self, config: FeedConfig) -> None:
        self.slots = feed.StreamSlots(total=config.max_connections, per_user=config.max_per_user)
        self.stopping = asyncio.Event()

    def stop(self) -> None:
        self.stopping.set()


# Here rather than in keys.py: keys.py is imported by this module.
FEEDS: Final = web.AppKey("feeds", FeedStreams)


# What this endpoint answers besides what every route does: the trace out of reach is worth
# a log line of its own. Its refusals come before the stream starts, through
# `http_edge.failure_response` (not `answering`: once the stream has begun, an error can
# only end it).
EDGE: Final = Edge(
    unavailable=Unavailable(
        "the trace is unavailable, retry later", log_event="feed trace unavailable", logger=__name__
    ),
    failed="feed request failed",
)


def _checked(request: web.Request) -> tuple[Identity, int]:
    who = identity_of(request)
    if who.role not in FEED_ROLES:
        raise Refused(403, "forbidden", "only supervisors, admins and auditors read the feed")
    for name in request.query:
        if name not in _PARAMS:
            raise Refused(400, "bad_request", "unknown parameter", name)
    values = request.query.getall("after", [])
    if len(values) > 1:
        raise Refused(400, "bad_request", "given more than once", "after")
    try:
        after = feed.parse_after(values[0] if values else None)
    except feed.BadAfter as exc:
        raise Refused(400, "bad_request", exc.reason, "after") from None
    if request.app[IN_FLIGHT].draining or request.app[FEEDS].stopping.is_set():
        raise Refused(503, "draining", "the server is stopping; retry in a few seconds", retry=True)
    if TRACE not in request.app:
        raise Refused(503, "unavailable", "this server keeps no trace")
    return who, after


async def get_feed(request: web.Request) -> web.StreamResponse:
    with serving(request):
        streams = request.app[FEEDS]
        try:
            who, after = _checked(request)
        except Exception as exc:
            return failure_response(EDGE, request, exc)
        user = (who.court, who.user_id)
        refused = streams.slots.take(user)
        if refused is not None:
            log.info("feed refused", reason=refused, user=who.user_id, open=streams.slots.count)
            reason = (
                "too many feed streams are open on this server"
                if refused == "too_many_streams"
                else "you have as many feed streams open as allowed"
            )
            return failure_response(EDGE, request, Refused(429, refused, reason, retry=True))
        try:
            return await _serve(request, who, after, streams)
        finally:
            streams.slots.give_back(user)


async def _serve(
    request: web.Request, who: Identity, after: int, streams: FeedStreams
) -> web.StreamResponse:
    courts = request.app[COURTS]
    scope = courts.scope(who)
    try:
        # Who reads what is part of the record, as every access to evidence is.
        await request.app[RECORDER].record(
            [
                TraceEvent(
                    feed.FEED_OPENED,
                    request.app[HUB].clock.now(),
                    {
                        "user": who.user_id,
                        "role": who.role.value,
                        "court": who.court,
                        "courts": sorted(scope),
                        "after": after,
                    },
                )
            ]
        )
    except Exception as exc:
        return failure_response(EDGE, request, exc)
    log.info("feed opened", user=who.user_id, court=who.court, after=after)
    scope_filter = feed.ScopeFilter(scope, every_court=scope == courts.all())
    return await _stream(request, scope_filter, after, streams)


async def _origin_court(trace: TraceStore, ref: feed.Ref) -> str | None:
    """The court of a call or conference created before the stream reached it."""
    for record in await trace.find(kinds=feed.ORIGINS[ref.kind], data_equals={ref.kind: ref.id}):
        court = feed.origin_court(record.kind, record.data, ref)
        if court is not None:
            return court
    return None


async def _stream(
    request: web.Request, scope_filter: feed.ScopeFilter, after: int, streams: FeedStreams
) -> web.StreamResponse:
    config = request.app[CONFIG].feed
    trace = request.app[TRACE]
    response = web.StreamResponse(
        headers={
            hdrs.CONTENT_TYPE: CONTENT_TYPE,
            hdrs.CACHE_CONTROL: "no-store",
            # nginx would otherwise hold lines back until its buffer fills.
            "X-Accel-Buffering": "no",
        }
    )
    await response.prepare(request)
    loop = asyncio.get_running_loop()

    async def send(lines: bytes) -> None:
        async with asyncio.timeout(config.send_timeout_s):
            await response.write(lines)

    cursor = after
    try:
        # At once, so the client knows the stream is open before any fact comes.
        await send(feed.heartbeat_line(cursor))
        last_sent = loop.time()
        while not streams.stopping.is_set():
            if request.transport is None or request.transport.is_closing():
                # The client went away: give its slot back now, not at the next write.
                log.info("feed ended", reason="client_gone", seq=cursor)
                return response
            links = await trace.links(after_seq=cursor, limit=config.page)
            lines: list[bytes] = []
            for link in links:
                decoded = msgspec.json.decode(link.data)
                # Every record's data is an object; anything else belongs to no court.
                data = decoded if isinstance(decoded, dict) else {}
                for ref in scope_filter.unknown(data):
                    scope_filter.learn(ref, await _origin_court(trace, ref))
                if scope_filter.admits(link.kind, data):
                    lines.append(feed.fact_line(link))
                cursor = link.seq
            if lines:
                await send(b"".join(lines))
                last_sent = loop.time()
            quiet = loop.time() - last_sent
            if quiet >= config.heartbeat_s:
                # Also while catching up through pages of other courts' facts.
                await send(feed.heartbeat_line(cursor))
                last_sent, quiet = loop.time(), 0.0
            if len(links) == config.page:
                continue  # more is waiting: read on at once
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    streams.stopping.wait(), min(config.poll_s, config.heartbeat_s - quiet)
                )
        # The server is stopping: say how far this stream got, and end it cleanly.
        await send(feed.heartbeat_line(cursor))
        await response.write_eof()
        log.info("feed ended", reason="server_stopping", seq=cursor)
    except TimeoutError:
        log.info("feed ended", reason="client_too_slow", seq=cursor)
        _cut(request)
    except ConnectionError:
        log.info("feed ended", reason="client_gone", seq=cursor)
    except asyncio.CancelledError:
        log.info("feed ended", reason="cancelled", seq=cursor)
        raise
    except Exception:
        # After the status went out nothing but ending the stream is left; the client
        # resumes from its last seq.
        log.exception("feed failed", seq=cursor)
        _cut(request)
    return response


def _cut(request: web.Request) -> None:
    if request.transport is not None:
        request.transport.abort()


def install(app: web.Application) -> None:
    """Serve the feed: its route, and its streams ended when the app shuts down."""
    app[FEEDS] = FeedStreams(app[CONFIG].feed)

    async def stop(app: web.Application) -> None:
        app[FEEDS].stop()

    app.on_shutdown.append(stop)
    app.router.add_get(PATH, get_feed)


__all__ = ["CONTENT_TYPE", "FEEDS", "FEED_ROLES", "PATH", "FeedStreams", "install"]
