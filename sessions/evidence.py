"""Evidence items, pure: what an upload declares, how it is checked and named, who may see it.

An upload declares its metadata (case number, kind, device, capture time, position, file name
and the client's SHA-256); `parse_upload` bounds and validates every field before anything is
written. The item's identity is `evidence_id_for(case_number, sha256)`: the same bytes sent
again for the same case name the same item, which is what makes a retried upload idempotent.
The clock check turns the device's offset from its latest heartbeat into "time verified" or a
reason why not. Corrections are separate facts applied on top of the original, never edits.

Nothing here touches files, sockets or the clock: times are arguments. Every error carries the
HTTP status it is answered with; `commandcenter.evidence_api` is the one place that turns them
into responses.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import math
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Final

import msgspec

from identity import Courts, Identity, Role
from sessions.errors import RecorderError
from sessions.facets import EVIDENCE_STORED

# Bounds shared with the WebSocket protocol (signalling/protocol.py), so a case number or a
# device id that is valid on one edge is valid on the other.
MAX_CASE_CHARS: Final = 64
MAX_DEVICE_CHARS: Final = 64
MIN_EPOCH_MS: Final = 946684800000.0  # 2000-01-01
MAX_EPOCH_MS: Final = 4102444800000.0  # 2100-01-01
MAX_ACCURACY_M: Final = 100000.0
# Most file systems cap a name at 255 bytes; the name is only metadata, but it ends up in a
# Content-Disposition header and in exported bundles, where a longer one would be cut anyway.
MAX_FILE_NAME_BYTES: Final = 255
MAX_MEDIA_TYPE_CHARS: Final = 127
MAX_REASON_CHARS: Final = 512
UNNAMED: Final = "unnamed"
DEFAULT_MEDIA_TYPE: Final = "application/octet-stream"
EVIDENCE_ID_PREFIX: Final = "ev-"
EVIDENCE_ID_RE: Final = r"ev-[0-9a-f]{32}"

# Record kinds this feature writes to the trace. `evidence_stored` is the source of truth
# that an item exists; statistics count it by `case_number` and `court`.
STORED: Final = EVIDENCE_STORED
REJECTED: Final = "evidence_rejected"
READ: Final = "evidence_read"
DOWNLOADED: Final = "evidence_downloaded"
CORRECTED: Final = "evidence_corrected"
EXPORTED: Final = "evidence_exported"
KINDS: Final = (STORED, REJECTED, READ, DOWNLOADED, CORRECTED, EXPORTED)

_SHA256_RE: Final = re.compile(r"[0-9a-f]{64}")
# RFC 9110 token characters, for the type and subtype of a media type.
_MEDIA_TYPE_RE: Final = re.compile(r"[A-Za-z0-9!#$&^_.+-]+/[A-Za-z0-9!#$&^_.+-]+")


# --- errors ------------------------------------------------------------------------------


class EvidenceError(RecorderError):
    """The client's fault, in an evidence request. `reason` is short and safe to send to the
    client; `field` names the offending parameter when there is one."""

    http_status: ClassVar[int] = 400
    code: ClassVar[str] = "bad_request"

    def __init__(self, reason: str, field: str | None = None) -> None:
        super().__init__(reason)
        self.field = field


class BadRequest(EvidenceError):
    pass


class Forbidden(EvidenceError):
    http_status = 403
    code = "forbidden"


class NotFound(EvidenceError):
    http_status = 404
    code = "not_found"


class Conflict(EvidenceError):
    """The same bytes are already an item of this case, uploaded by someone else."""

    http_status = 409
    code = "conflict"


class TooLarge(EvidenceError):
    http_status = 413
    code = "too_large"


class UnsupportedEncoding(EvidenceError):
    """A compressed (or otherwise encoded) body: the item must be the original bytes."""

    http_status = 415
    code = "unsupported_encoding"


class OriginalMissing(EvidenceError):
    """The trace holds the item, but its file is gone: ours to investigate, not the client's."""

    http_status = 500
    code = "original_missing"


