"""The frames between the server and its media worker processes (media.pool, media.worker):
one msgpack record per frame, each preceded by its length (4 bytes, big-endian), over a Unix
socket pair. Every record of both directions is here, typed; nothing else crosses.

Decoding is bounded (the length is checked before the body is read) and total: any bytes give
a record of the direction's union or a `WireError` saying what was wrong, never another
exception. The worker is our own code, but a bug or a half-written frame must be refused with
a log line, not crash the server that holds every other call.

Parent to worker: `Start` (first, once: the worker's settings, nothing secret in its argv),
`RoomChanged`, `Signal` (answered by `Signalled` with the same id), `ConferencePlacement`,
`Registered` (the answer to a worker's `Register`), `LoadQuery`, `Sinks` (bench-only), `Stop`.
Worker to parent: `Ready`, `Deliver`, `Signalled`, `Trace`, `Register`, `Load`, `SinksState`.
"""

from __future__ import annotations

import asyncio
import struct
from typing import Annotated, Any, Final

import msgspec

from media.settings import MediaConfig
from signalling import protocol as p
from signalling.core.actions import Room, Stage

HEADER: Final = struct.Struct(">I")
# A snapshot (a JPEG of one keyframe) is the largest record; an SDP is a few kilobytes.
MAX_FRAME_BYTES: Final = 8 * 1024 * 1024
# Bounds on the strings that name things (users, calls, courts, files, codes).
Name = Annotated[str, msgspec.Meta(max_length=256)]
Text = Annotated[str, msgspec.Meta(max_length=4096)]


class WireError(Exception):
    """A frame that is not a record of its direction: too large, undecodable, unknown."""


class _Record(msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag_field="type"):
    pass


# --- parent to worker ------------------------------------------------------------------


class Start(_Record, tag="start", frozen=True):
    worker: int
    media: MediaConfig
    # Where this worker writes its calls' recordings (None: it records nothing).
    recordings_dir: str | None
    evidence: bool
    log_format: Name
    log_level: Name
    node_id: Name
    # This worker's fabric socket and its siblings' (media.fabric): a conference spans the
    # workers through them. None: one worker, alone.
    fabric_path: str | None = None
    fabric_siblings: dict[int, str] = {}


class RoomChanged(_Record, tag="room_changed", frozen=True):
    room: Room


class Signal(_Record, tag="signal", frozen=True):
    id: int
    user: Name
    message: p.Offer | p.Answer | p.IceCandidate | p.Snapshot


class ConferencePlacement(_Record, tag="conference_placement", frozen=True):
    conference_id: Name
    home: int
    where: dict[Name, int]
    # Whether home records the conference (False on a node that is not the conference's
    # home node: the home node's router records what crosses, media.cascade).
    records: bool = True
    # Each shown call's officer whose call's media is on a worker here: its worker index
    # (that worker exports the feed to the router, media.span).
    feeds: dict[Name, int] = {}
    # The conference's stage, for a worker with a shown call and no site (no room).
    stage: Stage | None = None


class Registered(_Record, tag="registered", frozen=True):
    """The parent's answer to `Register`: the evidence id, or why it was not filed."""

    id: int
    evidence_id: Name | None = None
    error: Text | None = None


class LoadQuery(_Record, tag="load_query", frozen=True):
    pass


