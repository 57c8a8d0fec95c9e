"""This node as a gateway: its connections, what they say to the authority, and what reaches
them from it and from other nodes.

Every node is a gateway, the authority too. The hub authenticates a WebSocket and decodes
its frames as on one node; the gateway hands what the client said (`connect`, `message`,
`closed`) to the authority: applied here if this node holds the lease, else published to the
inbox, and when nobody hears it (no authority) the client is told at once (`unavailable`, or
for a new connection a close with 1013). What the node's channel brings is performed here:
deliveries, disconnects, a call's media for this node's media service, a resync request
(answered with a `Report` of every connection served). Each connection has a presence key
(`presence:<user>`) naming this node, kept alive every heartbeat, through which other nodes
(a media node answering a member) reach users without the authority's map.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import Callable, Sequence
from typing import Final

import msgspec
import structlog
from redis.asyncio import Redis

from identity import Identity
from signalling import protocol as p
from signalling.clock import Clock
from signalling.cluster import wire as w
from signalling.cluster.keys import ClusterKeys
from signalling.cluster.replies import AwaitedReplies
from signalling.cluster.retry import REDIS_ERRORS, RedisHealth, RetryLoop
from signalling.cluster.writer import RedisWriter
from signalling.connection import Connection
from signalling.core.actions import Negotiate, Room
from signalling.core.presence import SessionKeys
from signalling.errors import Unavailable
from signalling.link import ConnectParams
from signalling.media_port import CascadePort, MediaPort
from signalling.outbox import Outbox
from signalling.router import LocalRouter

log = structlog.get_logger(__name__)

# A new connection for which no authority is listening is closed with this (RFC 6455
# "try again later"): the client reconnects after its backoff.
CLOSE_TRY_AGAIN: Final = 1013
# Presence keys extended per round trip: other work on the node runs between chunks.
PRESENCE_CHUNK: Final = 200
# Replies held for a connection still waiting for its welcome, at most: the hub closes a
# connection after a few bad frames and rate-limits the rest, so more is a client bug.
MAX_HELD_REPLIES: Final = 64
# Conference joins remembered per connection until answered (a client joins one or two at a
# time; more are forgotten oldest first and answered by the authority as always).
MAX_JOINS_PER_CONNECTION: Final = 8

# KEYS: presence keys; ARGV[1]: TTL in ms. One command for many keys: packing a command per
# key costs the node about 35 ms of CPU per 1,000 keys in redis-py, this about 6.
_EXTEND = """
for _, key in ipairs(KEYS) do
  redis.call('PEXPIRE', key, ARGV[1])
