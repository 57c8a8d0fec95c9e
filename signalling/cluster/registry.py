"""The node registry: which hub nodes are alive, where they listen and how loaded they are.

Modelled on LiveKit's Redis router: every node writes its status (id, addresses, start time,
load) every `heartbeat_s`; a node not heard from for `node_timeout_s` is dead, and each
node is told of each death once (`on_dead`), to end that node's calls and drop its users.
The least loaded live node with media hosts a new call's media.

`Registry` is the pure core (no Redis, no clock, no tasks: time is an argument);
`RedisRegistry` is the driver around it: one task that, every heartbeat, writes this node's
status and reads everybody's, then asks the core who died.

Theory of operation
-------------------
* One clock. Each heartbeat is stamped by Redis itself (TIME inside the Lua script that
  writes it, in `NODES_HEARD`), and "now" is Redis's TIME read in the same transaction as the
  records. Nodes' own clocks never meet: a node whose clock runs 3 s behind would otherwise
  look 3 s staler than it is to every other node (declared dead early with a 5 s timeout),
  and one running ahead would outlive its death. Only Redis's clock is compared, with itself.
* A vanished record is not a death. A Redis restart without persistence wipes every record,
  and a live node writes its own back within a heartbeat. So the core keeps the last record
  of a node and lets the timeout decide: a node is dead when its newest heartbeat, from
  Redis or remembered, is older than `node_timeout_s`.
* Nobody can be judged while we cannot look. When a read succeeds after failed ones (Redis
  down, restarted, or unreachable from here), every node gets a fresh `node_timeout_s` from
  that moment (`Registry.resume`): the others were as cut off as we were, and must have the
  time to write again before they are judged. A real death is then seen one timeout late;
  an outage never kills the cluster's calls.
* A node restarted under the same id (its `started_at` changed) is reported dead once: its
  previous run's calls and connections are gone even though the id is back.
* Records silent for `forget_s` are deleted from Redis by whoever sees them first (a
  compare-and-delete, so a node that came back in between is left alone) and ignored by the
  core, so they are reported at most once and do not pile up.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import msgspec
import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from signalling.cluster.keys import ClusterKeys

log = structlog.get_logger(__name__)

# Defaults until [redis] carries them (LiveKit's figures: stats every 2 s, dead after 5 s).
HEARTBEAT_S: Final = 2.0
NODE_TIMEOUT_S: Final = 5.0
# Dead records older than this are deleted and no longer reported to nodes that start later.
FORGET_S: Final = 60.0
# A node using this fraction of its CPU or more takes new media only when all nodes do.
OVERLOADED_CPU: Final = 0.9


class NodeLoad(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    """What a node carries now. `cpu`: the process's CPU use as a fraction of the machine's
    (0.0 idle to 1.0 every core busy)."""

    connections: int = 0
    calls: int = 0
    media_peers: int = 0
    cpu: float = 0.0


class NodeStatus(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    """What a node publishes about itself every heartbeat (msgpack, the `NODES` hash).
    Unknown fields are ignored so that a newer node's record still reads on an older one."""

    node_id: str
    # host:port of its HTTP/WebSocket listener, as other nodes and load balancers reach it.
    http_address: str
    # Where its media (ICE) is served, e.g. "10.0.0.5" or "10.0.0.5:40000-40100"; "" when
    # the node has no media.
    media_address: str
    # Its own wall clock at start, seconds since the epoch: names this run of the node.
    started_at: float
    load: NodeLoad = NodeLoad()


@dataclass(frozen=True)
class NodeRecord:
    """A node's status and the Redis server time of its heartbeat, seconds since the epoch."""

    status: NodeStatus
    heard_at: float

    @property
    def node_id(self) -> str:
        return self.status.node_id


@dataclass
class _Node:
    record: NodeRecord
    # Its death has been reported (by `reap`); reset if it speaks again.
    reported: bool = False


def _media_cost(record: NodeRecord) -> tuple[bool, int, float, str]:
    # Media peers are what costs a relay CPU and bandwidth; CPU breaks ties and keeps calls
    # off a node busy with something else; the id makes the choice the same on every node.
    load = record.status.load
    return (load.cpu >= OVERLOADED_CPU, load.media_peers, load.cpu, record.node_id)


