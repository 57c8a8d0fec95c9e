"""Which media worker a room's members are placed on: pure decisions over the workers' loads,
no processes, sockets or clocks (media.pool carries them out). (What may cross between
workers is media.placement's.)

A call or a watch is placed whole on one worker, chosen once, when its room first appears:
forwarding between its members stays inside one process. A conference has a home worker
(where its router, stage and recording run) and a worker per member (`where`): the joins go
round-robin over the live workers (`SPREAD_CONFERENCES`), the sites' uplinks relayed between
them (media.fabric, media.span).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

# A conference's sites spread over the workers (their uplinks relayed between them by
# media.fabric and media.span); False: all at home.
SPREAD_CONFERENCES: Final = True


@dataclass(frozen=True, slots=True)
class WorkerLoad:
    worker: int
    peers: int
    rooms: int


def least_loaded(loads: Sequence[WorkerLoad]) -> int:
    """The worker with the fewest peers, then the fewest rooms, then the lowest number; raises
    ValueError with no worker to choose from."""
    if not loads:
        raise ValueError("no worker to place on")
    return min(loads, key=lambda load: (load.peers, load.rooms, load.worker)).worker


def conference_sites(
    *,
    home: int,
    members: Iterable[str],
    placed: Mapping[str, int],
    workers: Sequence[int],
    spread: bool = SPREAD_CONFERENCES,
) -> dict[str, int]:
    """Each member's worker: a member already placed on a worker still in `workers` stays;
    a newcomer goes home, or with `spread` to the workers in turn (round-robin from the one
    after the last join's, in the members' order), so the joins of a large conference land
    evenly."""
    where: dict[str, int] = {}
    order = sorted(workers)
    # Round-robin continues from how many sites are already placed.
    turn = len([m for m, w in placed.items() if w in order])
    for member in members:
        kept = placed.get(member)
        if kept is not None and kept in order:
            where[member] = kept
        elif spread and order:
            where[member] = order[turn % len(order)]
            turn += 1
        else:
            where[member] = home
    return where


__all__ = ["SPREAD_CONFERENCES", "WorkerLoad", "conference_sites", "least_loaded"]
