"""The video wall's watches: operators and supervisors watch officers' cameras without a call.

Theory of operation
-------------------
A *watch* is one officer's video uplink, open while anyone watches them. The first watcher of
an officer opens it: the officer's page is told (`watch_opened`) and publishes its camera,
video only, in a media session named by the watch id; the media server's room for that id
has the officer as its one publisher and every watcher as a silent member, so that several
walls showing one officer share one uplink. Each watcher offers receive-only in the same id.

A watcher's watch ends when they stop (`unwatch`), when their connection goes, or when the
officer's does (the officer is offline or away: their camera is gone with them); the last
watcher out closes the uplink (`watch_closed` to the officer). Every start and stop of a
watcher is a fact in the trace, naming the officer, the court and the watcher, the stop with
when it started, so "who watched whom, from when to when" is read from the trace alone.

Bounded per watcher: at most `max_feeds` watches at once (a wall's tiles) and
`starts_per_min` starts in any 60 s (a wall rotating every few seconds stays well below).

Sized to the wall: a watcher says how many tiles its wall shows (`wall_layout`; 1 while a
tile is enlarged, and for a watcher that never said). A 16-tile wall needs no 720p at 30 fps
from each officer, and the province's uplinks are phones on mobile networks, so each watch
has a cap (`video_policy`: height, frame rate, bit rate, per layout from `[wall]`) that its
officer's page applies to the watch's sender. Several walls share one uplink, so the
highest need wins: the cap of the fewest tiles among the watch's watchers (`policy_for`).
It is weighed again when a watcher joins or leaves the watch, and when a watcher changes
its layout, then for that watcher's own watches only; the officer is told only when the cap
changes. A call is not a watch: its media never has a cap.

This module owns the watch table, who watches what, and each watcher's recent starts.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from identity import Courts, Role
from signalling import protocol as p
from signalling.core.actions import Action, Negotiate, Room, Send
from signalling.core.presence import WATCHER_ROLES, Session
from signalling.errors import (
    Forbidden,
    InvalidState,
    MediaUnavailable,
    NotFound,
    RateLimited,
)

if TYPE_CHECKING:
    from signalling.core.switchboard import Switchboard

# The window `starts_per_min` counts starts in, seconds.
START_WINDOW_S: Final = 60.0


# A watcher that never said its layout: one tile (no cap), as before layouts existed.
DEFAULT_TILES: Final = 1


@dataclass(frozen=True, slots=True)
class VideoCap:
    """The most a watch's uplink sends: lines of height, frames a second, kbit/s."""

    max_height: int
    max_fps: int
    max_kbps: int


# `[wall]`'s defaults: tiles -> cap; a layout without one (1 tile) has no cap.
DEFAULT_CAPS: Final[Mapping[int, VideoCap]] = {
    4: VideoCap(540, 25, 1200),
    9: VideoCap(360, 15, 500),
    16: VideoCap(180, 12, 200),
}


def policy_for(layouts: Iterable[int], caps: Mapping[int, VideoCap]) -> VideoCap | None:
    """The cap of an uplink watched by walls of `layouts` tiles: the highest need wins (the
    fewest tiles; none watching is no cap)."""
    return caps.get(min(layouts, default=DEFAULT_TILES))


@dataclass(frozen=True, slots=True)
class WatchLimits:
    # Most officers one watcher watches at once (a wall of 16 tiles).
    max_feeds: int = 16
    # Most watches one watcher starts in any 60 s.
    starts_per_min: int = 120
    # The cap of each wall layout (`policy_for`).
    caps: Mapping[int, VideoCap] = field(default_factory=lambda: dict(DEFAULT_CAPS))


@dataclass(frozen=True, slots=True)
class WatchFacts:
    """An open watch as the cluster's journal keeps it: who to tell if it is lost, and the
    data of each watcher's `watch_stopped` record then."""

    officer: str
    watchers: tuple[str, ...]
    stopped: tuple[dict[str, object], ...]


@dataclass(slots=True)
class Watch:
    watch_id: str
    officer: str
    court: str
    opened_at: float
    # watcher -> when they started watching.
    watchers: dict[str, float] = field(default_factory=dict)
    # The cap the officer was last told (None: none).
    policy: VideoCap | None = None


