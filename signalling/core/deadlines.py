"""Pending deadlines of the pure core, keyed by what they are for.

The core never sleeps: it records when something must happen here, the driver asks for
`next()` and arms one timer for it, and hands expired keys back through `pop_due(now)`.
Setting a key again replaces its deadline; stale heap entries are skipped lazily.

Keys are typed: each sub-core declares a frozen dataclass per timer it owns (`Grace(user)`
in presence, `RingTimeout(call_id)` in dispatch, ...), and only that sub-core sets, cancels
or handles keys of its types. One heap serves them all, so deadlines that fall due together
are handled in the order they were set, whichever sub-core owns them.
"""

from __future__ import annotations

import heapq
from collections.abc import Hashable


class Deadlines:
    def __init__(self) -> None:
        # key -> (when, seq) of its live heap entry; the seq tells a re-set entry from the
        # stale one it replaced even when both carry the same time.
        self._at: dict[Hashable, tuple[float, int]] = {}
        self._heap: list[tuple[float, int, Hashable]] = []
        self._seq = 0

    def set(self, key: Hashable, when: float) -> None:
        self._seq += 1
        self._at[key] = (when, self._seq)
        heapq.heappush(self._heap, (when, self._seq, key))

    def cancel(self, key: Hashable) -> None:
        self._at.pop(key, None)

    def get(self, key: Hashable) -> float | None:
        entry = self._at.get(key)
        return None if entry is None else entry[0]

    def _drop_stale(self) -> None:
        heap = self._heap
        while heap and self._at.get(heap[0][2]) != heap[0][:2]:
            heapq.heappop(heap)

    def next(self) -> float | None:
        """The earliest pending deadline, or None."""
        self._drop_stale()
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now: float) -> list[Hashable]:
        """Keys whose deadline is at or before `now`, earliest first; they are removed."""
        due: list[Hashable] = []
        while True:
            self._drop_stale()
            if not self._heap or self._heap[0][0] > now:
                return due
            _, _, key = heapq.heappop(self._heap)
            del self._at[key]
            due.append(key)

    def __len__(self) -> int:
        return len(self._at)
