"""What browsers are told and checked for: which pages may open the WebSocket, and what the
served pages may load.

Origin: a page of another site could open our WebSocket in a visitor's browser and ride on
whatever the browser sends by itself (cookies, once sign-in keeps a session). Browsers name
the page's origin in `Origin`; a WebSocket upgrade whose `Origin` is neither this server
itself (the host and port the request was addressed to) nor in `server.allowed_origins` is
refused with 403 before the upgrade. A client that sends no `Origin` is not a browser page
(the field app, a body camera, the tests' aiohttp clients): it is let through to the token
check like any other.

Content-Security-Policy: the pages under /app/ load only their own scripts, styles, images
and media from this server and connect only back to it; nothing inline, nothing from a CDN,
no framing by another site.

Caching: a built asset under an `assets/` directory carries a hash of its content in its name
(Vite's output), so it never changes and is cached for a year; every other file (the pages,
hand-written scripts) is revalidated on each load (`no-cache` with its ETag), so a new
release reaches the consoles at their next reload. A file that is not there is a small HTML
page saying so, not an empty octet stream.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Final

import structlog
from aiohttp import hdrs, web
from aiohttp.typedefs import Middleware

from commandcenter.http_edge import error_response
from commandcenter.origins import normalised_origin

log = structlog.get_logger(__name__)

APP_PREFIX: Final = "/app/"


def content_security_policy(tile_origin: str | None = None) -> str:
    """The pages' policy; `tile_origin` (`[console] tile_url`'s) may serve the map's images.
    Leaflet positions its panes and tiles through element.style (CSSOM), which style-src does
    not govern, so the console needs nothing inline."""
    # Snapshots and video frames drawn to canvases become blob: and data: URLs.
    img = "img-src 'self' data: blob:" + (f" {tile_origin}" if tile_origin else "")
    return "; ".join(
        (
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            img,
            "media-src 'self' blob:",
            # 'self' covers ws:// and wss:// to this host (CSP Level 3).
            "connect-src 'self'",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        )
    )


CONTENT_SECURITY_POLICY: Final = content_security_policy()


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _authority(origin: str) -> str:
    # "https://host:port" -> "host:port"; normalised_origin has dropped a default port.
    return origin.split("://", 1)[1]


def _host_authority(request: web.BaseRequest) -> str | None:
    """The request's Host as an origin's authority: lower case, without :80 or :443."""
    host = normalised_origin(f"http://{request.host}")
    if host is None:
        return None
    authority = _authority(host)
    return authority.removesuffix(":443")


def origin_allowed(request: web.BaseRequest, allowed: frozenset[str]) -> bool:
    """No Origin (not a browser page), our own (the host and port the request was sent to,
    over http or https: behind a TLS-terminating proxy the server itself sees http), or a
    configured one."""
    origin = request.headers.get(hdrs.ORIGIN)
    if origin is None:
        return True
    named = normalised_origin(origin)
    if named is None:
        return False
    return named in allowed or _authority(named) == _host_authority(request)


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


IMMUTABLE: Final = "public, max-age=31536000, immutable"
REVALIDATE: Final = "no-cache"
NOT_FOUND_PAGE: Final = (
    '<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">'
    "<title>404</title></head><body><h1>404</h1>"
    '<p>页面不存在。 The page does not exist.</p><p><a href="/app/index.html">'
    "返回 / Back</a></p></body></html>"
)


def cache_control(path: str) -> str:
    """How long a browser may keep the file at `path` (under /app/) without asking again."""
    return IMMUTABLE if "/assets/" in path.removeprefix(APP_PREFIX.rstrip("/")) else REVALIDATE


def app_not_found(static_dir: Path) -> Middleware:
    """A missing file under /app/ answers a small HTML page (a person opened a wrong link),
    not aiohttp's empty application/octet-stream (its file response finds the file missing
    only when it is sent, too late to answer otherwise, so the file is looked for here)."""
    root = static_dir.resolve()

    @web.middleware
    def check(request: web.Request, handler: Handler) -> Awaitable[web.StreamResponse]:
        # Not a coroutine: any other request gets its handler's own awaitable back, so a
        # WebSocket does not keep a frame of this alive.
        if request.path.startswith(APP_PREFIX) and not _is_file(root, request.path):
            return _not_found()
        return handler(request)

    return check


def _is_file(root: Path, path: str) -> bool:
    wanted = (root / path.removeprefix(APP_PREFIX)).resolve()
    return wanted.is_relative_to(root) and wanted.is_file()


async def _not_found() -> web.StreamResponse:
    return web.Response(status=404, text=NOT_FOUND_PAGE, content_type="text/html")


def page_headers_for(
    tile_origin: str | None,
) -> Callable[[web.BaseRequest, web.StreamResponse], Awaitable[None]]:
    """on_response_prepare: the pages' security headers on everything under /app/, the map's
    tile server (a CSP source: `{s}.` subdomains become `*.`) allowed to serve images."""
    source = tile_origin.replace("://{s}.", "://*.") if tile_origin else None
    headers = {
        "Content-Security-Policy": content_security_policy(source),
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
    }

    async def page_headers(request: web.BaseRequest, response: web.StreamResponse) -> None:
        if request.path.startswith(APP_PREFIX):
            response.headers.update(headers)
            if response.status in (200, 304):
                response.headers[hdrs.CACHE_CONTROL] = cache_control(request.path)

    return page_headers


page_headers = page_headers_for(None)


__all__ = [
    "APP_PREFIX",
    "CONTENT_SECURITY_POLICY",
    "app_not_found",
    "cache_control",
    "content_security_policy",
    "origin_allowed",
    "origin_check",
    "page_headers",
    "page_headers_for",
]
