"""One conference's floor: who may be heard, whose hand is raised, and the table that moves
each site between the two.

Theory of operation
-------------------
3GPP MCPTT floor control (TS 24.380) run by a moderator; docs/floor.md maps it in full. A
site is NOT_PERMITTED until it raises its hand (QUEUED) or is given the floor (PERMITTED).
A revocation warns the holder, who keeps the floor for `revoke_grace_s` (PENDING_REVOKE,
T3); the talk-time limit (T2, `max_talk_s`) revokes the same way; mute all, a moderator's
grant over a full floor and a lowered `max_speakers` take it at once. PERMITTED and
PENDING_REVOKE sites both hold the floor: heard, and counted against `max_speakers`.

`Floor` is the arbiter: each command chooses what happens to which sites (a request becomes
ENQUEUE or GRANT by mode and room, a grant over a full floor first takes it from the holder
granted longest ago), moves each site along the one table below, and adds what concerns the
others: queue positions that changed, the general state (G: Floor Taken / Idle), and in
OPEN mode the grants from the queue's head. The table holds only real state changes and
each change's timers; what leaves a site where it is (a revoke while already revoking, a
leave of a site without floor or hand) is no event. A refusal is a `Denied` effect and
changes nothing; a pair missing from the table raises `IllegalTransition`, unchanged, and is
our bug (the commands check the state before choosing an event).

Hands queue by (priority, request time, site). MODERATED: only the moderator grants.
OPEN: a request is granted while there is room, else it queues and, if strictly more
important than the least important holder the arbiter (not the moderator) granted, has that
one revoked with grace; every place freed goes to the queue's head.

This module does no I/O and never reads the clock: times are passed in, timers are effects
its owner (the conference sub-core) arms as deadline keys and hands back through
`timer_fired`.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

# One error for every state table of the core: a missing pair is our bug, `internal_error`.
from signalling.core.call import IllegalTransition as IllegalTransition
from signalling.core.floor_effects import (
    Denied,
    FloorEffect,
    FloorIdle,
    FloorTaken,
    Granted,
    Lowered,
    Positions,
    Queued,
    Released,
    Revoked,
    Revoking,
    StartTimer,
    StopTimer,
    TimerKind,
)


class SiteFloor(StrEnum):
    """A site's own floor state (MCPTT's "U:" states of the server's per-participant machine)."""

    NOT_PERMITTED = "not_permitted"
    QUEUED = "queued"
    PERMITTED = "permitted"
    PENDING_REVOKE = "pending_revoke"


class FloorEvent(StrEnum):
    ENQUEUE = "enqueue"  # the hand is raised
    GRANT = "grant"  # by the moderator (roll call too), or in OPEN mode by the arbiter
    CANCEL = "cancel"  # the hand is lowered
    RELEASE = "release"  # the holder gives the floor back
    REVOKE = "revoke"  # taken after the grace (T3)
    REVOKE_NOW = "revoke_now"  # taken at once: grace over, mute all, superseded
    LEAVE = "leave"  # the site left the conference or was removed


class SiteEffect(StrEnum):
    """A transition's timers, turned by `Floor` into `StartTimer` / `StopTimer` effects."""

    START_TALK_TIMER = "start_talk_timer"  # T2, at now + max_talk_s (only if there is a limit)
    STOP_TALK_TIMER = "stop_talk_timer"
    START_REVOKE_TIMER = "start_revoke_timer"  # T3, at now + revoke_grace_s
    STOP_REVOKE_TIMER = "stop_revoke_timer"


class FloorMode(StrEnum):
    MODERATED = "moderated"  # hands only queue; only the moderator grants
    OPEN = "open"  # the arbiter grants while there is room, by priority, with pre-emption


_N, _Q = SiteFloor.NOT_PERMITTED, SiteFloor.QUEUED
_P, _R = SiteFloor.PERMITTED, SiteFloor.PENDING_REVOKE
_HOLDING: Final = frozenset({_P, _R})
_E = FloorEvent
_X = SiteEffect

