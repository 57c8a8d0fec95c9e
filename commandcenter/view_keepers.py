"""Where the evidence player's views are kept: `ViewKeeper`, with `LocalViews` (this node's
memory, for a server on its own) and `RedisViews` (the cluster's Redis, so that the ranges
of one view count as that view whichever node serves them, behind a load balancer that is
not sticky). The composition root (`evidence_api.install`) picks one.

The rules (what a view covers, how long it lives) are `player_views`; a keeper only stores.
A keeper that cannot answer (Redis unreachable) says a view covers nothing: its ranges are
then recorded as downloads, more records, never fewer (player_views.py).
"""

from __future__ import annotations

from typing import Final, Protocol

import msgspec
import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from commandcenter.player_views import MAX_VIEW_S, VIEW_ID_RE, PlayerViews

log = structlog.get_logger(__name__)

# A view opened on any node: `{"user": …, "evidence_id": …}`, expiring when the view does
# (PX). Under the cluster's `[redis] key_prefix`.
VIEW_KEY: Final = "player_view:{view_id}"


class ViewKeeper(Protocol):
    async def open(
        self, view_id: str, user: str, evidence_id: str, token_expires_at: float, now: float
    ) -> float:
        """Keep a new view; returns when it expires."""
        ...

    async def covers(self, view_id: str, user: str, evidence_id: str, now: float) -> bool:
        """Whether a request by `user` for part of `evidence_id` belongs to view `view_id`."""
        ...

    async def close(self) -> None: ...


class LocalViews:
    """The views this node opened, in its memory (a server on its own)."""

    def __init__(self, views: PlayerViews | None = None) -> None:
        self._views = views or PlayerViews()

    async def open(
        self, view_id: str, user: str, evidence_id: str, token_expires_at: float, now: float
    ) -> float:
        return self._views.open(view_id, user, evidence_id, token_expires_at, now)

    async def covers(self, view_id: str, user: str, evidence_id: str, now: float) -> bool:
        return self._views.covers(view_id, user, evidence_id, now)

    async def close(self) -> None:
        return None


class _Stored(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    user: str
    evidence_id: str


class RedisViews:
    """Every node's views, in Redis: one key per view, gone when the view expires."""

    def __init__(self, redis: Redis, key_prefix: str) -> None:
        self._redis = redis
        self._prefix = key_prefix

    def _key(self, view_id: str) -> str:
        return self._prefix + VIEW_KEY.format(view_id=view_id)

    async def open(
        self, view_id: str, user: str, evidence_id: str, token_expires_at: float, now: float
    ) -> float:
        if not VIEW_ID_RE.fullmatch(view_id):
            raise ValueError("not a view id")
        until = min(token_expires_at, now + MAX_VIEW_S)
        ttl_ms = max(1, int((until - now) * 1000))
        value = msgspec.json.encode(_Stored(user, evidence_id))
        try:
            await self._redis.set(self._key(view_id), value, px=ttl_ms, nx=True)
        except RedisError as exc:
            # The read is recorded already; its ranges will be recorded as downloads.
            log.warning("player view not kept", view=view_id, error=type(exc).__name__)
        return until

    async def covers(self, view_id: str, user: str, evidence_id: str, now: float) -> bool:
        if not VIEW_ID_RE.fullmatch(view_id):
            return False
        try:
            raw = await self._redis.get(self._key(view_id))
        except RedisError as exc:
            log.warning("player view unreadable", view=view_id, error=type(exc).__name__)
            return False
        if raw is None:
            return False
        try:
            stored = msgspec.json.decode(raw, type=_Stored)
        except msgspec.DecodeError:
            log.error("player view malformed", view=view_id)
            return False
        return stored.user == user and stored.evidence_id == evidence_id

    async def close(self) -> None:
        await self._redis.aclose()


__all__ = ["VIEW_KEY", "LocalViews", "RedisViews", "ViewKeeper"]
