"""What every HTTP endpoint shares: who is asking (the bearer token), the request's id, and
the shape of an error answer (`{"error": code, "reason": ..., "field": ...}`).

Each API module still has its one place that maps its own exceptions to statuses; what is
not a client's fault goes to `internal_error_response` here: logged with its traceback, the
request id and the user id, and answered 500 with the request id only (nothing of the error
itself). The `request_ids` middleware gives every request its id (`X-Request-Id` on every
answer, and on every log line written while serving it) and answers any fault no API
caught the same way.
"""

from __future__ import annotations

import secrets
from typing import Any, Final

import structlog
from aiohttp import hdrs, web
from aiohttp.typedefs import Handler

from commandcenter.auth import AuthError, Identity, bearer_token
from commandcenter.keys import HUB

log = structlog.get_logger(__name__)

REQUEST_ID: Final = "X-Request-Id"
_ID_KEY: Final = "request_id"
_USER_KEY: Final = "user_id"


def identity_of(request: web.Request) -> Identity:
    """The verified identity of the request's `Authorization: Bearer` token; AuthError if
    there is none or it is not valid."""
    token = bearer_token(request.headers.get(hdrs.AUTHORIZATION, ""))
    if token is None:
        raise AuthError("token missing")
    hub = request.app[HUB]
    identity = hub.authenticator.verify(token, hub.clock.now())
    request[_USER_KEY] = identity.user_id
    return identity


def request_id(request: web.Request) -> str:
    return str(request.get(_ID_KEY, ""))


def internal_error_response(
    request: web.Request, exc: BaseException, event: str = "request failed"
) -> web.Response:
    """Our fault: logged in full, answered 500 with nothing but the request's id."""
    rid = request_id(request)
    log.error(
        event,
        method=request.method,
        path=request.path,
        request_id=rid,
        user_id=request.get(_USER_KEY),
        exc_info=exc,
    )
    body = {"error": "internal_error", "reason": "internal error", "request_id": rid}
    return web.json_response(body, status=500)


@web.middleware
async def request_ids(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every request gets an id of ours, on every log line while it is served; a fault that
    no API answered is answered here, 500 with that id."""
    rid = secrets.token_hex(8)
    request[_ID_KEY] = rid
    with structlog.contextvars.bound_contextvars(request_id=rid):
        try:
            return await handler(request)
        except web.HTTPException:
            raise
        except Exception as exc:
            return internal_error_response(request, exc)


async def stamp_request_id(request: web.BaseRequest, response: web.StreamResponse) -> None:
    """`X-Request-Id` on every answer, streamed ones included (an `on_response_prepare`
    signal, not the middleware: a download is prepared inside its handler)."""
    rid = request.get(_ID_KEY)
    if rid is not None:
        response.headers[REQUEST_ID] = str(rid)


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
