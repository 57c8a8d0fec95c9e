"""Many hub nodes acting as one, through Redis (`[redis] url`); docs/cluster.md is the design.

Every node is a *gateway*: its hub authenticates WebSockets and decodes frames as on one
node, and hands what a client said to this module (`connect`, `message`, `closed`), which
publishes it to the authority's inbox. One node at a time, the *authority* (the holder of
the Redis lease), runs the province's switchboard: it applies what gateways publish, in the
order its inbox receives it, and its hub performs the actions as on one node, except that
`ClusterRouter` routes each delivery to the node serving its recipient (`where`) and
`ClusterMedia` hands each call's media to the call's media node (both in
signalling/cluster_routing.py). Everything this node writes to Redis goes through one
ordered `RedisWriter` (signalling/redis_writer.py). The authority is also a gateway: what
its own clients say is applied directly, without a round trip through Redis.

Theory of operation
-------------------
* Order. Each node publishes through one connection, in one task (`RedisWriter`), in the order
  its clients spoke; Redis keeps each publisher's order on a channel. So the core sees each
  client's messages in order, and each gateway sees the core's deliveries in order.
* Where a user is. The authority learns it from `connect` (the node that sent it) and
  applies it at the user's welcome: what the core says to the user before its welcome
  (to the connection being replaced, perhaps on another node) still goes to the old node.
  Other nodes (a media node answering a member) find a user through `presence:<user>`,
  which each gateway writes for its connections and refreshes every heartbeat.
* Nobody listening. PUBLISH to the inbox answers how many subscribers heard it: 0 means no
  authority (between two, or Redis unreachable), and the client is told `unavailable` (or,
  for a new connection, closed with 1013 "try again later") instead of waiting in vain.
* Resync. Messages published while nobody listened, or while a subscription was down, are
  lost, so whenever that may have happened (an authority takes the lease, or a
  subscription comes back) gateways report every connection they serve (`Report`). The
  authority reconciles: sessions it knows are welcomed again with the current state, ones
  it does not know are adopted (`Switchboard.adopt`, not a new sign-in), and sessions that
  node no longer serves have their connection's close applied.
* Node death. The registry (`signalling.registry`) tells every node once per death; the
  authority ends the calls of the dead node's users and of the calls whose media it hosted
  with `node_lost`, and signs its users out (`Switchboard.lose`). A user who reconnected
  elsewhere in the meantime resumed their session from a live node and is left alone.
* A new authority. A node taking the lease keeps the switchboard it had if nobody else held
  the lease since (a Redis restart, a partition of its own); otherwise it starts with an
  empty one and adopts every reported session. A node that was not the last holder waits
  one lease TTL after seeing the lease free before taking it, so that after a Redis
  restart the previous authority, with its calls, gets it back.
* Python 3.11 can swallow a cancel delivered inside a redis-py call, so every loop here also
  waits on a stop event, and stopping sets it before cancelling.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final

import msgspec
import structlog
from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from identity import Identity, Role
from sessions.recorder import SessionRecorder, TraceEvent
from signalling import protocol as p
from signalling.clock import Clock
from signalling.cluster import wire as w
from signalling.cluster.keys import ClusterKeys
from signalling.cluster.lease import Lease
from signalling.cluster.registry import NodeLoad, RedisRegistry
from signalling.cluster.routing import ClusterMedia, ClusterRouter, pick_media_node
from signalling.cluster.writer import RedisWriter
from signalling.connection import Connection
from signalling.core.actions import Action, Negotiate, Record, Room, Send
from signalling.core.facts import WaitingCall
from signalling.core.presence import Session, SessionKeys
from signalling.core.switchboard import Switchboard
from signalling.driver import CoreDriver
from signalling.errors import CLOSE_REPLACED, Unavailable, error_reply
from signalling.link import ConnectParams
from signalling.media_port import MediaPort
from signalling.outbox import Outbox
from signalling.protocol import EndReason
from signalling.router import LocalRouter
from signalling.settings import RedisConfig

log = structlog.get_logger(__name__)

# A new connection for which no authority is listening is closed with this (RFC 6455
# "try again later"): the client reconnects after its backoff.
CLOSE_TRY_AGAIN: Final = 1013
# A subscription that failed is retried after this long, doubling up to the maximum.
RETRY_MIN_S: Final = 0.1
RETRY_MAX_S: Final = 2.0
# How long a subscriber waits for a message before looking at its stop event again.
POLL_S: Final = 0.5
# Presence keys extended per round trip: other work on the node runs between chunks.
PRESENCE_CHUNK: Final = 200

# KEYS: presence keys; ARGV[1]: TTL in ms. One command for many keys: packing a command per
# key costs the node about 35 ms of CPU per 1,000 keys in redis-py, this about 6.
_EXTEND = """
for _, key in ipairs(KEYS) do
  redis.call('PEXPIRE', key, ARGV[1])
