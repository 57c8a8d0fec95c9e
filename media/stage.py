"""Which source each of a conference member's slots carries, pure.

A conference member receives through a fixed set of slots, each one sendonly track of their
peer connection negotiated once: `audio_slots` audio slots, one `spotlight` video slot and,
for moderators, `grid_slots` video slots. The core says whose media may flow
(signalling.core.actions.Stage: who is audible, the spotlight, the moderators); this module
puts sources in slots. Switching a slot's source needs no renegotiation, so a floor granted is
heard with the next audio packet (media.forwarder.Subscription.switch).

Enforcement: a publication that is in no slot has no subscriber, so its packets end at the
server. Audio of a site without the floor is never in a slot.

Slots are sticky: a source still wanted keeps its slot, so a change elsewhere does not make
a member's decoder start over. Nobody receives their own media: a member's view of the lineup
(`seen_by`) leaves their own slots empty.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace
from typing import Final

from signalling.core.actions import Stage

SPOTLIGHT: Final = "spotlight"
# Louder than this (RFC 6464 level, -dBov; 127 is silence) counts as speaking.
SPEAKING_LEVEL: Final = 50
# How long a site counts as speaking after its last loud packet (as Jitsi's loudest: 150 ms
# and more, so a breath between words does not hand its slot away).
SPEAKING_HOLD_S: Final = 0.6
# Weight of a loud packet's level in a speaker's running level (Opus: 50 packets a second,
# so about 200 ms of speech decide who is loudest, not one syllable).
LEVEL_WEIGHT: Final = 0.1


def audio_slot(index: int) -> str:
    return f"audio-{index}"


def grid_slot(index: int) -> str:
    return f"grid-{index}"


@dataclass(frozen=True, slots=True)
class Lineup:
    """The source (a member's user id) of each slot; None: the slot is idle."""

    audio: tuple[str | None, ...]
    spotlight: str | None
    grid: tuple[str | None, ...]

    @classmethod
    def empty(cls, audio_slots: int, grid_slots: int) -> Lineup:
        return cls((None,) * audio_slots, None, (None,) * grid_slots)

    def slots(self) -> dict[str, str | None]:
        """Slot name -> source."""
        named: dict[str, str | None] = {audio_slot(i): u for i, u in enumerate(self.audio)}
        named[SPOTLIGHT] = self.spotlight
        named.update({grid_slot(i): u for i, u in enumerate(self.grid)})
        return named


def sticky(previous: tuple[str | None, ...], wanted: Sequence[str]) -> tuple[str | None, ...]:
    """`wanted` (most important first) in as many slots as `previous` has: the first ones
    that fit, each staying in the slot it had."""
    chosen = list(dict.fromkeys(wanted))[: len(previous)]
    slots: list[str | None] = []
    for u in previous:
        slots.append(u if u in chosen and u not in slots else None)
    newcomers = iter(u for u in chosen if u not in slots)
    return tuple(u if u is not None else next(newcomers, None) for u in slots)


def lineup(
    stage: Stage,
    *,
    audio: Collection[str],
    video: Sequence[str],
    speaking: Sequence[str],
    previous: Lineup,
) -> Lineup:
    """The conference's lineup now. `audio`: members publishing audio; `video`: members
    publishing video, in the order they joined; `speaking`: members speaking now, loudest
    first (`Speaking.now`).

    With the floor (not open), the audio slots carry the audible (the chair first, then the
    moderators and the holders). In an open discussion they carry who speaks, loudest first
    (RFC 6464 levels), the one leading first while speaking, so that it is never cut; the
    audible who are silent only take the slots left over."""
    wanted = [u for u in stage.audible if u in audio]
    if stage.open:
        speakers = [u for u in speaking if u in audio]
        lead = [u for u in wanted[:1] if u in speakers]
        wanted = lead + speakers + wanted
    spotlight = stage.spotlight if stage.spotlight in video else None
    shown = {officer for officer, _ in stage.feeds}
    sites = [u for u in video if u not in stage.moderators and u not in shown]
    return Lineup(
        audio=sticky(previous.audio, wanted),
        spotlight=spotlight,
        grid=sticky(previous.grid, sites),
    )


def seen_by(line: Lineup, member: str, *, moderator: bool) -> Lineup:
    """What `member` receives: their own media nowhere, the grid only for a moderator."""
    return replace(
        line,
        audio=tuple(None if u == member else u for u in line.audio),
        spotlight=None if line.spotlight == member else line.spotlight,
        grid=tuple(None if u == member or not moderator else u for u in line.grid),
    )


class Speaking:
    """Who is speaking in a conference, and how loud, from the RFC 6464 levels (-dBov: 0 is
    the loudest, 127 silence) in their audio packets."""

    def __init__(self) -> None:
        self._last: dict[str, float] = {}
        # Running level of each speaker's loud packets (lower is louder).
        self._level: dict[str, float] = {}

    def heard(self, user: str, level: int, now: float) -> bool:
        """One packet's level; True if `user` was not counted as speaking until now."""
        if level > SPEAKING_LEVEL:
            return False
        last = self._last.get(user)
        self._last[user] = now
        started = last is None or now - last > SPEAKING_HOLD_S
        running = self._level.get(user)
        self._level[user] = (
            float(level)
            if started or running is None
            else running + (level - running) * LEVEL_WEIGHT
        )
        return started

    def now(self, now: float) -> list[str]:
        """The members speaking at `now`, loudest first (of two as loud, the most recent)."""
        for u in [u for u, t in self._last.items() if now - t > SPEAKING_HOLD_S]:
            del self._last[u]
            self._level.pop(u, None)
        return sorted(self._last, key=lambda u: (self._level[u], -self._last[u]))

    def forget(self, user: str) -> None:
        self._last.pop(user, None)
        self._level.pop(user, None)
