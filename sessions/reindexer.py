"""The server's background reindex: files the records a trace held before it had its subject
index (sessions/subjects.py), so an operator never has to run `commandcenter trace reindex`.

The store knows what is left (`TraceStore.reindex_state`: records up to the watermark, the
head when the index table was made, not yet filed; every later record files itself in its
own append). `Reindexer` files them a bounded batch at a time (`reindex_batch`: one short
transaction that also moves the store's `done`, so a crash loses nothing and a restart goes
on from there), yields to the event loop between batches, and logs its progress. Several
nodes of a cluster over one PostgreSQL trace share the work safely: the batch takes a lease
in the store, and a node that finds another's lease still running waits and asks again
(taking over when the holder died and its lease ran out).

The audit views answer meanwhile from the index as far as it goes: they may miss older
records until `remaining` is 0 (it is on /healthz and /metrics).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Final

import structlog

from sessions.errors import RecorderError, StoreClosed
from sessions.store import REINDEX_STEP, TraceStore

log = structlog.get_logger(__name__)

# How long a batch's lease keeps other nodes off, seconds: far longer than one batch takes,
# short enough that a node that died is replaced soon.
LEASE_S: Final = 30.0
# How long to wait before asking again while another node holds the lease, or after the
# store failed, seconds.
RETRY_S: Final = 5.0
# At most one progress line per this many seconds.
LOG_EVERY_S: Final = 5.0


class Reindexer:
    def __init__(
        self,
        store: TraceStore,
        *,
        node: str,
        batch: int = REINDEX_STEP,
        pause_s: float = 0.0,
        clock: Callable[[], float] = time.time,
        lease_s: float = LEASE_S,
        retry_s: float = RETRY_S,
        log_every_s: float = LOG_EVERY_S,
    ) -> None:
        if batch <= 0:
            raise ValueError(f"batch must be positive, not {batch}")
        self._store = store
        self._node = node
        self._batch = batch
        # Between batches, seconds: 0 still yields to the event loop once per batch.
        self._pause_s = pause_s
        self._clock = clock
        self._lease_s = lease_s
        self._retry_s = retry_s
        self._log_every_s = log_every_s
        self._task: asyncio.Task[None] | None = None
        # Records written before the index that it does not cover yet; None until read.
        self.remaining: int | None = None

    async def start(self) -> None:
        """Read what is left (so /healthz knows from the first request) and, if anything,
        file it in a task of its own. A store that cannot say does not stop the server: the
        task asks again until it can."""
        try:
            self.remaining = (await self._store.reindex_state()).remaining
        except RecorderError as exc:
            log.warning("trace reindex state unknown", error=exc.reason)
        if self.remaining != 0:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="reindex")

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def stop(self) -> None:
        """Stop between batches (or abandon the one in flight, which commits whole or not
        at all); the next start goes on from the last committed batch."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while self.remaining is None:
            try:
                self.remaining = (await self._store.reindex_state()).remaining
            except StoreClosed:
                return
            except RecorderError:
                await asyncio.sleep(self._retry_s)
        if not self.remaining:
            return
        started = time.monotonic()
        total = self.remaining
        filed = 0
        logged = started
        # Each line names the node: in a cluster, which one holds the lease and files.
        log.info("trace reindex started", node=self._node, total=total, batch=self._batch)
        while True:
            try:
                state = await self._store.reindex_batch(
                    node=self._node, now=self._clock(), lease_s=self._lease_s, limit=self._batch
                )
            except StoreClosed:
                return
            except RecorderError as exc:
                # The store will be back (PostgreSQL restarting, say): so will this.
                log.warning("trace reindex batch failed", error=exc.reason)
                await asyncio.sleep(self._retry_s)
                continue
            filed += max((self.remaining or 0) - state.remaining, 0)
            self.remaining = state.remaining
            if not state.remaining:
                break
            if state.busy:
                # Another node is at it: ask again later, in case it dies.
                await asyncio.sleep(self._retry_s)
                continue
            now = time.monotonic()
            if now - logged >= self._log_every_s:
                logged = now
                log.info(
                    "trace reindex progress",
                    node=self._node,
                    done=total - state.remaining,
                    total=total,
                    rate=round(filed / max(now - started, 1e-9)),
                )
            # Serving goes on between batches.
            await asyncio.sleep(self._pause_s)
        seconds = time.monotonic() - started
        log.info(
            "trace reindex finished",
            node=self._node,
            records=filed,
            total=total,
            seconds=round(seconds, 3),
            rate=round(filed / max(seconds, 1e-9)),
        )


__all__ = ["LEASE_S", "Reindexer"]
