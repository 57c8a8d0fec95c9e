"""The pace at which sites are let into conferences' media, per media worker, pure.

A site let in negotiates a peer connection, its media worker starts forwarding to it and the
spotlight publisher is asked for a keyframe: 300 sites at once would be 300 of each in the
same second on the same worker. So each worker lets `rate` sites in per second, from a bucket
holding at most one second's worth (a small conference's joins all go at once); a site that
finds the bucket empty, or others waiting before it, waits in a first-come queue of that
worker and is told its place and an estimate. The bucket's refill is what lets the next one
in: the driver arms a `JoinTurn(worker)` deadline at `next_turn` and hands it back through
`turn`, which returns who may go in now, in order.

Workers are named by an id (`LOCAL_WORKER` for this node's media, until media worker
processes are their own nodes): the caller says which worker a site joins through. The
composition root (commandcenter.app) gives this node's queue the per-worker rate times its
media workers, which the pool spreads the sites over round-robin.

Worker ids change when a worker or node restarts, so a bucket is not kept for ever: one that
has refilled to the full, with nobody queued, is the same as no bucket (a new one starts
full), and each command drops those. What is held is then the workers that let a site in
within the last second or have a queue, however many ids came and went.

This module owns the buckets and the queues; who may join at all is `admission`'s, and
joining itself `conferences`'.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Final

# The worker of every site while this node's media is one process.
LOCAL_WORKER: Final = "local"
# A token short by less than this counts as whole: at epoch times (1.8e9 s) a refill of
# a few ulps cannot be added, and a turn armed for it would fire again and again.
_EPSILON: Final = 1e-6


@dataclass(frozen=True, slots=True)
class JoinTurn:
    """Deadline: a media worker's bucket holds a token again for the site waiting first."""

    worker: str


@dataclass(frozen=True, slots=True)
class Waiter:
    """A site waiting to be let in: its join request's id is what the joined reply quotes."""

    conference_id: str
    user: str
    ref: str


@dataclass(frozen=True, slots=True)
class Place:
    worker: str
    # 1-based, among the sites waiting on the same worker.
    place: int
    # Seconds until it is let in, if nobody ahead leaves the queue.
    wait_s: float


class _Bucket:
    def __init__(self, rate: float, now: float) -> None:
        self.rate = rate
        self.capacity = max(1.0, rate)
        self.tokens = self.capacity
        self.at = now

    def refill(self, now: float) -> None:
        if now > self.at:
            self.tokens = min(self.capacity, self.tokens + (now - self.at) * self.rate)
            self.at = now


class JoinPace:
    def __init__(self, rate: float) -> None:
        if rate <= 0:
            raise ValueError(f"joins per second must be positive, got {rate}")
        self.rate = rate
        self._buckets: dict[str, _Bucket] = {}
        self._queues: dict[str, deque[Waiter]] = {}

    def _sweep(self, now: float) -> None:
        # A full bucket without a queue is what a new one would be: drop it, so the ids of
        # workers gone (restarted under a new id) are not held for ever.
        for worker, bucket in list(self._buckets.items()):
            if worker not in self._queues:
                bucket.refill(now)
                if bucket.tokens + _EPSILON >= bucket.capacity:
                    del self._buckets[worker]

    def _bucket(self, worker: str, now: float) -> _Bucket:
        bucket = self._buckets.get(worker)
        if bucket is None:
            bucket = self._buckets[worker] = _Bucket(self.rate, now)
        bucket.refill(now)
        return bucket

    # ---- commands ---------------------------------------------------------------------------

    def arrive(self, worker: str, waiter: Waiter, now: float) -> Place | None:
        """`waiter` asks to be let in through `worker`: None if it may go in now (a token is
        taken), else its place in the queue (already queued: its place, the new `ref` kept)."""
        self._sweep(now)
        queue = self._queues.setdefault(worker, deque())
        for i, w in enumerate(queue):
            if (w.conference_id, w.user) == (waiter.conference_id, waiter.user):
                queue[i] = waiter
                return self._place(worker, i + 1, now)
        bucket = self._bucket(worker, now)
        if not queue and bucket.tokens + _EPSILON >= 1.0:
            bucket.tokens -= 1.0
            del self._queues[worker]
            return None
        queue.append(waiter)
        return self._place(worker, len(queue), now)

    def turn(self, worker: str, now: float) -> list[Waiter]:
        """Those of `worker`'s queue who may go in now, first come first; a token each."""
        self._sweep(now)
        queue = self._queues.get(worker)
        if not queue:
            return []
        bucket = self._bucket(worker, now)
        going: list[Waiter] = []
        while queue and bucket.tokens + _EPSILON >= 1.0:
            bucket.tokens -= 1.0
            going.append(queue.popleft())
        if not queue:
            del self._queues[worker]
        return going

    def cancel(self, conference_id: str | None, user: str) -> list[tuple[str, Waiter]]:
        """`user` stops waiting for `conference_id` (None: for every conference); returns
        (worker, waiter) of each wait ended."""
        gone: list[tuple[str, Waiter]] = []
        for worker, queue in list(self._queues.items()):
            for w in [w for w in queue if w.user == user]:
                if conference_id is None or w.conference_id == conference_id:
                    queue.remove(w)
                    gone.append((worker, w))
            if not queue:
                del self._queues[worker]
        return gone

    def cancel_conference(self, conference_id: str) -> list[Waiter]:
        """Nobody waits for `conference_id` any more (it ended); returns who did."""
        gone: list[Waiter] = []
        for worker, queue in list(self._queues.items()):
            mine = [w for w in queue if w.conference_id == conference_id]
            for w in mine:
                queue.remove(w)
            gone += mine
            if not queue:
                del self._queues[worker]
        return gone

    # ---- queries ----------------------------------------------------------------------------

    def workers_held(self) -> frozenset[str]:
        """The workers this pace holds a bucket or a queue for."""
        return frozenset(self._buckets) | frozenset(self._queues)

    def next_turn(self, worker: str, now: float) -> float | None:
        """When the first of `worker`'s queue may go in; None if nobody waits."""
        if not self._queues.get(worker):
            return None
        bucket = self._bucket(worker, now)
        return now + max(0.0, (1.0 - bucket.tokens) / self.rate)

    def _place(self, worker: str, place: int, now: float) -> Place:
        bucket = self._bucket(worker, now)
        # The place-th site goes in when the bucket has refilled `place` tokens from now.
        return Place(worker, place, max(0.0, (place - bucket.tokens) / self.rate))