class Watches:
    def __init__(
        self,
        board: Switchboard,
        courts: Courts,
        limits: WatchLimits,
        new_id: Callable[[], str],
        *,
        media: bool,
    ) -> None:
        self._board = board
        self._courts = courts
        self.limits = limits
        self._new_id = new_id
        self._media = media
        self.table: dict[str, Watch] = {}
        self._of_officer: dict[str, str] = {}
        self._of_watcher: dict[str, set[str]] = {}
        self._starts: dict[str, deque[float]] = {}
        # watcher -> how many tiles their wall shows (absent: DEFAULT_TILES).
        self._layouts: dict[str, int] = {}

    # ---- queries ------------------------------------------------------------------------

    def watching(self, user: str) -> list[Watch]:
        """The watches `user` watches, by id."""
        return [self.table[w] for w in sorted(self._of_watcher.get(user, ()))]

    def of_officer(self, officer: str) -> Watch | None:
        watch_id = self._of_officer.get(officer)
        return None if watch_id is None else self.table[watch_id]

    def facts(self, watch_id: str) -> WatchFacts | None:
        """What the cluster's journal keeps of an open watch: its `watch_stopped` records
        were it lost now, so that a new authority closes what the trace opened."""
        watch = self.table.get(watch_id)
        if watch is None:
            return None
        stopped = tuple(
            self._stopped_data(watch, watcher, "node_lost", since)
            for watcher, since in sorted(watch.watchers.items())
        )
        return WatchFacts(watch.officer, tuple(sorted(watch.watchers)), stopped)

    # ---- commands -----------------------------------------------------------------------

    def watch(self, session: Session, msg: p.Watch, now: float, out: list[Action]) -> None:
        user = session.user_id
        if session.role not in WATCHER_ROLES:
            raise Forbidden("only the command center watches officers")
        officer = self._board.presence.session(msg.officer)
        # Another court's officer answers as one not online: nothing is told of them.
        if (
            officer is None
            or officer.role is not Role.OFFICER
            or not officer.connected
            or not self._courts.in_scope(session.identity, officer.identity.court)
        ):
            raise NotFound("no such officer online", field="officer")
        if not self._media:
            raise MediaUnavailable("media is not available on this server")
        watch = self.of_officer(msg.officer)
        if watch is not None and user in watch.watchers:
            # Asked again (a reconnecting wall): the same watch, nothing new to record.
            out.append(Send((user,), self._watching(watch, msg.id)))
            return
        if len(self._of_watcher.get(user, ())) >= self.limits.max_feeds:
            raise InvalidState(f"you watch {self.limits.max_feeds} officers already")
        starts = self._starts.setdefault(user, deque())
        while starts and starts[0] <= now - START_WINDOW_S:
            starts.popleft()
        if len(starts) >= self.limits.starts_per_min:
            raise RateLimited(f"at most {self.limits.starts_per_min} watches a minute")
        starts.append(now)
        if watch is None:
            watch = Watch(self._new_id(), officer.user_id, officer.identity.court, now)
            self.table[watch.watch_id] = watch
            self._of_officer[watch.officer] = watch.watch_id
            out.append(Send((watch.officer,), p.WatchOpened(watch_id=watch.watch_id)))
        watch.watchers[user] = now
        self._of_watcher.setdefault(user, set()).add(watch.watch_id)
        out.append(
            self._board.facts.record(
                "watch_started",
                now,
                watch=watch.watch_id,
                officer=watch.officer,
                court=watch.court,
                by=user,
            )
        )
        out.append(Send((user,), self._watching(watch, msg.id)))
        out.append(self._room(watch))
        self._weigh(watch, out)

    def layout(self, session: Session, msg: p.WallLayout, out: list[Action]) -> None:
        """The watcher's wall shows `msg.tiles` tiles: its own watches are weighed again."""
        if session.role not in WATCHER_ROLES:
            raise Forbidden("only the command center has a video wall")
        user = session.user_id
        self._layouts[user] = msg.tiles
        for watch in self.watching(user):
            self._weigh(watch, out)

    def layout_of(self, watcher: str) -> int:
        return self._layouts.get(watcher, DEFAULT_TILES)

    def unwatch(self, session: Session, msg: p.Unwatch, now: float, out: list[Action]) -> None:
        watch = self.table.get(msg.watch_id)
        if watch is None or session.user_id not in watch.watchers:
            raise NotFound("you do not watch that", field="watch_id")
        self._stop(watch, session.user_id, "stopped", now, out)

    def negotiate(self, session: Session, msg: p.MediaMessage) -> Negotiate:
        """A watch member's media message, checked, for the driver's media port."""
        watch = self.table[msg.call_id]
        user = session.user_id
        if user != watch.officer and user not in watch.watchers:
            raise NotFound("no such call", field="call_id")
        if isinstance(msg, p.Snapshot):
            raise InvalidState("snapshots are taken in calls", field="call_id")
        return Negotiate(user, msg)

    def gone(self, user: str, now: float, out: list[Action]) -> None:
        """`user`'s connection went (away or signed out): what they watch ends, and if they
        are an officer being watched, so does every watch of them."""
        for watch in self.watching(user):
            self._stop(watch, user, "watcher_gone", now, out)
        # A wall back after a drop says its layout again before it watches again.
        self._layouts.pop(user, None)
        seen = self.of_officer(user)
        if seen is not None:
            for watcher in sorted(seen.watchers):
                self._stop(seen, watcher, "officer_offline", now, out)

    def end_all(self, now: float, out: list[Action]) -> None:
        """The node stops: every watch ends, recorded."""
        for watch in list(self.table.values()):
            for watcher in sorted(watch.watchers):
                self._stop(watch, watcher, "shutdown", now, out)

    # ---- internals ----------------------------------------------------------------------

    def _stop(
        self, watch: Watch, watcher: str, reason: p.WatchEndReason, now: float, out: list[Action]
    ) -> None:
        since = watch.watchers.pop(watcher)
        mine = self._of_watcher.get(watcher)
        if mine is not None:
            mine.discard(watch.watch_id)
            if not mine:
                del self._of_watcher[watcher]
        data = self._stopped_data(watch, watcher, reason, since)
        out.append(self._board.facts.record("watch_stopped", now, **data))
        if reason != "stopped":
            # Who asked to stop is answered with an ack; anyone else is told why.
            ended = p.WatchEnded(watch_id=watch.watch_id, officer=watch.officer, reason=reason)
            out.append(Send((watcher,), ended))
        if not watch.watchers:
            del self.table[watch.watch_id]
            del self._of_officer[watch.officer]
            out.append(Send((watch.officer,), p.WatchClosed(watch_id=watch.watch_id)))
        out.append(self._room(watch))
        if watch.watchers:
            self._weigh(watch, out)

    def _weigh(self, watch: Watch, out: list[Action]) -> None:
        """Tell the officer the watch's cap if its watchers' needs changed it."""
        cap = policy_for((self.layout_of(w) for w in watch.watchers), self.limits.caps)
        if cap == watch.policy:
            return
        watch.policy = cap
        policy = p.VideoPolicy(
            watch_id=watch.watch_id,
            max_height=cap.max_height if cap else None,
            max_fps=cap.max_fps if cap else None,
            max_kbps=cap.max_kbps if cap else None,
        )
        out.append(Send((watch.officer,), policy))

    @staticmethod
    def _stopped_data(
        watch: Watch, watcher: str, reason: p.WatchEndReason, since: float
    ) -> dict[str, object]:
        return {
            "watch": watch.watch_id,
            "officer": watch.officer,
            "court": watch.court,
            "by": watcher,
            "reason": reason,
            "started_at": since,
        }

    def _room(self, watch: Watch) -> Room:
        members = (watch.officer, *sorted(watch.watchers)) if watch.watchers else ()
        return Room(
            call_id=watch.watch_id,
            members=members,
            silent=tuple(sorted(watch.watchers)),
            court=watch.court,
            officer=watch.officer,
            case_number=None,
            watch=True,
        )

    def _watching(self, watch: Watch, ref: str) -> p.Watching:
        info = self._board.presence.info(watch.officer)
        return p.Watching(ref=ref, watch_id=watch.watch_id, officer=info)
