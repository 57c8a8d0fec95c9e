"""Errors of the session recorder and its statistics, each carrying its wire code.

`BadQuery` is the peer's fault (a malformed period, an unknown court): its reason is short and
names the parameter, and the HTTP edge answers it with `http_status`. The store errors are
ours or the database's: the edges log them and answer a generic 500 / 503, never their text.
Tampering is not an exception: `sessions.trace.verify` returns it as a result.
"""

from __future__ import annotations

from typing import ClassVar


class RecorderError(Exception):
    """Base of every error this package raises on purpose."""

    code: ClassVar[str] = "internal_error"
    http_status: ClassVar[int] = 500
    # The parameter at fault, for the errors that are the peer's (`BadQuery`, evidence's).
    field: str | None = None

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    def http_headers(self) -> dict[str, str]:
        """Headers an HTTP answer to this error carries besides its body: none but where a
        subclass says (a refused range names the size it could have had)."""
        return {}


class UnencodableEvent(RecorderError):
    """An event whose kind, time or data has no canonical encoding (a NaN, a non-string key,
    an object JSON cannot hold). Nothing of the append it came in was written."""

    code = "unencodable_event"


class StoreClosed(RecorderError):
    """The store was closed; appends and queries after `close` fail with this."""

    code = "store_closed"
    http_status = 503


class StoreUnavailable(RecorderError):
    """The database could not be reached or refused the write; the append was not committed."""

    code = "store_unavailable"
    http_status = 503


class StoreCorrupt(RecorderError):
    """The stored chain cannot be continued (its last record is unreadable)."""

    code = "store_corrupt"


class TimestampError(RecorderError):
    """A time-stamp authority did not stamp, or its token does not stamp what it should or
    was not signed by its certificate."""

    code = "timestamp_failed"
    http_status = 502


class BadQuery(RecorderError):
    """A statistics request that cannot be answered as asked; `field` names the parameter."""

    code = "bad_request"
    http_status = 400

    def __init__(self, reason: str, field: str) -> None:
        super().__init__(reason)
        self.field = field

    def __str__(self) -> str:
        return f"{self.field}: {self.reason}"


__all__ = [
    "BadQuery",
    "RecorderError",
    "StoreClosed",
    "StoreCorrupt",
    "StoreUnavailable",
    "TimestampError",
    "UnencodableEvent",
]