TRANSITIONS: Final[dict[tuple[SiteFloor, FloorEvent], tuple[SiteFloor, tuple[SiteEffect, ...]]]] = {
    (_N, _E.ENQUEUE): (_Q, ()),
    (_N, _E.GRANT): (_P, (_X.START_TALK_TIMER,)),
    (_Q, _E.GRANT): (_P, (_X.START_TALK_TIMER,)),
    (_Q, _E.CANCEL): (_N, ()),
    (_Q, _E.LEAVE): (_N, ()),
    (_P, _E.RELEASE): (_N, (_X.STOP_TALK_TIMER,)),
    (_P, _E.REVOKE): (_R, (_X.STOP_TALK_TIMER, _X.START_REVOKE_TIMER)),
    (_P, _E.REVOKE_NOW): (_N, (_X.STOP_TALK_TIMER,)),
    (_P, _E.LEAVE): (_N, (_X.STOP_TALK_TIMER,)),
    (_R, _E.RELEASE): (_N, (_X.STOP_REVOKE_TIMER,)),
    (_R, _E.REVOKE_NOW): (_N, (_X.STOP_REVOKE_TIMER,)),
    (_R, _E.LEAVE): (_N, (_X.STOP_REVOKE_TIMER,)),
}


def transition(state: SiteFloor, event: FloorEvent) -> tuple[SiteFloor, tuple[SiteEffect, ...]]:
    """The state `event` leads a site to from `state`, and its timers; IllegalTransition if none."""
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        raise IllegalTransition(f"site cannot {event.value} while {state.value}") from None


@dataclass(frozen=True)
class FloorPolicy:
    """The moderator's limits; `set_policy` changes them while the conference runs."""

    mode: FloorMode = FloorMode.MODERATED
    max_speakers: int = 1  # MCVideo's limit of simultaneous transmissions
    max_talk_s: float | None = None  # T2; None: unlimited
    revoke_grace_s: float = 3.0  # T3
    max_queue: int = 300  # raised hands kept; a request beyond is denied "queue_full"

    def __post_init__(self) -> None:
        talk = self.max_talk_s is None or self.max_talk_s > 0  # NaN fails every comparison
        if not (
            talk and self.max_speakers >= 1 and self.revoke_grace_s >= 0 and self.max_queue >= 0
        ):
            raise ValueError(f"floor policy out of bounds: {self}")


@dataclass(frozen=True)
class FloorParts:
    """A floor's state as plain data, each in its own order (`Floor.parts`)."""

    states: tuple[tuple[str, SiteFloor], ...]  # by site
    queue: tuple[tuple[int, float, str], ...]  # (priority, requested at, site), sorted
    holders: tuple[tuple[str, int | None], ...]  # in grant order
    talk_until: tuple[tuple[str, float], ...]
    revoking: tuple[tuple[str, float, str], ...]  # (site, taken at, reason)


# What `_conclude` compares a command's outcome with: the holders and the queue's positions.
_Seen = tuple[tuple[str, ...], dict[str, int]]


