"""The session recorder's interface: where the hub hands every sign-in, sign-out, position
sample and call transition, as a `TraceEvent`.

The hub awaits `record` before it tells any client about the fact, so a fact a client was
told about has been handed over first. `MemoryRecorder` keeps events in a list (tests, and a
single node without storage); the recorder issue adds durable, hash-chained stores behind the
same interface.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class TraceEvent:
    """One recorded fact. `at` is server time in seconds since the epoch; `data` holds only
    JSON-compatible values (str, int, float, bool, None, lists and dicts of them)."""

    kind: str
    at: float
    data: Mapping[str, Any] = field(default_factory=dict)


class SessionRecorder(Protocol):
    async def record(self, events: Sequence[TraceEvent]) -> None:
        """Store events in order; returns once they are as durable as the store makes them."""
        ...

    async def close(self) -> None: ...


class MemoryRecorder:
    """Keeps every event in memory, in order."""

    def __init__(self) -> None:
        self.events: list[TraceEvent] = []

    async def record(self, events: Sequence[TraceEvent]) -> None:
        self.events.extend(events)

    async def close(self) -> None:
        return None

    def kinds(self) -> list[str]:
        return [e.kind for e in self.events]

    def of_kind(self, kind: str) -> list[TraceEvent]:
        return [e for e in self.events if e.kind == kind]
