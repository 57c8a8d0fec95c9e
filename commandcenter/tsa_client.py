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
    load_certificate,
    request_bytes,
    token_of_response,
    verify_token,
)


def load_tsa_certificate(path: str) -> x509.Certificate | None:
    """The configured TSA certificate, or None when none is configured. Raises
    TimestampError (the file is named)."""
    if not path:
        return None
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise TimestampError(f"audit.tsa_certificate_file {path}: {exc.strerror}") from None
    return load_certificate(data)


def timestamper(url: str, timeout_s: float, certificate: x509.Certificate | None) -> Timestamper:
    """Stamps a SHA-256 digest at `url`; with `certificate`, the token is verified too."""

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
        if certificate is not None:
            verify_token(token, digest, certificate)
        return token

    return stamp


__all__ = ["load_tsa_certificate", "timestamper"]
