"""This node's place in the node registry: its heartbeat, and everybody's read back.

`RedisRegistry` is the driver around the pure `Registry` (signalling/cluster/nodes.py, with
the theory of operation): one task that, every heartbeat, writes this node's status and
reads everybody's, then asks the core who died, calling `on_dead` once per death. The
least loaded live node with media hosts a new call's media.

* One clock. Each heartbeat is stamped by Redis itself (TIME inside the Lua script that
  writes it, in `NODES_HEARD`), and "now" is Redis's TIME read in the same transaction as the
  records. Nodes' own clocks never meet: a node whose clock runs 3 s behind would otherwise
  look 3 s staler than it is to every other node (declared dead early with a 5 s timeout),
  and one running ahead would outlive its death. Only Redis's clock is compared, with itself.
* Records silent for `forget_s` are deleted from Redis by whoever sees them first (a
  compare-and-delete, so a node that came back in between is left alone).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import msgspec
import structlog
from redis.asyncio import Redis

from signalling.cluster.keys import ClusterKeys
from signalling.cluster.nodes import (
    FORGET_S,
    HEARTBEAT_S,
    NODE_TIMEOUT_S,
    NodeLoad,
    NodeRecord,
    NodeStatus,
    Registry,
)
from signalling.cluster.retry import REDIS_ERRORS, RedisHealth, RetryLoop

log = structlog.get_logger(__name__)

# Writes a node's status and stamps it with Redis's own clock, in one step.
# KEYS[1] NODES, KEYS[2] NODES_HEARD; ARGV[1] node id, ARGV[2] msgpack NodeStatus.
_HEARTBEAT = """
local t = redis.call('TIME')
local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[1], string.format('%d', ms))
return ms
"""

# Deletes a node's record only if it is still as old as the caller saw it.
# KEYS[1] NODES, KEYS[2] NODES_HEARD; ARGV[1] node id, ARGV[2] cutoff (ms).
_FORGET = """
local heard = redis.call('HGET', KEYS[2], ARGV[1])
if heard and tonumber(heard) <= tonumber(ARGV[2]) then
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('HDEL', KEYS[2], ARGV[1])
  return 1