class Registry:
    """The pure core: the nodes known, their latest records, and which deaths were reported.
    Every time is Redis server time in seconds (see the module docstring)."""

    def __init__(self, node_timeout_s: float = NODE_TIMEOUT_S, forget_s: float = FORGET_S):
        if not 0 < node_timeout_s < forget_s:
            raise ValueError("need 0 < node_timeout_s < forget_s")
        self.node_timeout_s = node_timeout_s
        self.forget_s = forget_s
        self._nodes: dict[str, _Node] = {}
        # Ends of previous runs of restarted nodes, waiting for `reap`.
        self._ended_runs: list[str] = []
        # Nobody is judged on silence from before this time (see `resume`).
        self._observed_from = -math.inf

    # ---- events -----------------------------------------------------------------------

    def apply(self, record: NodeRecord, now: float) -> bool:
        """Take a record read at `now`. True if it makes its node alive and it was not
        (a node joining, or speaking again after its death was reported)."""
        if now - record.heard_at > self.forget_s:
            return False
        node_id = record.node_id
        node = self._nodes.get(node_id)
        # Judged on the record alone: an old heartbeat read after an outage is no sign of life.
        alive = now - record.heard_at <= self.node_timeout_s
        if node is None:
            self._nodes[node_id] = _Node(record)
            return alive
        known = node.record
        if record.status.started_at < known.status.started_at:
            # A previous run's record (a stale read, or two processes misconfigured with
            # one id): the newest run is the node.
            return False
        if record.status.started_at > known.status.started_at:
            if not node.reported:
                self._ended_runs.append(node_id)
            self._nodes[node_id] = _Node(record)
            return alive
        if record.heard_at <= known.heard_at:
            return False
        node.record = record
        if node.reported and alive:
            node.reported = False
            return True
        return False

    def resume(self, now: float) -> None:
        """We could not read the registry until `now`: no node is judged on silence from
        before it, so each gets `node_timeout_s` from now to be heard."""
        self._observed_from = max(self._observed_from, now)

    def reap(self, now: float) -> list[str]:
        """The nodes that died since the last call, each death reported once: silent past
        the timeout, or restarted (the previous run is over)."""
        deaths, self._ended_runs = self._ended_runs, []
        for node_id, node in sorted(self._nodes.items()):
            if not node.reported and self._silent(node.record, now):
                node.reported = True
                deaths.append(node_id)
        return deaths

    def forget_expired(self, now: float) -> list[str]:
        """Drop reported-dead nodes silent for `forget_s`; returns their ids."""
        gone = [
            node_id
            for node_id, node in self._nodes.items()
            if node.reported and now - node.record.heard_at > self.forget_s
        ]
        for node_id in gone:
            del self._nodes[node_id]
        return gone

    # ---- queries ----------------------------------------------------------------------

    def record(self, node_id: str) -> NodeRecord | None:
        node = self._nodes.get(node_id)
        return None if node is None else node.record

    def alive(self, now: float) -> list[NodeRecord]:
        """Records of the live nodes by node id: not silent past the timeout, and not
        reported dead since they last spoke."""
        return [
            node.record
            for _, node in sorted(self._nodes.items())
            if not node.reported and not self._silent(node.record, now)
        ]

    def dead(self, now: float) -> list[str]:
        """Ids of the known nodes that are not alive (reported or not yet), sorted."""
        return sorted(
            node_id
            for node_id, node in self._nodes.items()
            if node.reported or self._silent(node.record, now)
        )

    def least_loaded_media_node(self, now: float) -> NodeRecord | None:
        """The live node with media that should host a new call's media: fewest media
        peers, then least CPU, nodes at `OVERLOADED_CPU` or more only if all are; None if no
        live node has media."""
        candidates = [r for r in self.alive(now) if r.status.media_address]
        return min(candidates, key=_media_cost, default=None)

    def _silent(self, record: NodeRecord, now: float) -> bool:
        return now - max(record.heard_at, self._observed_from) > self.node_timeout_s


# ---- the Redis driver ---------------------------------------------------------------------

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
        self._failing = False
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
        await self._tick()
        self._stopping = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run(self._stopping))

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
            "registry": "degraded" if self._failing else "ok",
            "nodes_alive": len(self.alive()),
        }

    # ---- the loop ---------------------------------------------------------------------

    async def _run(self, stopping: asyncio.Event) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.heartbeat_s):
                    await stopping.wait()
            if stopping.is_set():
                return
            await self._tick()

    async def _tick(self) -> None:
        try:
            async with asyncio.timeout(self._tick_timeout_s):
                await self._publish()
                snapshot = await self._read()
        except (RedisError, OSError, TimeoutError) as exc:
            if not self._failing:
                log.warning("node registry unreachable", node_id=self.node_id, error=repr(exc))
            self._failing = True
            return
        except Exception:
            # A bug must not stop the heartbeat: the node would be declared dead.
            log.exception("node registry tick failed", node_id=self.node_id)
            self._failing = True
            return
        if self._failing:
            log.info("node registry reachable again", node_id=self.node_id)
            self.registry.resume(snapshot.now)
            self._failing = False
        self._observe(snapshot)
        await self._delete_expired(snapshot.expired)

    async def _publish(self) -> None:
        status = NodeStatus(
            node_id=self.node_id,
            http_address=self._http_address,
            media_address=self._media_address,
            started_at=self._started_at,
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
            except (RedisError, OSError, TimeoutError):
                # Someone else will, or we will at the next tick.
                return


__all__ = [
    "FORGET_S",
    "HEARTBEAT_S",
    "NODE_TIMEOUT_S",
    "OVERLOADED_CPU",
    "NodeLoad",
    "NodeRecord",
    "NodeStatus",
    "RedisRegistry",
    "Registry",
]
