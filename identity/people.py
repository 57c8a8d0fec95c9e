"""Roles, the identity a credential proves, and the one error for credentials that prove none."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final, Literal


class Role(StrEnum):
    OFFICER = "officer"
    OPERATOR = "operator"
    SUPERVISOR = "supervisor"
    ADMIN = "admin"
    AUDITOR = "auditor"
    # An invited observer (a people's congress deputy, a procurator): watches one named
    # conference, view-only, within the time window of their token.
    WITNESS = "witness"


@dataclass(frozen=True)
class Identity:
    user_id: str
    name: str
    role: Role
    court: str
    # Unix seconds: the credential's expiry (a token's exp claim).
    expires_at: float
    # What a witness may watch ("conference:<id>"); None for every other role.
    scope: str | None = None


AuthReason = Literal[
    "token missing",
    "token too large",
    "invalid token",
    "algorithm not allowed",
    "token expired",
    "token not yet valid",
    "missing claim",
    "invalid claim",
    "unknown role",
    "unknown court",
    "account disabled",
    "witness revoked",
]


class AuthError(Exception):
    """The peer's credentials are unusable; `reason` is short and safe to put on the wire."""

    # WebSocket close code and HTTP status for every authentication failure.
    close_code: Final = 4401
    http_status: Final = 401

    def __init__(self, reason: AuthReason) -> None:
        super().__init__(reason)
        self.reason: AuthReason = reason


def bearer_token(header: str) -> str | None:
    """The token of an `Authorization: Bearer <token>` header value, or None."""
    scheme, _, token = header.partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None
