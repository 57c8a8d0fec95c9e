"""`Checkpointer`: writes signed checkpoints of the trace's head (sessions/checkpoint.py).

A checkpoint is written when the server starts, every `audit.checkpoint_interval_s` while
the head moves, and when it stops (after the last record of the drain, before the trace is
closed); an export writes one at the head its bundle was cut from. Each goes into the
store's `checkpoints` table and, when configured, the checkpoint log file; with a time-stamp
authority configured it first gets an RFC 3161 token (a TSA that fails costs the token, not
the checkpoint).

Before signing a newer head it checks that the records since the previous checkpoint chain
on from it: a tail that was cut or rewritten in the meantime is never signed over, but
raised as an alarm in the log.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Final

import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from sessions.checkpoint import (
    Checkpoint,
    CheckpointError,
    Reason,
    first_break,
    key_id,
    sign,
    sign_bytes,
)
from sessions.checkpoint_files import append_to_log
from sessions.errors import RecorderError, TimestampError
from sessions.store import TraceStore
from sessions.trace import Head, Link

log = structlog.get_logger(__name__)

# Asks a time-stamp authority to stamp a SHA-256 digest; returns the token (DER), raises
# TimestampError.
Timestamper = Callable[[bytes], Awaitable[bytes]]
PAGE: Final = 10000


class Checkpointer:
    def __init__(
        self,
        trace: TraceStore,
        key: Ed25519PrivateKey,
        *,
        node: str,
        clock: Callable[[], float],
        interval_s: float,
        alone: bool,
        log_path: Path | None = None,
        timestamper: Timestamper | None = None,
    ) -> None:
        self._trace = trace
        self._key = key
        self._node = node
        self._clock = clock
        self._interval_s = interval_s
        # Alone (no cluster), this process is the trace's only writer, and its stop
        # checkpoint promises that nothing follows until the next start.
        self._alone = alone
        self._log_path = log_path
        self._timestamper = timestamper
        self._lock = asyncio.Lock()
        self._last: Checkpoint | None = None
        self._loaded = False
        self._task: asyncio.Task[None] | None = None
        self._stopped = False
        self._final: Checkpoint | None = None

    @property
    def last(self) -> Checkpoint | None:
        return self._last

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self._key.public_key()

    @property
    def key_id(self) -> str:
        return key_id(self._key.public_key())

    def sign_detached(self, data: bytes) -> str:
        """The key's signature of any bytes (an evidence bundle's manifest), hex."""
        return sign_bytes(self._key, data)

    async def checkpoint(self, reason: Reason) -> Checkpoint | None:
        """Sign and keep the current head; None when there is nothing new to sign (a
        periodic checkpoint of an unmoved head) or the tail does not chain on (alarm)."""
        async with self._lock:
            if not self._loaded:
                # One row, not the table (1,440 checkpoints a day): what `latest` would pick.
                self._last = await self._trace.highest_checkpoint()
                self._loaded = True
            head = await self._trace.head()
            base = self._last
            if reason == "periodic" and base is not None and base.head == head:
                return None
            if base is not None:
                broken = await self._break_since(base, head)
                if broken is not None:
                    log.error(
                        "trace tail does not chain on from the last checkpoint; not signed",
                        alarm=True,
                        checkpoint_seq=base.seq,
                        seq=broken,
                        head_seq=head.seq,
                    )
                    return None
            cp = sign(self._key, head, now=self._clock(), node=self._node, reason=reason)
            cp = await self._stamped(cp)
            await self._trace.add_checkpoint(cp)
            if self._log_path is not None:
                await asyncio.to_thread(append_to_log, self._log_path, cp)
            self._last = cp
            log.info("checkpoint", seq=cp.seq, reason=reason, timestamped=cp.tsa_token is not None)
            return cp

    async def remember_verified(self, head: Head) -> Checkpoint:
        """Sign and keep `head` as where a chain check found everything intact (`verified`),
        so the next check starts after it. Not time-stamped: it vouches for a check, which
        the periodic checkpoints' tokens already date."""
        cp = sign(self._key, head, now=self._clock(), node=self._node, reason="verified")
        await self._trace.add_checkpoint(cp)
        log.info("checkpoint", seq=cp.seq, reason="verified", timestamped=False)
        return cp

    async def _break_since(self, base: Checkpoint, head: Head) -> int | None:
        if head.seq < base.seq:
            return head.seq + 1
        if head.seq == base.seq:
            return None if head.hash == base.hash else head.seq
        after = base.head
        while after.seq < head.seq:
            links: list[Link] = await self._trace.links(after_seq=after.seq, limit=PAGE)
            links = [x for x in links if x.seq <= head.seq]
            if not links:
                return after.seq + 1
            broken = first_break(after, links)
            if broken is not None:
                return broken
            after = Head(links[-1].seq, links[-1].hash)
        return None

    async def _stamped(self, cp: Checkpoint) -> Checkpoint:
        if self._timestamper is None:
            return cp
        try:
            return cp.with_token(await self._timestamper(cp.digest()))
        except TimestampError as exc:
            log.warning("checkpoint written without a time stamp", seq=cp.seq, reason=exc.reason)
            return cp

    # ---- the server's schedule ------------------------------------------------------------

    def start(self) -> None:
        """Write the start checkpoint, then one every interval while the head moves."""
        if self._task is None and not self._stopped:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        reason: Reason = "start"
        while True:
            await self._checkpoint_logged(reason)
            reason = "periodic"
            await asyncio.sleep(self._interval_s)

    async def _checkpoint_logged(self, reason: Reason) -> Checkpoint | None:
        # The one place a failed checkpoint is reported: the schedule and the stop go on
        # (the trace may be unavailable just now, the next round tries again).
        try:
            return await self.checkpoint(reason)
        except RecorderError as exc:
            log.warning("checkpoint not written", checkpoint_reason=reason, reason=exc.reason)
        except CheckpointError as exc:
            log.error("a stored checkpoint is unreadable", alarm=True, error=str(exc))
        except OSError as exc:
            log.error("checkpoint log not written", alarm=True, error=str(exc))
        except Exception:
            log.exception("checkpoint failed", checkpoint_reason=reason)
        return None

    async def stop(self, *, quiet: bool = True) -> Checkpoint | None:
        """Stop the schedule and write the stop checkpoint, once: later calls return it.
        `quiet` says that nothing more will be recorded (the drain finished); only then,
        and only for the trace's one writer, is it a `stop` checkpoint, after which any
        record but the next start's is reported as appended by someone else."""
        if self._stopped:
            return self._final
        self._stopped = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        reason: Reason = "stop" if self._alone and quiet else "node_stop"
        self._final = await self._checkpoint_logged(reason)
        return self._final


__all__ = ["Checkpointer", "Timestamper"]