class OriginalCorrupt(EvidenceError):
    """The item's file no longer has the recorded size or hash."""

    http_status = 500
    code = "original_corrupt"


class RangeNotSatisfiable(EvidenceError):
    """A `Range` the content route does not serve: several ranges, a malformed one, or one
    past the end of the original (`size` bytes, for the answer's Content-Range)."""

    http_status = 416
    code = "range_not_satisfiable"

    def __init__(self, reason: str, size: int) -> None:
        super().__init__(reason, "range")
        self.size = size

    def http_headers(self) -> dict[str, str]:
        # RFC 9110 15.5.17: a 416 says how long the representation is.
        return {"Content-Range": f"bytes */{self.size}"}


class TooSlow(EvidenceError):
    """The body came slower than the configured minimum rate, or took too long in all."""

    http_status = 408
    code = "too_slow"

    def __init__(self, reason: str, received: int) -> None:
        super().__init__(reason, "body")
        self.received = received


@dataclasses.dataclass(frozen=True, slots=True)
class UploadPace:
    """How long an upload may take to deliver its bytes; pure, times are arguments.

    After `grace_s` the average rate since the start must stay at or above `min_rate`
    bytes a second, and the whole body must arrive within `max_s`: `deadline` is the
    latest time by which the next byte must come."""

    min_rate: float
    grace_s: float
    max_s: float

    def deadline(self, started: float, received: int) -> float:
        return min(started + self.max_s, started + self.grace_s + received / self.min_rate)

    def refusal(self, started: float, received: int, now: float) -> TooSlow:
        if now >= started + self.max_s:
            return TooSlow(f"an upload must end within {self.max_s:g} s", received)
        return TooSlow(
            f"an upload must keep up at least {self.min_rate:g} bytes a second", received
        )


class HashMismatch(EvidenceError):
    http_status = 422
    code = "hash_mismatch"


# --- metadata ----------------------------------------------------------------------------


class EvidenceKind(StrEnum):
    PHOTO = "photo"
    VIDEO = "video"
    AUDIO = "audio"
    DOCUMENT = "document"


# The media types each kind accepts besides application/octet-stream (which a device that
# does not know the type sends); documents may be anything.
_KIND_MEDIA_PREFIX: Final[Mapping[EvidenceKind, str]] = {
    EvidenceKind.PHOTO: "image/",
    EvidenceKind.VIDEO: "video/",
    EvidenceKind.AUDIO: "audio/",
}


@dataclass(frozen=True)
class Position:
    lat: float
    lon: float
    accuracy_m: float | None = None

    def __post_init__(self) -> None:
        if not (math.isfinite(self.lat) and -90.0 <= self.lat <= 90.0):
            raise BadRequest("must be between -90 and 90", "lat")
        if not (math.isfinite(self.lon) and -180.0 <= self.lon <= 180.0):
            raise BadRequest("must be between -180 and 180", "lon")
        acc = self.accuracy_m
        if acc is not None and not (math.isfinite(acc) and 0.0 <= acc <= MAX_ACCURACY_M):
            raise BadRequest(f"must be between 0 and {MAX_ACCURACY_M:g}", "accuracy_m")

    def to_data(self) -> dict[str, Any]:
        return {"lat": self.lat, "lon": self.lon, "accuracy_m": self.accuracy_m}

    @classmethod
    def from_data(cls, data: Mapping[str, Any] | None) -> Position | None:
        if data is None:
            return None
        return cls(lat=data["lat"], lon=data["lon"], accuracy_m=data.get("accuracy_m"))


@dataclass(frozen=True)
class UploadRequest:
    """What an upload declares about itself, validated; the bytes come separately."""

    case_number: str
    kind: EvidenceKind
    # Device clock, Unix milliseconds.
    capture_time: float
    device: str
    client_sha256: str
    file_name: str
    media_type: str
    position: Position | None

    def evidence_id(self, owner: CaseOwner | None = None) -> str:
        """The item this upload creates if its bytes hash to what the client declared, in
        the case `owner` says (None: a number naming its court)."""
        return evidence_id_for(
            self.case_number, self.client_sha256, owner.id_scope() if owner else None
        )


