"""Asking an RFC 3161 time-stamp authority (`audit.tsa_url`) to stamp a checkpoint: one POST
of `application/timestamp-query`, within `audit.tsa_timeout_s`. The request and the answer
are `sessions.timestamp`'s; every way this fails is a `TimestampError`, which the
checkpointer logs before writing the checkpoint without a token."""

from __future__ import annotations

import secrets
from pathlib import Path

import aiohttp
from cryptography import x509

from commandcenter.bodies import read_at_most
from sessions.checkpointer import Timestamper
from sessions.errors import TimestampError
from sessions.timestamp import (
    MAX_RESPONSE_BYTES,
    MEDIA_TYPE_QUERY,
    TsaTrust,
    load_certificate,
    load_certificates,
    request_bytes,
    token_of_response,
    verify_token,
)

# A certificate or roots file larger than this is not one.
_MAX_FILE_BYTES = 1024 * 1024


def _read(path: str, what: str) -> bytes:
    try:
        with Path(path).open("rb") as f:
            data = f.read(_MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise TimestampError(f"{what} {path}: {exc.strerror}") from None
    if len(data) > _MAX_FILE_BYTES:
        raise TimestampError(f"{what} {path}: larger than {_MAX_FILE_BYTES} bytes")
    return data


def load_tsa_certificate(path: str) -> x509.Certificate | None:
    """The configured TSA certificate, or None when none is configured. Raises
    TimestampError (the file is named)."""
    if not path:
        return None
    try:
        return load_certificate(_read(path, "audit.tsa_certificate_file"))
    except TimestampError as exc:
        raise TimestampError(f"audit.tsa_certificate_file {path}: {exc.reason}") from None


def load_tsa_trust(certificate_path: str, roots_path: str) -> TsaTrust:
    """Whom tokens are trusted from: the pinned certificate and the roots, as configured
    (either may be empty). Raises TimestampError naming the file."""
    roots: tuple[x509.Certificate, ...] = ()
    if roots_path:
        try:
            roots = load_certificates(_read(roots_path, "audit.tsa_roots_file"))
        except TimestampError as exc:
            raise TimestampError(f"audit.tsa_roots_file {roots_path}: {exc.reason}") from None
    return TsaTrust(certificate=load_tsa_certificate(certificate_path), roots=roots)


def timestamper(url: str, timeout_s: float, trust: TsaTrust) -> Timestamper:
    """Stamps a SHA-256 digest at `url`; with a configured `trust`, the token is verified
    too (a TSA whose token does not verify is a TSA that failed)."""

    async def stamp(digest: bytes) -> bytes:
        nonce = secrets.randbits(63)
        try:
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s)) as http,
                http.post(
                    url,
                    data=request_bytes(digest, nonce),
                    headers={"Content-Type": MEDIA_TYPE_QUERY},
                ) as resp,
            ):
                if resp.status != 200:
                    raise TimestampError(f"the TSA answered HTTP {resp.status}")
                body = await read_at_most(resp.content, MAX_RESPONSE_BYTES)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TimestampError(f"the TSA could not be reached: {type(exc).__name__}") from None
        if len(body) > MAX_RESPONSE_BYTES:
            raise TimestampError("the TSA's answer is too large")
        token = token_of_response(body, digest, nonce)
        if trust.configured:
            verify_token(token, digest, trust)
        return token

    return stamp


__all__ = ["load_tsa_certificate", "load_tsa_trust", "timestamper"]
