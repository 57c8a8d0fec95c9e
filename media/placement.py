"""Where a conference's members are, and what of their media crosses between workers, pure.

One conference may span several media workers (media.span). The pool places each member on a
worker and names one worker home: the conference's router runs there. Every worker gets the
whole conference's `Stage`, so each can tell on its own, from the same data, which tracks may
leave the worker that terminates them (`crosses`): the voices the stage makes audible (every
site's, in an open conference), the spotlight's video, and the grid's video when a moderator
sits on another worker than the site. Nothing else is ever sent out of its worker: a muted
site's audio ends where it arrives.

The roll-in (`Rollin`): in a conference's first minutes, when most sites join, the router asks
the spotlight publisher for a keyframe every few seconds and holds back joiners' requests for
it, so that hundreds of joiners are served by a few keyframes instead of one request each.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from signalling.core.actions import Stage


@dataclass(frozen=True, slots=True)
class Placement:
    """Conference placement as this worker (`here`) knows it."""

    here: int
    home: int
    # Each member's worker index.
    where: Mapping[str, int]
    # Each shown call's officer (`Stage.feeds`) whose call's media is on a worker of this
    # node: that worker index. The call's worker exports the feed like a site's uplink.
    feeds: Mapping[str, int] = field(default_factory=dict)

    @property
    def is_home(self) -> bool:
        return self.here == self.home

    def has_sites(self) -> bool:
        return self.here in self.where.values()

    def worker_of(self, user: str) -> int | None:
        """The worker terminating `user`'s media: a member's, or a shown call's."""
        worker = self.where.get(user)
        return worker if worker is not None else self.feeds.get(user)

    def feeds_here(self) -> list[str]:
        """The shown officers whose calls this worker has."""
        return sorted(u for u, w in self.feeds.items() if w == self.here)

    def elsewhere(self) -> list[str]:
        """Members on other workers, in a stable order."""
        return sorted(u for u, w in self.where.items() if w != self.here)


def track_of(owner: str, kind: str) -> str:
    return f"{owner}:{kind}"


def owner_kind(track: str) -> tuple[str, str]:
    owner, _, kind = track.rpartition(":")
    return owner, kind


def grid_sites(stage: Stage, where: Mapping[str, int], grid_slots: int) -> list[str]:
    """The sites whose video a moderator's grid may show from other workers: the first
    `grid_slots` sites by id (every worker picks the same ones)."""
    shown = {officer for officer, _ in stage.feeds}
    sites = sorted(u for u in where if u not in stage.moderators and u not in shown)
    return sites[:grid_slots]


_NO_FEEDS: Mapping[str, int] = MappingProxyType({})


def crosses(
    stage: Stage,
    where: Mapping[str, int],
    grid_slots: int,
    track: str,
    feeds: Mapping[str, int] = _NO_FEEDS,
) -> bool:
    """Whether `track` ("owner:kind") may leave the worker of its owner: a member's, or
    a shown call's officer's (`feeds`: the worker of each shown call here), whose voice
    crosses while the stage makes it audible and whose video while it is the spotlight."""
    owner, kind = owner_kind(track)
    home_of_owner = where.get(owner)
    if home_of_owner is None:
        home_of_owner = feeds.get(owner)
        if home_of_owner is None or all(owner != officer for officer, _ in stage.feeds):
            return False
    if kind == "audio":
        return owner in stage.audible or stage.open
    if kind != "video":
        return False
    if owner == stage.spotlight:
        return True
    elsewhere = any(where.get(m, home_of_owner) != home_of_owner for m in stage.moderators)
    return elsewhere and owner in grid_sites(stage, where, grid_slots)


@dataclass(frozen=True, slots=True)
class Rollin:
    """A conference's roll-in: from `started` for `length` seconds, a keyframe of the
    spotlight every `every` seconds (either 0: no roll-in)."""

    started: float
    length: float
    every: float

    def on(self, now: float) -> bool:
        """Whether `now` is in the roll-in: joiners' keyframe requests for the spotlight are
        held back, as the next periodic keyframe serves them."""
        return self.length > 0 and self.every > 0 and 0 <= now - self.started < self.length

    def holds(self, now: float) -> bool:
        """Whether a joiner's request for the spotlight's keyframe is held back at `now`:
        in the roll-in, with a periodic keyframe still to come that serves it."""
        return self.next_ask(now) is not None

    def next_ask(self, now: float) -> float | None:
        """When the spotlight is next asked for a keyframe (strictly after `now`), or None
        once the roll-in is over."""
        if not self.on(now):
            return None
        ticks = int((now - self.started) // self.every) + 1
        due = self.started + ticks * self.every
        if due <= now:
            # Rounding put the tick on `now` itself: the next one is meant.
            due = self.started + (ticks + 1) * self.every
        return due if due - self.started < self.length else None
