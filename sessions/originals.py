"""Evidence originals on disk, checked against what the trace says they are.

The trace vouches for an item's hash and size (`evidence_stored`); the bytes live in a
content-addressed file named by that hash. Nothing stops a disk, a backup restore or a
person from changing or removing the file later, so `audit verify --files` re-hashes every
original (`check_originals`), and a download re-hashes what it sends (`DownloadCheck`):
a court must never be handed bytes that differ from the record.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Final, Literal

from sessions.evidence import STORED
from sessions.store import TraceStore

# Read size while re-hashing: large enough that the hash, not the calls, costs the time.
CHUNK: Final = 1024 * 1024

Problem = Literal["missing", "corrupt"]


@dataclasses.dataclass(frozen=True, slots=True)
class OriginalProblem:
    """An original that is not what the trace recorded."""

    sha256: str
    evidence_ids: tuple[str, ...]
    problem: Problem
    detail: str

    def to_json(self) -> dict[str, object]:
        return dataclasses.asdict(self) | {"evidence_ids": list(self.evidence_ids)}


@dataclasses.dataclass(frozen=True, slots=True)
class OriginalsReport:
    files: int
    bytes: int
    problems: tuple[OriginalProblem, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclasses.dataclass(slots=True)
class DownloadCheck:
    """The hash and length of bytes as they are sent, against the recorded ones."""

    sha256: str
    size: int
    _hash: hashlib._Hash = dataclasses.field(default_factory=hashlib.sha256)
    sent: int = 0

    def update(self, chunk: bytes) -> None:
        self._hash.update(chunk)
        self.sent += len(chunk)

    def matches(self) -> bool:
        return self.sent == self.size and self._hash.hexdigest() == self.sha256


def _hash_file(path: Path, on_bytes: Callable[[int], None]) -> tuple[str, int] | None:
    """(sha256, size) of the file at `path`, or None when there is none."""
    digest = hashlib.sha256()
    size = 0
    try:
        with path.open("rb") as fh:
            while chunk := fh.read(CHUNK):
                digest.update(chunk)
                size += len(chunk)
                on_bytes(len(chunk))
    except FileNotFoundError:
        return None
    return digest.hexdigest(), size


async def check_originals(
    trace: TraceStore,
    file_of: Callable[[str], Path],
    *,
    progress: Callable[[int, int], None] | None = None,
) -> OriginalsReport:
    """Re-hash the original of every stored item (each file once, however many items share
    it); `progress(bytes done, bytes in all)` as it goes. Nothing is changed."""
    recorded: dict[str, tuple[int, list[str]]] = {}
    for record in await trace.find(kinds=[STORED]):
        data = record.data
        sha256, size = str(data["sha256"]), int(data["size"])
        recorded.setdefault(sha256, (size, []))[1].append(str(data["evidence_id"]))
    total = sum(size for size, _ in recorded.values())
    done = 0

    def advance(n: int) -> None:
        nonlocal done
        done += n
        if progress is not None:
            progress(done, total)

    problems: list[OriginalProblem] = []
    files = 0
    for sha256, (size, ids) in recorded.items():
        found = await asyncio.to_thread(_hash_file, file_of(sha256), advance)
        files += 1
        if found is None:
            problems.append(OriginalProblem(sha256, tuple(ids), "missing", "no file"))
        elif found != (sha256, size):
            got_hash, got_size = found
            problems.append(
                OriginalProblem(
                    sha256,
                    tuple(ids),
                    "corrupt",
                    f"{got_size} bytes hashing to {got_hash}; recorded {size} bytes",
                )
            )
    return OriginalsReport(files=files, bytes=done, problems=tuple(problems))


__all__ = [
    "DownloadCheck",
    "OriginalProblem",
    "OriginalsReport",
    "check_originals",
]
