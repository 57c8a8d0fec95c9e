"""A worker's preselection of an open conference's voices, pure: which of its own sites' audio
goes to the conference's router (home), decided packet by packet, time passed in.

In an open discussion the router (media.span, on home) picks the loudest sites by the RFC
6464 level of their audio packets (media.stage.Speaking). Sending it every site's audio would
make home take one packet stream per site; instead each worker ranks its own sites and sends
home only its `size` loudest, its *candidates*, so home's choice is over at most `size` sites
per worker.

The ranking, per site: a running level over all its packets (-dBov, lower is louder; a packet
without the extension counts as silence), reset to the packet's own level when a site starts
speaking after a silence, so a new voice is ranked by its first loud packet, not after the
running level has crept down. A site is *loud* while a loud packet (`SPEAKING_LEVEL` or
louder, as media.stage) came within `hold_s`.

- A loud site takes a free candidate place at once: the packet that made it loud is the
  first one forwarded, so a new voice reaches home without a gap.
- With every place taken, it replaces the quietest candidate only if it is louder by more
  than `margin` dB (hysteresis: two voices about as loud do not flap, and a tie keeps the
  candidate already forwarded).
- A candidate that has not been loud for `hold_s` gives its place up (`expire`, and lazily
  on the next packet): a breath between words does not, a finished speaker does.

Candidates' packets are all forwarded, their quiet ones too (home's slot keeps a steady
stream); every other site's packets stay on this worker.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from media.stage import LEVEL_WEIGHT, SPEAKING_HOLD_S, SPEAKING_LEVEL

SILENCE: Final = 127
# How much louder (dB) a site must be than the quietest candidate to take its place.
MARGIN_DB: Final = 6.0


@dataclass(slots=True)
class _Voice:
    level: float
    # When its last loud packet came (None: never loud).
    loud_at: float | None


class Loudest:
    """The `size` loudest of a worker's sites in one open conference (its candidates)."""

    def __init__(
        self, size: int = 3, *, hold_s: float = SPEAKING_HOLD_S, margin: float = MARGIN_DB
    ) -> None:
        if size < 1:
            raise ValueError("a preselection keeps at least one site")
        self.size = size
        self.hold_s = hold_s
        self.margin = margin
        self._voices: dict[str, _Voice] = {}
        # Candidates in the order they became one.
        self._candidates: list[str] = []
        # Counts every change of the candidates (a caller tells others when it moved).
        self.changes = 0

    def heard(self, owner: str, level: int | None, now: float) -> bool:
        """One audio packet of `owner` (its RFC 6464 level, None: none); True if it is a
        candidate now, so this packet goes to home."""
        level = SILENCE if level is None else min(max(level, 0), SILENCE)
        voice = self._voices.get(owner)
        loud = level <= SPEAKING_LEVEL
        if voice is None:
            voice = self._voices[owner] = _Voice(float(level), now if loud else None)
        else:
            was_loud = voice.loud_at is not None and now - voice.loud_at <= self.hold_s
            if loud and not was_loud:
                voice.level = float(level)
            else:
                voice.level += (level - voice.level) * LEVEL_WEIGHT
            if loud:
                voice.loud_at = now
        candidates = self._candidates
        if owner in candidates:
            if loud or self._loud(owner, now):
                return True
            candidates.remove(owner)
            self.changes += 1
            return False
        if not loud:
            return False
        self.expire(now)
        if len(candidates) < self.size:
            candidates.append(owner)
            self.changes += 1
            return True
        quietest = max(candidates, key=lambda u: self._voices[u].level)
        if voice.level + self.margin < self._voices[quietest].level:
            candidates[candidates.index(quietest)] = owner
            self.changes += 1
            return True
        return False

    def expire(self, now: float) -> None:
        """Candidates not loud for `hold_s` give their places up."""
        kept = [u for u in self._candidates if self._loud(u, now)]
        if len(kept) != len(self._candidates):
            self._candidates[:] = kept
            self.changes += 1

    def _loud(self, owner: str, now: float) -> bool:
        voice = self._voices.get(owner)
        if voice is None or voice.loud_at is None:
            return False
        return now - voice.loud_at <= self.hold_s

    def candidates(self, now: float) -> list[tuple[str, int]]:
        """The candidates at `now` with their running levels, loudest first (of two as loud,
        the earlier candidate)."""
        self.expire(now)
        ranked = sorted(self._candidates, key=lambda u: self._voices[u].level)
        return [(u, round(self._voices[u].level)) for u in ranked]

    def known(self) -> set[str]:
        """Every site heard (and not forgotten)."""
        return set(self._voices)

    def is_candidate(self, owner: str) -> bool:
        return owner in self._candidates

    def forget(self, owner: str) -> None:
        """`owner` left this worker (or its audio stopped crossing)."""
        self._voices.pop(owner, None)
        if owner in self._candidates:
            self._candidates.remove(owner)
            self.changes += 1
