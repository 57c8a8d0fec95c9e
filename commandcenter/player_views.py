"""The evidence player's views: one recorded look at a recording, however many byte ranges
the browser's <video> then asks for as it plays and seeks.

Opening a view (`POST /api/evidence/<id>/view`) is recorded in the trace as a read of the
item (`via: "player"`, with the view's id); the range requests the player makes with that
view's id are parts of it and are not recorded again. A request for the whole original (no
`Range`) is a download and is recorded as one, view or not. A view this node does not know
(opened on another node, before a restart, expired or evicted) covers nothing: its requests
are recorded as downloads, so a look at evidence is never left out of the trace; at worst
it is recorded more than once.

Pure: no clock (time is an argument), no I/O; the id is drawn by the caller. Bounded: at
most `limit` views are kept, the oldest dropped first.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass
from typing import Final

# A view lives as long as the token that opened it, and at most this long (a long recording
# watched through, paused and taken up again).
MAX_VIEW_S: Final = 4 * 3600.0
# Views kept on a node at once: a busy records room opens a few hundred an hour.
MAX_VIEWS: Final = 10_000
# The ids this module hands out (secrets.token_urlsafe(16): 22 characters) and accepts.
VIEW_ID_RE: Final = re.compile(r"[A-Za-z0-9_-]{16,64}")


@dataclass(frozen=True)
class View:
    user: str
    evidence_id: str
    until: float


class PlayerViews:
    def __init__(self, limit: int = MAX_VIEWS) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self._limit = limit
        # By id, oldest first (all views get the same lifetime, so also soonest to expire).
        self._views: OrderedDict[str, View] = OrderedDict()

    def open(
        self, view_id: str, user: str, evidence_id: str, token_expires_at: float, now: float
    ) -> float:
        """Keep a new view of `evidence_id` by `user`; returns when it expires."""
        if not VIEW_ID_RE.fullmatch(view_id):
            raise ValueError("not a view id")
        self._expire(now)
        until = min(token_expires_at, now + MAX_VIEW_S)
        self._views[view_id] = View(user, evidence_id, until)
        while len(self._views) > self._limit:
            self._views.popitem(last=False)
        return until

    def covers(self, view_id: str, user: str, evidence_id: str, now: float) -> bool:
        """Whether a request by `user` for part of `evidence_id` belongs to view `view_id`."""
        view = self._views.get(view_id)
        if view is None or view.until <= now:
            return False
        return view.user == user and view.evidence_id == evidence_id

    def __len__(self) -> int:
        return len(self._views)

    def _expire(self, now: float) -> None:
        # Oldest first; views opened later may expire earlier (a shorter token), which only
        # keeps them a little longer than needed.
        while self._views:
            first = next(iter(self._views.values()))
            if first.until > now:
                break
            self._views.popitem(last=False)
