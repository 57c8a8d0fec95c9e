"""HTTP endpoints beside the WebSocket: health for load balancers and, as the other issues
land, the authenticated APIs (statistics, evidence)."""

from __future__ import annotations

from aiohttp import web

from commandcenter import __version__
from commandcenter.keys import HUB


async def healthz(request: web.Request) -> web.Response:
    # Unauthenticated on purpose, for load balancers; it reveals nothing but liveness.
    hub = request.app[HUB]
    return web.json_response({"status": "ok", "node_id": hub.node_id, "version": __version__})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
