"""Registering what the media server produces (call recordings, snapshots) as evidence of a
call, through the `EvidenceSink` interface; `StoreEvidenceSink` is the one over the evidence
store.

The bytes take the same path as an officer's upload (`EvidenceStore.receive`): admission,
hashing while streamed into the content directory, the declared hash checked, write-once
storage, then the `evidence_stored` trace record that makes the item exist. What differs is
who uploads:

- Identity: the item is uploaded on behalf of the server, as `SERVER_UPLOADER` ("@server")
  with the operator role (the store lets officers and operators upload; operators are the
  ones who take snapshots and record calls) and the call's court. So the item is in that
  court's scope for operators, supervisors and admins, and auditors see it, like any
  other; an officer reads only items they uploaded, so not the server's. No token is
  involved: the identity is built here, in the process, never accepted from a client.
- Device: the node that produced it (`server:<node id>` by default "server").
- Clock: the capture time is the server's own clock, so the offset is 0 and the time is
  verified (`ClockCheck(0.0, None)`); for a recording it is when its first frame arrived.
- Hash: given `sha256` (a `RecordingResult` has one) the store checks the bytes it reads
  against it, so a file changed between recording and registration is refused
  (`HashMismatch`, recorded as `evidence_rejected`), not stored under a new hash.

The item's record has no field for the call, so after it is stored the sink appends a
`call_evidence` record (`CALL_EVIDENCE`, fields below) to the trace through the store's
recorder: a call's evidence is `trace.find(kinds=["call_evidence"], data_equals={"call": id})`.
Registering the same bytes for the same case again returns the same item and adds no second
record. Errors are the store's (`sessions.evidence.EvidenceError` subclasses,
`RecorderError` when the trace is down); none is the client's fault here, so the caller logs
them and keeps the file to retry.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any, Final, Protocol

import structlog

from identity import Identity, Role
from media.recording import RecordingResult
from sessions import evidence as ev
from sessions.evidence_store import EvidenceStore
from sessions.recorder import TraceEvent

log = structlog.get_logger(__name__)

# The uploader of every server-produced item. Tokens name users freely, so a token whose
# sub is this would pass for the server in `may_read`/`may_correct`: token issuers must
# refuse it (see the report on the media issue).
SERVER_UPLOADER: Final = "@server"
SERVER_NAME: Final = "commandcenter server"
# Trace record linking an evidence item to the call it is evidence of. Data: call,
# evidence_id, case_number, court, officer, media ("recording" or "snapshot"), media_type,
# file_name, sha256, size, captured_at_ms, ended_at_ms (recordings) and requested_by (who
# asked for a snapshot), all JSON scalars.
CALL_EVIDENCE: Final = "call_evidence"
READ_CHUNK: Final = 1 << 20
MAX_ID_CHARS: Final = 64


class EvidenceSink(Protocol):
    async def register(
        self,
        *,
        call_id: str,
        case_number: str,
        court: str,
        officer: str,
        path_or_bytes: Path | bytes,
        media_type: str,
        file_name: str,
        captured_at_ms: float,
        ended_at_ms: float | None = None,
        sha256: str | None = None,
        requested_by: str | None = None,
    ) -> str:
        """Store the file or bytes as evidence of `call_id` in `case_number`; returns the
        evidence id. Idempotent for the same bytes and case."""
        ...


def kind_of(media_type: str) -> ev.EvidenceKind:
    major = media_type.split("/", 1)[0].lower()
    return {
        "image": ev.EvidenceKind.PHOTO,
        "video": ev.EvidenceKind.VIDEO,
        "audio": ev.EvidenceKind.AUDIO,
    }.get(major, ev.EvidenceKind.DOCUMENT)


def _bounded_id(value: str, field: str) -> str:
    if not value or len(value) > MAX_ID_CHARS or not value.isprintable():
        raise ev.BadRequest(f"1 to {MAX_ID_CHARS} printable characters", field)
    return value


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(READ_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


async def _file_chunks(path: Path) -> AsyncGenerator[bytes]:
    f = await asyncio.to_thread(path.open, "rb")
    try:
        while chunk := await asyncio.to_thread(f.read, READ_CHUNK):
            yield chunk
    finally:
        await asyncio.to_thread(f.close)


async def _one_chunk(data: bytes) -> AsyncGenerator[bytes]:
    yield data


class StoreEvidenceSink:
    """An `EvidenceSink` over the evidence store (and its trace and recorder)."""

    def __init__(self, store: EvidenceStore, *, device: str = "server") -> None:
        self.store = store
        self.device = _bounded_id(device, "device")
        # Serialises "is the call linked yet? link it", as the store does for items.
        self._linking = asyncio.Lock()

    async def register(
        self,
        *,
        call_id: str,
        case_number: str,
        court: str,
        officer: str,
        path_or_bytes: Path | bytes,
        media_type: str,
        file_name: str,
        captured_at_ms: float,
        ended_at_ms: float | None = None,
        sha256: str | None = None,
        requested_by: str | None = None,
    ) -> str:
        _bounded_id(call_id, "call")
        _bounded_id(officer, "officer")
        if requested_by is not None:
            _bounded_id(requested_by, "requested_by")
        if court not in self.store.courts:
            raise ev.BadRequest("unknown court", "court")
        if not (
            math.isfinite(captured_at_ms) and ev.MIN_EPOCH_MS <= captured_at_ms <= ev.MAX_EPOCH_MS
        ):
            raise ev.BadRequest("must be Unix milliseconds between 2000 and 2100", "captured_at_ms")
        kind = kind_of(media_type)
        if isinstance(path_or_bytes, bytes):
            size = len(path_or_bytes)
            if sha256 is None:
                sha256 = hashlib.sha256(path_or_bytes).hexdigest()
            body = _one_chunk(path_or_bytes)
        else:
            size = (await asyncio.to_thread(path_or_bytes.stat)).st_size
            if sha256 is None:
                sha256 = await asyncio.to_thread(_sha256_file, path_or_bytes)
            body = _file_chunks(path_or_bytes)
        server = Identity(
            user_id=SERVER_UPLOADER,
            name=SERVER_NAME,
            role=Role.OPERATOR,
            court=court,
            expires_at=math.inf,
        )
        case_number = ev.parse_case_number(case_number)
        try:
            ev.case_owner(server, case_number, court, self.store.courts)
        except ev.NotFound:
            # The call named another court's case (the call's case number is the caller's
            # word, not checked when the call is placed): the recording must not be lost,
            # nor land in that case, so it is filed under the call, in the call's court.
            log.warning("call evidence filed under its call", call=call_id, court=court)
            case_number = ev.parse_case_number(call_id)
        upload = ev.UploadRequest(
            case_number=case_number,
            kind=kind,
            capture_time=float(captured_at_ms),
            device=self.device,
            client_sha256=ev.parse_sha256(sha256),
            file_name=ev.sanitise_file_name(file_name),
            media_type=ev.parse_media_type(media_type, kind),
            position=None,
        )
        try:
            history, _ = await self.store.receive(
                server,
                upload,
                body,
                declared_size=size,
                # The server's own clock: nothing to offset, nothing to doubt.
                clock_check=ev.ClockCheck(0.0, None),
            )
        finally:
            # Closes the file now if the store stopped reading early (a refusal).
            await body.aclose()
        item = history.original
        await self._link(
            {
                "call": call_id,
                "evidence_id": item.evidence_id,
                "case_number": item.case_number,
                "court": item.court,
                "officer": officer,
                "media": "snapshot" if kind is ev.EvidenceKind.PHOTO else "recording",
                "media_type": item.media_type,
                "file_name": item.file_name,
                "sha256": item.sha256,
                "size": item.size,
                "captured_at_ms": item.capture_time,
                "ended_at_ms": ended_at_ms,
                "requested_by": requested_by,
            }
        )
        return item.evidence_id

    async def _link(self, data: dict[str, Any]) -> None:
        key = {"call": data["call"], "evidence_id": data["evidence_id"]}
        async with self._linking:
            if await self.store.trace.find(kinds=[CALL_EVIDENCE], data_equals=key):
                return
            event = TraceEvent(CALL_EVIDENCE, self.store.clock(), data)
            await self.store.recorder.record([event])


async def register_recording(
    sink: EvidenceSink,
    result: RecordingResult,
    *,
    case_number: str,
    court: str,
    officer: str,
) -> str:
    """Register one finished recording file as evidence of its call."""
    return await sink.register(
        call_id=result.call_id,
        case_number=case_number,
        court=court,
        officer=officer,
        path_or_bytes=result.path,
        media_type=result.media_type,
        file_name=result.file_name,
        captured_at_ms=result.started_at * 1000.0,
        ended_at_ms=result.stopped_at * 1000.0,
        sha256=result.sha256,
    )


async def register_snapshot(
    sink: EvidenceSink,
    jpeg: bytes,
    *,
    call_id: str,
    case_number: str,
    court: str,
    officer: str,
    captured_at: float,
    requested_by: str,
) -> str:
    """Register a snapshot (`media.snapshot.snapshot_jpeg`) taken of the call's video;
    `captured_at` is when its keyframe arrived (server time, Unix seconds)."""
    millis = round(captured_at * 1000.0)
    return await sink.register(
        call_id=call_id,
        case_number=case_number,
        court=court,
        officer=officer,
        path_or_bytes=jpeg,
        media_type="image/jpeg",
        file_name=f"{call_id}-snapshot-{millis}.jpg",
        captured_at_ms=float(millis),
        requested_by=requested_by,
    )


__all__ = [
    "CALL_EVIDENCE",
    "SERVER_UPLOADER",
    "EvidenceSink",
    "StoreEvidenceSink",
    "kind_of",
    "register_recording",
    "register_snapshot",
]
