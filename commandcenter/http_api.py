"""HTTP endpoints beside the WebSocket: health for load balancers and, as the other issues
land, the authenticated APIs (statistics, evidence), and the OpenAPI document describing
them all (commandcenter/openapi.json, kept by hand; tests/test_openapi.py holds it to the
routes)."""

from __future__ import annotations

from pathlib import Path
from typing import Final

from aiohttp import web

from commandcenter import __version__, stats_api
from commandcenter.http_edge import Edge, Handler, answering, identity_of
from commandcenter.keys import HUB, MEDIA, RECORDER, REINDEXER, WORKERS
from sessions.durable import DurableRecorder

OPENAPI_PATH: Final = "/api/openapi.json"
OPENAPI_FILE: Final = Path(__file__).parent / "openapi.json"
# The document's route answers nothing of its own (http_edge.answering): a token, or 401.
OPENAPI_EDGE: Final = Edge()


async def healthz(request: web.Request) -> web.Response:
    # Unauthenticated on purpose, for load balancers; it reveals nothing but liveness.
    # "degraded" (still 200: the node serves calls) while trace events await the recorder.
    hub = request.app[HUB]
    body = {**hub.health(), "node_id": hub.node_id, "version": __version__}
    reindexer = request.app.get(REINDEXER)
    if reindexer is not None and reindexer.remaining is not None:
        # Records of a trace written before its subject index still to be filed: until 0,
        # the call, conference and evidence audits may miss some of them.
        body["reindex_remaining"] = reindexer.remaining
    return web.json_response(body)


async def readyz(request: web.Request) -> web.Response:
    """Whether this node should be sent new clients: 200 when every check passes, else 503
    naming the ones that fail. Unauthenticated like /healthz, and as terse."""
    app = request.app
    hub = app[HUB]
    recorder = app[RECORDER]
    media = app.get(MEDIA) or app.get(WORKERS)
    checks = {
        # SIGTERM received: draining, clients are being sent elsewhere.
        "accepting": not hub.stopping,
        # Trace events recorded as they come, and (with Redis) the cluster reachable.
        "core": hub.health().get("status") == "ok",
        "trace": not isinstance(recorder, DurableRecorder) or recorder.is_open,
        # Media in process recovered, or every media worker process up.
        "media": media is None or media.started,
    }
    ready = all(checks.values())
    body = {
        "ready": ready,
        "checks": {name: "ok" if ok else "failing" for name, ok in checks.items()},
        "node_id": hub.node_id,
    }
    return web.json_response(body, status=200 if ready else 503)


def openapi_handler(document: bytes) -> Handler:
    """Serves `document`. Any valid token of any role: the document is no secret, but every
    API request is authenticated (only the load balancers' probes are not)."""

    async def openapi(request: web.Request) -> web.Response:
        identity_of(request)
        return web.Response(body=document, content_type="application/json")

    return answering(OPENAPI_EDGE)(openapi)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    # Read once, at start: it changes only with the code.
    app.router.add_get(OPENAPI_PATH, openapi_handler(OPENAPI_FILE.read_bytes()))
    stats_api.add_routes(app)
