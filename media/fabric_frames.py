"""The frames media workers send each other over the fabric (media.fabric), pure: bytes in,
frames out, and back.

A frame is one datagram. Every frame opens with the same four bytes: the format version, the
frame's kind and the sending worker's index. Then, by kind:

    PACKET     flags(1) payload_type(1) seq(2) timestamp(4) level(1) len(conference)(1)
               len(track)(1) conference track payload
    KEYFRAME   len(conference)(1) len(track)(1) conference track
    SITES      len(conference)(1) conference
    STOP       len(conference)(1) conference
    ROLLIN     remaining_ms(4) every_ms(4) len(conference)(1) conference
    VOICES     count(1) len(conference)(1) conference, then count times:
               level(1) len(owner)(1) owner

(network byte order; names UTF-8). A PACKET carries what a subscriber's copy needs of one
RTP packet: its numbers, marker, payload type, whether a subscriber may start on it, the RFC
6464 audio level when it had one, and the payload (never the publisher's SSRC or header
extensions: each subscriber gets its own, media.forwarder.Subscription). KEYFRAME asks for a
keyframe of a source track; SITES / STOP say the sender has sites of a conference / no longer;
ROLLIN, from home, says how long the conference's roll-in still runs and its period. VOICES,
to home, names the sender's candidates in an open conference (media.loudest), loudest first,
with their running levels (-dBov, 0 to 127): the only sites whose audio it sends home.

A struct header rather than msgpack: this is the packet path, one frame per RTP packet and
worker. Everything received is checked against these bounds before use; any other bytes are a
`BadFrame` naming what was wrong, never another exception.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final, NamedTuple

VERSION: Final = 1
PACKET: Final = 1
KEYFRAME: Final = 2
SITES: Final = 3
STOP: Final = 4
ROLLIN: Final = 5
VOICES: Final = 6
# The most candidates one VOICES frame names (a worker names `conference_audio_slots`).
MAX_VOICES: Final = 6

# An RTP payload beyond this cannot have come through a 1500-byte MTU.
MAX_PAYLOAD: Final = 1500
MAX_NAME: Final = 255
_COMMON: Final = struct.Struct("!BBH")
_PACKET: Final = struct.Struct("!BBHIBBB")
_NAMES: Final = struct.Struct("!BB")
_NAME: Final = struct.Struct("!B")
_ROLLIN: Final = struct.Struct("!IIB")
_VOICES: Final = struct.Struct("!BB")
_VOICE: Final = struct.Struct("!BB")
# The longest valid frame: a receiver reads this much and treats more as bad.
MAX_FRAME: Final = max(
    _COMMON.size + _PACKET.size + 2 * MAX_NAME + MAX_PAYLOAD,
    _COMMON.size + _VOICES.size + MAX_NAME + MAX_VOICES * (_VOICE.size + MAX_NAME),
)

_MARKER: Final = 0x01
_KEYFRAME_START: Final = 0x02
_HAS_LEVEL: Final = 0x04
_FLAGS: Final = _MARKER | _KEYFRAME_START | _HAS_LEVEL
_VAD: Final = 0x80
_KINDS: Final = ("audio", "video")


class BadFrame(ValueError):
    """Bytes that are no valid frame; `reason` is a short fixed name for counting."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Packet(NamedTuple):
    """(A NamedTuple rather than a frozen dataclass: one is made per packet received, and a
    frozen dataclass's construction costs several times as much.)"""

    sender: int
    conference: str
    # The source track: "owner:kind".
    track: str
    sequence_number: int
    timestamp: int
    marker: bool
    payload_type: int
    # A subscriber may (re)start on this packet (audio: always; video: a keyframe's first).
    keyframe_start: bool
    # RFC 6464: (voice activity, level in -dBov), when the packet had the extension.
    audio_level: tuple[bool, int] | None
    payload: bytes


@dataclass(frozen=True, slots=True)
class KeyframeRequest:
    sender: int
    conference: str
    track: str


@dataclass(frozen=True, slots=True)
class Sites:
    """The sender terminates sites of `conference`: it wants the conference's media."""

    sender: int
    conference: str


@dataclass(frozen=True, slots=True)
class Stop:
    """The sender has no sites of `conference` any more."""

    sender: int
    conference: str


@dataclass(frozen=True, slots=True)
class RollinNotice:
    """From home: the conference's roll-in runs `remaining_ms` more, with a keyframe of the
    spotlight every `every_ms` (media.placement.Rollin)."""

    sender: int
    conference: str
    remaining_ms: int
    every_ms: int


