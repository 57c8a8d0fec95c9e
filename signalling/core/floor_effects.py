"""What the floor (signalling/core/floor.py) tells its owner, in the order a command returns
it: each site's own news first, then its timers, then any grants from the queue, the queue's
new positions, and the general state (docs/floor.md)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

TimerKind = Literal["talk", "revoke"]


@dataclass(frozen=True, slots=True)
class Granted:
    site: str
    until: float | None  # the end of its talk time; None: unlimited


@dataclass(frozen=True, slots=True)
class Queued:
    site: str
    position: int  # 1-based


@dataclass(frozen=True, slots=True)
class Denied:  # a refused command: nothing changed
    site: str
    reason: str  # "already_permitted", "queue_full", "not_queued", "not_permitted"


@dataclass(frozen=True, slots=True)
class Revoking:
    site: str
    at: float  # when the floor will be taken, unless released first
    reason: str  # "moderator", "talk_time", "preempted"


@dataclass(frozen=True, slots=True)
class Revoked:
    site: str
    # "moderator", "talk_time", "preempted" (the Revoking's, at the end of the grace),
    # "mute_all", "superseded", or the reason of a leave other than "left" ("removed", ...).
    reason: str


@dataclass(frozen=True, slots=True)
class Released:
    site: str
    reason: str = "released"  # or "left"


@dataclass(frozen=True, slots=True)
class Lowered:  # a hand lowered without the floor (a granted hand gets `Granted` only)
    site: str
    reason: str = "cancelled"  # or the leave's: "left", "removed", ...


@dataclass(frozen=True, slots=True)
class Positions:
    changed: tuple[tuple[str, int], ...]  # (site, new position) of the sites still queued


@dataclass(frozen=True, slots=True)
class FloorTaken:
    holders: tuple[str, ...]  # the new holders, in grant order


@dataclass(frozen=True, slots=True)
class FloorIdle:
    pass


@dataclass(frozen=True, slots=True)
class StartTimer:
    kind: TimerKind
    site: str
    at: float


@dataclass(frozen=True, slots=True)
class StopTimer:
    kind: TimerKind
    site: str


# What a site is told about its own floor, and what a command's effects may be.
SiteNotice = Granted | Queued | Denied | Revoking | Revoked | Released | Lowered
FloorEffect = SiteNotice | Positions | FloorTaken | FloorIdle | StartTimer | StopTimer