end
return 0
"""

_status_decoder = msgspec.msgpack.Decoder(NodeStatus)
_encoder = msgspec.msgpack.Encoder()


def _text(value: bytes | str) -> str:
    # The client may or may not have been built with decode_responses.
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


@dataclass(frozen=True)
class _Snapshot:
    now: float
    records: list[NodeRecord]
    # Ids and heartbeat times (ms) of the records silent for `forget_s`.
    expired: list[tuple[str, int]]


class RedisRegistry:
    """This node's place in the registry: publishes its status every `heartbeat_s`, reads
    everybody's on the same tick, and calls `on_dead(node_id)` once per death of another
    node (never for itself). Redis being down never stops or crashes it: the tick logs,
    reports `degraded` in `health()`, and tries again at the next heartbeat.

    `stop()` stops heartbeating but leaves the record: the other nodes see this node go
    silent and report it dead after `node_timeout_s`, exactly as after a crash.
    """

    def __init__(
        self,
        redis: Redis,
        keys: ClusterKeys,
        node_id: str,
        *,
        http_address: str,
        media_address: str = "",
        cascade_address: Callable[[], str] = str,
        load: Callable[[], NodeLoad] = NodeLoad,
        started_at: float | None = None,
        heartbeat_s: float = HEARTBEAT_S,
        node_timeout_s: float = NODE_TIMEOUT_S,
        forget_s: float = FORGET_S,
        on_dead: Callable[[str], None] | None = None,
    ) -> None:
        if not 0 < heartbeat_s < node_timeout_s:
            # A node must be able to speak more than once per timeout, or it dies by design.
            raise ValueError("need 0 < heartbeat_s < node_timeout_s")
        self.registry = Registry(node_timeout_s, forget_s)
        self.node_id = node_id
        self.heartbeat_s = heartbeat_s
        self._redis = redis
        self._keys = keys
        self._http_address = http_address
        self._media_address = media_address
        self._cascade_address = cascade_address
        self._load = load
        self._started_at = time.time() if started_at is None else started_at
        self._on_dead = on_dead
        # A tick that takes this long has failed: a node must heartbeat well within the
        # timeout, and a hung Redis must not hold the loop.
        self._tick_timeout_s = node_timeout_s / 2
        self._heartbeat = redis.register_script(_HEARTBEAT)
        self._forget = redis.register_script(_FORGET)
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        # Degraded while Redis cannot be written or read.
        self._health = RedisHealth(
            "node registry unreachable", "node registry reachable again", node_id=node_id
        )
        self._unreadable_ids: set[str] = set()
        # Redis time of the latest successful read; the queries answer as of then.
        self._now = -math.inf
        self.polls = 0
        """Successful reads of the registry so far (for health and tests)."""

    # ---- lifecycle --------------------------------------------------------------------

    async def start(self) -> None:
        """Publish and read once (so a reachable Redis knows this node on return), then
        keep doing so every heartbeat. Does not fail if Redis is down."""
        if self._task is not None:
            return
        self._stopping = asyncio.Event()
        retry = RetryLoop(self._stopping, self._health)
        await self._tick(retry)
        self._task = asyncio.get_running_loop().create_task(self._run(retry))

    async def stop(self) -> None:
        """Stop heartbeating and reading; the record stays (see the class docstring)."""
        task, self._task = self._task, None
        if task is None:
            return
        # Cancelling alone is not enough: Python 3.11's asyncio.wait_for, which redis-py
        # uses around each write, swallows a cancellation that arrives as the write
        # completes. The loop also stops at its next wait on this event.
        self._stopping.set()
        task.cancel()
        await asyncio.wait({task})
        if not task.cancelled() and task.exception() is not None:
            log.error("node registry loop failed", node_id=self.node_id, exc_info=task.exception())

    # ---- queries ----------------------------------------------------------------------

    async def nodes(self) -> list[NodeRecord]:
        """Every record in Redis now, dead or alive, by node id; raises RedisError."""
        return (await self._read()).records

    def alive(self) -> list[NodeRecord]:
        """The live nodes as of the latest successful read (this one included)."""
        return self.registry.alive(self._now)

    def least_loaded_media_node(self) -> NodeRecord | None:
        """`Registry.least_loaded_media_node` as of the latest successful read."""
        return self.registry.least_loaded_media_node(self._now)

    def health(self) -> dict[str, object]:
        """`registry`: "degraded" while Redis cannot be written or read, else "ok";
        `nodes_alive`: live nodes as of the latest successful read."""
        return {
            "registry": "ok" if self._health.ok else "degraded",
            "nodes_alive": len(self.alive()),
        }

    # ---- the loop ---------------------------------------------------------------------

    async def _run(self, retry: RetryLoop) -> None:
        # Every heartbeat, failed or not: the heartbeat is what keeps this node alive.
        while await retry.pause(self.heartbeat_s):
            await self._tick(retry)

    async def _tick(self, retry: RetryLoop) -> None:
        try:
            async with asyncio.timeout(self._tick_timeout_s):
                await self._publish()
                snapshot = await self._read()
        except REDIS_ERRORS as exc:
            retry.failed(exc)
            return
        except Exception:
            # A bug must not stop the heartbeat: the node would be declared dead.
            log.exception("node registry tick failed", node_id=self.node_id)
            self._health.ok = False
            return
        if retry.answered():
            # Nobody is judged on the silence we could not see (nodes.py).
            self.registry.resume(snapshot.now)
        self._observe(snapshot)
        await self._delete_expired(snapshot.expired)

    async def _publish(self) -> None:
        status = NodeStatus(
            node_id=self.node_id,
            http_address=self._http_address,
            media_address=self._media_address,
            started_at=self._started_at,
            cascade_address=self._cascade_address(),
            load=self._load(),
        )
        await self._heartbeat(
            keys=[self._keys.nodes, self._keys.nodes_heard],
            args=[self.node_id, _encoder.encode(status)],
        )

    async def _read(self) -> _Snapshot:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.time()
            pipe.hgetall(self._keys.nodes)
            pipe.hgetall(self._keys.nodes_heard)
            (seconds, micros), statuses, heard = await pipe.execute()
        now = seconds + micros / 1e6
        heard_by_id = {_text(k): v for k, v in heard.items()}
        records: list[NodeRecord] = []
        expired: list[tuple[str, int]] = []
        for key, value in statuses.items():
            node_id = _text(key)
            ms = heard_by_id.get(node_id)
            if ms is None:
                continue
            try:
                heard_ms = int(ms)
            except ValueError:
                self._unreadable(node_id)
                continue
            heard_at = heard_ms / 1000
            if now - heard_at > self.registry.forget_s:
                # Deleted whether readable or not: nobody writes it any more.
                expired.append((node_id, heard_ms))
            try:
                status = _status_decoder.decode(value.encode() if isinstance(value, str) else value)
            except msgspec.DecodeError:
                self._unreadable(node_id)
                continue
            if status.node_id != node_id:
                self._unreadable(node_id)
                continue
            records.append(NodeRecord(status, heard_at))
        records.sort(key=lambda r: r.node_id)
        return _Snapshot(now, records, expired)

    def _unreadable(self, node_id: str) -> None:
        # Once per node: a record written by an incompatible version is read every tick.
        if node_id not in self._unreadable_ids:
            self._unreadable_ids.add(node_id)
            log.warning("unreadable node record ignored", node_id=self.node_id, peer=node_id)

    def _observe(self, snapshot: _Snapshot) -> None:
        now = snapshot.now
        registry = self.registry
        for record in snapshot.records:
            if registry.apply(record, now) and record.node_id != self.node_id:
                log.info("node alive", node_id=self.node_id, peer=record.node_id)
        self._now = now
        self.polls += 1
        for node_id in registry.reap(now):
            if node_id == self.node_id:
                # Our own heartbeats were late (a stalled loop); the others may have acted
                # on it, but there is nothing of ours for us to clean up.
                log.warning("this node was silent past the timeout", node_id=self.node_id)
                continue
            log.warning("node dead", node_id=self.node_id, peer=node_id)
            if self._on_dead is not None:
                try:
                    self._on_dead(node_id)
                except Exception:
                    log.exception("on_dead failed", node_id=self.node_id, peer=node_id)
        registry.forget_expired(now)

    async def _delete_expired(self, expired: list[tuple[str, int]]) -> None:
        for node_id, ms in expired:
            try:
                async with asyncio.timeout(self._tick_timeout_s):
                    await self._forget(
                        keys=[self._keys.nodes, self._keys.nodes_heard], args=[node_id, ms]
                    )
            except REDIS_ERRORS:
                # Someone else will, or we will at the next tick.
                return


__all__ = ["RedisRegistry"]
