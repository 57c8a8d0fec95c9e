"""What every HTTP endpoint shares: who is asking (the bearer token), the request's id, and
the shape of an error answer (`{"error": code, "reason": ..., "field": ...}`).

Each API module still has its one place that maps its own exceptions to statuses; what is
not a client's fault goes to `internal_error_response` here: logged with its traceback, the
request id and the user id, and answered 500 with the request id only (nothing of the error
itself). Every answer carries the request's id (`X-Request-Id`), and every log line an API
handler writes while serving it (`serving`).
"""

from __future__ import annotations

import contextlib
import json
import secrets
from collections.abc import Iterator
from typing import Any, Final

import structlog
from aiohttp import hdrs, web

from commandcenter.auth import AuthError, Identity, bearer_token
from commandcenter.keys import HUB

log = structlog.get_logger(__name__)

REQUEST_ID: Final = "X-Request-Id"
# The `error` code an answer carries, set on every error answer made here, so the metrics
# count errors by code where they become wire codes (commandcenter/metrics.py).
ERROR_CODE: Final = web.ResponseKey("error_code", str)
_ID_KEY: Final = "request_id"
_USER_KEY: Final = "user_id"


def identity_of(request: web.Request) -> Identity:
    """The verified identity of the request's `Authorization: Bearer` token; AuthError if
    there is none or it is not valid."""
    token = bearer_token(request.headers.get(hdrs.AUTHORIZATION, ""))
    if token is None:
        raise AuthError("token missing")
    return identity_of_token(request, token)


def identity_of_token(request: web.Request, token: str) -> Identity:
    """The verified identity of `token`, carried otherwise than in the Authorization header
    (the evidence player's cookie); AuthError if it is not valid."""
    hub = request.app[HUB]
    identity = hub.authenticator.verify(token, hub.clock.now())
    request[_USER_KEY] = identity.user_id
    return identity


def request_id(request: web.BaseRequest) -> str:
    """The request's id, drawn on first use."""
    rid = request.get(_ID_KEY)
    if rid is None:
        rid = request[_ID_KEY] = secrets.token_hex(8)
    return str(rid)


@contextlib.contextmanager
def serving(request: web.Request) -> Iterator[None]:
    """While an API handler serves `request`, every log line carries its id."""
    with structlog.contextvars.bound_contextvars(request_id=request_id(request)):
        yield


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
    response = web.json_response(body, status=500)
    response[ERROR_CODE] = "internal_error"
    return response


async def stamp_request_id(request: web.BaseRequest, response: web.StreamResponse) -> None:
    """`X-Request-Id` on every answer, streamed ones included (an `on_response_prepare`
    signal: a download is prepared inside its handler). Not a middleware: that would hold a
    frame for as long as each WebSocket lives, 10,000 of them on a busy node."""
    response.headers[REQUEST_ID] = request_id(request)


class Refused(Exception):
    """The asker's fault on a route, with the status and `error` code it is answered with
    (`refused_response`): never logged as ours. `field` names the bad input; `retry`: worth
    asking again later (the feed's 429 says when); `faults`: an import file's bad rows,
    "line N: ..."."""

    def __init__(
        self,
        status: int,
        code: str,
        reason: str,
        field: str | None = None,
        *,
        retry: bool = False,
        faults: list[str] | None = None,
    ) -> None:
        super().__init__(reason)
        self.status, self.code, self.reason, self.field = status, code, reason, field
        self.retry = retry
        self.faults = faults


# Deepest a JSON request body may nest (the object itself is level 1). No API takes more than
# two levels; the bound keeps a hostile body from reaching Python's recursion limit.
MAX_JSON_DEPTH: Final = 32


def json_object(raw: bytes) -> dict[str, Any]:
    """A request body (already bounded in size) as a JSON object; `Refused` 400 for one
    that is not JSON, not an object, or nested deeper than `MAX_JSON_DEPTH`."""
    try:
        body = json.loads(raw)
    except RecursionError:
        raise _too_deep() from None
    except (ValueError, UnicodeDecodeError):
        raise Refused(400, "bad_request", "the body is not JSON") from None
    if not isinstance(body, dict):
        raise Refused(400, "bad_request", "the body must be a JSON object")
    # Walked without recursion: the decoder survived, and so must the check.
    stack: list[tuple[object, int]] = [(body, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise _too_deep()
        if isinstance(value, dict):
            stack.extend((v, depth + 1) for v in value.values())
        elif isinstance(value, list):
            stack.extend((v, depth + 1) for v in value)
    return body


def _too_deep() -> Refused:
    return Refused(400, "bad_request", f"the body nests deeper than {MAX_JSON_DEPTH} levels")


def refused_response(exc: Refused) -> web.Response:
    return error_response(exc.status, exc.code, exc.reason, exc.field)


def error_response(status: int, code: str, reason: str, field: str | None = None) -> web.Response:
    body: dict[str, Any] = {"error": code, "reason": reason}
    if field is not None:
        body["field"] = field
    response = web.json_response(body, status=status)
    response[ERROR_CODE] = code
    if status == AuthError.http_status:
        response.headers[hdrs.WWW_AUTHENTICATE] = "Bearer"
    return response


def auth_error_response(exc: AuthError) -> web.Response:
    return error_response(AuthError.http_status, "unauthorized", exc.reason)