class SinkRecord(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One bench-only pre-keyed sink (media.sink.SinkSpec)."""

    name: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    host: Annotated[str, msgspec.Meta(max_length=64)]
    port: Annotated[int, msgspec.Meta(ge=1, le=65535)]
    key: Annotated[bytes, msgspec.Meta(min_length=30, max_length=30)]


class Sinks(_Record, tag="sinks", frozen=True):
    """Bench-only: remove, then add, sinks of a conference on this worker (only a pool
    started with `media.bench_sink_socket` sends it); answered by `SinksState`."""

    id: int
    conference_id: Name
    add: Annotated[list[SinkRecord], msgspec.Meta(max_length=1024)] = []
    remove: Annotated[
        list[Annotated[str, msgspec.Meta(max_length=64)]], msgspec.Meta(max_length=1024)
    ] = []


class Stop(_Record, tag="stop", frozen=True):
    pass


ToWorker = (
    Start | RoomChanged | Signal | ConferencePlacement | Registered | LoadQuery | Sinks | Stop
)


# --- worker to parent ------------------------------------------------------------------


class Ready(_Record, tag="ready", frozen=True):
    worker: int
    pid: int


class Deliver(_Record, tag="deliver", frozen=True):
    user: Name
    message: p.ServerMessage


class Signalled(_Record, tag="signalled", frozen=True):
    """A `Signal` carried out (`code` None), refused as the client's fault (`code`, `reason`,
    `field` of the ClientError), or failed by ours (`internal`)."""

    id: int
    code: Name | None = None
    reason: Text = ""
    field: Name | None = None
    internal: bool = False


class TraceRecord(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    kind: Name
    at: float
    data: dict[Name, Any]


class Trace(_Record, tag="trace", frozen=True):
    events: Annotated[list[TraceRecord], msgspec.Meta(max_length=1024)]


class Register(_Record, tag="register", frozen=True):
    """File a recording (`path`, under the worker's recordings directory) or a snapshot
    (`data`) as evidence (media.evidence_sink.EvidenceSink.register's arguments)."""

    id: int
    call_id: Name
    case_number: Name
    court: Name
    officer: Name
    media_type: Name
    file_name: Name
    captured_at_ms: float
    path: Text | None = None
    data: bytes | None = None
    ended_at_ms: float | None = None
    sha256: Name | None = None
    requested_by: Name | None = None


class Load(_Record, tag="load", frozen=True):
    rooms: int
    peers: int
    # User and system CPU seconds of the worker process since it started.
    cpu_s: float
    forwarded_packets: int
    forwarded_bytes: int
    # Packets not sent to a subscriber for its temporal layers (media.temporal).
    layer_dropped_packets: int = 0
    # As the router of open conferences: per other worker, the most sites of one conference
    # whose audio it took from that worker since the last report (media.loudest: at most
    # `conference_audio_slots` with the preselection on).
    audio_sites_in: Annotated[dict[int, int], msgspec.Meta(max_length=1024)] = {}


class SinksState(_Record, tag="sinks_state", frozen=True):
    """The answer to `Sinks`: the packets sent to each of the conference's sinks on this
    worker, or why the request was refused."""

    id: int
    sent: dict[Name, int] = {}
    error: Text | None = None


ToParent = Ready | Deliver | Signalled | Trace | Register | Load | SinksState

_encoder = msgspec.msgpack.Encoder()
_to_worker: msgspec.msgpack.Decoder[ToWorker] = msgspec.msgpack.Decoder(ToWorker)
_to_parent: msgspec.msgpack.Decoder[ToParent] = msgspec.msgpack.Decoder(ToParent)


def frame(record: ToWorker | ToParent) -> bytes:
    body = _encoder.encode(record)
    if len(body) > MAX_FRAME_BYTES:
        raise WireError(f"a {type(record).__name__} of {len(body)} bytes is over the frame limit")
    return HEADER.pack(len(body)) + body


def decode_to_worker(body: bytes) -> ToWorker:
    try:
        return _to_worker.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise WireError(str(exc)) from None


def decode_to_parent(body: bytes) -> ToParent:
    try:
        return _to_parent.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise WireError(str(exc)) from None


async def read_frame(reader: asyncio.StreamReader) -> bytes | None:
    """The next frame's body; None at a clean end of the stream (between frames). Raises
    WireError for a length over the limit and asyncio.IncompleteReadError for a stream cut
    inside a frame."""
    try:
        header = await reader.readexactly(HEADER.size)
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            return None
        raise
    (size,) = HEADER.unpack(header)
    if size > MAX_FRAME_BYTES:
        raise WireError(f"a frame of {size} bytes is over the limit of {MAX_FRAME_BYTES}")
    return await reader.readexactly(size)


__all__ = [
    "MAX_FRAME_BYTES",
    "ConferencePlacement",
    "Deliver",
    "Load",
    "LoadQuery",
    "Ready",
    "Register",
    "Registered",
    "RoomChanged",
    "Signal",
    "Signalled",
    "SinkRecord",
    "Sinks",
    "SinksState",
    "Start",
    "Stop",
    "ToParent",
    "ToWorker",
    "Trace",
    "TraceRecord",
    "WireError",
    "decode_to_parent",
    "decode_to_worker",
    "frame",
    "read_frame",
]
