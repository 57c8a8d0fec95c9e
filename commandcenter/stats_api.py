"""`GET /api/stats?from=&to=&court=&format=`: the platform's figures over HTTP, for auditors
(every court) and supervisors and admins (their court and those below it).

The bearer token is the same JWT as on the WebSocket. Its errors become statuses in the one
edge of the API, `http_edge.answering`, with this module's `EDGE`: 401 for the token, 403 for
the role or a court out of scope, 400 naming the bad parameter, 503 while the trace cannot
be read; anything else is logged with its traceback and answered 500 with the request's id
only. Every error body is `{"error", "reason"[, "field" | "request_id"]}`.
docs/statistics.md says what each figure counts.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Final

import structlog
from aiohttp import web

from commandcenter.auth import Courts, Identity, Role
from commandcenter.http_edge import Edge, Refused, Unavailable, answering, identity_of
from commandcenter.keys import CONFIG, COURTS, TRACE
from sessions.durable import statistics_report, zone_of
from sessions.errors import BadQuery
from sessions.statistics import (
    Period,
    StatsQuery,
    explained,
    figures_of,
    parse_period,
    render_csv,
)
from sessions.store import TraceStore

log = structlog.get_logger(__name__)

PATH: Final = "/api/stats"
STATS_ROLES: Final = frozenset({Role.AUDITOR, Role.SUPERVISOR, Role.ADMIN})
# Longest value accepted for any parameter; a date or a court code is far shorter.
MAX_PARAM_CHARS: Final = 64
_PARAMS: Final = frozenset({"from", "to", "court", "format", "explain", "series"})
# The dashboard's charts (`series=day,court`): a figure per day of the period and per court
# of the scope, each counted exactly as the whole is. Bounded, as each is one count query.
MAX_SERIES_DAYS: Final = 93
MAX_SERIES_COURTS: Final = 200


async def _stats(request: web.Request) -> web.Response:
    who = identity_of(request)
    if who.role not in STATS_ROLES:
        raise Refused(403, "forbidden", "only auditors, supervisors and admins read statistics")
    query = request.query
    for name, value in query.items():
        if name not in _PARAMS:
            raise BadQuery("unknown parameter", name)
        if len(value) > MAX_PARAM_CHARS:
            raise BadQuery(f"longer than {MAX_PARAM_CHARS} characters", name)
    fmt = query.get("format", "json")
    if fmt not in ("json", "csv"):
        raise BadQuery("must be json or csv", "format")
    courts = request.app[COURTS]
    court = query.get("court") or None
    if court is not None:
        if court not in courts:
            raise BadQuery("unknown court", "court")
        if not courts.in_scope(who, court):
            raise Refused(403, "forbidden", "court is outside your scope", "court")
    elif who.role is not Role.AUDITOR:
        court = who.court
    config = request.app[CONFIG]
    period = parse_period(query.get("from"), query.get("to"), zone_of(config.recorder.time_zone))
    trace = request.app.get(TRACE)
    if trace is None:
        raise Refused(503, "unavailable", "this server keeps no trace to count")
    explain = query.get("explain", "false")
    if explain not in ("true", "false"):
        raise BadQuery("must be true or false", "explain")
    series = frozenset(query.get("series", "").split(",")) - {""}
    if not series <= {"day", "court"}:
        raise BadQuery("a comma-separated list of day and court", "series")
    if fmt == "csv" and (series or explain == "true"):
        raise BadQuery("series and explain are for json", "format")
    report = await statistics_report(trace, courts, period, court)
    if fmt == "csv":
        return web.Response(text=render_csv(report), content_type="text/csv", charset="utf-8")
    answer = explained(report) if explain == "true" else report.as_json()
    zone = zone_of(config.recorder.time_zone)
    if "day" in series:
        answer["by_day"] = await _by_day(trace, courts, period, court, zone)
    if "court" in series:
        answer["by_court"] = await _by_court(trace, courts, period, court, who)
    return web.json_response(answer)


async def _by_day(
    trace: TraceStore, courts: Courts, period: Period, court: str | None, zone: dt.tzinfo
) -> list[dict[str, Any]]:
    """The figures of each day (midnight to midnight in the configured zone) that the period
    touches, each day cut to the period."""
    first = period.start.astimezone(zone).date()
    last = (period.end - dt.timedelta(microseconds=1)).astimezone(zone).date()
    days = (last - first).days + 1
    if days > MAX_SERIES_DAYS:
        raise BadQuery(f"a daily series covers at most {MAX_SERIES_DAYS} days", "series")
    out = []
    for n in range(days):
        day = first + dt.timedelta(days=n)
        start = dt.datetime(day.year, day.month, day.day, tzinfo=zone)
        end = start + dt.timedelta(days=1)
        part = Period(max(start, period.start), min(end, period.end))
        report = await statistics_report(trace, courts, part, court)
        out.append({"day": day.isoformat(), "figures": report.as_json()["figures"]})
    return out


async def _by_court(
    trace: TraceStore, courts: Courts, period: Period, court: str | None, who: Identity
) -> list[dict[str, Any]]:
    """The figures of each court of the question's scope, each court on its own (not the
    courts below it), in code order."""
    codes = sorted(courts.subtree(court) if court is not None else courts.scope(who))
    if len(codes) > MAX_SERIES_COURTS:
        raise BadQuery(
            f"a series per court covers at most {MAX_SERIES_COURTS}; ask for one", "court"
        )
    out = []
    for code in codes:
        counts = await trace.counts(StatsQuery(period.since_us, period.until_us, frozenset({code})))
        figures = {f.name: f.value for f in figures_of(counts)}
        out.append({"court": code, "name": courts.name(code), "figures": figures})
    return out


# What this endpoint answers besides what every route does (http_edge.answering): a bad
# parameter (`BadQuery`) as it says; the trace out of reach is worth a log line of its own.
EDGE: Final = Edge(
    declared=(BadQuery,),
    unavailable=Unavailable(
        "the trace cannot be read now, retry later",
        log_event="statistics unavailable",
        logger=__name__,
    ),
    failed="statistics failed",
)
get_stats: Final = answering(EDGE)(_stats)


def add_routes(app: web.Application) -> None:
    app.router.add_get(PATH, get_stats)


__all__ = ["PATH", "STATS_ROLES", "add_routes", "get_stats"]
