"""What every message of the protocol shares: the version, the bounds applied while decoding,
the two base classes, and the shapes both directions use (a user, a time)."""

from __future__ import annotations

from typing import Annotated

import msgspec

from identity.names import NO_CONTROL_PATTERN

PROTOCOL_VERSION = 1

# Bounds applied while decoding, before anything reaches the core. Text that names something
# or is shown to people carries no control or formatting characters (identity.names): an
# ANSI escape or a bidi override in an id would reach logs and other people's screens.
_TEXT = NO_CONTROL_PATTERN
Id = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=_TEXT)]
UserId = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=_TEXT)]
CallId = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=_TEXT)]
CourtCode = Annotated[str, msgspec.Meta(min_length=1, max_length=32, pattern=_TEXT)]
CaseNumber = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=_TEXT)]
Note = Annotated[str, msgspec.Meta(max_length=256, pattern=_TEXT)]
# Unix time in milliseconds, as JavaScript's Date.now() gives it; bounded to years 2000-2100.
EpochMs = Annotated[float, msgspec.Meta(ge=946684800000.0, le=4102444800000.0)]
Latitude = Annotated[float, msgspec.Meta(ge=-90.0, le=90.0)]
Longitude = Annotated[float, msgspec.Meta(ge=-180.0, le=180.0)]
AccuracyM = Annotated[float, msgspec.Meta(ge=0.0, le=100000.0)]
RttMs = Annotated[float, msgspec.Meta(ge=0.0, le=60000.0)]
# SDP is bounded again by limits.max_sdp_chars; this is the hard ceiling.
Sdp = Annotated[str, msgspec.Meta(min_length=1, max_length=262144)]
Candidate = Annotated[str, msgspec.Meta(max_length=1024)]
SdpMid = Annotated[str, msgspec.Meta(max_length=64)]
MLineIndex = Annotated[int, msgspec.Meta(ge=0, le=255)]


class _ClientMessage(
    msgspec.Struct, tag_field="type", forbid_unknown_fields=True, frozen=True, kw_only=True
):
    id: Id


class _ServerMessage(msgspec.Struct, tag_field="type", frozen=True, kw_only=True):
    pass


class Ack(_ServerMessage, tag="ack", frozen=True):
    ref: str


class Error(_ServerMessage, tag="error", frozen=True):
    ref: str | None
    code: str
    reason: str
    field: str | None = None


def epoch_ms(seconds: float) -> float:
    """A time as the protocol carries it: milliseconds since the epoch, to the microsecond."""
    return round(seconds * 1000.0, 3)


class UserInfo(msgspec.Struct, frozen=True):
    id: str
    name: str
    role: str
    court: str