class Floor:
    """The arbiter of one conference's floor. Sites are user ids; a site the floor has never
    heard of is NOT_PERMITTED."""

    def __init__(self, policy: FloorPolicy) -> None:
        self._policy = policy
        self._state: dict[str, SiteFloor] = {}  # every site not NOT_PERMITTED
        # (priority, requested at, site), kept sorted: the order hands are answered in.
        self._queue: list[tuple[int, float, str]] = []
        # Holder -> the priority it can be pre-empted at, in grant order. None: given by the
        # moderator, whose choice the arbiter never overrules (only the moderator, T2 or the
        # site itself ends it).
        self._holders: dict[str, int | None] = {}
        self._talk_until: dict[str, float] = {}  # running T2 timers
        self._revoking: dict[str, tuple[float, str]] = {}  # running T3 timers, with the reason
        self.history: list[tuple[float, str, FloorEvent, SiteFloor]] = []

    # ---- commands ---------------------------------------------------------------------------

    def request(self, site: str, priority: int, now: float) -> list[FloorEffect]:
        """Raise a hand. Priority: smaller is more important (0 provincial court, 1
        intermediate, 2 basic); equal ones are answered by request time, then site id."""
        state = self.state_of(site)
        if state in _HOLDING:
            return [Denied(site, "already_permitted")]
        if state is _Q:
            # Asked again: told its place again; it keeps the place it was given.
            return [Queued(site, self._index(site) + 1)]
        before = self._observe()
        policy = self._policy
        if policy.mode is FloorMode.OPEN and len(self._holders) < policy.max_speakers:
            return self._conclude(before, self._apply(site, _E.GRANT, now, priority), now)
        if len(self._queue) >= policy.max_queue:
            return [Denied(site, "queue_full")]
        effects = self._apply(site, _E.ENQUEUE, now, priority)
        if policy.mode is FloorMode.OPEN:
            effects += self._preempt_for(site, priority, now)
        return self._conclude(before, effects, now)

    def cancel(self, site: str, now: float) -> list[FloorEffect]:
        """Lower a raised hand."""
        if self.state_of(site) is not _Q:
            return [Denied(site, "not_queued")]
        before = self._observe()
        return self._conclude(before, self._apply(site, _E.CANCEL, now), now)

    def grant(self, site: str, now: float) -> list[FloorEffect]:
        """The moderator gives `site` the floor, asked for or not (a roll call); over a full
        floor the holder granted longest ago loses it first ("superseded")."""
        if self.state_of(site) in _HOLDING:
            return [Denied(site, "already_permitted")]
        before = self._observe()
        effects: list[FloorEffect] = []
        if len(self._holders) >= self._policy.max_speakers:
            effects += self._apply(self._oldest(), _E.REVOKE_NOW, now, reason="superseded")
        effects += self._apply(site, _E.GRANT, now)
        return self._conclude(before, effects, now)

    def release(self, site: str, now: float) -> list[FloorEffect]:
        """The holder gives the floor back (while revoking too)."""
        if self.state_of(site) not in _HOLDING:
            return [Denied(site, "not_permitted")]
        before = self._observe()
        return self._conclude(before, self._apply(site, _E.RELEASE, now), now)

    def revoke(self, site: str, now: float, reason: str = "moderator") -> list[FloorEffect]:
        """Take the floor from `site` after the grace."""
        state = self.state_of(site)
        if state is _R:
            return []  # already on its way; the first grace stands
        if state is not _P:
            return [Denied(site, "not_permitted")]
        before = self._observe()
        return self._conclude(before, self._apply(site, _E.REVOKE, now, reason=reason), now)

    def revoke_all(self, now: float) -> list[FloorEffect]:
        """Mute all: every holder loses the floor at once; raised hands stay (in OPEN mode the
        queue's head is then granted as after any revocation)."""
        before = self._observe()
        effects: list[FloorEffect] = []
        for site in self.holders():
            effects += self._apply(site, _E.REVOKE_NOW, now, reason="mute_all")
        return self._conclude(before, effects, now)

    def leave(self, site: str, now: float, reason: str = "left") -> list[FloorEffect]:
        """The site is gone: its hand is lowered and its floor taken. "left" (its own doing)
        reports a held floor `Released`; any other reason ("removed", ...) `Revoked`."""
        if self.state_of(site) is _N:
            return []  # nothing to leave
        before = self._observe()
        return self._conclude(before, self._apply(site, _E.LEAVE, now, reason=reason), now)

    def timer_fired(self, kind: TimerKind, site: str, now: float) -> list[FloorEffect]:
        """T2 over: revoke with grace ("talk_time"); T3 over: taken with the revoke's reason.
        A timer that is not running, or fires before its time (an older one of the same key),
        is stale: []."""
        if kind == "talk":
            at = self._talk_until.get(site)
            if at is None or now < at:
                return []
            event, reason = _E.REVOKE, "talk_time"
        else:
            pending = self._revoking.get(site)
            if pending is None or now < pending[0]:
                return []
            event, reason = _E.REVOKE_NOW, pending[1]
        before = self._observe()
        # The timer that fired is spent: there is nothing left for the owner to stop.
        spent = StopTimer(kind, site)
        effects = [e for e in self._apply(site, event, now, reason=reason) if e != spent]
        return self._conclude(before, effects, now)

    def set_policy(self, policy: FloorPolicy, now: float) -> list[FloorEffect]:
        """New limits or mode, from now on: holders beyond a lowered `max_speakers` lose the
        floor at once, longest-granted first ("superseded"); OPEN grants from the queue while
        there is room. Running timers and hands beyond a lowered `max_queue` are kept; a new
        `max_talk_s` applies from the next grant."""
        before = self._observe()
        self._policy = policy
        effects: list[FloorEffect] = []
        while len(self._holders) > policy.max_speakers:
            effects += self._apply(self._oldest(), _E.REVOKE_NOW, now, reason="superseded")
        return self._conclude(before, effects, now)

    # ---- queries ----------------------------------------------------------------------------

    @property
    def policy(self) -> FloorPolicy:
        return self._policy

    def state_of(self, site: str) -> SiteFloor:
        return self._state.get(site, _N)

    def holders(self) -> tuple[str, ...]:
        """PERMITTED and PENDING_REVOKE sites, in grant order."""
        return tuple(self._holders)

    def queue(self) -> tuple[str, ...]:
        return tuple(site for _, _, site in self._queue)

    def position(self, site: str) -> int | None:
        return self._index(site) + 1 if self.state_of(site) is _Q else None

    def until(self, site: str) -> float | None:
        """When the floor will be taken from `site`: the end of its revoke grace, else of its
        talk time; None when it holds no floor or has no limit."""
        if site in self._revoking:
            return self._revoking[site][0]
        return self._talk_until.get(site)

    # ---- a snapshot (signalling.core.conference_snapshot) -----------------------------------

    def parts(self) -> FloorParts:
        """What this floor is now, without its history (a log, not state)."""
        return FloorParts(
            states=tuple(sorted(self._state.items())),
            queue=tuple(self._queue),
            holders=tuple(self._holders.items()),
            talk_until=tuple(self._talk_until.items()),
            revoking=tuple((s, at, reason) for s, (at, reason) in self._revoking.items()),
        )

    @classmethod
    def from_parts(cls, policy: FloorPolicy, parts: FloorParts) -> Floor:
        """The floor `parts` describe; ValueError, and no floor, if they contradict each other
        (a holder not PERMITTED, a hand not QUEUED, a revocation not PENDING_REVOKE, ...)."""
        states = dict(parts.states)
        holders = dict(parts.holders)
        revoking = {s: (at, reason) for s, at, reason in parts.revoking}
        talk_until = dict(parts.talk_until)
        queued = [s for _, _, s in parts.queue]
        if len(states) != len(parts.states) or _N in states.values():
            raise ValueError("floor states repeat a site or list one not permitted")
        if len(holders) != len(parts.holders) or len(set(queued)) != len(queued):
            raise ValueError("floor holders or hands repeat a site")
        if list(parts.queue) != sorted(parts.queue):
            raise ValueError("floor hands out of order")
        if {s for s, st in states.items() if st is _Q} != set(queued):
            raise ValueError("floor hands and queued sites differ")
        if {s for s, st in states.items() if st in _HOLDING} != set(holders):
            raise ValueError("floor holders and permitted sites differ")
        if {s for s, st in states.items() if st is _R} != set(revoking):
            raise ValueError("floor revocations and revoking sites differ")
        if not set(talk_until) <= {s for s, st in states.items() if st is _P}:
            raise ValueError("a talk timer for a site not permitted")
        floor = cls(policy)
        floor._state = states
        floor._queue = list(parts.queue)
        floor._holders = holders
        floor._talk_until = talk_until
        floor._revoking = revoking
        return floor

    def __eq__(self, other: object) -> bool:
        """The same floor now: policy, states, hands, holders and timers (not the history)."""
        if not isinstance(other, Floor):
            return NotImplemented
        return self._policy == other._policy and self.parts() == other.parts()

    __hash__ = None  # type: ignore[assignment]

    # ---- the arbiter's workings -------------------------------------------------------------

    def _apply(
        self,
        site: str,
        event: FloorEvent,
        now: float,
        priority: int | None = None,
        reason: str = "",
    ) -> list[FloorEffect]:
        """Move `site` along the table; its announcement first, then its timers. Nothing
        changes if the pair is missing."""
        old = self.state_of(site)
        new, site_effects = transition(old, event)
        if old is _Q:
            del self._queue[self._index(site)]
        if new is _N:
            del self._state[site]
            self._holders.pop(site, None)
        else:
            self._state[site] = new
        if new is _Q:
            assert priority is not None, "a raised hand has a priority"
            bisect.insort(self._queue, (priority, now, site))
        elif new is _P:
            self._holders[site] = priority
        self.history.append((now, site, event, new))
        timers = [self._timer(effect, site, now, reason) for effect in site_effects]
        return [self._announce(site, old, event, reason), *(t for t in timers if t is not None)]

    def _timer(
        self, effect: SiteEffect, site: str, now: float, reason: str
    ) -> StartTimer | StopTimer | None:
        match effect:
            case _X.START_TALK_TIMER:
                if self._policy.max_talk_s is None:
                    return None
                self._talk_until[site] = at = now + self._policy.max_talk_s
                return StartTimer("talk", site, at)
            case _X.STOP_TALK_TIMER:
                # A grant made without a limit (or before one was set) has no timer to stop.
                return None if self._talk_until.pop(site, None) is None else StopTimer("talk", site)
            case _X.START_REVOKE_TIMER:
                self._revoking[site] = (now + self._policy.revoke_grace_s, reason)
                return StartTimer("revoke", site, self._revoking[site][0])
            case _X.STOP_REVOKE_TIMER:
                del self._revoking[site]
                return StopTimer("revoke", site)

    def _announce(self, site: str, old: SiteFloor, event: FloorEvent, reason: str) -> FloorEffect:
        match event:
            case _E.ENQUEUE:
                return Queued(site, self._index(site) + 1)
            case _E.GRANT:
                return Granted(site, self._talk_until.get(site))
            case _E.CANCEL:
                return Lowered(site)
            case _E.RELEASE:
                return Released(site)
            case _E.REVOKE:
                return Revoking(site, self._revoking[site][0], reason)
            case _E.REVOKE_NOW:
                return Revoked(site, reason)
            case _E.LEAVE:
                if old is _Q:
                    return Lowered(site, reason)
                return Released(site, reason) if reason == "left" else Revoked(site, reason)

    def _preempt_for(self, site: str, priority: int, now: float) -> list[FloorEffect]:
        """OPEN mode, a hand just raised over a full floor: revoke (with grace) the
        lowest-priority holder the arbiter granted, if strictly less important, and
        longest-granted among equals. Places already being freed go to the hands queued
        first; only a hand none of them reaches needs a place of its own."""
        freeing = sum(1 for s in self._holders if self._state[s] is _R)
        if self._index(site) < freeing:
            return []
        lower = [
            (p, s)
            for s, p in self._holders.items()
            if p is not None and p > priority and self._state[s] is _P
        ]
        if not lower:
            return []
        _, victim = max(lower, key=lambda held: held[0])  # max keeps the first of equals
        return self._apply(victim, _E.REVOKE, now, reason="preempted")

    def _conclude(self, before: _Seen, effects: list[FloorEffect], now: float) -> list[FloorEffect]:
        """A command's effects on the others: in OPEN mode the queue's head granted while
        there is room, the positions that moved, and the general state if the holders changed."""
        holders, positions = before
        if self._policy.mode is FloorMode.OPEN:
            while self._queue and len(self._holders) < self._policy.max_speakers:
                priority, _, head = self._queue[0]
                effects += self._apply(head, _E.GRANT, now, priority)
        # A hand raised by this command was told its place by its own Queued.
        moved = tuple((s, i) for i, s in enumerate(self.queue(), 1) if positions.get(s, i) != i)
        if moved:
            effects.append(Positions(moved))
        if set(self._holders) != set(holders):
            effects.append(FloorTaken(self.holders()) if self._holders else FloorIdle())
        return effects

    def _observe(self) -> _Seen:
        return self.holders(), {site: i for i, site in enumerate(self.queue(), 1)}

    def _index(self, site: str) -> int:
        return next(i for i, (_, _, s) in enumerate(self._queue) if s == site)

    def _oldest(self) -> str:
        return next(iter(self._holders))


__all__ = [
    "TRANSITIONS",
    "Denied",
    "Floor",
    "FloorEffect",
    "FloorEvent",
    "FloorIdle",
    "FloorMode",
    "FloorParts",
    "FloorPolicy",
    "FloorTaken",
    "Granted",
    "Lowered",
    "Positions",
    "Queued",
    "Released",
    "Revoked",
    "Revoking",
    "SiteEffect",
    "SiteFloor",
    "StartTimer",
    "StopTimer",
    "TimerKind",
    "transition",
]