end
return 0
"""

# Records that open or close a session (the journal follows them).
_SESSION_KINDS: Final = frozenset({"sign_in", "session_adopted", "sign_out"})


@dataclass
class AuthorityState:
    """What the authority holds: the core, and where each of its users is."""

    core: Switchboard
    # user -> (node, run) of the connection the core last welcomed.
    where: dict[str, tuple[str, float]] = field(default_factory=dict)
    # user -> (node, run) of a connection whose welcome is still to be delivered.
    arriving: dict[str, tuple[str, float]] = field(default_factory=dict)
    # (user, session id a gateway drew) -> the session it resumed, for that gateway's close.
    aliases: dict[tuple[str, str], str] = field(default_factory=dict)
    # call -> the node relaying its media.
    media_nodes: dict[str, str] = field(default_factory=dict)


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
        self._new_core = new_core
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
        self.local = LocalRouter()
        self.router = ClusterRouter(self)
        self.local_media = local_media
        self.media = ClusterMedia(self, local_media)
        self._outbox = Outbox(
            recorder=recorder,
            router=self.router,
            media=self.media,
            node_id=node_id,
            recorded=self.recorded,
        )
        # The core's driver while this node is the authority.
        self.driver: CoreDriver | None = None
        self.registry = RedisRegistry(
            self.redis,
            self.keys,
            self.node_id,
            http_address=http_address,
            media_address=media_address if local_media is not None else "",
            load=self._load,
            started_at=self.run,
            heartbeat_s=rc.heartbeat_s,
            node_timeout_s=rc.node_timeout_s,
            on_dead=self._node_dead,
        )
        self.lease = Lease(
            self.redis,
            self.keys.authority,
            self.keys.authority_epoch,
            self.node_id,
            ttl_s=rc.lease_ttl_s,
            on_lost=self._lease_lost,
            last_key=self.keys.authority_last,
        )
        self._extend = self.redis.register_script(_EXTEND)
        self.writer = RedisWriter(
            self.redis,
            presence_ttl_s=rc.node_timeout_s,
            failed=self._redis_failed,
            succeeded=self._redis_answered,
        )
        self.state: AuthorityState | None = None
        # The state of our last holding, kept in case we take the lease again unopposed.
        self._stashed: AuthorityState | None = None
        self.authority_id: str | None = None
        self._last_holder: str | None = None
        # Connections of this node waiting for their welcome, by user.
        self.pending: dict[str, Connection] = {}
        self.infos: dict[Connection, w.ConnectionInfo] = {}
        # The presence value written for each attached connection (to delete only ours).
        self._presence: dict[Connection, bytes] = {}
        self._lookups: collections.deque[tuple[list[str], p.ServerMessage]] = collections.deque()
        self._lookups_ready = asyncio.Event()
        self._stopping = asyncio.Event()
        self._inbox_stop: asyncio.Event | None = None
        self._inbox_task: asyncio.Task[None] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._redis_ok = True
        self._subscribed = False
        self._ever_subscribed = False
        self._cpu_at = (time.monotonic(), _cpu_seconds())
        self._cpu = 0.0

    # ---- lifecycle --------------------------------------------------------------------

    @property
    def outbox(self) -> Outbox:
        return self._outbox

    async def start(self) -> None:
        """Join the cluster. Never fails for Redis being down: every loop retries."""
        await self._outbox.start()
        loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        await self.registry.start()
        for coro in (self.writer.run(), self._subscriber(), self._presence_keeper()):
            self._tasks.append(loop.create_task(coro))
        self._tasks.append(loop.create_task(self._lookup_worker()))
        self._tasks.append(loop.create_task(self._lead()))

    def shutdown(self) -> None:
        """Only this node's users sign out: the others' sessions go on, taken on by the next
        authority (on a gateway the core is elsewhere and there is nothing to do here)."""
        if self.driver is not None:
            local = {conn.user for conn in self.infos}
            core = self.driver.core
            self.driver.run(lambda now: core.shutdown(now, local))

    async def stop(self, wait_s: float) -> None:
        """Flush what is queued, give the lease up, leave. The registry record stays: the
        others see this node go silent and clean up after `node_timeout_s`."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._outbox.flush(), wait_s)
        await self._leave()
        await self._outbox.stop(wait_s)
        if self.driver is not None:
            self.driver.stop()

    async def _leave(self) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.redis_config.node_timeout_s / 2):
                await self.writer.idle.wait()
        self._stopping.set()
        self._stop_inbox()
        if self.state is not None:
            self.state = None
            await self.lease.release()
        await self.registry.stop()
        tasks, self._tasks = self._tasks, []
        if self._inbox_task is not None:
            tasks.append(self._inbox_task)
        for task in tasks:
            task.cancel()
        await asyncio.wait(tasks, timeout=self.redis_config.node_timeout_s)
        await self.redis.aclose()
        await self._subscriber_redis.aclose()

    def health(self) -> dict[str, object]:
        status = "degraded" if self._outbox.degraded or self.degraded else "ok"
        return {"status": status, **self._outbox.health(), **self._cluster_health()}

    def _cluster_health(self) -> dict[str, object]:
        reachable = self._redis_ok and self._subscribed
        registry = self.registry.health()
        return {
            "cluster": {
                "role": "authority" if self.state is not None else "gateway",
                "authority": self.authority_id,
                "redis": "ok" if reachable and registry["registry"] == "ok" else "unreachable",
                "nodes": registry["nodes_alive"],
            }
        }

    def session(self, user: str) -> Session | None:
        return self.driver.core.session(user) if self.driver is not None else None

    @property
    def degraded(self) -> bool:
        health = self._cluster_health()["cluster"]
        assert isinstance(health, dict)
        return health["redis"] != "ok" or health["authority"] is None

    # ---- gateway: what this node's clients say -------------------------------------------

    def connected(
        self, conn: Connection, identity: Identity, keys: SessionKeys, params: ConnectParams
    ) -> None:
        info = w.ConnectionInfo(
            user=identity.user_id,
            name=identity.name,
            role=identity.role.value,
            court=identity.court,
            expires_at=identity.expires_at,
            session_id=keys.session_id,
            resume_token=keys.resume_token,
            device=params.device,
            app_version=params.app_version,
        )
        self.pending[conn.user] = conn
        self.infos[conn] = info
        envelope = w.Connect(node=self.node_id, run=self.run, conn=info, resume=params.resume)
        if self.state is not None:
            self._apply(envelope)
            return

        def refuse() -> None:
            if self.pending.get(conn.user) is conn:
                self._outbox.close(conn, CLOSE_TRY_AGAIN, "command center unavailable")

        self._send_inbox(envelope, refuse)

    def received(self, conn: Connection, message: p.ClientMessage) -> None:
        envelope = w.ClientMessage(
            node=self.node_id,
            run=self.run,
            user=conn.user,
            session_id=conn.session_id,
            message=message,
        )
        if self.state is not None:
            self._apply(envelope)
            return

        def unavailable() -> None:
            error = Unavailable("command center unreachable; retry")
            self._outbox.reply(conn, error, message.id)

        self._send_inbox(envelope, unavailable)

    def closed(self, conn: Connection) -> None:
        if self.pending.get(conn.user) is conn:
            del self.pending[conn.user]
        self.infos.pop(conn, None)
        value = self._presence.pop(conn, None)
        if value is not None:
            self.writer.delete_presence(self.keys.presence(conn.user), value)
        envelope = w.Closed(
            node=self.node_id, run=self.run, user=conn.user, session_id=conn.session_id
        )
        if self.state is not None:
            self._apply(envelope)
        else:
            # Unheard, it is reconciled at the next resync.
            self._send_inbox(envelope, None)

    def _send_inbox(self, envelope: w.InboxMessage, unheard: Callable[[], None] | None) -> None:
        self.writer.publish(self.keys.authority_inbox, w.encode(envelope), unheard)

    # ---- gateway: what this node delivers --------------------------------------------------

    def deliver_local(self, to: Sequence[str], message: p.ServerMessage) -> None:
        if isinstance(message, p.Welcome):
            # Named as the node the client is connected to (for its logs and support), not
            # the authority that wrote it.
            message = msgspec.structs.replace(message, node_id=self.node_id)
            for user in to:
                conn = self.pending.get(user)
                if conn is not None:
                    # The session's id (a resume keeps the old one) from here on.
                    del self.pending[user]
                    conn.session_id = message.session_id
                    self.local.attach(conn)
                    self._write_presence(conn)
        self.local.deliver(to, message)

    def disconnect_local(self, user: str, session_id: str, code: int, reason: str) -> None:
        conn = self.pending.get(user)
        if conn is not None and self.infos.get(conn, None) is not None:
            info = self.infos[conn]
            if session_id in (conn.session_id, info.session_id):
                del self.pending[user]
                conn.close(code, reason)
                return
        self.local.disconnect(user, session_id, code, reason)

    def deliver_anywhere(self, to: Sequence[str], message: p.ServerMessage) -> None:
        """Deliver to users wherever they are connected: here, or (looked up in their
        presence keys, in order) on another node."""
        here = [u for u in to if self._is_local(u)]
        if here:
            self.deliver_local(here, message)
        elsewhere = [u for u in to if not self._is_local(u)]
        if elsewhere:
            self._lookups.append((elsewhere, message))
            self._lookups_ready.set()

    def _is_local(self, user: str) -> bool:
        return user in self.pending or self.local.connection(user) is not None

    def report(self) -> w.Report:
        """Every connection this node serves, for a resync."""
        conns = []
        for conn, info in self.infos.items():
            if not conn.closing:
                conns.append(msgspec.structs.replace(info, session_id=conn.session_id))
        return w.Report(node=self.node_id, run=self.run, conns=conns)

    def _write_presence(self, conn: Connection) -> None:
        value = w.encode(
            w.Presence(node=self.node_id, session_id=conn.session_id, connected_at=self.clock.now())
        )
        self._presence[conn] = value
        self.writer.set_presence(self.keys.presence(conn.user), value)

    # ---- authority: applying what gateways said -------------------------------------------

    def _apply(self, envelope: w.InboxMessage) -> None:
        state, driver = self.state, self.driver
        if state is None or driver is None:
            return
        core = state.core
        match envelope:
            case w.Connect(conn=info):

                def connect(now: float) -> list[Action]:
                    state.arriving[info.user] = (envelope.node, envelope.run)
                    session, actions = core.connect(
                        _identity(info),
                        keys=SessionKeys(info.session_id, info.resume_token),
                        device=info.device,
                        app_version=info.app_version,
                        resume_token=envelope.resume,
                        now=now,
                    )
                    if session.session_id != info.session_id:
                        state.aliases[(info.user, info.session_id)] = session.session_id
                    return actions

                driver.run(connect)
            case w.ClientMessage(user=user, message=message):
                current = core.session(user)
                session_id = state.aliases.get((user, envelope.session_id), envelope.session_id)
                if current is not None and current.session_id != session_id:
                    # From a connection replaced since, whose close is on its way: like the
                    # frames of a replaced connection on one node, it may not act.
                    return
                driver.handle(user, message)
            case w.Closed(user=user):
                session_id = state.aliases.pop((user, envelope.session_id), envelope.session_id)
                if state.where.get(user, ("", 0.0))[0] == envelope.node:
                    current = core.session(user)
                    if current is None or current.session_id == session_id:
                        del state.where[user]
                driver.run(lambda now: core.disconnect(user, session_id, now))
            case w.Report():
                report = envelope
                driver.run(lambda now: self._reconcile(state, report, now))

    def _reconcile(self, state: AuthorityState, report: w.Report, now: float) -> list[Action]:
        core = state.core
        out: list[Action] = []
        reported = {c.user: c for c in report.conns}
        for user, (node, _) in list(state.where.items()):
            if node != report.node:
                continue
            info = reported.get(user)
            session = core.session(user)
            if info is None or session is None or session.session_id != info.session_id:
                # That node no longer serves it: its close was lost on the way.
                del state.where[user]
                if session is not None and session.connected:
                    out.extend(core.disconnect(user, session.session_id, now))
        for info in report.conns:
            session = core.session(info.user)
            location = state.where.get(info.user)
            if session is not None and session.session_id != info.session_id:
                # Replaced since (by a connection elsewhere): close the stale one.
                self._disconnect_on(report.node, info.user, info.session_id, "signed in elsewhere")
                continue
            if session is not None and location is not None and location[0] != report.node:
                # Resumed on another node since; this node's close of it is on its way.
                self._disconnect_on(report.node, info.user, info.session_id, "resumed elsewhere")
                continue
            state.arriving[info.user] = (report.node, report.run)
            keys = SessionKeys(info.session_id, info.resume_token)
            out.extend(
                core.adopt(
                    _identity(info),
                    keys=keys,
                    device=info.device,
                    app_version=info.app_version,
                    now=now,
                )
            )
        log.info(
            "resync applied", node_id=self.node_id, peer=report.node, connections=len(report.conns)
        )
        return out

    def _disconnect_on(self, node: str, user: str, session_id: str, reason: str) -> None:
        self.disconnect_on(node, user, session_id, CLOSE_REPLACED, reason)

    def disconnect_on(self, node: str, user: str, session_id: str, code: int, reason: str) -> None:
        """Close `session_id`'s connection on `node` (this one or another)."""
        if node == self.node_id:
            self.disconnect_local(user, session_id, code, reason)
            return
        envelope = w.Disconnect(
            node=self.node_id,
            run=self.run,
            user=user,
            session_id=session_id,
            code=code,
            reason=reason,
        )
        self.publish_node(node, envelope)

    def _node_dead(self, node_id: str) -> None:
        state = self.state
        if state is None:
            return
        record = self.registry.registry.record(node_id)
        alive = {r.node_id for r in self.registry.alive()}
        current_run = record.status.started_at if record is not None and node_id in alive else None
        now = self.clock.now()
        actions: list[Action] = []
        lost = 0
        for user, (node, run) in list(state.where.items()):
            if node != node_id or run == current_run:
                continue
            del state.where[user]
            session = state.core.session(user)
            if session is not None:
                lost += 1
                actions.extend(state.core.lose(user, session.session_id, now))
        for user, (node, run) in list(state.arriving.items()):
            if node == node_id and run != current_run:
                del state.arriving[user]
        for call_id, node in list(state.media_nodes.items()):
            if node == node_id:
                actions.extend(state.core.end_call(call_id, EndReason.NODE_LOST, now))
        log.warning("node lost", node_id=self.node_id, peer=node_id, sessions=lost)
        self._emit(actions)

    # ---- authority: taking and losing the lease ---------------------------------------------

    async def _lead(self) -> None:
        """Take the lease whenever it is free (see the module docstring for who waits)."""
        rc = self.redis_config
        period = rc.lease_ttl_s / 3
        free_since: float | None = None
        first = True
        while not self._stopping.is_set():
            if not first:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(period):
                        await self._stopping.wait()
                if self._stopping.is_set():
                    return
            first = False
            if self.state is not None:
                continue
            try:
                holder = await self.lease.holder()
                self._redis_ok = True
            except (RedisError, OSError) as exc:
                self._redis_failed(exc)
                self.authority_id = None
                continue
            self.authority_id = holder
            if holder is not None:
                self._last_holder = holder
                free_since = None
                continue
            now = time.monotonic()
            free_since = now if free_since is None else free_since
            if self._last_holder not in (None, self.node_id) and now - free_since < rc.lease_ttl_s:
                continue
            try:
                taken = await self.lease.acquire()
            except (RedisError, OSError) as exc:
                self._redis_failed(exc)
                continue
            if taken and not self._stopping.is_set():
                self._take_authority()

    def _take_authority(self) -> None:
        previous = self.lease.previous_holder
        stashed, self._stashed = self._stashed, None
        inherit = False
        if stashed is not None and previous in (None, self.node_id):
            state = stashed
            # Redis may have lost the journal (a restart): write it whole again.
            for user in list(state.core.presence.sessions):
                self._journal_session(state.core, user)
            for call_id in list(state.core.calls.table):
                self._journal_call(state.core, call_id)
        else:
            state = AuthorityState(core=self._new_core())
            inherit = previous is not None and previous != self.node_id
        self.state = state
        self.driver = CoreDriver(state.core, self._outbox, self.clock)
        self.authority_id = self._last_holder = self.node_id
        log.info(
            "authority taken",
            node_id=self.node_id,
            previous=previous,
            kept_state=state is stashed,
            epoch=self.lease.epoch,
        )
        self._start_inbox()
        self.driver.emit([])
        if inherit:
            task = asyncio.get_running_loop().create_task(self._inherit(state))
            self._tasks.append(task)

    def _lease_lost(self) -> None:
        state, self.state = self.state, None
        if state is None:
            return
        self._stashed = state
        self.authority_id = None
        self._stop_inbox()
        # No timers of the deposed core fire, nothing more is decided here.
        if self.driver is not None:
            self.driver.stop()
            self.driver = None
        log.warning("authority lost", node_id=self.node_id)

    def _start_inbox(self) -> None:
        self._stop_inbox()
        stop = asyncio.Event()
        self._inbox_stop = stop
        self._inbox_task = asyncio.get_running_loop().create_task(self._inbox(stop))

    def _stop_inbox(self) -> None:
        if self._inbox_stop is not None:
            self._inbox_stop.set()
            self._inbox_stop = None
        if self._inbox_task is not None:
            self._inbox_task.cancel()
            self._inbox_task = None

    async def _inbox(self, stop: asyncio.Event) -> None:
        """Consume the inbox while we hold the lease; after each (re)subscription, ask every
        gateway for its connections, since what was published meanwhile is lost."""
        await self._subscription(
            [self.keys.authority_inbox], self._on_inbox, self._request_resync, stop
        )

    def _request_resync(self) -> None:
        epoch = self.lease.epoch or 0
        request = w.ResyncRequest(node=self.node_id, run=self.run, epoch=epoch)
        self.writer.publish(self.keys.broadcast, w.encode(request))
        # Our own connections, directly.
        self._apply(self.report())

    def _on_inbox(self, channel: bytes, data: bytes) -> None:
        try:
            envelope = w.decode_inbox(data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            log.warning("unreadable inbox message dropped", node_id=self.node_id)
            return
        if self.state is None:
            # Deposed, and our subscription not yet closed: the sender counted us as a
            # listener, so it will not tell its client; we do.
            self._refuse_remote(envelope)
            return
        self._apply(envelope)

    def _refuse_remote(self, envelope: w.InboxMessage) -> None:
        match envelope:
            case w.ClientMessage(user=user, message=message):
                error = error_reply(Unavailable("command center unreachable; retry"), message.id)
                self.publish_to(envelope.node, [user], error)
            case w.Connect(conn=info):
                reason = "command center unavailable"
                self.disconnect_on(
                    envelope.node, info.user, info.session_id, CLOSE_TRY_AGAIN, reason
                )
            case _:
                # A close or a report: the next resync covers it.
                pass

    # ---- authority: the journal ----------------------------------------------------------

    def recorded(self, events: Sequence[TraceEvent]) -> None:
        """The authority's hub recorded `events`: bring the journal of the calls and
        sessions they are about up to date."""
        state = self.state
        if state is None:
            return
        users: set[str] = set()
        calls: set[str] = set()
        for event in events:
            if event.kind in _SESSION_KINDS:
                users.add(str(event.data["user"]))
            call = event.data.get("call")
            if isinstance(call, str):
                calls.add(call)
        for user in users:
            self._journal_session(state.core, user)
        for call_id in calls:
            self._journal_call(state.core, call_id)

    def _journal_session(self, core: Switchboard, user: str) -> None:
        facts = core.session_facts(user)
        value = None
        if facts is not None:
            entry = w.JournalSession(session_id=str(facts["session"]), sign_out=facts)
            value = w.encode(entry)
        self.writer.hash_field(self.keys.journal_sessions, user, value)

    def _journal_call(self, core: Switchboard, call_id: str) -> None:
        facts = core.call_facts(call_id)
        value = None
        if facts is not None:
            entry = w.JournalCall(
                notify=list(facts.notify), ended=facts.ended, waiting=facts.waiting
            )
            value = w.encode(entry)
        self.writer.hash_field(self.keys.journal_calls, call_id, value)

    async def _inherit(self, state: AuthorityState) -> None:
        """Close what a dead authority left open: its calls end at once (their members are
        told, the end is recorded); its sessions that no gateway reports within a node
        timeout are recorded signed out. Retried until Redis answers or we are deposed."""
        keys = self.keys
        while self.state is state:
            try:
                calls = await self.redis.hgetall(keys.journal_calls)
                sessions = await self.redis.hgetall(keys.journal_sessions)
                break
            except (RedisError, OSError) as exc:
                self._redis_failed(exc)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(RETRY_MAX_S):
                        await self._stopping.wait()
        else:
            return
        now = self.clock.now()
        actions: list[Action] = []
        waiting: list[WaitingCall] = []
        for raw_id, value in calls.items():
            call_id = _text(raw_id)
            if state.core.calls.table.get(call_id) is not None:
                continue
            try:
                entry = w.decode_journal_call(_bytes(value))
            except (msgspec.DecodeError, msgspec.ValidationError):
                continue
            if entry.waiting is not None:
                # Taken over once its officer's session is (after the resync below).
                waiting.append(entry.waiting)
                continue
            actions.append(Record(TraceEvent(kind="call_ended", at=now, data=entry.ended)))
            ended = p.CallEnded(call_id=call_id, reason=EndReason.NODE_LOST, by=None)
            actions.append(Send(tuple(entry.notify), ended))
            self.writer.hash_field(keys.journal_calls, call_id, None)
        log.info(
            "calls of the previous authority ended", node_id=self.node_id, calls=len(actions) // 2
        )
        self._emit(actions)
        # Gateways report their connections on our resync request; what is left unreported
        # after a node timeout was served by nobody alive.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.redis_config.node_timeout_s):
                await self._stopping.wait()
        if self.state is not state:
            return
        try:
            current = await self.redis.hgetall(keys.journal_sessions)
        except (RedisError, OSError) as exc:
            self._redis_failed(exc)
            return
        now = self.clock.now()
        actions = []
        for raw_user, value in sessions.items():
            user = _text(raw_user)
            # Rewritten since (adopted by us) or deleted (signed out by us): not left over.
            if current.get(raw_user) != value or state.core.session(user) is not None:
                continue
            try:
                left = w.decode_journal_session(_bytes(value))
            except (msgspec.DecodeError, msgspec.ValidationError):
                continue
            actions.append(Record(TraceEvent(kind="sign_out", at=now, data=left.sign_out)))
            self.writer.hash_field(keys.journal_sessions, user, None)
        log.info(
            "sessions of the previous authority closed", node_id=self.node_id, sessions=len(actions)
        )
        for call in sorted(waiting, key=lambda c: c.created_at):
            actions.extend(state.core.take_over(call, now))
        self._emit(actions)

    # ---- node channel -------------------------------------------------------------------

    async def _subscriber(self) -> None:
        channels = [self.keys.node_channel(self.node_id), self.keys.broadcast]
        await self._subscription(channels, self._on_node, self._after_gap, self._stopping)

    def _after_gap(self) -> None:
        """Subscribed again after an interruption: what the core sent us meanwhile is lost,
        so report what we serve; the authority welcomes each connection again."""
        first, self._ever_subscribed = not self._ever_subscribed, True
        self._subscribed = True
        if first:
            return
        # Redis may have lost them (a restart); the keeper only extends what exists.
        for conn, value in self._presence.items():
            self.writer.set_presence(self.keys.presence(conn.user), value)
        if self.state is not None:
            self._apply(self.report())
        else:
            self._send_inbox(self.report(), None)

    def _on_node(self, channel: bytes, data: bytes) -> None:
        try:
            envelope = w.decode_node(data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            log.warning("unreadable node message dropped", node_id=self.node_id)
            return
        match envelope:
            case w.Deliver(to=to, message=message):
                self.deliver_local(to, message)
            case w.Disconnect():
                self.disconnect_local(
                    envelope.user, envelope.session_id, envelope.code, envelope.reason
                )
            case w.RoomChanged():
                if self.local_media is not None:
                    self.local_media.room_changed(
                        Room(
                            envelope.call_id,
                            tuple(envelope.members),
                            tuple(envelope.silent),
                            envelope.court,
                            envelope.officer,
                            envelope.case_number,
                        )
                    )
            case w.Signal(user=user, message=message):
                self._outbox.negotiate(Negotiate(user, message), self.local_media)
            case w.ResyncRequest():
                if envelope.node != self.node_id:
                    self._send_inbox(self.report(), None)

    async def _subscription(
        self,
        channels: list[str],
        handle: Callable[[bytes, bytes], None],
        on_subscribed: Callable[[], None],
        stop: asyncio.Event,
    ) -> None:
        retry = RETRY_MIN_S
        while not stop.is_set():
            pubsub: PubSub = self._subscriber_redis.pubsub()
            try:
                await pubsub.subscribe(*channels)
                retry = RETRY_MIN_S
                on_subscribed()
                while not stop.is_set():
                    message = await pubsub.get_message(
                        ignore_subscribe_messages=True, timeout=POLL_S
                    )
                    if message is None or message.get("type") != "message":
                        continue
                    try:
                        handle(message["channel"], message["data"])
                    except Exception:
                        log.exception("cluster message failed", node_id=self.node_id)
            except (RedisError, OSError) as exc:
                self._redis_failed(exc)
                self._subscribed = False
            finally:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(pubsub.aclose(), 1.0)  # type: ignore[no-untyped-call]
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(retry):
                    await stop.wait()
            retry = min(retry * 2, RETRY_MAX_S)

    # ---- Redis writes -----------------------------------------------------------------------

    async def _presence_keeper(self) -> None:
        """Extend every presence key of this node each heartbeat, so that they outlive us
        by at most a node timeout.

        Not through the ordered writer: with thousands of connections the refresh would
        hold every publication of the node behind it for tens of milliseconds each
        heartbeat (measured: cross-node ring p99 75 ms with 6,000 connections). PEXPIRE
        touches only keys that exist, so a refresh racing a disconnect's DEL never brings a
        key back; keys Redis lost (a restart) are written again on resubscription."""
        ttl_ms = round(self.redis_config.node_timeout_s * 1000)
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.redis_config.heartbeat_s):
                    await self._stopping.wait()
            keys = [self.keys.presence(c.user) for c in list(self._presence) if not c.closing]
            try:
                for start in range(0, len(keys), PRESENCE_CHUNK):
                    chunk = keys[start : start + PRESENCE_CHUNK]
                    await self._extend(keys=chunk, args=[ttl_ms])
            except (RedisError, OSError, TimeoutError) as exc:
                self._redis_failed(exc)

    async def _lookup_worker(self) -> None:
        """Delivers to users of other nodes, found by their presence keys, in order."""
        while True:
            await self._lookups_ready.wait()
            self._lookups_ready.clear()
            while self._lookups:
                users, message = self._lookups.popleft()
                try:
                    values = await self.redis.mget([self.keys.presence(u) for u in users])
                except (RedisError, OSError) as exc:
                    self._redis_failed(exc)
                    continue
                by_node: dict[str, list[str]] = {}
                for user, value in zip(users, values, strict=True):
                    if value is None:
                        continue
                    try:
                        presence = w.decode_presence(
                            value.encode() if isinstance(value, str) else value
                        )
                    except (msgspec.DecodeError, msgspec.ValidationError):
                        continue
                    by_node.setdefault(presence.node, []).append(user)
                for node, group in by_node.items():
                    self.publish_to(node, group, message)

    def _emit(self, actions: list[Action]) -> None:
        """Perform what the authority's core decided outside a client's message."""
        if self.driver is not None:
            self.driver.emit(actions)

    def publish_to(self, node: str, users: list[str], message: p.ServerMessage) -> None:
        envelope = w.Deliver(node=self.node_id, run=self.run, to=users, message=message)
        self.writer.publish(self.keys.node_channel(node), w.encode(envelope))

    def publish_node(self, node: str, envelope: w.NodeMessage) -> None:
        self.writer.publish(self.keys.node_channel(node), w.encode(envelope))

    def _redis_failed(self, exc: BaseException) -> None:
        if self._redis_ok:
            log.warning("redis unreachable", node_id=self.node_id, error=repr(exc))
        self._redis_ok = False

    def _redis_answered(self) -> None:
        self._redis_ok = True

    # ---- load and media ------------------------------------------------------------------

    def _load(self) -> NodeLoad:
        now, cpu = time.monotonic(), _cpu_seconds()
        then, cpu_then = self._cpu_at
        if now > then:
            self._cpu = max(0.0, (cpu - cpu_then) / ((now - then) * (os.cpu_count() or 1)))
        self._cpu_at = (now, cpu)
        rooms = peers = 0
        if self.local_media is not None:
            health = self.local_media.health()
            rooms = int(health.get("media_rooms", 0))  # type: ignore[call-overload]
            peers = int(health.get("media_peers", 0))  # type: ignore[call-overload]
        return NodeLoad(
            connections=len(self.local.connections()), calls=rooms, media_peers=peers, cpu=self._cpu
        )

    def media_node_for(self, state: AuthorityState, call_id: str) -> str:
        node = state.media_nodes.get(call_id)
        if node is None:
            rooms = collections.Counter(state.media_nodes.values())
            node = pick_media_node(self.registry.alive(), rooms, self.node_id)
            state.media_nodes[call_id] = node
        return node


def _identity(info: w.ConnectionInfo) -> Identity:
    return Identity(
        user_id=info.user,
        name=info.name,
        role=Role(info.role),
        court=info.court,
        expires_at=info.expires_at,
    )


def _bytes(value: bytes | str) -> bytes:
    return value.encode() if isinstance(value, str) else value


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


__all__ = ["AuthorityState", "RedisCoreLink"]
