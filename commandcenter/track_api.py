"""`GET /api/officers/{user_id}/track?from=&to=`: an officer's sampled positions over a period
(by default today, in `recorder.time_zone`), read from the trace, for the console's map
("今日轨迹"). For operators, supervisors, admins (their court and the courts below it) and
auditors (every court), with the same bearer JWT as the WebSocket.

The positions are the ones the hub recorded (one per `presence.position_interval_s` at
most), looked up by the trace's subject index (sessions/facets.py). Positions recorded under
a court outside the caller's scope are left out, so an officer of another court, or one who
does not exist, gives the same empty track. A track longer than MAX_POINTS is thinned evenly
(`"thinned": true`), its first and last points kept.

Its errors become statuses in the one edge of the API, `http_edge.answering`, with this
module's `EDGE`: 401 for the token, 403 for the role, 400 naming the bad parameter, 503
while the trace cannot be read.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any, Final

import structlog
from aiohttp import web

from commandcenter.auth import Role
from commandcenter.http_edge import Edge, Refused, Unavailable, answering, identity_of
from commandcenter.keys import CONFIG, COURTS, TRACE
from identity.names import normalised
from sessions.durable import zone_of
from sessions.errors import BadQuery
from sessions.facets import POSITION

log = structlog.get_logger(__name__)

PATH: Final = "/api/officers/{user_id}/track"
TRACK_ROLES: Final = frozenset({Role.OPERATOR, Role.SUPERVISOR, Role.ADMIN, Role.AUDITOR})
# Points in one answer at most: a day at one position per 10 s is 8,640.
MAX_POINTS: Final = 10_000
# The longest period one request may ask for: a track is read for a shift or a day.
MAX_SPAN_MS: Final = 7 * 24 * 3600 * 1000
# Epoch milliseconds accepted: years 2000-2100, as the protocol's times.
_MIN_MS: Final = 946_684_800_000
_MAX_MS: Final = 4_102_444_800_000
_PARAMS: Final = frozenset({"from", "to"})
_MAX_USER_CHARS: Final = 64


def _millis(value: str | None, name: str) -> int | None:
    if value is None or value == "":
        return None
    if len(value) > 16 or not value.isdigit():
        raise BadQuery("must be epoch milliseconds (digits only)", name)
    ms = int(value)
    if not _MIN_MS <= ms <= _MAX_MS:
        raise BadQuery("must be a time between the years 2000 and 2100", name)
    return ms


def start_of_day_ms(now: float, zone: dt.tzinfo) -> int:
    """Midnight of `now`'s day in `zone`, epoch ms: the default start of a track."""
    local = dt.datetime.fromtimestamp(now, zone)
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    return round(midnight.timestamp() * 1000)


def thin(points: list[dict[str, Any]], limit: int) -> list[dict[str, Any]]:
    """At most `limit` of `points`, evenly spaced, the first and last kept."""
    if len(points) <= limit:
        return points
    if limit < 2:
        return points[-limit:] if limit else []
    step = (len(points) - 1) / (limit - 1)
    return [points[round(i * step)] for i in range(limit)]


async def _track(request: web.Request) -> web.Response:
    who = identity_of(request)
    if who.role not in TRACK_ROLES:
        raise Refused(403, "forbidden", "only the command center reads officers' tracks")
    raw_user = request.match_info["user_id"]
    if not raw_user or len(raw_user) > _MAX_USER_CHARS:
        raise BadQuery(f"must be 1-{_MAX_USER_CHARS} characters", "user_id")
    try:
        user = normalised(raw_user, max_chars=_MAX_USER_CHARS)
    except ValueError as exc:
        raise BadQuery(str(exc), "user_id") from None
    query = request.query
    for name in query:
        if name not in _PARAMS:
            raise BadQuery("unknown parameter", name)
    config = request.app[CONFIG]
    # The edge reads the clock, once: the pure helpers below take it as an argument.
    now = time.time()
    start = _millis(query.get("from"), "from")
    end = _millis(query.get("to"), "to")
    if end is None:
        end = round(now * 1000)
    if start is None:
        start = start_of_day_ms(now, zone_of(config.recorder.time_zone))
    if start >= end:
        raise BadQuery("must be before `to`", "from")
    if end - start > MAX_SPAN_MS:
        raise BadQuery("a track covers at most 7 days", "from")
    trace = request.app.get(TRACE)
    if trace is None:
        raise Refused(503, "unavailable", "this server keeps no trace")
    records = await trace.find(kinds=[POSITION], subject=user, since=start / 1000, until=end / 1000)
    courts = request.app[COURTS]
    points = [
        {
            "at": round(r.at * 1000, 3),
            "lat": r.data.get("lat"),
            "lon": r.data.get("lon"),
            "accuracy_m": r.data.get("accuracy_m"),
            "court": r.data.get("court"),
        }
        for r in records
        if isinstance(r.data.get("court"), str) and courts.in_scope(who, r.data["court"])
    ]
    kept = thin(points, MAX_POINTS)
    return web.json_response(
        {"user": user, "from": start, "to": end, "points": kept, "thinned": len(kept) < len(points)}
    )


# What this endpoint answers besides what every route does (http_edge.answering): a bad
# parameter (`BadQuery`) as it says; the trace out of reach is worth a log line of its own.
EDGE: Final = Edge(
    declared=(BadQuery,),
    unavailable=Unavailable(
        "the trace cannot be read now, retry later",
        log_event="track unavailable",
        logger=__name__,
    ),
    failed="track failed",
)
get_track: Final = answering(EDGE)(_track)


def add_routes(app: web.Application) -> None:
    app.router.add_get(PATH, get_track)


__all__ = [
    "MAX_POINTS",
    "PATH",
    "TRACK_ROLES",
    "add_routes",
    "get_track",
    "start_of_day_ms",
    "thin",
]
