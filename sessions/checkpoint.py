"""Checkpoints: the trace's head, signed, so that the end of the chain is protected too.

A hash chain shows any record edited, deleted, inserted or reordered *before* the last one,
but SHA-256 needs no key: whoever can write the database can cut records off the end, or
append records chained correctly, and the chain still verifies. A checkpoint is the head
(seq and hash) at a moment, signed with an Ed25519 key kept outside the data directory, so
it cannot be made or changed by someone who can only write the database. Verifying the
trace against its latest checkpoint then shows:

- records cut off: the trace ends before the checkpoint's seq (`truncated`, naming the first
  record missing);
- a rewritten log: the record at the checkpoint's seq has another hash (`mismatch`);
- records after the checkpoint: they are not yet covered by any checkpoint (`extended`,
  naming them). Records written since the last periodic checkpoint are normal; after a
  `stop` checkpoint (the trace's only writer stopped cleanly) the next record must be the
  next start's `server_started`, so anything else there was appended by someone else
  (`appended`, a failure); and a record after the checkpoint that does not chain on from
  the checkpointed hash was forged or changed (`forged`, a failure).

What no checkpoint can show: records forged into the window after the latest checkpoint
while the server runs (the next checkpoint signs the head it finds, after checking that it
chains from the previous checkpoint), and checkpoints deleted together with the records
they covered: keep the checkpoint log (`audit.checkpoint_log`) or the TSA tokens elsewhere.

Pure: nothing here reads a file, the clock or the network; time is an argument, keys are
objects the caller loaded. The signed bytes are canonical JSON, documented in docs/trace.md,
so anyone with the public key can check a checkpoint without this code.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from sessions.trace import Head, Link, canonical, chain_hash

CHECKPOINT_FORMAT: Final = "commandcenter-checkpoint/1"
# Why a checkpoint was written. `stop` promises that its writer was the trace's only one and
# wrote nothing after it; `node_stop` is a stop that promises no such quiet: a cluster node's
# (other nodes go on writing), or a drain that timed out with uploads still under way.
# `export` and `admin` cover what a command-line run (an evidence export, an account change)
# appended, so that its records are never an unexplained tail after a stop. `verified`: a
# chain check found every record up to this head intact; the next check starts after it.
Reason = Literal["start", "periodic", "stop", "node_stop", "export", "admin", "verified"]
REASONS: Final = ("start", "periodic", "stop", "node_stop", "export", "admin", "verified")
# The one kind allowed to follow a `stop` checkpoint: the next start of the server.
SERVER_STARTED: Final = "server_started"
MAX_NODE_CHARS: Final = 128


class CheckpointError(ValueError):
    """A checkpoint that cannot be read (bad fields, bad encoding)."""


@dataclass(frozen=True)
class Checkpoint:
    seq: int  # the head's seq (0: an empty trace)
    hash: str  # the head's hash, 64 lowercase hex digits
    at_us: int  # when it was written, microseconds since the epoch (the writer's clock)
    node: str  # the writer: a server node id, or `cli:<user>`
    reason: Reason
    key_id: str  # SHA-256 of the raw public key, hex: which key signed
    signature: str  # Ed25519 over `signed_bytes()`, hex
    # An RFC 3161 time-stamp token (DER ContentInfo) over SHA-256(signed_bytes()), base64.
    tsa_token: str | None = None

    def __post_init__(self) -> None:
        # Read back from a table or a file anyone may have written: types are checked too.
        texts = (self.hash, self.node, self.reason, self.key_id, self.signature)
        if not all(isinstance(x, str) for x in texts) or not all(
            isinstance(x, int) and not isinstance(x, bool) for x in (self.seq, self.at_us)
        ):
            raise CheckpointError("a field has the wrong type")
        if self.tsa_token is not None and not isinstance(self.tsa_token, str):
            raise CheckpointError("tsa_token is not text")
        _check_fields(self.seq, self.hash, self.at_us, self.node, self.reason)
        if not _is_hex(self.key_id, 64) or not _is_hex(self.signature, 128):
            raise CheckpointError("key_id or signature is not hex of the right length")

    @property
    def head(self) -> Head:
        return Head(self.seq, self.hash)

    def signed_bytes(self) -> bytes:
        return signed_bytes(self.seq, self.hash, self.at_us, self.node, self.reason)

    def digest(self) -> bytes:
        """What a time-stamp authority is asked to stamp: SHA-256 of the signed bytes."""
        return hashlib.sha256(self.signed_bytes()).digest()

    def to_json(self) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT,
            "seq": self.seq,
            "hash": self.hash,
            "at_us": self.at_us,
            "node": self.node,
            "reason": self.reason,
            "key_id": self.key_id,
            "signature": self.signature,
            "tsa_token": self.tsa_token,
        }

    @classmethod
    def from_json(cls, raw: Any) -> Checkpoint:
        """Raises CheckpointError for anything that is not a checkpoint."""
        if not isinstance(raw, Mapping) or raw.get("format") != CHECKPOINT_FORMAT:
            raise CheckpointError(f"not a {CHECKPOINT_FORMAT} object")
        try:
            token = raw.get("tsa_token")
            return cls(
                seq=_int(raw["seq"]),
                hash=str(raw["hash"]),
                at_us=_int(raw["at_us"]),
                node=str(raw["node"]),
                reason=raw["reason"],
                key_id=str(raw["key_id"]),
                signature=str(raw["signature"]),
                tsa_token=None if token is None else str(token),
            )
        except (KeyError, TypeError) as exc:
            raise CheckpointError(f"missing or bad field: {exc}") from None

    def with_token(self, token: bytes) -> Checkpoint:
        return Checkpoint(
            self.seq,
            self.hash,
            self.at_us,
            self.node,
            self.reason,
            self.key_id,
            self.signature,
            base64.b64encode(token).decode("ascii"),
        )

    def token_der(self) -> bytes | None:
        """The token's DER; one that is not base64 reads as empty bytes, which no check of a
        token accepts."""
        if self.tsa_token is None:
            return None
        try:
            return base64.b64decode(self.tsa_token, validate=True)
        except ValueError:
            return b""


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{value!r} is not an integer")
    return value


def _is_hex(text: str, length: int) -> bool:
    return len(text) == length and all(c in "0123456789abcdef" for c in text)


def _check_fields(seq: int, digest: str, at_us: int, node: str, reason: str) -> None:
    if seq < 0:
        raise CheckpointError(f"seq {seq} is negative")
    if not _is_hex(digest, 64):
        raise CheckpointError("hash is not 64 lowercase hex digits")
    if reason not in REASONS:
        raise CheckpointError(f"reason {reason!r} is not one of {', '.join(REASONS)}")
    if not 0 < len(node) <= MAX_NODE_CHARS:
        raise CheckpointError(f"node must be 1 to {MAX_NODE_CHARS} characters")
    if abs(at_us) >= 2**53:
        raise CheckpointError("at_us is not a time")


def signed_bytes(seq: int, digest: str, at_us: int, node: str, reason: str) -> bytes:
    """The UTF-8 JSON text that is signed: keys sorted, no whitespace, non-ASCII as is."""
    body = {
        "at_us": at_us,
        "format": CHECKPOINT_FORMAT,
        "hash": digest,
        "node": node,
        "reason": reason,
        "seq": seq,
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


# --- keys and signatures -------------------------------------------------------------------


def key_id(public: Ed25519PublicKey) -> str:
    """SHA-256 of the 32 raw bytes of the public key, hex: short enough to compare by eye."""
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


def public_pem(public: Ed25519PublicKey) -> bytes:
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def load_public_pem(data: bytes) -> Ed25519PublicKey:
    """An Ed25519 public key from PEM (SubjectPublicKeyInfo), or from a private key's PEM.
    Raises CheckpointError."""
    try:
        if b"PRIVATE KEY" in data:
            private = serialization.load_pem_private_key(data, password=None)
            if isinstance(private, Ed25519PrivateKey):
                return private.public_key()
        else:
            public = serialization.load_pem_public_key(data)
            if isinstance(public, Ed25519PublicKey):
                return public
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"not a PEM key: {exc}") from None
    raise CheckpointError("not an Ed25519 key")


def sign(
    key: Ed25519PrivateKey, head: Head, *, now: float, node: str, reason: Reason
) -> Checkpoint:
    """A checkpoint of `head` written at `now` (seconds since the epoch)."""
    at_us = round(now * 1_000_000)
    _check_fields(head.seq, head.hash, at_us, node, reason)
    signature = key.sign(signed_bytes(head.seq, head.hash, at_us, node, reason))
    return Checkpoint(
        seq=head.seq,
        hash=head.hash,
        at_us=at_us,
        node=node,
        reason=reason,
        key_id=key_id(key.public_key()),
        signature=signature.hex(),
    )


def signature_ok(checkpoint: Checkpoint, public: Ed25519PublicKey) -> bool:
    """The checkpoint was signed by this key, and nothing signed was changed."""
    if checkpoint.key_id != key_id(public):
        return False
    try:
        public.verify(bytes.fromhex(checkpoint.signature), checkpoint.signed_bytes())
    except InvalidSignature:
        return False
    return True


def sign_bytes(key: Ed25519PrivateKey, data: bytes) -> str:
    """A detached signature of any bytes (a bundle's manifest), hex."""
    return key.sign(data).hex()


def bytes_signature_ok(public: Ed25519PublicKey, data: bytes, signature: str) -> bool:
    try:
        public.verify(bytes.fromhex(signature.strip()), data)
    except (InvalidSignature, ValueError):
        return False
    return True


# --- the tail against a checkpoint ---------------------------------------------------------

TailStatus = Literal["ok", "extended", "appended", "forged", "truncated", "mismatch"]


@dataclass(frozen=True)
class TailCheck:
    """The trace's end against its latest checkpoint. `seq` names the record at fault (the
    first one cut off, the one whose hash differs, the first one appended), or for
    `extended` the first record not yet covered; `uncovered` counts the records after the
    checkpoint."""

    status: TailStatus
    checkpoint: Checkpoint
    head: Head
    seq: int | None
    uncovered: int
    detail: str

    @property
    def ok(self) -> bool:
        return self.status in ("ok", "extended")


def compare_tail(
    checkpoint: Checkpoint,
    head: Head,
    hash_at_checkpoint: str | None,
    first_after_kind: str | None,
    *,
    first_after_prev_hash: str | None = None,
) -> TailCheck:
    """Compare the trace's `head` with the latest `checkpoint` (its signature checked by the
    caller). `hash_at_checkpoint` is the stored hash of the record at the checkpoint's seq
    (None when there is none); `first_after_kind` and `first_after_prev_hash` are the kind
    and prev_hash of the record just after it (None when there is none or they are not
    known)."""
    cp = checkpoint
    if head.seq < cp.seq:
        missing = head.seq + 1
        span = f"{missing}" if missing == cp.seq else f"{missing} to {cp.seq}"
        return TailCheck(
            "truncated",
            cp,
            head,
            missing,
            0,
            f"the trace ends at seq {head.seq}, but the {cp.reason} checkpoint at seq {cp.seq} "
            f"signed a longer one: record(s) {span} were cut off",
        )
    expected = cp.hash if cp.seq > 0 else None
    if cp.seq > 0 and hash_at_checkpoint != expected:
        return TailCheck(
            "mismatch",
            cp,
            head,
            cp.seq,
            head.seq - cp.seq,
            f"record {cp.seq} has another hash than its checkpoint signed: the log was "
            f"rewritten at or before seq {cp.seq}",
        )
    uncovered = head.seq - cp.seq
    if uncovered == 0:
        return TailCheck("ok", cp, head, None, 0, f"the trace ends at its checkpoint, seq {cp.seq}")
    first = cp.seq + 1
    span = f"{first}" if first == head.seq else f"{first} to {head.seq}"
    if first_after_prev_hash is not None and first_after_prev_hash != cp.hash:
        # The checkpointed record is genuine (its hash is the signed one), so the record
        # after it is the one at fault, whatever a keyless chain check makes of the pair.
        return TailCheck(
            "forged",
            cp,
            head,
            first,
            uncovered,
            f"record {first} does not chain on from the checkpointed record {cp.seq}: "
            "forged or changed after the checkpoint",
        )
    if cp.reason == "stop" and first_after_kind != SERVER_STARTED:
        return TailCheck(
            "appended",
            cp,
            head,
            first,
            uncovered,
            f"record(s) {span} follow the stop checkpoint at seq {cp.seq}, and record {first} "
            f"is a {first_after_kind}, not the next start's {SERVER_STARTED}: "
            "appended while the server was stopped",
        )
    return TailCheck(
        "extended",
        cp,
        head,
        first,
        uncovered,
        f"{uncovered} record(s) after the last checkpoint at seq {cp.seq} ({span}) "
        "are not yet covered by a checkpoint",
    )


def first_break(after: Head, links: Iterable[Link]) -> int | None:
    """The first seq at which `links` (in seq order) stop chaining on from `after`: a gap, a
    record whose content does not hash to its hash, or one chained to something else. None
    when they all chain on. A checkpointer checks this before signing a newer head, so it
    never signs over a tail that was rewritten since the last checkpoint."""
    seq, prev = after.seq, after.hash
    for link in links:
        seq += 1
        if link.seq != seq or link.prev_hash != prev:
            return seq
        content = canonical(link.seq, link.at_us, link.kind, link.data)
        try:
            if chain_hash(link.prev_hash, content) != link.hash:
                return seq
        except ValueError:
            return seq
        prev = link.hash
    return None


class RememberedForged(CheckpointError):
    """The remembered position of the last chain check does not verify: its checkpoint was
    changed (or signed by another key), so an incremental check has nothing to start from."""


def last_verified(
    newest_first: Sequence[Checkpoint], public: Ed25519PublicKey
) -> Checkpoint | None:
    """Where the last chain check stopped: the `verified` checkpoint added last, given the
    latest checkpoints newest first (`TraceStore.latest_checkpoints("verified")`: one row,
    however long the table), None when no check was remembered. Raises RememberedForged when
    its signature does not verify: an incremental check must then refuse, not fall back to
    an older one the forger may have chosen, so nothing older is ever needed."""
    found = next((cp for cp in newest_first if cp.reason == "verified"), None)
    if found is not None and not signature_ok(found, public):
        raise RememberedForged(
            f"the verified checkpoint at seq {found.seq} does not verify with this key"
        )
    return found


def latest(checkpoints: Iterable[Checkpoint]) -> Checkpoint | None:
    """The checkpoint of the highest seq, the latest written among equals."""
    best: Checkpoint | None = None
    for cp in checkpoints:
        if best is None or (cp.seq, cp.at_us) >= (best.seq, best.at_us):
            best = cp
    return best


__all__ = [
    "CHECKPOINT_FORMAT",
    "REASONS",
    "Checkpoint",
    "CheckpointError",
    "Reason",
    "RememberedForged",
    "TailCheck",
    "TailStatus",
    "bytes_signature_ok",
    "compare_tail",
    "first_break",
    "key_id",
    "last_verified",
    "latest",
    "load_public_pem",
    "public_pem",
    "sign",
    "sign_bytes",
    "signature_ok",
    "signed_bytes",
]
