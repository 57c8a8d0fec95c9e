"""`RedisCoreLink`: this node's part in the cluster, and the hub's `CoreLink` on it.

It builds the node's parts and runs their tasks: the gateway (always), the leader (which is
the authority while it holds the lease), the journal, the node registry, the ordered Redis
writer, the subscription to the node's channel; and it answers the hub's questions (health,
a user's session). signalling/cluster/__init__.py has the theory of operation.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable

import msgspec
import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from identity import Identity
from sessions.recorder import SessionRecorder
from signalling import protocol as p
from signalling.clock import Clock
from signalling.cluster import wire as w
from signalling.cluster.cpu import CpuMeter
from signalling.cluster.gateway import Gateway
from signalling.cluster.journal import Journal
from signalling.cluster.keys import ClusterKeys
from signalling.cluster.leader import Leader
from signalling.cluster.nodes import NodeLoad
from signalling.cluster.registry import RedisRegistry
from signalling.cluster.retry import RedisHealth
from signalling.cluster.routing import ClusterMedia, ClusterRouter
from signalling.cluster.subscription import Subscription
from signalling.cluster.writer import RedisWriter
from signalling.connection import Connection
from signalling.core.conference import Conference
from signalling.core.conference_snapshot import SnapshotError, restored
from signalling.core.presence import Session, SessionKeys
from signalling.core.switchboard import Switchboard
from signalling.link import ConnectParams, CoreUnreachable
from signalling.media_port import CascadePort, MediaPort
from signalling.outbox import Outbox
from signalling.router import LocalRouter
from signalling.settings import RedisConfig

log = structlog.get_logger(__name__)


class RedisCoreLink:
    """This node's part in the cluster, and the hub's `CoreLink` on it: gateway always,
    authority (the core's driver) while it holds the lease."""

    def __init__(
        self,
        *,
        node_id: str,
        redis: RedisConfig,
        media_address: str,
        new_core: Callable[[], Switchboard],
        local_media: MediaPort | None,
        http_address: str,
        recorder: SessionRecorder,
        clock: Clock,
    ) -> None:
        rc = redis
        self.redis_config = redis
        self.node_id = node_id
        self.clock = clock
        self.run = clock.now()
        self.keys = ClusterKeys(rc.key_prefix)
        # Commands time out well within a node timeout: a hung Redis must not hold a loop.
        self.redis = Redis.from_url(
            rc.url,
            socket_timeout=rc.node_timeout_s / 2,
            socket_connect_timeout=rc.node_timeout_s / 2,
        )
        # Subscriptions wait for messages indefinitely; a PING every heartbeat finds a dead
        # connection that no RST announced.
        self._subscriber_redis = Redis.from_url(
            rc.url,
            socket_connect_timeout=rc.node_timeout_s / 2,
            health_check_interval=rc.heartbeat_s,
        )
        # Set when the node leaves: every loop of it stops (retry.py says why not a cancel).
        self._stopping = asyncio.Event()
        # Whether Redis answered this node's latest command, whichever loop sent it.
        self.redis_health = RedisHealth(
            "redis unreachable", "redis reachable again", node_id=node_id
        )
        self.local = LocalRouter()
        self.local_media = local_media
        self.router = ClusterRouter(self)
        self.media = ClusterMedia(self, local_media)
        self.registry = RedisRegistry(
            self.redis,
            self.keys,
            self.node_id,
            http_address=http_address,
            media_address=media_address if local_media is not None else "",
            cascade_address=(
                local_media.cascade_address if isinstance(local_media, CascadePort) else str
            ),
            load=self._load,
            started_at=self.run,
            heartbeat_s=rc.heartbeat_s,
            node_timeout_s=rc.node_timeout_s,
            on_dead=self._node_dead,
        )
        self.writer = RedisWriter(
            self.redis,
            presence_ttl_s=rc.node_timeout_s,
            health=self.redis_health,
            stopping=self._stopping,
        )
        self.journal = Journal(
            redis=self.redis,
            writer=self.writer,
            keys=self.keys,
            node_id=node_id,
            run=self.run,
            clock=clock,
            node_timeout_s=rc.node_timeout_s,
            authority=lambda: self.leader.state,
            emit=lambda actions: self.leader.emit(actions),
            alive=lambda: [r.node_id for r in self.registry.alive()],
            health=self.redis_health,
            stopping=self._stopping,
            conference_every_s=rc.journal_conference_s,
        )
        self._outbox = Outbox(
            recorder=recorder,
            router=self.router,
            media=self.media,
            node_id=node_id,
            recorded=self.journal.recorded,
        )
        self.gateway = Gateway(
            node_id=node_id,
            run=self.run,
            clock=clock,
            keys=self.keys,
            redis=self.redis,
            writer=self.writer,
            outbox=self._outbox,
            local=self.local,
            local_media=local_media,
            apply_here=lambda envelope: self.leader.apply(envelope),
            health=self.redis_health,
            presence_ttl_s=rc.node_timeout_s,
            heartbeat_s=rc.heartbeat_s,
            stopping=self._stopping,
            reply_timeout_s=rc.reply_timeout_s,
        )
        self.leader = Leader(
            node_id=node_id,
            run=self.run,
            clock=clock,
            keys=self.keys,
            redis=self.redis,
            subscriber_redis=self._subscriber_redis,
            writer=self.writer,
            registry=self.registry,
            gateway=self.gateway,
            journal=self.journal,
            outbox=self._outbox,
            new_core=new_core,
            lease_ttl_s=rc.lease_ttl_s,
            health=self.redis_health,
            stopping=self._stopping,
        )
        self._node_channel = Subscription(
            self._subscriber_redis,
            [self.keys.node_channel(node_id), self.keys.broadcast],
            handle=self.gateway.on_node,
            on_subscribed=self.gateway.resubscribed,
            health=self.redis_health,
            stop=self._stopping,
            node_id=node_id,
        )
        self._tasks: list[asyncio.Task[None]] = []
        self._cpu = CpuMeter(os.cpu_count() or 1)
        self._cpu.reading(clock.monotonic(), _cpu_seconds(), {})

    # ---- lifecycle ----------------------------------------------------------------------------

    @property
    def outbox(self) -> Outbox:
        return self._outbox

    async def start(self) -> None:
        """Join the cluster. Never fails for Redis being down: every loop retries."""
        await self._outbox.start()
        loop = asyncio.get_running_loop()
        await self.registry.start()
        for coro in (
            self.writer.run(),
            self._node_channel.run(),
            self.gateway.keep_presence(),
            self.gateway.look_up(),
            self.gateway.expire_replies(),
            self.leader.lead(),
        ):
            self._tasks.append(loop.create_task(coro))

    def shutdown(self) -> None:
        """This node's users sign out, and sessions away (connected nowhere): the others'
        sessions go on, taken on by the next authority (on a gateway the core is elsewhere
        and there is nothing to do here)."""
        self.leader.shutdown({conn.user for conn in self.gateway.infos})

    async def stop(self, wait_s: float) -> None:
        """Flush what is queued, give the lease up, leave. The registry record stays: the
        others see this node go silent and clean up after `node_timeout_s`."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._outbox.flush(), wait_s)
        await self._leave()
        await self._outbox.stop(wait_s)
        if self.leader.driver is not None:
            self.leader.driver.stop()

    async def _leave(self) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.redis_config.node_timeout_s / 2):
                await self.writer.idle.wait()
        # Set before cancelling: Python 3.11 can swallow a cancel inside a redis-py call.
        self._stopping.set()
        await self.leader.release()
        await self.registry.stop()
        tasks, self._tasks = self._tasks + self.leader.tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.wait(tasks, timeout=self.redis_config.node_timeout_s)
        await self.redis.aclose()
        await self._subscriber_redis.aclose()

    # ---- health -------------------------------------------------------------------------------

    def health(self) -> dict[str, object]:
        status = "degraded" if self._outbox.degraded or self.degraded else "ok"
        return {"status": status, **self._outbox.health(), **self._cluster_health()}

    def _cluster_health(self) -> dict[str, object]:
        inbox = self.leader.inbox
        subscribed = self._node_channel.subscribed and (inbox is None or not inbox.failing)
        reachable = self.redis_health.ok and subscribed
        registry = self.registry.health()
        return {
            "cluster": {
                "role": "authority" if self.leader.state is not None else "gateway",
                "authority": self.leader.authority_id,
                "redis": "ok" if reachable and registry["registry"] == "ok" else "unreachable",
                "nodes": registry["nodes_alive"],
            }
        }

    @property
    def degraded(self) -> bool:
        health = self._cluster_health()["cluster"]
        assert isinstance(health, dict)
        return health["redis"] != "ok" or health["authority"] is None

    # ---- the hub's CoreLink -------------------------------------------------------------------

    def connected(
        self, conn: Connection, identity: Identity, keys: SessionKeys, params: ConnectParams
    ) -> None:
        self.gateway.connected(conn, identity, keys, params)

    def received(self, conn: Connection, message: p.ClientMessage) -> None:
        self.gateway.received(conn, message)

    def closed(self, conn: Connection) -> None:
        self.gateway.closed(conn)

    def revoked(self, conn: Connection, reason: str) -> None:
        self.gateway.revoked(conn, reason)

    def session(self, user: str) -> Session | None:
        driver = self.leader.driver
        return driver.core.session(user) if driver is not None else None

    def running_core(self) -> Switchboard | None:
        driver = self.leader.driver
        return driver.core if driver is not None else None

    async def conference(self, conference_id: str) -> Conference | None:
        core = self.running_core()
        if core is not None:
            return core.conferences.table.get(conference_id)
        # A gateway: the authority's journal of it, the snapshot its successor would carry on.
        try:
            raw = await self.redis.hget(self.keys.journal_conferences, conference_id)
        except (RedisError, OSError) as exc:
            raise CoreUnreachable(str(exc)) from exc
        if not isinstance(raw, bytes):
            return None
        try:
            entry = w.decode_journal_conference(raw)
            return None if entry.snapshot is None else restored(entry.snapshot, self.clock.now())
        except (msgspec.DecodeError, msgspec.ValidationError, RecursionError, SnapshotError):
            log.warning("unreadable journalled conference", conference_id=conference_id)
            return None

    async def round_trip(self, timeout_s: float) -> float | None:
        """Seconds a PING to Redis takes now (the metrics endpoint asks at each scrape);
        None if Redis does not answer within `timeout_s`."""
        started = time.perf_counter()
        try:
            async with asyncio.timeout(timeout_s):
                await self.redis.ping()
        except (RedisError, OSError, TimeoutError):
            return None
        return time.perf_counter() - started

    def _node_dead(self, node_id: str) -> None:
        """The registry reports `node_id` dead: the sites whose media it carried are placed
        again first, so that the core's changes that follow (its users leave) find them
        placed on live nodes."""
        self.media.node_lost(node_id)
        self.leader.node_dead(node_id)

    # ---- load ---------------------------------------------------------------------------------

    def _load(self) -> NodeLoad:
        rooms = peers = 0
        workers: list[dict[str, object]] = []
        if self.local_media is not None:
            health = self.local_media.health()
            rooms = int(health.get("media_rooms", 0))  # type: ignore[call-overload]
            peers = int(health.get("media_peers", 0))  # type: ignore[call-overload]
            workers = health.get("media_workers", [])  # type: ignore[assignment]
        # The node's CPU is its media workers' too (media.pool): they do the relaying. A
        # worker that has not reported yet says 0.
        worker_cpu = {
            int(str(w["pid"])): float(str(w["cpu_s"]))
            for w in workers
            if w.get("pid") and float(str(w["cpu_s"])) > 0
        }
        cpu = self._cpu.reading(self.clock.monotonic(), _cpu_seconds(), worker_cpu)
        return NodeLoad(
            connections=len(self.local.connections()),
            calls=rooms,
            media_peers=peers,
            cpu=cpu,
            media_workers=len(workers),
        )


def _cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


__all__ = ["RedisCoreLink"]
