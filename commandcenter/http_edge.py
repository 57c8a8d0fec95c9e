"""What every authenticated HTTP endpoint shares: who is asking (the bearer token) and the
shape of an error answer (`{"error": code, "reason": ..., "field": ...}`).

Each API module still has its one place that maps its own exceptions to statuses; this is
only what those places have in common.
"""

from __future__ import annotations

from typing import Any

from aiohttp import hdrs, web

from commandcenter.auth import AuthError, Identity, bearer_token
from commandcenter.keys import HUB


def identity_of(request: web.Request) -> Identity:
    """The verified identity of the request's `Authorization: Bearer` token; AuthError if
    there is none or it is not valid."""
    token = bearer_token(request.headers.get(hdrs.AUTHORIZATION, ""))
    if token is None:
        raise AuthError("token missing")
    hub = request.app[HUB]
    return hub.authenticator.verify(token, hub.clock.now())


def error_response(status: int, code: str, reason: str, field: str | None = None) -> web.Response:
    body: dict[str, Any] = {"error": code, "reason": reason}
    if field is not None:
        body["field"] = field
    response = web.json_response(body, status=status)
    if status == AuthError.http_status:
        response.headers[hdrs.WWW_AUTHENTICATE] = "Bearer"
    return response


def auth_error_response(exc: AuthError) -> web.Response:
    return error_response(AuthError.http_status, "unauthorized", exc.reason)