@dataclass(frozen=True, slots=True)
class Voices:
    """To home: the sender's candidates in open conference `conference` (media.loudest),
    loudest first, each (owner, running level in -dBov); empty: none speaking."""

    sender: int
    conference: str
    voices: tuple[tuple[str, int], ...]


Frame = Packet | KeyframeRequest | Sites | Stop | RollinNotice | Voices


def _name(value: str) -> bytes:
    data = value.encode()
    if not data or len(data) > MAX_NAME:
        raise ValueError(f"a fabric name is 1 to {MAX_NAME} bytes: {value!r}")
    return data


def encode_packet(
    sender: int,
    conference: bytes,
    track: bytes,
    *,
    sequence_number: int,
    timestamp: int,
    marker: bool,
    payload_type: int,
    keyframe_start: bool,
    audio_level: tuple[bool, int] | None,
    payload: bytes,
) -> bytes:
    """A PACKET frame; `conference` and `track` already encoded (the sender keeps them so, as
    this runs for every forwarded packet)."""
    flags = (_MARKER if marker else 0) | (_KEYFRAME_START if keyframe_start else 0)
    level = 0
    if audio_level is not None:
        flags |= _HAS_LEVEL
        level = (_VAD if audio_level[0] else 0) | (audio_level[1] & 0x7F)
    return (
        _COMMON.pack(VERSION, PACKET, sender)
        + _PACKET.pack(
            flags,
            payload_type,
            sequence_number,
            timestamp,
            level,
            len(conference),
            len(track),
        )
        + conference
        + track
        + payload
    )


def resend(data: bytes, sender: int) -> bytes:
    """The same frame as sent on by worker `sender` (the router relaying a site's packet)."""
    return _COMMON.pack(VERSION, data[1], sender) + data[_COMMON.size :]


def encode(frame: Frame) -> bytes:
    match frame:
        case Packet():
            if not 0 < len(frame.payload) <= MAX_PAYLOAD:
                raise ValueError(f"a packet's payload is 1 to {MAX_PAYLOAD} bytes")
            return encode_packet(
                frame.sender,
                _name(frame.conference),
                _name(frame.track),
                sequence_number=frame.sequence_number,
                timestamp=frame.timestamp,
                marker=frame.marker,
                payload_type=frame.payload_type,
                keyframe_start=frame.keyframe_start,
                audio_level=frame.audio_level,
                payload=frame.payload,
            )
        case KeyframeRequest():
            conference, track = _name(frame.conference), _name(frame.track)
            return (
                _COMMON.pack(VERSION, KEYFRAME, frame.sender)
                + _NAMES.pack(len(conference), len(track))
                + conference
                + track
            )
        case RollinNotice():
            conference = _name(frame.conference)
            rollin = _ROLLIN.pack(frame.remaining_ms, frame.every_ms, len(conference))
            return _COMMON.pack(VERSION, ROLLIN, frame.sender) + rollin + conference
        case Voices():
            if len(frame.voices) > MAX_VOICES:
                raise ValueError(f"a VOICES frame names at most {MAX_VOICES} sites")
            conference = _name(frame.conference)
            parts = [
                _COMMON.pack(VERSION, VOICES, frame.sender),
                _VOICES.pack(len(frame.voices), len(conference)),
                conference,
            ]
            for owner, level in frame.voices:
                if not 0 <= level <= 127:
                    raise ValueError(f"a level is 0 to 127 -dBov: {level}")
                name = _name(owner)
                parts += [_VOICE.pack(level, len(name)), name]
            return b"".join(parts)
        case Sites() | Stop():
            kind = SITES if isinstance(frame, Sites) else STOP
            conference = _name(frame.conference)
            head = _COMMON.pack(VERSION, kind, frame.sender)
            return head + _NAME.pack(len(conference)) + conference


def _text(data: bytes, start: int, size: int) -> str:
    if size == 0:
        raise BadFrame("empty_name")
    try:
        return data[start : start + size].decode()
    except UnicodeDecodeError:
        raise BadFrame("bad_name") from None


def _track(data: bytes, start: int, size: int) -> str:
    track = _text(data, start, size)
    owner, _, kind = track.rpartition(":")
    if not owner or kind not in _KINDS:
        raise BadFrame("bad_track")
    return track


