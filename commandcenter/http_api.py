"""HTTP endpoints beside the WebSocket: health for load balancers and, as the other issues
land, the authenticated APIs (statistics, evidence)."""

from __future__ import annotations

from aiohttp import web

from commandcenter import __version__, stats_api
from commandcenter.keys import HUB


async def healthz(request: web.Request) -> web.Response:
    # Unauthenticated on purpose, for load balancers; it reveals nothing but liveness.
    # "degraded" (still 200: the node serves calls) while trace events await the recorder.
    hub = request.app[HUB]
    body = {**hub.health(), "node_id": hub.node_id, "version": __version__}
    return web.json_response(body)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
    stats_api.add_routes(app)
