"""What every HTTP endpoint shares: who is asking (the bearer token), the request's id, and
the shape of an error answer (`{"error": code, "reason": ..., "field": ...}`).

`answering` is the one place where the API modules' routes turn exceptions into statuses
(all but the feed's, whose stream, once begun, can only end); each module declares as data
(its `Edge`) what is its own: which of its errors answer as they say, what its 503 tells the
client. What is not a client's fault goes to `internal_error_response`: logged with its
traceback, the request id and the user id, and answered 500 with the request id only
(nothing of the error itself). Every answer carries the request's id (`X-Request-Id`), and
every log line an API handler writes while serving it (`serving`).
"""

from __future__ import annotations

import contextlib
import functools
import json
import secrets
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, Final

import structlog
from aiohttp import hdrs, web

from commandcenter.auth import AuthError, Identity, bearer_token
from commandcenter.keys import HUB, IN_FLIGHT
from sessions.errors import RecorderError

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
    if exc.faults is not None:
        # An import's bad rows, listed for the admin to fix; no `field`, which names one.
        body = {"error": exc.code, "reason": exc.reason, "faults": exc.faults}
        response = web.json_response(body, status=exc.status)
        response[ERROR_CODE] = exc.code
        return response
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


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class Unavailable:
    """An edge's answer while a store it reads or writes cannot be reached (a `RecorderError`
    whose `http_status` is 503: nothing was done, the client may ask again): 503
    `unavailable` with `reason`, telling when to ask again if `retry_after`, and logged as
    `log_event` where the outage is worth a line of its own (the trace), by the module's
    logger (`logger`, its `__name__`), which log filters and alerts know it by."""

    reason: str
    retry_after: bool = False
    log_event: str | None = None
    logger: str = __name__


@dataclass(frozen=True, slots=True)
class Edge:
    """What one API module's routes answer besides what every route does (`answering`).

    `unavailable`: its 503 while a store it needs is out of reach; None where it needs none
    (such an error is then a bug of ours, 500). `declared`: its `RecorderError`s that are
    answered as they say (`http_status`, `code`, `reason`, `field`, `http_headers()`),
    whatever the status. `failed`: the event a 500 is logged as. `in_flight`: its requests
    are counted for a graceful stop (app[IN_FLIGHT]), and refused 503 `draining` once it
    began. `close_unread`: an error answer to a body the route did not read to its end
    closes the connection, so that the client stops sending it.
    """

    unavailable: Unavailable | None = None
    declared: tuple[type[RecorderError], ...] = ()
    failed: str = "request failed"
    in_flight: bool = False
    close_unread: bool = False


# Seconds a client is told to wait before it asks again (Retry-After).
RETRY_AFTER_S: Final = 5


def answering(edge: Edge) -> Callable[[Handler], Handler]:
    """The route decorator of the API modules: serves `handler` with the request's id bound
    to its log lines and turns what it raises into the answer (`failure_response`)."""

    def decorate(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def answer(request: web.Request) -> web.StreamResponse:
            with serving(request):
                if not edge.in_flight:
                    return await _answered(edge, handler, request)
                in_flight = request.app[IN_FLIGHT]
                with in_flight.track():
                    if in_flight.draining:
                        # The server is stopping: another node (or this one, restarted)
                        # serves it.
                        response = error_response(
                            503, "draining", "the server is stopping; retry in a few seconds"
                        )
                        response.headers[hdrs.RETRY_AFTER] = str(RETRY_AFTER_S)
                        response.force_close()
                        return response
                    return await _answered(edge, handler, request)

        return answer

    return decorate


async def _answered(edge: Edge, handler: Handler, request: web.Request) -> web.StreamResponse:
    try:
        return await handler(request)
    except Exception as exc:
        return failure_response(edge, request, exc)


def failure_response(edge: Edge, request: web.Request, exc: Exception) -> web.Response:
    """The one translation of a route's exception into its answer: the client's faults
    (the token, a `Refused`, the edge's declared errors) with their status and short reason,
    a store out of reach with the edge's 503, and anything else as ours (500). Also what a
    route's `expect_handler` answers a refused `Expect: 100-continue` with."""
    response = _failure(edge, request, exc)
    # A body the route did not read to its end (a refusal, an upload cut short) is read by
    # nobody: closing the connection stops the client sending the rest of it.
    if edge.close_unread and request.body_exists and not request.content.is_eof():
        response.force_close()
    return response


def _failure(edge: Edge, request: web.Request, exc: Exception) -> web.Response:
    if isinstance(exc, AuthError):
        return auth_error_response(exc)
    if isinstance(exc, Refused):
        response = refused_response(exc)
        if exc.retry:
            response.headers[hdrs.RETRY_AFTER] = str(RETRY_AFTER_S)
        return response
    if isinstance(exc, edge.declared):
        response = error_response(exc.http_status, exc.code, exc.reason, exc.field)
        response.headers.update(exc.http_headers())
        return response
    unavailable = edge.unavailable
    if unavailable is not None and isinstance(exc, RecorderError) and exc.http_status == 503:
        if unavailable.log_event is not None:
            logger = structlog.get_logger(unavailable.logger)
            logger.error(unavailable.log_event, path=request.path, code=exc.code)
        response = error_response(503, "unavailable", unavailable.reason)
        if unavailable.retry_after:
            response.headers[hdrs.RETRY_AFTER] = str(RETRY_AFTER_S)
        return response
    return internal_error_response(request, exc, edge.failed)
