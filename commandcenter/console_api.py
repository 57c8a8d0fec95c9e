"""`GET /api/console/settings`: what the operator console needs that the WebSocket does not
carry: the map's tile server (`[console] tile_url`, empty for the offline map), the waiting
times at which a call turns amber and red, and the courts of the caller's scope with their
places on the map. For operators, supervisors and admins, with the same bearer JWT as the
WebSocket (the console exchanges its cookie for one first). docs/console.md says how the
console uses it.
"""

from __future__ import annotations

from typing import Final

from aiohttp import web

from commandcenter.auth import Role
from commandcenter.http_edge import Edge, Refused, answering, identity_of
from commandcenter.keys import CONFIG, COURTS, EVIDENCE
from signalling.settings import supervisor_join

PATH: Final = "/api/console/settings"
CONSOLE_ROLES: Final = frozenset({Role.OPERATOR, Role.SUPERVISOR, Role.ADMIN})


async def _settings(request: web.Request) -> web.Response:
    who = identity_of(request)
    if who.role not in CONSOLE_ROLES:
        raise Refused(403, "forbidden", "only operators, supervisors and admins use the console")
    console = request.app[CONFIG].console
    courts = request.app[COURTS]
    scope = sorted(courts.scope(who))
    places = console.court_places()
    return web.json_response(
        {
            "tile_url": console.tile_url,
            "tile_attribution": console.tile_attribution,
            "queue_amber_s": console.queue_amber_s,
            "queue_red_s": console.queue_red_s,
            "wall_max_feeds": console.wall_max_feeds,
            "wall_rotate_s": console.wall_rotate_s,
            "position_stale_s": console.position_stale_s,
            # Whether calls here are recorded (the call view says so): media relayed,
            # `media.record`, and an evidence store to keep them in.
            "recording": _records_calls(request.app),
            # How a supervisor may join a call here (join_call's `covert`).
            "supervisor_join": supervisor_join(request.app[CONFIG].calls),
            "courts": [
                {
                    "code": code,
                    "name": courts.name(code),
                    "parent": courts.parent(code),
                    "position": _position(places.get(code)),
                }
                for code in scope
            ],
        }
    )


# What this endpoint answers besides what every route does (http_edge.answering): nothing
# (it reads the config only).
EDGE: Final = Edge(failed="console settings failed")
get_settings: Final = answering(EDGE)(_settings)


def _records_calls(app: web.Application) -> bool:
    media = app[CONFIG].media
    return media.enabled and media.record and app.get(EVIDENCE) is not None


def _position(at: tuple[float, float] | None) -> dict[str, float] | None:
    return None if at is None else {"lat": at[0], "lon": at[1]}


def add_routes(app: web.Application) -> None:
    app.router.add_get(PATH, get_settings)


__all__ = ["CONSOLE_ROLES", "PATH", "add_routes", "get_settings"]
