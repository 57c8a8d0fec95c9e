"""The checkpoint key and the checkpoint log on disk.

The key is an Ed25519 private key in PKCS#8 PEM, mode 0600 in a directory of mode 0700, made
once if missing; its public half is written beside it (`.pub`, 0644) for auditors. The log is
a JSON-lines file that every checkpoint is appended to and synced, so the checkpoints survive
a trace whose `checkpoints` table was cut short with it. Blocking: callers run these in a
thread.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from sessions.checkpoint import Checkpoint, CheckpointError, load_public_pem, public_pem


class KeyFileError(Exception):
    """The key file cannot be read or made; the message names the file."""


def public_key_path(private: Path) -> Path:
    return private.with_name(private.name + ".pub")


def load_private_key(path: Path) -> Ed25519PrivateKey:
    try:
        data = path.read_bytes()
        key = serialization.load_pem_private_key(data, password=None)
    except OSError as exc:
        raise KeyFileError(f"{path}: {exc.strerror}") from None
    except (ValueError, TypeError) as exc:
        raise KeyFileError(f"{path}: not a PEM private key ({exc})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"{path}: not an Ed25519 key")
    return key


def write_key_pair(path: Path) -> Ed25519PrivateKey:
    """Make a new key at `path` (refusing to overwrite one) and its `.pub` beside it."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # O_EXCL: two starting processes never overwrite each other's key.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(pem)
            fh.flush()
            os.fsync(fh.fileno())
        public_key_path(path).write_bytes(public_pem(key.public_key()))
    except FileExistsError:
        raise KeyFileError(f"{path}: exists already; not overwritten") from None
    except OSError as exc:
        raise KeyFileError(f"{path}: {exc.strerror}") from None
    return key


def load_or_make_key(path: Path) -> tuple[Ed25519PrivateKey, bool]:
    """The key at `path`, made first if there is none; True when it was made now."""
    if path.exists():
        return load_private_key(path), False
    try:
        return write_key_pair(path), True
    except KeyFileError:
        if path.exists():
            # Another process made it in the meantime.
            return load_private_key(path), False
        raise


def load_public_key(path: Path) -> Ed25519PublicKey:
    """A public key from a `.pub` PEM, or the public half of a private key file."""
    try:
        return load_public_pem(path.read_bytes())
    except OSError as exc:
        raise KeyFileError(f"{path}: {exc.strerror}") from None
    except CheckpointError as exc:
        raise KeyFileError(f"{path}: {exc}") from None


def append_to_log(path: Path, checkpoint: Checkpoint) -> None:
    """Append one JSON line and sync it."""
    line = json.dumps(checkpoint.to_json(), ensure_ascii=False, sort_keys=True) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(line)
        fh.flush()
        os.fsync(fh.fileno())


def read_log(path: Path) -> Iterator[tuple[int, Checkpoint | CheckpointError]]:
    """Each line's number and checkpoint, or the error that line gave. Raises OSError."""
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                yield n, Checkpoint.from_json(json.loads(line))
            except ValueError as exc:
                # CheckpointError is a ValueError, and so is bad JSON.
                yield n, CheckpointError(str(exc))


__all__ = [
    "KeyFileError",
    "append_to_log",
    "load_or_make_key",
    "load_private_key",
    "load_public_key",
    "public_key_path",
    "read_log",
    "write_key_pair",
]
