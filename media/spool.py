"""The recordings directory, where calls are recorded before their files are registered as
evidence: what the files are named, how they are written so that a crash loses little, how a
finished one is made durable, and the sidecar that lets the next start find a dead call's.

Layout, per call: `<call>-<n>-<kind>.mkv`, one file per recorded track, and `<call>.call.json`,
the sidecar holding what the call's files are filed under (media.capture writes it when the
call starts and removes it once every file is registered). A server killed mid-call leaves
both; at the next start the sidecars say which files are whose.

Writing through: the muxer flushes every packet to the file and starts a cluster at least
every second, so a file cut off by a crash decodes up to about a second before the end. A
finished file is fsynced before it is hashed and reported, so nobody is told of a file that
a power cut could still take away. Everything here is blocking file I/O: call it through
`asyncio.to_thread`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any, Final

from media.bitstream import Kind

# Muxer options for a file written while the call runs (see the module docstring).
WRITE_THROUGH: Final = {"flush_packets": "1", "cluster_time_limit": "1000"}
# Read size when hashing a file.
HASH_CHUNK: Final = 1 << 20
_SIDECAR_SUFFIX: Final = ".call.json"
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def safe_name(name: str) -> str:
    """`name` as a file name part (a call id is one already; this makes sure)."""
    return _UNSAFE.sub("_", name).strip("._")[:64] or "call"


def track_path(directory: Path, call_id: str, serial: int, kind: Kind) -> Path:
    """The file of a call's `serial`-th recorded track."""
    return directory / f"{safe_name(call_id)}-{serial}-{kind}.mkv"


def track_kind(path: Path) -> Kind:
    """The kind of track a file of `track_path` holds."""
    return "audio" if path.stem.endswith("-audio") else "video"


def track_files(directory: Path, call_id: str) -> list[Path]:
    """A call's track files in `directory`, by name."""
    return sorted(directory.glob(f"{safe_name(call_id)}-*.mkv"))


def sidecar_path(directory: Path, call_id: str) -> Path:
    return directory / f"{safe_name(call_id)}{_SIDECAR_SUFFIX}"


def write_sidecar(directory: Path, call_id: str, data: Mapping[str, Any]) -> None:
    """Write a call's sidecar, whole or not at all: a crash while writing must not leave a
    half file that hides the call's recordings at the next start."""
    directory.mkdir(parents=True, exist_ok=True)
    path = sidecar_path(directory, call_id)
    tmp = path.with_suffix(".tmp")
    with tmp.open("w") as f:
        json.dump(dict(data), f)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)


def remove_sidecar(path: Path) -> None:
    """The call's files are all registered: nothing is left to recover."""
    with contextlib.suppress(OSError):
        path.unlink()


def sidecars(directory: Path) -> list[Path]:
    """Every call's sidecar in `directory`, by name."""
    if not directory.is_dir():
        return []
    return sorted(directory.glob(f"*{_SIDECAR_SUFFIX}"))


def read_sidecar(path: Path) -> Any:
    """A sidecar's data as written; raises OSError or ValueError if it cannot be read."""
    return json.loads(path.read_text())


def _sha256(f: IO[bytes]) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    while chunk := f.read(HASH_CHUNK):
        digest.update(chunk)
        size += len(chunk)
    return digest.hexdigest(), size


def seal(path: Path) -> tuple[str, int]:
    """A finished file's SHA-256 (hex) and size, read back from the file, which is durable
    (fsynced) before anyone is told it exists."""
    with path.open("rb") as f:
        sha256, size = _sha256(f)
        os.fsync(f.fileno())
    return sha256, size


def file_sha256(path: Path) -> str:
    """The SHA-256 (hex) of a file as it is now, e.g. one a dead server left."""
    with path.open("rb") as f:
        return _sha256(f)[0]


__all__ = [
    "HASH_CHUNK",
    "WRITE_THROUGH",
    "file_sha256",
    "read_sidecar",
    "remove_sidecar",
    "safe_name",
    "seal",
    "sidecar_path",
    "sidecars",
    "track_files",
    "track_kind",
    "track_path",
    "write_sidecar",
]
