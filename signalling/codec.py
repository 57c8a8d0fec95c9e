"""Frames to messages and back: JSON text frames and msgpack binary frames, one schema.

Decoding is bounded (the frame size is checked before any parsing) and total: any input
yields a message or an `InvalidMessage` naming the field and the reason, never another
exception. Encoding keeps one encoder per format; fan-out encodes a message once per format.
"""

from __future__ import annotations

import re
from enum import StrEnum

import msgspec

from signalling.errors import FrameTooLarge, InvalidMessage
from signalling.protocol import ClientMessage, ServerMessage


class Encoding(StrEnum):
    JSON = "json"
    MSGPACK = "msgpack"


class _Envelope(msgspec.Struct):
    """Just enough of a bad message to refer to it: its id, if it has a usable one."""

    id: str | None = None


_json_decoder = msgspec.json.Decoder(ClientMessage)
_msgpack_decoder = msgspec.msgpack.Decoder(ClientMessage)
_json_envelope = msgspec.json.Decoder(_Envelope)
_msgpack_envelope = msgspec.msgpack.Decoder(_Envelope)
_json_encoder = msgspec.json.Encoder()
_msgpack_encoder = msgspec.msgpack.Encoder()

# msgspec reports the location as "- at `$.field`" or "- at `$.field[3]`", and a bad
# object key as "- at `key` in `$`".
_AT = re.compile(r" - at `\$\.?(?P<path>[^`]*)`$")
_AT_KEY = re.compile(r" - at `key` in `[^`]*`$")
_NAMED = re.compile(r"field `(?P<name>[^`]+)`")


def _field_and_reason(message: str) -> tuple[str | None, str]:
    match = _AT.search(message)
    if match:
        path = match.group("path") or None
        reason = message[: match.start()]
        if path is not None:
            # `field` is the message's own field; a place inside it (an item of a list) is
            # said in the reason.
            top = re.split(r"[.\[]", path, maxsplit=1)[0]
            if top != path:
                reason = f"{reason} (at {path})"
            path = top
        return path, reason
    key = _AT_KEY.search(message)
    if key:
        # A field name that is not a string: there is no field to name.
        return None, f"field names must be strings ({message[: key.start()]})"
    named = _NAMED.search(message)
    if named:
        return named.group("name"), message
    return None, message


def _ref_of(frame: bytes, encoding: Encoding) -> str | None:
    try:
        env = (
            _json_envelope.decode(frame)
            if encoding is Encoding.JSON
            else _msgpack_envelope.decode(frame)
        )
    except (msgspec.DecodeError, ValueError, TypeError, OverflowError, RecursionError):
        return None
    if env.id is not None and 0 < len(env.id) <= 64:
        return env.id
    return None


def ref_of(frame: str | bytes, encoding: Encoding, max_bytes: int) -> str | None:
    """The id of a frame that is not decoded as a message (one over the rate), so that the
    error about it can name it; None if it has no usable one or is over `max_bytes`."""
    if len(frame) > max_bytes:
        return None
    data = frame.encode("utf-8", "surrogatepass") if isinstance(frame, str) else frame
    if len(data) > max_bytes:
        return None
    return _ref_of(data, encoding)


def decode(frame: str | bytes, encoding: Encoding, max_bytes: int) -> ClientMessage:
    """Decode one client frame; raises InvalidMessage (or FrameTooLarge) on bad input."""
    if len(frame) > max_bytes:
        # For str, len() counts characters; a character is at least one byte, so this
        # only ever under-counts, and the byte check below catches the rest.
        raise FrameTooLarge(f"frame exceeds {max_bytes} bytes")
    if isinstance(frame, str):
        data = frame.encode("utf-8", "surrogatepass")
        if len(data) > max_bytes:
            raise FrameTooLarge(f"frame exceeds {max_bytes} bytes")
    else:
        data = frame
    try:
        decoder = _json_decoder if encoding is Encoding.JSON else _msgpack_decoder
        message: ClientMessage = decoder.decode(data)
        return message
    except msgspec.ValidationError as exc:
        field, reason = _field_and_reason(str(exc))
        if field == "type" and reason.startswith("Invalid value"):
            reason = "unknown message type"
        elif "matching regex" in reason:
            # The only patterns are the no-control-characters ones; echoing the regex would
            # send the very characters it refuses.
            reason = "must not contain control or formatting characters"
        raise InvalidMessage(reason, field=field, ref=_ref_of(data, encoding)) from None
    except (msgspec.DecodeError, ValueError, TypeError, OverflowError, RecursionError):
        raise InvalidMessage(f"frame is not valid {encoding.value}") from None


def encode(message: ServerMessage, encoding: Encoding) -> str | bytes:
    """Encode a server message: str for a JSON text frame, bytes for a msgpack frame."""
    if encoding is Encoding.JSON:
        return _json_encoder.encode(message).decode("utf-8")
    return _msgpack_encoder.encode(message)
