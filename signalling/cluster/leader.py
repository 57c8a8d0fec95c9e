"""This node as the authority: taking the lease when it is free, running the province's core
over the inbox while it holds it, and stopping the moment it loses it.

While the lease is ours the core runs here, driven by a `CoreDriver` (the one place where the
core's errors become replies), and what the authority decides beyond the core comes from
the pure `AuthorityState` (signalling/cluster/authority.py) as data, performed here: the
envelopes of the inbox, in the order it receives them (a client message through
`CoreDriver.handle`), a resync (`Report`), the death of a node. Each time the inbox is
subscribed, every gateway is asked for its connections (`ResyncRequest`), since what was
published meanwhile is lost.

Who takes the lease: a node that was not the last holder waits one lease TTL after seeing it
free, so that after a Redis restart the previous authority, which still has its calls, gets
it back. A node retaking it with nobody in between keeps the state it had (`_stashed`) and
writes its journal again; otherwise it starts with an empty core and inherits what a dead
authority left (signalling/cluster/journal.py), subscribing to the inbox only once the dead
authority's emergencies are read, so that each officer's session is flagged as the resync
adopts it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection

import msgspec
import structlog
from redis.asyncio import Redis

from signalling.clock import Clock
from signalling.cluster import wire as w
from signalling.cluster.authority import AuthorityState, DisconnectOn
from signalling.cluster.gateway import CLOSE_TRY_AGAIN, Gateway
from signalling.cluster.journal import Journal
from signalling.cluster.keys import ClusterKeys
from signalling.cluster.lease import Lease
from signalling.cluster.registry import RedisRegistry
from signalling.cluster.retry import REDIS_ERRORS, RedisHealth, RetryLoop
from signalling.cluster.subscription import Subscription
from signalling.cluster.writer import RedisWriter
from signalling.core.actions import Action
from signalling.core.switchboard import Switchboard
from signalling.driver import CoreDriver
from signalling.errors import Unavailable, error_reply
from signalling.outbox import Outbox

log = structlog.get_logger(__name__)


class Leader:
    def __init__(
        self,
        *,
        node_id: str,
        run: float,
        clock: Clock,
        keys: ClusterKeys,
        redis: Redis,
        subscriber_redis: Redis,
        writer: RedisWriter,
        registry: RedisRegistry,
        gateway: Gateway,
        journal: Journal,
        outbox: Outbox,
        new_core: Callable[[], Switchboard],
        lease_ttl_s: float,
        health: RedisHealth,
        stopping: asyncio.Event,
    ) -> None:
        self.node_id = node_id
        self.run = run
        self._clock = clock
        self._keys = keys
        self._subscriber_redis = subscriber_redis
        self._writer = writer
        self._registry = registry
        self._gateway = gateway
        self._journal = journal
        self._outbox = outbox
        self._new_core = new_core
        self._lease_ttl_s = lease_ttl_s
        self._health = health
        self._stopping = stopping
        self.lease = Lease(
            redis,
            keys.authority,
            keys.authority_epoch,
            node_id,
            ttl_s=lease_ttl_s,
            on_lost=self._lease_lost,
            clock=clock.monotonic,
            last_key=keys.authority_last,
        )
        self.state: AuthorityState | None = None
        # The core's driver while this node is the authority.
        self.driver: CoreDriver | None = None
        # The state of our last holding, kept in case we take the lease again unopposed.
        self._stashed: AuthorityState | None = None
        self.authority_id: str | None = None
        self._last_holder: str | None = None
        # Since when (monotonic) we have seen the lease free, while it is.
        self._free_since: float | None = None
        self.inbox: Subscription | None = None
        self._inbox_task: asyncio.Task[None] | None = None
        self.tasks: list[asyncio.Task[None]] = []

    # ---- taking and losing the lease --------------------------------------------------------

    async def lead(self) -> None:
        """Look at the lease every third of its TTL, and take it whenever it is free (see
        the module docstring for who waits)."""
        retry = RetryLoop(self._stopping, self._health)
        while not retry.stopping:
            if self.state is None:
                await self._look(retry)
            await retry.pause(self._lease_ttl_s / 3)

    async def _look(self, retry: RetryLoop) -> None:
        try:
            holder = await self.lease.holder()
        except REDIS_ERRORS as exc:
            # Looked at again next round: the round is how soon a free lease is taken.
            retry.failed(exc)
            self.authority_id = None
            return
        retry.answered()
        self.authority_id = holder
        if holder is not None:
            self._last_holder = holder
            self._free_since = None
            return
        now = self._clock.monotonic()
        if self._free_since is None:
            self._free_since = now
        waited = now - self._free_since
        if self._last_holder not in (None, self.node_id) and waited < self._lease_ttl_s:
            return
        try:
            taken = await self.lease.acquire()
        except REDIS_ERRORS as exc:
            retry.failed(exc)
            return
        if taken and not retry.stopping:
            self._take()

    def _take(self) -> None:
        previous = self.lease.previous_holder
        stashed, self._stashed = self._stashed, None
        inherit = False
        if stashed is not None and previous in (None, self.node_id):
            state = stashed
            # Redis may have lost the journal (a restart): write it whole again.
            self._journal.rewrite(state.core)
        else:
            state = AuthorityState(core=self._new_core())
            inherit = previous is not None and previous != self.node_id
        self.state = state
        self.driver = CoreDriver(state.core, self._outbox, self._clock)
        self.authority_id = self._last_holder = self.node_id
        log.info(
            "authority taken",
            node_id=self.node_id,
            previous=previous,
            kept_state=state is stashed,
            epoch=self.lease.epoch,
        )
        self.driver.emit([])
        if inherit:
            # The inbox (and with it the resync) starts once the dead authority's
            # emergencies are read: an officer's session is flagged as it is adopted.
            inheriting = self._journal.inherit(state, ready=self._start_inbox)
            self.tasks.append(asyncio.get_running_loop().create_task(inheriting))
        else:
            self._start_inbox()

    def _lease_lost(self) -> None:
        state, self.state = self.state, None
        if state is None:
            return
        self._stashed = state
        self.authority_id = None
        self.stop_inbox()
        # No timers of the deposed core fire, nothing more is decided here.
        if self.driver is not None:
            self.driver.stop()
            self.driver = None
        log.warning("authority lost", node_id=self.node_id)

    async def release(self) -> None:
        """Stop being the authority (the node is leaving): the lease is given up."""
        self.stop_inbox()
        if self.state is not None:
            self.state = None
            await self.lease.release()

    # ---- the inbox --------------------------------------------------------------------------

    def _start_inbox(self) -> None:
        """Consume the inbox while we hold the lease; after each (re)subscription, ask every
        gateway for its connections, since what was published meanwhile is lost."""
        self.stop_inbox()
        self.inbox = Subscription(
            self._subscriber_redis,
            [self._keys.authority_inbox],
            handle=self._on_inbox,
            on_subscribed=self._request_resync,
            health=self._health,
            stop=asyncio.Event(),
            node_id=self.node_id,
        )
        self._inbox_task = asyncio.get_running_loop().create_task(self.inbox.run())

    def stop_inbox(self) -> None:
        if self.inbox is not None:
            self.inbox.stop.set()
            self.inbox = None
        if self._inbox_task is not None:
            self._inbox_task.cancel()
            self._inbox_task = None

    def _request_resync(self, first: bool) -> None:
        epoch = self.lease.epoch or 0
        request = w.ResyncRequest(node=self.node_id, run=self.run, epoch=epoch)
        self._writer.publish(self._keys.broadcast, w.encode(request))
        # Our own connections, directly.
        self.apply(self._gateway.report())

    def _on_inbox(self, channel: bytes, data: bytes) -> None:
        try:
            envelope = w.decode_inbox(data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            log.warning("unreadable inbox message dropped", node_id=self.node_id)
            return
        if not self.apply(envelope):
            # Deposed, and our subscription not yet closed: the sender counted us as a
            # listener, so it will not tell its client; we do.
            self._refuse_remote(envelope)

    def _refuse_remote(self, envelope: w.InboxMessage) -> None:
        gateway = self._gateway
        match envelope:
            case w.ClientMessage(user=user, message=message):
                error = error_reply(Unavailable("command center unreachable; retry"), message.id)
                gateway.publish_to(envelope.node, [user], error)
            case w.Connect(conn=info):
                reason = "command center unavailable"
                gateway.disconnect_on(
                    envelope.node, info.user, info.session_id, CLOSE_TRY_AGAIN, reason
                )
            case _:
                # A close or a report: the next resync covers it.
                pass

    # ---- applying what gateways said --------------------------------------------------------

    def apply(self, envelope: w.InboxMessage) -> bool:
        """Apply `envelope` to the core if this node is the authority; False if it is not."""
        state, driver = self.state, self.driver
        if state is None or driver is None:
            return False
        match envelope:
            case w.Connect():
                driver.run(lambda now: state.connect(envelope, now))
            case w.ClientMessage(user=user, message=message):
                if state.admits(envelope):
                    driver.handle(user, message)
                else:
                    # From a connection replaced since: not carried out, and not answered
                    # here; its gateway's reply deadline answers it if it is still open.
                    log.warning(
                        "message of a replaced connection dropped",
                        node_id=self.node_id,
                        peer=envelope.node,
                        user_id=user,
                        ref=message.id,
                    )
            case w.Closed():
                driver.run(lambda now: state.closed(envelope, now))
            case w.Revoked():
                driver.run(lambda now: state.revoked(envelope, now))
            case w.Report():
                self._reconcile(state, driver, envelope)
        return True

    def _reconcile(self, state: AuthorityState, driver: CoreDriver, report: w.Report) -> None:
        closes: list[DisconnectOn] = []

        def step(now: float) -> list[Action]:
            reconciled = state.reconcile(report, now)
            closes.extend(reconciled.closes)
            log.info(
                "resync applied",
                node_id=self.node_id,
                peer=report.node,
                connections=len(report.conns),
            )
            return reconciled.actions

        driver.run(step)
        # Before the pump performs the core's actions, as when they were decided.
        for close in closes:
            self._gateway.disconnect_on(
                close.node, close.user, close.session_id, close.code, close.reason
            )

    def node_dead(self, node_id: str) -> None:
        """The registry reports `node_id` dead (once per death)."""
        state = self.state
        if state is None:
            return
        record = self._registry.registry.record(node_id)
        alive = {r.node_id for r in self._registry.alive()}
        current_run = record.status.started_at if record is not None and node_id in alive else None
        lost = state.node_lost(node_id, current_run, self._clock.now())
        log.warning("node lost", node_id=self.node_id, peer=node_id, sessions=lost.sessions)
        self.emit(lost.actions)

    def emit(self, actions: list[Action]) -> None:
        """Perform what the authority's core decided outside a client's message."""
        if self.driver is not None:
            self.driver.emit(actions)

    def shutdown(self, local: Collection[str]) -> None:
        """This node stops: its own users (`local`) and those away sign out, the others'
        sessions go on, taken on by the next authority."""
        if self.driver is not None:
            core = self.driver.core
            self.driver.run(lambda now: core.shutdown(now, local))


__all__ = ["Leader"]