UPLOAD_PARAMS: Final = (
    "case",
    "kind",
    "sha256",
    "device",
    "capture_time",
    "file_name",
    "lat",
    "lon",
    "accuracy_m",
)
_REQUIRED_PARAMS: Final = ("case", "kind", "sha256", "device", "capture_time", "file_name")


def single_params(params: Iterable[tuple[str, str]], allowed: Sequence[str]) -> dict[str, str]:
    """Query parameters as a dict; an unknown or repeated parameter is refused, so a typo in a
    client is an error it sees rather than a field silently dropped."""
    out: dict[str, str] = {}
    for key, value in params:
        if key not in allowed:
            raise BadRequest("unknown parameter", key)
        if key in out:
            raise BadRequest("given more than once", key)
        out[key] = value
    return out


def parse_upload(params: Iterable[tuple[str, str]], content_type: str | None) -> UploadRequest:
    """Validate an upload's query parameters and Content-Type; raises `BadRequest` naming the
    first bad field."""
    q = single_params(params, UPLOAD_PARAMS)
    for name in _REQUIRED_PARAMS:
        if name not in q:
            raise BadRequest("required", name)
    kind = parse_kind(q["kind"])
    position: Position | None = None
    if "lat" in q or "lon" in q:
        if "lat" not in q or "lon" not in q:
            raise BadRequest("lat and lon go together", "lon" if "lat" in q else "lat")
        accuracy = _number(q["accuracy_m"], "accuracy_m") if "accuracy_m" in q else None
        position = Position(_number(q["lat"], "lat"), _number(q["lon"], "lon"), accuracy)
    elif "accuracy_m" in q:
        raise BadRequest("needs lat and lon", "accuracy_m")
    return UploadRequest(
        case_number=parse_case_number(q["case"]),
        kind=kind,
        capture_time=parse_capture_time(q["capture_time"]),
        device=_parse_device(q["device"]),
        client_sha256=parse_sha256(q["sha256"]),
        file_name=sanitise_file_name(q["file_name"]),
        media_type=parse_media_type(content_type, kind),
        position=position,
    )


def parse_kind(raw: str) -> EvidenceKind:
    try:
        return EvidenceKind(raw)
    except ValueError:
        choices = ", ".join(k.value for k in EvidenceKind)
        raise BadRequest(f"must be one of {choices}", "kind") from None


def parse_case_number(raw: str, field: str = "case") -> str:
    # NFC, so the same case number typed on two keyboards matches when listing.
    value = unicodedata.normalize("NFC", raw.strip())
    if not value:
        raise BadRequest("must not be empty", field)
    if len(value) > MAX_CASE_CHARS:
        raise BadRequest(f"at most {MAX_CASE_CHARS} characters", field)
    if _has_control(value):
        raise BadRequest("must not contain control characters", field)
    return value


def _parse_device(raw: str) -> str:
    value = raw.strip()
    if not value or len(value) > MAX_DEVICE_CHARS or _has_control(value):
        raise BadRequest(f"1 to {MAX_DEVICE_CHARS} printable characters", "device")
    return value


def parse_sha256(raw: str) -> str:
    value = raw.strip().lower()
    if not _SHA256_RE.fullmatch(value):
        raise BadRequest("must be 64 hexadecimal digits", "sha256")
    return value


def parse_capture_time(raw: str, field: str = "capture_time") -> float:
    value = _number(raw, field)
    if not MIN_EPOCH_MS <= value <= MAX_EPOCH_MS:
        raise BadRequest("must be Unix milliseconds between 2000 and 2100", field)
    return value


