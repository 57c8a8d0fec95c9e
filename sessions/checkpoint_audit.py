"""`audit verify`'s checkpoint half: every checkpoint kept (the store's table, the checkpoint
log) checked against the public key, and the trace's tail against the latest good one
(`sessions.checkpoint.compare_tail`). A checkpoint whose signature does not verify is
reported, never used: it was not written with the key, or was changed since."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from sessions.checkpoint import Checkpoint, TailCheck, compare_tail, latest, signature_ok
from sessions.errors import TimestampError
from sessions.store import TraceStore
from sessions.timestamp import TsaTrust, check_imprint_only, verify_token


@dataclass
class CheckpointReport:
    checkpoints: int = 0
    problems: list[str] = field(default_factory=list)
    tail: TailCheck | None = None
    tsa_time: dt.datetime | None = None

    @property
    def ok(self) -> bool:
        return not self.problems and (self.tail is None or self.tail.ok)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"ok": self.ok, "checkpoints": self.checkpoints}
        tail = self.tail
        if tail is not None:
            cp = tail.checkpoint
            out |= {
                "status": tail.status,
                "seq": cp.seq,
                "hash": cp.hash,
                "at": cp.at_us / 1_000_000,
                "reason": cp.reason,
                "node": cp.node,
                "key_id": cp.key_id,
                "timestamped": cp.tsa_token is not None,
                "tsa_time": None if self.tsa_time is None else self.tsa_time.isoformat(),
                "problem_seq": tail.seq if not tail.ok else None,
                "uncovered": tail.uncovered,
                "uncovered_seqs": (
                    [cp.seq + 1, tail.head.seq] if tail.uncovered and tail.head.seq > cp.seq else []
                ),
                "detail": tail.detail,
            }
        else:
            out["status"] = "none"
        out["problems"] = list(self.problems)
        return out


async def audit_checkpoints(
    store: TraceStore,
    sources: Iterable[tuple[str, Checkpoint]],
    public: Ed25519PublicKey | None,
    tsa_trust: TsaTrust | None = None,
) -> CheckpointReport:
    """Check `sources` (where each was found, the checkpoint) and the store's tail.
    `public` may be None only when there is no checkpoint."""
    report = CheckpointReport()
    good: list[Checkpoint] = []
    for where, cp in sources:
        report.checkpoints += 1
        if public is None or not signature_ok(cp, public):
            report.problems.append(
                f"checkpoint at seq {cp.seq} ({where}): signature does not verify with the "
                "public key: forged or changed"
            )
            continue
        good.append(cp)
    last = latest(good)
    if last is None:
        return report
    head = await store.head()
    at = await _links_at(store, last.seq)
    after = await _links_at(store, last.seq + 1)
    next_one = after[0] if after and after[0].seq == last.seq + 1 else None
    report.tail = compare_tail(
        last,
        head,
        at[0].hash if at and at[0].seq == last.seq else None,
        None if next_one is None else next_one.kind,
        first_after_prev_hash=None if next_one is None else next_one.prev_hash,
    )
    token = last.token_der()
    if token is not None:
        try:
            if tsa_trust is not None and tsa_trust.configured:
                report.tsa_time = verify_token(token, last.digest(), tsa_trust).gen_time
            else:
                check_imprint_only(token, last.digest())
        except TimestampError as exc:
            report.problems.append(f"checkpoint at seq {last.seq}: time stamp: {exc.reason}")
    return report


async def _links_at(store: TraceStore, seq: int) -> Sequence[Any]:
    if seq < 1:
        return []
    return await store.links(after_seq=seq - 1, limit=1)


__all__ = ["CheckpointReport", "audit_checkpoints"]
