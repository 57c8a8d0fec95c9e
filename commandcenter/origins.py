"""Web origins (RFC 6454) as `server.allowed_origins` names them and browsers send them."""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit


def normalised_origin(value: str) -> str | None:
    """`scheme://host[:port]` in lower case with default ports dropped, or None if `value`
    is not an http(s) origin (browsers send "null" from sandboxed and file pages)."""
    try:
        parts = urlsplit(value.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        return None
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    default = 443 if parts.scheme == "https" else 80
    return (
        f"{parts.scheme}://{host}" if port in (None, default) else f"{parts.scheme}://{host}:{port}"
    )


def allowed_origins(configured: Iterable[str]) -> frozenset[str]:
    """The configured origins, normalised; ValueError naming one that is not an origin."""
    out = set()
    for value in configured:
        origin = normalised_origin(value)
        if origin is None:
            raise ValueError(f"{value!r} is not an origin (scheme://host[:port])")
        out.add(origin)
    return frozenset(out)


__all__ = ["allowed_origins", "normalised_origin"]