def parse_media_type(raw: str | None, kind: EvidenceKind) -> str:
    # Parameters (e.g. "; charset=utf-8") are dropped: the type is metadata, not a decoder hint.
    value = (raw or "").split(";", 1)[0].strip().lower() or DEFAULT_MEDIA_TYPE
    if len(value) > MAX_MEDIA_TYPE_CHARS or not _MEDIA_TYPE_RE.fullmatch(value):
        raise BadRequest("not a media type", "content-type")
    prefix = _KIND_MEDIA_PREFIX.get(kind)
    if prefix and value != DEFAULT_MEDIA_TYPE and not value.startswith(prefix):
        raise BadRequest(f"a {kind.value} must be {prefix}*", "content-type")
    return value


def _number(raw: str, field: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise BadRequest("must be a number", field) from None
    if not math.isfinite(value):
        raise BadRequest("must be a finite number", field)
    return value


def _has_control(value: str) -> bool:
    # Categories Cc (C0/C1 controls), Cf (format: bidi overrides that disguise an extension),
    # Cs, Co, Cn: nothing a person types into a name on purpose.
    return any(unicodedata.category(ch)[0] == "C" for ch in value)


def sanitise_file_name(raw: str) -> str:
    """The client's file name, reduced to something safe to show and to put in a header.

    It is only ever metadata, never a path: the content is stored under its hash. Still, it
    is shown to people and offered back in Content-Disposition, so directory parts (either
    slash), control and format characters, and leading dots are removed, and it is cut to
    MAX_FILE_NAME_BYTES of UTF-8 keeping the extension.
    """
    name = unicodedata.normalize("NFC", raw)
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C")
    name = re.split(r"[/\\]", name)[-1].strip()
    # "..", ".", ".bashrc": a leading dot hides a file or names a directory.
    name = name.lstrip(". ").rstrip(" ")
    if not name:
        return UNNAMED
    encoded = name.encode("utf-8")
    if len(encoded) <= MAX_FILE_NAME_BYTES:
        return name
    stem, dot, ext = name.rpartition(".")
    if not dot or len(ext.encode("utf-8")) > 16:
        stem, ext = name, ""
    suffix = f".{ext}" if ext else ""
    budget = MAX_FILE_NAME_BYTES - len(suffix.encode("utf-8"))
    # Cut on a character boundary: decode with "ignore" drops a split multi-byte sequence.
    cut = stem.encode("utf-8")[:budget].decode("utf-8", "ignore").rstrip(" ")
    return (cut or UNNAMED) + suffix


def evidence_id_for(case_number: str, sha256: str, case_court: str | None = None) -> str:
    """The item's id: a digest of (case, content hash). The same bytes for the same case are
    one item however often they are sent; the same bytes for two cases are two.

    A case is its number, which names its court when it carries a configured court's code
    (`case_court` None), or else the number within the court that owns it (`case_court`):
    two courts that both use "2025-17" hold two cases, and neither's items collide with the
    other's."""
    key = (
        f"{case_number}\n{sha256}"
        if case_court is None
        else f"{case_court}\n{case_number}\n{sha256}"
    )
    digest = hashlib.sha256(key.encode()).hexdigest()
    return EVIDENCE_ID_PREFIX + digest[:32]


@dataclass(frozen=True)
class CaseOwner:
    """The court a case number belongs to, for one binding of evidence to it: the court the
    number names (`named`), or else the court of the evidence."""

    court: str
    named: bool

    def id_scope(self) -> str | None:
        # A number naming its court needs no court beside it: it is that court's everywhere.
        return None if self.named else self.court


def case_owner(
    who: Identity, case_number: str, item_court: str, courts: Courts, field: str = "case"
) -> CaseOwner:
    """Who owns `case_number` when `who` binds evidence of `item_court` to it; `NotFound`
    if `who` may not.

    A number carrying a configured court's code (`Courts.named_in`) is that court's case:
    only its own officers and operators, and the supervisors and admins over it, bind to
    it. Anyone else is answered exactly as for a case that does not exist, so nobody learns
    what another court holds. A number naming no configured court is the evidence's court's
    own: each court numbers such cases for itself."""
    named = courts.named_in(case_number)
    if named is None:
        return CaseOwner(item_court, named=False)
    match who.role:
        case Role.OFFICER | Role.OPERATOR:
            allowed = who.court == named
        case Role.SUPERVISOR | Role.ADMIN:
            allowed = courts.in_scope(who, named)
        case Role.AUDITOR | Role.WITNESS:
            allowed = False
    if not allowed:
        raise NotFound("no such case", field)
    return CaseOwner(named, named=True)


# --- time --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClockCheck:
    """How far the capture time can be trusted: the device clock minus the server clock (ms)
    from the uploader's latest heartbeat, and why the time is unverified if it is."""

    offset_ms: float | None
    unverified_reason: str | None

    @property
    def time_unverified(self) -> bool:
        return self.unverified_reason is not None


def check_clock(
    *,
    upload_device: str,
    session_device: str | None,
    session_offset_ms: float | None,
    threshold_ms: float,
) -> ClockCheck:
    """`session_*` describe the uploader's live session (None: not signed in). An offset only
    vouches for the clock of the device that sent the heartbeat, so a different device, or
    no heartbeat at all, leaves the time unverified as surely as a large offset does."""
    if session_device is None:
        return ClockCheck(None, "not_signed_in")
    if session_device != upload_device:
        return ClockCheck(None, "other_device")
    if session_offset_ms is None:
        return ClockCheck(None, "no_heartbeat")
    if abs(session_offset_ms) > threshold_ms:
        return ClockCheck(session_offset_ms, "offset_over_threshold")
    return ClockCheck(session_offset_ms, None)


# --- items -------------------------------------------------------------------------------


@dataclass(frozen=True)
class EvidenceItem:
    """One item as its `evidence_stored` record holds it. `received_at` is server time (Unix
    seconds) when the last byte arrived; `capture_time` the device's claim (Unix ms)."""

    evidence_id: str
    case_number: str
    sha256: str
    client_sha256: str
    size: int
    kind: EvidenceKind
    media_type: str
    file_name: str
    uploader: str
    court: str
    device: str
    capture_time: float
    clock_offset_ms: float | None
    time_unverified: bool
    time_unverified_reason: str | None
    received_at: float
    position: Position | None
    # The court whose case `case_number` is (`case_owner`); "" in records from before
    # cases had courts.
    case_court: str = ""

    def to_data(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["kind"] = self.kind.value
        data["position"] = self.position.to_data() if self.position else None
        return data

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> EvidenceItem:
        fields = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in fields}
        values["kind"] = EvidenceKind(data["kind"])
        values["position"] = Position.from_data(data.get("position"))
        return cls(**values)


def new_item(
    upload: UploadRequest,
    *,
    sha256: str,
    size: int,
    uploader: Identity,
    clock: ClockCheck,
    received_at: float,
    owner: CaseOwner,
) -> EvidenceItem:
    return EvidenceItem(
        evidence_id=evidence_id_for(upload.case_number, sha256, owner.id_scope()),
        case_number=upload.case_number,
        sha256=sha256,
        client_sha256=upload.client_sha256,
        size=size,
        kind=upload.kind,
        media_type=upload.media_type,
        file_name=upload.file_name,
        uploader=uploader.user_id,
        court=uploader.court,
        device=upload.device,
        capture_time=upload.capture_time,
        clock_offset_ms=clock.offset_ms,
        time_unverified=clock.time_unverified,
        time_unverified_reason=clock.unverified_reason,
        received_at=received_at,
        position=upload.position,
        case_court=owner.court,
    )


# --- corrections -------------------------------------------------------------------------

CaseNumber = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_CASE_CHARS)]
Reason = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_REASON_CHARS)]
EpochMs = Annotated[float, msgspec.Meta(ge=MIN_EPOCH_MS, le=MAX_EPOCH_MS)]
FileName = Annotated[str, msgspec.Meta(max_length=4 * MAX_FILE_NAME_BYTES)]