# Names already checked, by their bytes: a conference's packets repeat a few names, and
# checking each again is most of a packet's decoding. Cleared when full (a bound on memory
# whatever a sender invents).
_SEEN_TRACKS: dict[bytes, tuple[str, str]] = {}
_SEEN_MAX: Final = 4096


def _packet_names(data: bytes, pos: int, conf_len: int, track_len: int) -> tuple[str, str]:
    # The key starts at the two length bytes, so the same bytes split differently between
    # the names are another key.
    key = data[pos - 2 : pos + conf_len + track_len]
    names = _SEEN_TRACKS.get(key)
    if names is None:
        names = (_text(data, pos, conf_len), _track(data, pos + conf_len, track_len))
        if len(_SEEN_TRACKS) >= _SEEN_MAX:
            _SEEN_TRACKS.clear()
        _SEEN_TRACKS[key] = names
    return names


def decode(data: bytes) -> Frame:
    """The frame in one datagram; BadFrame for anything else."""
    if len(data) > MAX_FRAME:
        raise BadFrame("too_long")
    if len(data) < _COMMON.size:
        raise BadFrame("too_short")
    version, kind, sender = _COMMON.unpack_from(data)
    if version != VERSION:
        raise BadFrame("version")
    pos = _COMMON.size
    if kind == PACKET:
        if len(data) < pos + _PACKET.size:
            raise BadFrame("too_short")
        flags, payload_type, seq, timestamp, level, conf_len, track_len = _PACKET.unpack_from(
            data, pos
        )
        if flags & ~_FLAGS or payload_type > 0x7F:
            raise BadFrame("bad_header")
        pos += _PACKET.size
        start = pos + conf_len + track_len
        if len(data) <= start:
            raise BadFrame("too_short")
        if len(data) - start > MAX_PAYLOAD:
            raise BadFrame("too_long")
        conference, track = _packet_names(data, pos, conf_len, track_len)
        return Packet(
            sender,
            conference,
            track,
            seq,
            timestamp,
            bool(flags & _MARKER),
            payload_type,
            bool(flags & _KEYFRAME_START),
            (bool(level & _VAD), level & 0x7F) if flags & _HAS_LEVEL else None,
            data[start:],
        )
    if kind == KEYFRAME:
        if len(data) < pos + _NAMES.size:
            raise BadFrame("too_short")
        conf_len, track_len = _NAMES.unpack_from(data, pos)
        pos += _NAMES.size
        if len(data) != pos + conf_len + track_len:
            raise BadFrame("bad_length")
        return KeyframeRequest(
            sender, _text(data, pos, conf_len), _track(data, pos + conf_len, track_len)
        )
    if kind in (SITES, STOP):
        if len(data) < pos + _NAME.size:
            raise BadFrame("too_short")
        (conf_len,) = _NAME.unpack_from(data, pos)
        pos += _NAME.size
        if len(data) != pos + conf_len:
            raise BadFrame("bad_length")
        conference = _text(data, pos, conf_len)
        return Sites(sender, conference) if kind == SITES else Stop(sender, conference)
    if kind == ROLLIN:
        if len(data) < pos + _ROLLIN.size:
            raise BadFrame("too_short")
        remaining_ms, every_ms, conf_len = _ROLLIN.unpack_from(data, pos)
        pos += _ROLLIN.size
        if len(data) != pos + conf_len:
            raise BadFrame("bad_length")
        return RollinNotice(sender, _text(data, pos, conf_len), remaining_ms, every_ms)
    if kind == VOICES:
        return _voices(data, pos, sender)
    raise BadFrame("unknown_kind")


def _voices(data: bytes, pos: int, sender: int) -> Voices:
    if len(data) < pos + _VOICES.size:
        raise BadFrame("too_short")
    count, conf_len = _VOICES.unpack_from(data, pos)
    if count > MAX_VOICES:
        raise BadFrame("bad_header")
    pos += _VOICES.size
    if len(data) < pos + conf_len:
        raise BadFrame("too_short")
    conference = _text(data, pos, conf_len)
    pos += conf_len
    voices: list[tuple[str, int]] = []
    for _ in range(count):
        if len(data) < pos + _VOICE.size:
            raise BadFrame("too_short")
        level, name_len = _VOICE.unpack_from(data, pos)
        pos += _VOICE.size
        if level > 127:
            raise BadFrame("bad_header")
        if len(data) < pos + name_len:
            raise BadFrame("too_short")
        voices.append((_text(data, pos, name_len), level))
        pos += name_len
    if pos != len(data):
        raise BadFrame("bad_length")
    return Voices(sender, conference, tuple(voices))
