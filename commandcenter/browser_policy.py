"""What browsers are told and checked for: which pages may open the WebSocket, and what the
served pages may load.

Origin: a page of another site could open our WebSocket in a visitor's browser and ride on
whatever the browser sends by itself (cookies, once sign-in keeps a session). Browsers name
the page's origin in `Origin`; a WebSocket upgrade whose `Origin` is neither this server
itself (the same scheme, host and port as the request) nor in `server.allowed_origins` is
refused with 403 before the upgrade. A client that sends no `Origin` is not a browser page
(the field app, a body camera, the tests' aiohttp clients): it is let through to the token
check like any other.

Content-Security-Policy: the pages under /app/ load only their own scripts, styles, images
and media from this server and connect only back to it; nothing inline, nothing from a CDN,
no framing by another site.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Final

import structlog
from aiohttp import hdrs, web
from aiohttp.typedefs import Middleware

from commandcenter.http_edge import error_response
from commandcenter.origins import normalised_origin

log = structlog.get_logger(__name__)

APP_PREFIX: Final = "/app/"
CONTENT_SECURITY_POLICY: Final = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        # Snapshots and video frames drawn to canvases become blob: and data: URLs.
        "img-src 'self' data: blob:",
        "media-src 'self' blob:",
        # 'self' covers ws:// and wss:// to this host (CSP Level 3).
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
_PAGE_HEADERS: Final = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def own_origin(request: web.BaseRequest) -> str | None:
    """The origin this request was addressed to, as a page served from here would name it."""
    return normalised_origin(f"{request.scheme}://{request.host}")


def origin_allowed(request: web.BaseRequest, allowed: frozenset[str]) -> bool:
    origin = request.headers.get(hdrs.ORIGIN)
    if origin is None:
        return True
    named = normalised_origin(origin)
    return named is not None and (named == own_origin(request) or named in allowed)


def origin_check(path: str, allowed: frozenset[str]) -> Middleware:
    """Middleware refusing, with 403 `forbidden_origin`, a request to `path` from a page of
    an origin that is neither ours nor allowed."""

    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path == path and not origin_allowed(request, allowed):
            # The origin is the attacker's page, not a secret; bounded in length all the same.
            log.warning("origin refused", origin=request.headers.get(hdrs.ORIGIN, "")[:200])
            return error_response(
                403, "forbidden_origin", "this page's origin may not connect", "origin"
            )
        return await handler(request)

    return check


async def page_headers(request: web.BaseRequest, response: web.StreamResponse) -> None:
    """on_response_prepare: the pages' security headers on everything under /app/."""
    if request.path.startswith(APP_PREFIX):
        response.headers.update(_PAGE_HEADERS)


__all__ = [
    "APP_PREFIX",
    "CONTENT_SECURITY_POLICY",
    "origin_allowed",
    "origin_check",
    "page_headers",
]