class _PositionIn(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    lat: Annotated[float, msgspec.Meta(ge=-90.0, le=90.0)]
    lon: Annotated[float, msgspec.Meta(ge=-180.0, le=180.0)]
    accuracy_m: Annotated[float, msgspec.Meta(ge=0.0, le=MAX_ACCURACY_M)] | None = None


class _ChangesIn(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    case_number: CaseNumber | msgspec.UnsetType = msgspec.UNSET
    kind: EvidenceKind | msgspec.UnsetType = msgspec.UNSET
    capture_time: EpochMs | msgspec.UnsetType = msgspec.UNSET
    file_name: FileName | msgspec.UnsetType = msgspec.UNSET
    # null clears a wrong position.
    position: _PositionIn | msgspec.UnsetType | None = msgspec.UNSET


class _CorrectionIn(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    changes: _ChangesIn
    reason: Reason


# What a correction may change. The bytes, their hash, the uploader, the device and the
# server's receive time are facts of the upload itself and stay as recorded.
CORRECTABLE: Final = ("case_number", "kind", "capture_time", "file_name", "position")
# Fields a correction record may carry that no client sets: derived by the server from a
# corrected case number.
DERIVED: Final = ("case_court",)
MAX_CORRECTION_BYTES: Final = 16384
_correction_decoder = msgspec.json.Decoder(_CorrectionIn)


@dataclass(frozen=True)
class Correction:
    """New values for some correctable fields, as JSON-ready data, and why."""

    changes: Mapping[str, Any]
    reason: str


def parse_correction(body: bytes) -> Correction:
    """Decode and validate a correction request body (JSON)."""
    if len(body) > MAX_CORRECTION_BYTES:
        raise TooLarge(f"a correction is at most {MAX_CORRECTION_BYTES} bytes", "body")
    try:
        decoded = _correction_decoder.decode(body)
    except msgspec.ValidationError as exc:
        # msgspec names the path ("at `$.changes.kind`"): safe, and exactly what a client needs.
        raise BadRequest(str(exc), _json_path(str(exc))) from None
    except msgspec.DecodeError:
        raise BadRequest("not valid JSON", "body") from None
    changes: dict[str, Any] = {}
    c = decoded.changes
    if not isinstance(c.case_number, msgspec.UnsetType):
        changes["case_number"] = parse_case_number(c.case_number, "changes.case_number")
    if not isinstance(c.kind, msgspec.UnsetType):
        changes["kind"] = c.kind.value
    if not isinstance(c.capture_time, msgspec.UnsetType):
        changes["capture_time"] = float(c.capture_time)
    if not isinstance(c.file_name, msgspec.UnsetType):
        changes["file_name"] = sanitise_file_name(c.file_name)
    if not isinstance(c.position, msgspec.UnsetType):
        p = c.position
        changes["position"] = None if p is None else Position(p.lat, p.lon, p.accuracy_m).to_data()
    if not changes:
        raise BadRequest("no field to correct", "changes")
    reason = decoded.reason.strip()
    if not reason or _has_control(reason.replace("\n", " ")):
        raise BadRequest("a reason in printable text is required", "reason")
    return Correction(changes=changes, reason=reason)


def _json_path(message: str) -> str:
    match = re.search(r"at `\$\.?([^`]*)`", message)
    return match.group(1) if match and match.group(1) else "body"


def apply_changes(item: EvidenceItem, changes: Mapping[str, Any]) -> EvidenceItem:
    """The item as it reads after one correction (`changes` as recorded)."""
    values: dict[str, Any] = {}
    for key, value in changes.items():
        if key not in CORRECTABLE and key not in DERIVED:
            # A record written by a newer version: ignoring it would show a stale value.
            raise ValueError(f"correction of unknown field {key!r}")
        if key == "kind":
            values[key] = EvidenceKind(value)
        elif key == "position":
            values[key] = Position.from_data(value)
        else:
            values[key] = value
    return dataclasses.replace(item, **values)


def previous_values(item: EvidenceItem, changes: Mapping[str, Any]) -> dict[str, Any]:
    """What `changes` replaces, as JSON-ready data, so each correction record reads alone."""
    data = item.to_data()
    return {key: data[key] for key in changes}


def current_of(item: EvidenceItem, changes: Sequence[Mapping[str, Any]]) -> EvidenceItem:
    """`item` with each correction's recorded `changes` applied in order."""
    return functools.reduce(apply_changes, changes, item)


@dataclass(frozen=True)
class CorrectionEntry:
    """One `evidence_corrected` record: who changed which fields, from what, and why."""

    seq: int
    at: float
    user: str
    reason: str
    changes: Mapping[str, Any]
    previous: Mapping[str, Any]

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class ItemHistory:
    """An item as uploaded (its `evidence_stored` record, `seq` and `at`) and every correction
    since, oldest first. What clients see is `current()`: the original with them applied."""

    original: EvidenceItem
    seq: int
    at: float
    corrections: tuple[CorrectionEntry, ...] = ()

    def current(self) -> EvidenceItem:
        return current_of(self.original, [c.changes for c in self.corrections])

    def to_json(self) -> dict[str, Any]:
        return {
            **self.current().to_data(),
            "recorded": {"seq": self.seq, "at": self.at},
            "corrections": [c.to_json() for c in self.corrections],
        }


# --- authorisation -----------------------------------------------------------------------

UPLOAD_ROLES: Final = frozenset({Role.OFFICER, Role.OPERATOR})


def may_upload(identity: Identity) -> bool:
    """Officers capture evidence in the field; operators take snapshots of live video."""
    return identity.role in UPLOAD_ROLES


def uploaded_by(item: EvidenceItem, identity: Identity) -> bool:
    """Whether `identity` uploaded `item`: the same user id in the same court. User ids are
    the courts' own, so "o1" of one court is not "o1" of another."""
    return item.uploader == identity.user_id and item.court == identity.court


def may_read(identity: Identity, item: EvidenceItem, courts: Courts) -> bool:
    """Officers their own items; operators, supervisors and admins their court scope;
    auditors everything; witnesses nothing (they watch a conference, not the records)."""
    match identity.role:
        case Role.OFFICER:
            return uploaded_by(item, identity)
        case Role.OPERATOR | Role.SUPERVISOR | Role.ADMIN:
            return courts.in_scope(identity, item.court)
        case Role.AUDITOR:
            return True
        case Role.WITNESS:
            return False


def may_correct(identity: Identity, item: EvidenceItem, courts: Courts) -> bool:
    """The uploader, and supervisors and admins over the item's court. Auditors only read:
    someone who checks the record must not be able to change it."""
    if identity.role in UPLOAD_ROLES:
        return uploaded_by(item, identity)
    if identity.role in (Role.SUPERVISOR, Role.ADMIN):
        return courts.in_scope(identity, item.court)
    return False


__all__ = [
    "CORRECTABLE",
    "CORRECTED",
    "DOWNLOADED",
    "EVIDENCE_ID_RE",
    "EXPORTED",
    "KINDS",
    "MAX_CORRECTION_BYTES",
    "MAX_FILE_NAME_BYTES",
    "READ",
    "REJECTED",
    "STORED",
    "UNNAMED",
    "BadRequest",
    "CaseOwner",
    "ClockCheck",
    "Conflict",
    "Correction",
    "CorrectionEntry",
    "EvidenceError",
    "EvidenceItem",
    "EvidenceKind",
    "Forbidden",
    "HashMismatch",
    "ItemHistory",
    "NotFound",
    "OriginalCorrupt",
    "OriginalMissing",
    "Position",
    "TooLarge",
    "TooSlow",
    "UnsupportedEncoding",
    "UploadPace",
    "UploadRequest",
    "apply_changes",
    "case_owner",
    "check_clock",
    "current_of",
    "evidence_id_for",
    "may_correct",
    "may_read",
    "may_upload",
    "new_item",
    "parse_case_number",
    "parse_correction",
    "parse_upload",
    "previous_values",
    "sanitise_file_name",
    "single_params",
    "uploaded_by",
]
