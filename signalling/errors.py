"""Errors of the signalling layer, each carrying the wire code it is reported with.

`ClientError` and its subclasses are the peer's fault: the hub answers them with an `error`
reply (or a 4xxx close) whose reason is short and safe to show. Anything else raised while
carrying out a client's message is our fault: logged with its traceback and the user and
call ids, and answered with the documented `internal_error` (never described, never blamed on
the client); a fault outside any message closes the connection with 1011. `error_reply` and
`internal_error_reply` below are the only translations of an error to the wire.
"""

from __future__ import annotations

from collections import Counter
from typing import Final

from signalling import protocol as p

# Every `error` this process has told a client, by code. Counted here, in the one
# translation to the wire, so that no path can answer an error the metrics miss
# (commandcenter/metrics.py reads it). Per process: one server runs per process, tests aside.
ERRORS_SENT: Final[Counter[str]] = Counter()


class SignallingError(Exception):
    """Base of every error this package raises on purpose."""

    code: str = "internal_error"

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ClientError(SignallingError):
    """A request that cannot be carried out; the connection stays open."""

    code = "bad_request"

    def __init__(self, reason: str, field: str | None = None) -> None:
        super().__init__(reason)
        self.field = field


class InvalidMessage(ClientError):
    """A frame that is not a valid message: undecodable, unknown type, bad or missing field."""

    code = "invalid_message"

    def __init__(self, reason: str, field: str | None = None, ref: str | None = None) -> None:
        super().__init__(reason, field)
        self.ref = ref


class FrameTooLarge(InvalidMessage):
    code = "frame_too_large"


class Forbidden(ClientError):
    """The role or court scope does not allow this action; nothing was changed."""

    code = "forbidden"


class NotFound(ClientError):
    code = "not_found"


class InvalidState(ClientError):
    """The call (or user) is not in a state where this action applies."""

    code = "invalid_state"


class CallAlreadyTaken(InvalidState):
    code = "call_taken"


class Conflict(ClientError):
    """Decided on a state that has changed since (a stale `revision`); nothing was done."""

    code = "conflict"


class Busy(ClientError):
    code = "busy"


class Unavailable(ClientError):
    code = "unavailable"


class RateLimited(ClientError):
    code = "rate_limited"


class MediaUnavailable(ClientError):
    code = "media_unavailable"


class NegotiationFailed(ClientError):
    """A media `offer`, `answer` or `ice_candidate` the media server cannot use."""

    code = "negotiation_failed"


class ConnectionRefused(SignallingError):
    """The WebSocket is closed with `close_code`; raised before or instead of serving it."""

    def __init__(self, close_code: int, reason: str) -> None:
        super().__init__(reason)
        self.close_code = close_code


# WebSocket close codes (RFC 6455 leaves 4000-4999 to applications).
CLOSE_BAD_INPUT = 4400  # too many bad frames
CLOSE_UNAUTHORIZED = 4401  # token missing, invalid or expired
CLOSE_FORBIDDEN = 4403  # token valid, but this role may not connect here
CLOSE_REPLACED = 4409  # the same user connected again; this older connection is dropped
CLOSE_RATE_LIMITED = 4429  # kept sending over the message rate
CLOSE_INTERNAL = 1011
CLOSE_GOING_AWAY = 1001
CLOSE_TRY_AGAIN = 1013  # this node cannot serve a new connection now (trace or cluster down)


def error_reply(exc: ClientError, ref: str | None) -> p.Error:
    """The one translation of a client error to the wire."""
    ERRORS_SENT[exc.code] += 1
    return p.Error(ref=ref, code=exc.code, reason=exc.reason, field=exc.field)


def internal_error_reply(ref: str | None) -> p.Error:
    """What a client is told when carrying out its message failed by our fault."""
    ERRORS_SENT[SignallingError.code] += 1
    return p.Error(ref=ref, code=SignallingError.code, reason="internal error")