end
return 0
"""

# Applies an inbox envelope here if this node is the authority; False if it is not.
ApplyHere = Callable[[w.InboxMessage], bool]


class Gateway:
    def __init__(
        self,
        *,
        node_id: str,
        run: float,
        clock: Clock,
        keys: ClusterKeys,
        redis: Redis,
        writer: RedisWriter,
        outbox: Outbox,
        local: LocalRouter,
        local_media: MediaPort | None,
        apply_here: ApplyHere,
        health: RedisHealth,
        presence_ttl_s: float,
        heartbeat_s: float,
        stopping: asyncio.Event,
        reply_timeout_s: float = 10.0,
    ) -> None:
        self.node_id = node_id
        self.run = run
        self.local = local
        self._clock = clock
        self._keys = keys
        self._redis = redis
        self._writer = writer
        self._outbox = outbox
        self._local_media = local_media
        self._apply_here = apply_here
        self._health = health
        self._presence_ttl_ms = round(presence_ttl_s * 1000)
        self._heartbeat_s = heartbeat_s
        self._stopping = stopping
        self._extend = redis.register_script(_EXTEND)
        # Messages forwarded to the authority whose reply has not come back (replies.py).
        self.awaited = AwaitedReplies(reply_timeout_s)
        # Replies this node gave itself because the authority's never came.
        self.replies_timed_out = 0
        # Connections of this node waiting for their welcome, by user.
        self.pending: dict[str, Connection] = {}
        # The edge's own replies to a pending connection, sent right after its welcome.
        self._held: dict[Connection, list[p.ServerMessage]] = {}
        self.infos: dict[Connection, w.ConnectionInfo] = {}
        # The presence value written for each attached connection (to delete only ours).
        self._presence: dict[Connection, bytes] = {}
        self._lookups: collections.deque[tuple[list[str], p.ServerMessage]] = collections.deque()
        self._lookups_ready = asyncio.Event()
        # Each connection's conference joins not yet answered for good, by id, and whether
        # the authority queued it (`conference_waiting`). The queue lives only in the
        # authority's memory: when a new one welcomes the connection again (it took over
        # from a dead one), the queued joins are asked of it again, under the same id, so
        # that the site is let in instead of waiting for a turn that will not come.
        self._joins: dict[Connection, dict[str, tuple[p.JoinConference, bool]]] = {}

    # ---- what this node's clients say -------------------------------------------------------

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
            scope=identity.scope,
        )
        self.pending[conn.user] = conn
        self.infos[conn] = info
        envelope = w.Connect(node=self.node_id, run=self.run, conn=info, resume=params.resume)

        def refuse() -> None:
            if self.pending.get(conn.user) is conn:
                self._outbox.close(conn, CLOSE_TRY_AGAIN, "command center unavailable")

        self._to_authority(envelope, refuse)

    def received(self, conn: Connection, message: p.ClientMessage) -> None:
        envelope = w.ClientMessage(
            node=self.node_id,
            run=self.run,
            user=conn.user,
            session_id=conn.session_id,
            message=message,
        )

        def unavailable() -> None:
            # Unless the gateway's own deadline has answered it already.
            if self.awaited.answered(conn.user, message.id):
                error = Unavailable("command center unreachable; retry")
                self._outbox.reply(conn, error, message.id)

        if isinstance(message, p.JoinConference):
            joins = self._joins.setdefault(conn, {})
            joins.pop(message.id, None)
            joins[message.id] = (message, False)
            while len(joins) > MAX_JOINS_PER_CONNECTION:
                del joins[next(iter(joins))]
        # Noted before it is sent: on the authority's own node the reply may come at once.
        self.awaited.expect(conn.user, message.id, self._clock.now())
        self._to_authority(envelope, unavailable)

    def _answered_join(self, user: str, ref: str, message: p.ServerMessage) -> None:
        """Follow a reply to one of `user`'s joins: queued, or answered for good."""
        conn = self.local.connection(user)
        if conn is None:
            return
        joins = self._joins.get(conn)
        if joins is None or ref not in joins:
            return
        if isinstance(message, p.ConferenceWaiting):
            joins[ref] = (joins[ref][0], True)
            return
        del joins[ref]
        if not joins:
            del self._joins[conn]

    def _ask_joins_again(self, conn: Connection) -> None:
        """`conn` was welcomed again (a new authority took over): its queued joins are asked
        of it again (the same id: the client's wait goes on and ends with its answer)."""
        for message, queued in list(self._joins.get(conn, {}).values()):
            if queued:
                log.info(
                    "queued conference join asked again",
                    node_id=self.node_id,
                    user_id=conn.user,
                    conference_id=message.conference_id,
                )
                self.received(conn, message)

    def closed(self, conn: Connection) -> None:
        self._held.pop(conn, None)
        self._joins.pop(conn, None)
        if self.local.connection(conn.user) in (None, conn):
            # No newer connection of the user here waits for replies.
            self.awaited.forget(conn.user)
        if self.pending.get(conn.user) is conn:
            del self.pending[conn.user]
        self.infos.pop(conn, None)
        value = self._presence.pop(conn, None)
        if value is not None:
            self._writer.delete_presence(self._keys.presence(conn.user), value)
        envelope = w.Closed(
            node=self.node_id, run=self.run, user=conn.user, session_id=conn.session_id
        )
        # Unheard, it is reconciled at the next resync.
        self._to_authority(envelope, None)

    def revoked(self, conn: Connection, reason: str) -> None:
        envelope = w.Revoked(
            node=self.node_id,
            run=self.run,
            user=conn.user,
            session_id=conn.session_id,
            reason=reason,
        )
        # Unheard (no authority now), the hub's close of the connection still ends the
        # session, after its grace, and the account's tokens are refused meanwhile.
        self._to_authority(envelope, None)

    def report(self) -> w.Report:
        """Every connection this node serves, for a resync."""
        conns = []
        for conn, info in self.infos.items():
            if not conn.closing:
                conns.append(msgspec.structs.replace(info, session_id=conn.session_id))
        return w.Report(node=self.node_id, run=self.run, conns=conns)

    def _to_authority(self, envelope: w.InboxMessage, unheard: Callable[[], None] | None) -> None:
        """Applied here on the authority (no round trip through Redis), else published."""
        if not self._apply_here(envelope):
            self.send_inbox(envelope, unheard)

    def send_inbox(self, envelope: w.InboxMessage, unheard: Callable[[], None] | None) -> None:
        self._writer.publish(self._keys.authority_inbox, w.encode(envelope), unheard)

    # ---- what this node delivers ------------------------------------------------------------

    def deliver_local(self, to: Sequence[str], message: p.ServerMessage) -> None:
        ref = getattr(message, "ref", None)
        if ref is not None and len(to) == 1 and not self.awaited.answered(to[0], ref):
            # Too late: the client was told `unavailable` for it already; one reply each.
            log.warning("late reply dropped", user_id=to[0], ref=ref, reply=type(message).__name__)
            return
        if ref is not None and len(to) == 1 and self.local.connection(to[0]) is None:
            # A reply for nobody connected here (gone, or still waiting for its welcome): the
            # client will not have it. Rare; the log says which, to find out why.
            log.warning(
                "reply for a user not connected here dropped",
                node_id=self.node_id,
                user_id=to[0],
                ref=ref,
                reply=type(message).__name__,
                pending=to[0] in self.pending,
            )
        if ref is not None and len(to) == 1:
            self._answered_join(to[0], ref, message)
        welcomed: list[Connection] = []
        welcomed_again: list[Connection] = []
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
                    welcomed.append(conn)
                else:
                    attached = self.local.connection(user)
                    if attached is not None and attached in self._joins:
                        welcomed_again.append(attached)
        self.local.deliver(to, message)
        for conn in welcomed:
            for held in self._held.pop(conn, ()):
                self.local.reply(conn, held)
        for conn in welcomed_again:
            self._ask_joins_again(conn)

    def reply_local(self, conn: Connection, message: p.ServerMessage) -> None:
        """The edge's own reply to `conn` (an error for a frame it sent, the gateway's
        `unavailable`): to that connection, after its welcome if that is still to come."""
        if self.pending.get(conn.user) is conn:
            held = self._held.setdefault(conn, [])
            if len(held) < MAX_HELD_REPLIES:
                held.append(message)
            else:
                log.warning("reply dropped before welcome", user_id=conn.user)
            return
        self.local.reply(conn, message)

    def disconnect_local(self, user: str, session_id: str, code: int, reason: str) -> None:
        conn = self.pending.get(user)
        if conn is not None and self.infos.get(conn, None) is not None:
            info = self.infos[conn]
            if session_id in (conn.session_id, info.session_id):
                del self.pending[user]
                self._held.pop(conn, None)
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

    def publish_to(self, node: str, users: list[str], message: p.ServerMessage) -> None:
        envelope = w.Deliver(node=self.node_id, run=self.run, to=users, message=message)
        self.publish_node(node, envelope)

    def publish_node(self, node: str, envelope: w.NodeMessage) -> None:
        self._writer.publish(self._keys.node_channel(node), w.encode(envelope))

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

    # ---- this node's channel ----------------------------------------------------------------

    def on_node(self, channel: bytes, data: bytes) -> None:
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
                if self._local_media is not None:
                    self._local_media.room_changed(
                        Room(
                            envelope.call_id,
                            tuple(envelope.members),
                            tuple(envelope.silent),
                            envelope.court,
                            envelope.officer,
                            envelope.case_number,
                            envelope.stage,
                            envelope.watch,
                        )
                    )
            case w.CascadeChanged(conference_id=conference_id, cascade=cascade):
                if isinstance(self._local_media, CascadePort):
                    self._local_media.cascade_changed(conference_id, cascade)
            case w.Signal(user=user, message=message):
                self._outbox.negotiate(Negotiate(user, message), self._local_media)
            case w.ResyncRequest():
                if envelope.node != self.node_id:
                    self.send_inbox(self.report(), None)

    def resubscribed(self, first: bool) -> None:
        """The node's channel is subscribed (again, unless `first`): what the core sent us
        meanwhile is lost, so report what we serve; the authority welcomes each connection
        again."""
        if first:
            return
        # Redis may have lost them (a restart); the keeper only extends what exists.
        for conn, value in self._presence.items():
            self._writer.set_presence(self._keys.presence(conn.user), value)
        self._to_authority(self.report(), None)

    # ---- presence -----------------------------------------------------------------------------

    def _write_presence(self, conn: Connection) -> None:
        value = w.encode(
            w.Presence(
                node=self.node_id, session_id=conn.session_id, connected_at=self._clock.now()
            )
        )
        self._presence[conn] = value
        self._writer.set_presence(self._keys.presence(conn.user), value)

    async def keep_presence(self) -> None:
        """Extend every presence key of this node each heartbeat, so that they outlive us
        by at most a node timeout.

        Not through the ordered writer: with thousands of connections the refresh would
        hold every publication of the node behind it for tens of milliseconds each
        heartbeat (measured: cross-node ring p99 75 ms with 6,000 connections). PEXPIRE
        touches only keys that exist, so a refresh racing a disconnect's DEL never brings a
        key back; keys Redis lost (a restart) are written again on resubscription."""
        retry = RetryLoop(self._stopping, self._health)
        ttl_ms = self._presence_ttl_ms
        while await retry.pause(self._heartbeat_s):
            keys = [self._keys.presence(c.user) for c in list(self._presence) if not c.closing]
            if not keys:
                continue
            try:
                for start in range(0, len(keys), PRESENCE_CHUNK):
                    chunk = keys[start : start + PRESENCE_CHUNK]
                    await self._extend(keys=chunk, args=[ttl_ms])
            except REDIS_ERRORS as exc:
                # Retried at the next heartbeat, well within the keys' TTL.
                retry.failed(exc)
            else:
                retry.answered()

    async def expire_replies(self) -> None:
        """Answer `unavailable` for every message whose reply is overdue (replies.py); the
        first of a spell raises the alarm in the log, the rest are counted."""
        tick = min(0.25, self.awaited.timeout_s / 4)
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), tick)
            due = self.awaited.due(self._clock.now())
            if not due:
                continue
            for user, ref in due:
                conn = self.local.connection(user) or self.pending.get(user)
                if conn is not None and not conn.closing:
                    error = Unavailable("no answer from the command center; retry")
                    self._outbox.reply(conn, error, ref)
            self.replies_timed_out += len(due)
            log.warning(
                "replies timed out",
                count=len(due),
                total=self.replies_timed_out,
                timeout_s=self.awaited.timeout_s,
            )

    async def look_up(self) -> None:
        """Delivers to users of other nodes, found by their presence keys, in order. A
        lookup Redis does not answer is dropped with its message, not retried."""
        retry = RetryLoop(self._stopping, self._health)
        while await retry.wait_for(self._lookups_ready):
            while self._lookups:
                users, message = self._lookups.popleft()
                try:
                    values = await self._redis.mget([self._keys.presence(u) for u in users])
                except REDIS_ERRORS as exc:
                    retry.failed(exc)
                    continue
                retry.answered()
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


__all__ = ["CLOSE_TRY_AGAIN", "PRESENCE_CHUNK", "Gateway"]
